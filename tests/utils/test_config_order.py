"""``--config_file`` lists of ``python -m monai.bundle run`` with an overlay before the bundle config it changes, or
without it, are refused in one line with the list in a working order, before any work; the documented lists pass."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from unimiss_monai.utils import RunArgumentError, check_run_arguments
from unimiss_monai.utils.config_order import config_order_problem

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
HINT = "(set UNIMISS_TRACEBACK=1 for the full traceback)"


def _files(bundle: str, *names: str) -> list[str]:
    return [str(BUNDLES / bundle / "configs" / name) for name in names]


@pytest.mark.parametrize("bundle, names", [
    ("unimiss_ct_classification", ("train.json", "evaluate.json", "smoke.yaml")),
    ("unimiss_cxr_classification", ("inference.json", "smoke.yaml")),
    ("unimiss_ct_segmentation", ("train.json", "multi_gpu_train.json", "smoke.yaml")),
    ("unimiss_ct_segmentation", ("inference.json", "inference_cpu.yaml", "inference_cpu_fast.yaml")),
    ("unimiss_cxr_segmentation", ("train.json", "evaluate.json")),
    ("unimiss_pretraining", ("train.json", "unimiss.yaml", "smoke.yaml")),
    ("unimiss_pretraining", ("train.json", "recipe_intra_inter.yaml")),
    ("unimiss_drr_generation", ("inference.json", "multi_gpu_inference.json")),
    ("unimiss_drr_generation", ("inference.json",)),
])
def test_documented_lists_pass(bundle, names):
    assert config_order_problem(_files(bundle, *names)) is None


def test_an_overlay_of_the_users_that_replaces_the_run_passes_after_the_config(tmp_path):
    """A file of the user's that defines ``run`` too (its own steps) and is listed after the bundle's config is merged
    over it, as an overlay is: the first config that runs alone is the one the others change."""
    own = tmp_path / "own_steps.json"
    own.write_text('{"run": ["$print(@max_epochs)"]}')
    files = [*_files("unimiss_pretraining", "train.json", "recipe_intra_inter.yaml", "smoke.yaml"), str(own)]
    assert config_order_problem(files) is None
    assert config_order_problem([files[2], *files[:2], files[3]]).startswith(
        f"--config_file lists the overlay {files[2]} before {files[0]}, ")
    # ids the bundle's config does not hold are merged in whatever the order: nothing is overridden
    extra = tmp_path / "extra_ids.json"
    extra.write_text('{"my_note": 1, "my_other_note": [2]}')
    assert config_order_problem([str(extra), *files[:2]]) is None


@pytest.mark.parametrize("bundle, names, first, base, fixed", [
    # merged silently: the bundle's config overrode every setting of the overlay before it (the demo's small DRRs,
    # the CPU inference's fast settings) and the run went on with the defaults
    ("unimiss_drr_generation", ("demo.yaml", "inference.json"), "demo.yaml", "inference.json",
     ("inference.json", "demo.yaml")),
    ("unimiss_ct_segmentation", ("inference_cpu_fast.yaml", "inference.json"), "inference_cpu_fast.yaml",
     "inference.json", ("inference.json", "inference_cpu_fast.yaml")),
    ("unimiss_ct_classification", ("smoke.yaml", "train.json", "evaluate.json"), "smoke.yaml", "train.json",
     ("train.json", "smoke.yaml", "evaluate.json")),
])
def test_an_overlay_before_its_config_is_refused_with_the_order(bundle, names, first, base, fixed):
    files = _files(bundle, *names)
    listed = "[" + ",".join(repr(f) for f in _files(bundle, *fixed)) + "]"
    assert config_order_problem(files) == (
        f"--config_file lists the overlay {_files(bundle, first)[0]} before {_files(bundle, base)[0]}, the config it "
        f"changes, which would override what it sets; each overlay goes after it: --config_file \"{listed}\"")
    with pytest.raises(RunArgumentError, match="^--config_file lists the overlay "):
        check_run_arguments(bundle, ["--config_file", str(files)])


@pytest.mark.parametrize("bundle, names, base", [
    ("unimiss_ct_classification", ("evaluate.json",), "train.json"),
    ("unimiss_cxr_segmentation", ("evaluate.json", "smoke.yaml"), "train.json"),
    ("unimiss_drr_generation", ("demo.yaml",), "inference.json"),
])
def test_an_overlay_without_its_config_names_it(bundle, names, base):
    listed = "[" + ",".join(repr(f) for f in _files(bundle, base, *names)) + "]"
    assert config_order_problem(",".join(_files(bundle, *names))) == (
        f"--config_file lists the overlay {_files(bundle, names[0])[0]} without {_files(bundle, base)[0]}, the config "
        f"it changes; each overlay goes after it: --config_file \"{listed}\"")


@pytest.mark.integration
def test_cli_refuses_an_overlay_first_before_any_work(tmp_path):
    configs = BUNDLES / "unimiss_drr_generation" / "configs"
    cmd = [sys.executable, "-m", "monai.bundle", "run",
           "--config_file", "['configs/demo.yaml','configs/inference.json']", "--dataset_dir", str(tmp_path),
           "--output_dir", str(tmp_path / "out")]
    env = {k: v for k, v in os.environ.items() if k != "UNIMISS_TRACEBACK"}
    proc = subprocess.run(cmd, cwd=configs.parent, capture_output=True, text=True, timeout=600,
                          env={**env, "OMP_NUM_THREADS": "1"})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert lines[-2:] == ["error: --config_file lists the overlay configs/demo.yaml before configs/inference.json, the "
                          "config it changes, which would override what it sets; each overlay goes after it: "
                          "--config_file \"['configs/inference.json','configs/demo.yaml']\"", HINT]
    assert not (tmp_path / "out").exists()
