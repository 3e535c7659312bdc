"""``check_run_arguments`` refuses values of the right type that no run can use, in one line before any work: a
number that reads as infinity, a size below 1 or of the wrong number of axes, a decay out of its range, a device this
PyTorch does not see, and a path that leads into a loop of symbolic links."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from unimiss_monai.utils import RunArgumentError, check_run_arguments

REPO = Path(__file__).resolve().parents[2]
BUNDLES = REPO / "bundles"
HINT = "(set UNIMISS_TRACEBACK=1 for the full traceback)"
CXR_SEG = ("unimiss_cxr_segmentation", ("train.json", "smoke.yaml"))
DRR = ("unimiss_drr_generation", ("inference.json",))
FINE_TUNE = ["unimiss_ct_classification", "unimiss_ct_segmentation", "unimiss_cxr_classification",
             "unimiss_cxr_segmentation"]


def _argv(bundle: str, names) -> list[str]:
    configs = BUNDLES / bundle / "configs"
    return ["--config_file", str([str(configs / n) for n in names]), "--meta_file", str(configs / "metadata.json")]


def _refusal(*overrides: str, run=CXR_SEG) -> str | None:
    bundle, names = run
    try:
        check_run_arguments(bundle, [*_argv(bundle, names), *overrides])
    except RunArgumentError as e:
        assert "\n" not in str(e)
        return str(e)
    return None


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.fixture
def loop(tmp_path) -> Path:
    (tmp_path / "loopA").symlink_to(tmp_path / "loopB")
    (tmp_path / "loopB").symlink_to(tmp_path / "loopA")
    return tmp_path / "loopA"


@pytest.mark.parametrize("args, run, message", [
    (("--slab_depth", "1e309"), DRR, "config id 'slab_depth' expects a finite number, got inf"),
    (("--learning_rate", "1e309"), CXR_SEG, "config id 'learning_rate' expects a finite number, got inf"),
    (("--pixel_spacing", "[1e309,1.0]"), DRR, "config id 'pixel_spacing' expects a finite number, got [inf, 1.0]"),
    (("--slab_depth", "-1e309"), DRR, "config id 'slab_depth' expects a finite number, got -inf"),
])
def test_a_number_that_reads_as_infinity_is_refused(args, run, message):
    assert _refusal(*args, run=run) == message


@pytest.mark.parametrize("value, shown", [("1e-4", "0.0001"), ("[1.5,500]", "[1.5, 500]")])
def test_a_detector_pixel_spacing_no_drr_has_is_refused(value, shown):
    """A spacing in metres (1e-4) rendered a near-constant DRR of a few micrometres of the CT, exit 0, which the
    X-ray bundles then took as a radiograph."""
    assert _refusal("--pixel_spacing", value, run=DRR) == (
        "config id 'pixel_spacing' expects detector pixels of 0.01-50 mm (a number or a [row, column] pair), got "
        f"{shown}: give the spacing in mm")
    assert _refusal("--pixel_spacing", "[0.14,0.14]", run=DRR) is None  # a flat-panel detector's pixels


@pytest.mark.parametrize("args, run, message", [
    (("--spatial_size", "[0,0]"), CXR_SEG,
     "config id 'spatial_size' expects sizes of at least 1 (whole pixels or voxels), got [0, 0]"),
    (("--spatial_size", "[-64,64]"), CXR_SEG,
     "config id 'spatial_size' expects sizes of at least 1 (whole pixels or voxels), got [-64, 64]"),
    (("--spatial_size", "[64,64,64]"), CXR_SEG,
     "config id 'spatial_size' expects 2 values, one per axis, such as [64, 64], got [64, 64, 64]"),
    (("--field_of_view_mm", "[90,90]"), ("unimiss_ct_classification", ("inference.json",)),
     "config id 'field_of_view_mm' expects 3 values, one per axis, such as [90.0, 90.0, 80.0], got [90, 90]"),
    (("--roi_size", "[16,0,64]"), ("unimiss_ct_segmentation", ("train.json",)),
     "config id 'roi_size' expects sizes of at least 1 (whole pixels or voxels), got [16, 0, 64]"),
    (("--detector_shape", "[0,256]"), DRR,
     "config id 'detector_shape' expects sizes of at least 1 (whole pixels or voxels), got [0, 256]"),
    (("--image_size_2d", "0"), ("unimiss_pretraining", ("train.json",)),
     "config id 'image_size_2d' expects sizes of at least 1 (whole pixels or voxels), got 0"),
])
def test_a_size_below_one_or_of_other_axes_is_refused(args, run, message):
    assert _refusal(*args, run=run) == message


def test_sizes_that_fit_pass():
    assert _refusal("--spatial_size", "[32,48]") is None
    assert _refusal("--slab_depth", "40.0", "--detector_shape", "[64,64]", run=DRR) is None


@pytest.mark.parametrize("bundle", FINE_TUNE)
@pytest.mark.parametrize("key, value, expects", [
    ("layer_decay", "5", "a number in (0, 1] (1: every layer at the head's rate)"),
    ("layer_decay", "0", "a number in (0, 1] (1: every layer at the head's rate)"),
    ("weight_decay", "-1", "a finite number of at least 0"),
    ("learning_rate", "0", "a finite number above 0"),
])
def test_a_decay_or_rate_out_of_range_is_refused_in_every_fine_tune_bundle(bundle, key, value, expects):
    run = (bundle, ("train.json",))
    assert _refusal(f"--{key}", value, run=run) == f"config id {key!r} expects {expects}, got {int(value)}"
    assert _refusal("--layer_decay", "1", "--weight_decay", "0", "--learning_rate", "1e-4", run=run) is None


@pytest.mark.parametrize("key, value, expects", [
    ("base_lr", "0", "a finite number above 0"), ("base_lr", "-1", "a finite number above 0"),
    ("min_lr", "-1", "a finite number of at least 0"),
])
def test_the_pretraining_rates_are_refused_out_of_range(key, value, expects):
    run = ("unimiss_pretraining", ("train.json",))
    assert _refusal(f"--{key}", value, run=run) == f"config id {key!r} expects {expects}, got {int(value)}"
    assert _refusal("--base_lr", "5e-4", "--min_lr", "0", run=run) is None


@pytest.mark.parametrize("device, message", [
    ("cuda", "cuda asked for, but this PyTorch sees no CUDA device; pass --device cpu"),
    ("cuda:7", "cuda:7 asked for, but this PyTorch sees no CUDA device; pass --device cpu"),
    ("gpu", "'gpu' is not a device to run these bundles on; pass --device cpu or --device cuda[:N]"),
    ("mps", "'mps' is not a device to run these bundles on; pass --device cpu or --device cuda[:N]"),
])
@pytest.mark.parametrize("run", [CXR_SEG, DRR, ("unimiss_pretraining", ("train.json",)),
                                 ("unimiss_ct_classification", ("inference.json",))])
def test_a_device_this_pytorch_cannot_use_is_refused_in_every_bundle(no_cuda, device, message, run):
    assert _refusal("--device", device, run=run) == f"config id 'device': {message}"
    assert _refusal("--device", "cpu", run=run) is None


def test_a_cuda_index_beyond_the_devices_seen_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert _refusal("--device", "cuda:7") == ("config id 'device': cuda:7 asked for, but this PyTorch sees 2 CUDA "
                                              "device(s); pass --device cpu or cuda:0 to cuda:1")
    assert _refusal("--device", "cuda:1") is None and _refusal("--device", "cuda") is None


@pytest.mark.parametrize("key", ["output_dir", "dataset_dir"])
def test_a_loop_of_symbolic_links_is_refused(loop, key):
    for path in (loop, loop / "inside"):
        assert _refusal(f"--{key}", str(path)) == (
            f"--{key} {str(path)!r} leads into a loop of symbolic links (links that point back at each other); point "
            f"--{key} at a real file or folder, or repair the links")
    assert _refusal(f"--{key}", str(loop.parent / "not_yet_made")) is None


@pytest.mark.parametrize("run", [CXR_SEG, DRR, ("unimiss_pretraining", ("train.json",)),
                                 ("unimiss_ct_segmentation", ("train.json", "evaluate.json"))],
                         ids=["cxr-train", "drr", "pretraining", "ct-evaluate"])
def test_an_output_folder_that_is_a_file_is_refused(tmp_path, run):
    """Training and pretraining failed with a traceback while a handler was made (NotADirectoryError), the DRR bundle
    with a bare "File exists"; the file of the user's is left as it was."""
    mine = tmp_path / "mine.txt"
    mine.write_text("mine")
    assert _refusal("--output_dir", str(mine), run=run) == (
        f"--output_dir {str(mine)!r} is a file, not a folder; move that file away or choose another --output_dir")
    assert _refusal("--output_dir", str(mine / "run"), run=run) == (
        f"--output_dir {str(mine / 'run')!r} lies inside the file {mine}, not a folder; move that file away or "
        "choose another --output_dir")
    assert _refusal("--output_dir", str(tmp_path / "new" / "run"), run=run) is None
    if run[0] != "unimiss_drr_generation":  # where trained weights are published (or read from)
        assert _refusal("--ckpt_dir", str(mine), run=run) == (
            f"--ckpt_dir {str(mine)!r} is a file, not a folder; move that file away or choose another --ckpt_dir")
    assert _refusal("--dataset_dir", str(mine), run=run) is None  # an input may be a file: its reader says what fits
    assert mine.read_text() == "mine"


@pytest.mark.parametrize("run", [CXR_SEG, DRR, ("unimiss_pretraining", ("train.json",))],
                         ids=["cxr-train", "drr", "pretraining"])
def test_an_output_folder_given_with_a_quoted_tilde_is_refused(run):
    """``--output_dir '~/runs/a'`` (quoted, or ``--output_dir=~/...``) reaches the run as typed: MONAI's handlers and
    the writers made a folder named ``~`` in the working folder, and training also an empty one under the home."""
    expected = (f"--{{key}} '~/runs/a' starts with '~', which reached the run unexpanded (quoted, or after '='), and "
                f"would make a folder named '~' in {os.getcwd()}; write it without quotes, or with $HOME instead of ~")
    keys = ["output_dir", "bundle_root"] + ([] if run == DRR else ["ckpt_dir"])
    for key in keys:
        assert _refusal(f"--{key}", "~/runs/a", run=run) == expected.format(key=key)
    assert _refusal("--output_dir", os.path.expanduser("~/runs/a"), run=run) is None  # as the shell expands it
    assert _refusal("--dataset_dir", "~/data", run=run) is None  # inputs: their readers expand it


@pytest.mark.integration
@pytest.mark.parametrize("overrides, message", [
    (("--device", "cuda"),
     "config id 'device': cuda asked for, but this PyTorch sees no CUDA device; pass --device cpu"),
    (("--spatial_size", "[0,0]"),
     "config id 'spatial_size' expects sizes of at least 1 (whole pixels or voxels), got [0, 0]"),
])
def test_monai_bundle_run_refuses_them_in_one_line_before_any_work(tmp_path, overrides, message):
    configs = BUNDLES / "unimiss_cxr_segmentation" / "configs"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file",
           str([str(configs / "train.json"), str(configs / "smoke.yaml")]),
           "--meta_file", str(configs / "metadata.json"),
           "--logging_file", str(configs / "logging.conf"), "--bundle_root", str(tmp_path / "bundle"),
           "--dataset_dir", str(tmp_path), "--output_dir", str(tmp_path / "out"), *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("UNIMISS_TRACEBACK", None)
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert lines[-2:] == [f"error: {message}", HINT], proc.stderr[-3000:]
    assert not (tmp_path / "out").exists() and not (tmp_path / "bundle").exists()


@pytest.mark.integration
def test_help_says_where_the_ids_are_and_exits_0(tmp_path):
    configs = BUNDLES / "unimiss_cxr_segmentation" / "configs"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(configs / "inference.json"),
           "--bundle_root", str(tmp_path / "bundle"), "--output_dir", str(tmp_path / "out"), "--help"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == (
        "monai.bundle run lists no options of its own; the ids of unimiss_cxr_segmentation, with their defaults, are "
        "in the Configuration table of its docs/README.md, and --<id> <value> sets any of them (a nested one as "
        "--<a>#<b> <value>)")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("overrides, refusal", [
    (["--dataset_dir"],
     "config id 'dataset_dir' expects a path, got True; was its value left out? (--dataset_dir VALUE)"),
    (["--ckpt_dir", "--max_epochs", "1"],
     "config id 'ckpt_dir' expects a path, got True; was its value left out? (--ckpt_dir VALUE)"),
    (["--eval_split"], "config id 'eval_split' expects text, got True; was its value left out? (--eval_split VALUE)"),
    (["--output_dir=False"], "config id 'output_dir' expects a path, got False"),
])
def test_a_path_or_text_id_given_no_value_is_refused_naming_it(overrides, refusal):
    """A bare ``--dataset_dir`` reaches the run as True; it failed later in a traceback about a bool, not a path."""
    run = ("unimiss_cxr_segmentation", ("train.json", "evaluate.json", "smoke.yaml"))
    assert _refusal(*overrides, run=run) == refusal
    assert _refusal("--dataset_dir", "data", "--eval_split", "validation", "--amp", "True", run=run) is None
