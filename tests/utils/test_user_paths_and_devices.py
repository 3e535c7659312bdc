"""One-line refusals outside the bundle command line: a device this PyTorch does not see, a path into a loop of
symbolic links (output folders, ``--dataset_dir``, ``samples --out``), a bare ``samples --out``, decays out of range
in the fine-tuning parameter groups, and ``label-efficiency --pretrain_lr``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from unimiss_monai.benchmarks.label_efficiency.command import label_efficiency
from unimiss_monai.data.samples import find_dataset, samples
from unimiss_monai.data.writers import check_output_dir
from unimiss_monai.networks.param_groups import param_groups_lrd
from unimiss_monai.utils.devices import check_device, device_problem
from unimiss_monai.utils.paths import check_no_symlink_loop, symlink_loop_problem

REPO = Path(__file__).resolve().parents[2]
HINT = "(set UNIMISS_TRACEBACK=1 for the full traceback)"


@pytest.fixture
def loop(tmp_path) -> Path:
    (tmp_path / "loopA").symlink_to(tmp_path / "loopB")
    (tmp_path / "loopB").symlink_to(tmp_path / "loopA")
    return tmp_path / "loopA"


def _loop_line(what: str, path) -> str:
    return (f"{what} {str(path)!r} leads into a loop of symbolic links (links that point back at each other); point "
            f"{what} at a real file or folder, or repair the links")


def test_device_problem_says_what_this_pytorch_sees(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_problem("cpu") is None and device_problem(torch.device("cpu")) is None
    assert device_problem("cuda") == "cuda asked for, but this PyTorch sees no CUDA device; pass --device cpu"
    assert device_problem("cuda:x") == "'cuda:x' is not a device to run these bundles on; pass --device cpu or --device cuda[:N]"
    assert device_problem(0) == "0 is not a device to run these bundles on; pass --device cpu or --device cuda[:N]"
    # the DRR engine's wording, from the shared helper
    with pytest.raises(ValueError, match=r"^device: 'meta' is not a device to render on; pass --device cpu or "):
        check_device("meta", use="render on")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert check_device("cuda:0") == "cuda:0" and device_problem("cuda") is None
    assert device_problem("cuda:1", "--gpu") == ("cuda:1 asked for, but this PyTorch sees 1 CUDA device(s); pass "
                                                 "--gpu cpu or cuda:0 to cuda:0")


def test_a_loop_of_symbolic_links_is_told_from_a_missing_path(loop, tmp_path):
    assert symlink_loop_problem(loop, "--out") == _loop_line("--out", loop)
    assert symlink_loop_problem(loop / "a" / "b", "--out") == _loop_line("--out", loop / "a" / "b")
    assert symlink_loop_problem(tmp_path / "missing" / "x", "--out") is None
    assert check_no_symlink_loop(tmp_path, "--out") == tmp_path


def test_check_output_dir_names_the_looping_folder(loop, tmp_path):
    with pytest.raises(ValueError) as err:
        check_output_dir(loop, tmp_path / "data")
    assert str(err.value) == _loop_line("output_dir", loop)
    with pytest.raises(ValueError) as err:
        check_output_dir(tmp_path / "out", loop)
    assert str(err.value) == _loop_line("dataset_dir", loop)
    with pytest.raises(ValueError, match="^output_dir .* leads into a loop"):
        check_output_dir(loop / "sub", None)
    assert check_output_dir(tmp_path / "out", tmp_path / "data") == str(tmp_path / "out")


def test_find_dataset_names_the_loop_instead_of_a_missing_folder(loop):
    with pytest.raises(ValueError) as err:
        find_dataset(loop, "cxr_segmentation")
    assert str(err.value) == _loop_line("dataset_dir", loop)


def test_samples_refuses_a_looping_or_missing_out(loop, tmp_path):
    with pytest.raises(ValueError) as err:
        samples(out=str(loop), synthetic=True, only="drr_generation")
    assert str(err.value) == _loop_line("--out", loop)
    for out, hint in ((True, "was its value left out?"), (None, "was its value left out?"),
                      (2024, "quote a number-like folder name")):
        with pytest.raises(ValueError) as err:
            samples(out=out, synthetic=True, only="drr_generation")
        assert str(err.value) == (f"samples: --out takes the folder to write into (e.g. --out samples), got {out!r}; "
                                  f"{hint}")
    with pytest.raises(ValueError, match=r"^samples: --only takes data-set names, .* got True$"):
        samples(out=str(tmp_path / "s"), synthetic=True, only=True)
    assert not (tmp_path / "s").exists()


def test_samples_cli_with_a_bare_out_is_one_line(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("UNIMISS_TRACEBACK", None)
    proc = subprocess.run([sys.executable, "-m", "unimiss_monai", "samples", "--synthetic", "true", "--out", "--only",
                           "drr_generation"], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    # told by the command line's reader, before the command runs (its own check stays for Python callers, above)
    assert proc.returncode == 2 and lines == ["unimiss_monai samples: option --out needs a value (--out VALUE); was it "
                                              "left out?"], proc.stderr[-3000:]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("weight_decay, layer_decay, message", [
    (0.05, 5, "layer_decay must be a number in (0, 1] (1: every layer at the head's rate), got 5"),
    (0.05, 0, "layer_decay must be a number in (0, 1] (1: every layer at the head's rate), got 0"),
    (0.05, "0.75", "layer_decay must be a number in (0, 1] (1: every layer at the head's rate), got '0.75'"),
    (-1, 0.75, "weight_decay must be a finite number of at least 0, got -1"),
    (float("inf"), 0.75, "weight_decay must be a finite number of at least 0, got inf"),
])
def test_param_groups_refuse_decays_out_of_range(weight_decay, layer_decay, message):
    net = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError) as err:
        param_groups_lrd(net, 1e-3, weight_decay=weight_decay, layer_decay=layer_decay)
    assert str(err.value).startswith(message + ":") and "\n" not in str(err.value)


def test_param_groups_accept_the_edges_of_the_ranges():
    groups = param_groups_lrd(torch.nn.Linear(2, 2), 1e-3, weight_decay=0.0, layer_decay=1.0)
    assert {g["weight_decay"] for g in groups} == {0.0} and {g["lr"] for g in groups} == {1e-3}


@pytest.mark.parametrize("value", ["fast", 0, -1e-3, float("inf"), "nan", True])
def test_label_efficiency_refuses_a_pretrain_lr_before_any_work(tmp_path, value):
    with pytest.raises(ValueError) as err:
        label_efficiency(pretrain_lr=value, dataset_dir=str(tmp_path / "data"), out=str(tmp_path / "study"))
    assert str(err.value) == (f"label-efficiency: --pretrain_lr must be a finite number above 0, e.g. 5e-4, got "
                              f"{value!r}")
    assert not (tmp_path / "study").exists()
