"""``check_run_arguments``: overrides of ``python -m monai.bundle run`` that name no config id or carry a value of the
wrong type are refused in one line before any work, in process and through real ``monai.bundle run`` runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.bundle import ConfigParser, ConfigWorkflow

from unimiss_monai.utils import RunArgumentError, check_run_arguments, config_ids

REPO = Path(__file__).resolve().parents[2]
BUNDLES = REPO / "bundles"
CT_SEG = BUNDLES / "unimiss_ct_segmentation" / "configs"
HINT = "(set UNIMISS_TRACEBACK=1 for the full traceback)"


def _argv(bundle: str, *names: str) -> list[str]:
    configs = BUNDLES / bundle / "configs"
    return ["--config_file", str([str(configs / n) for n in names]), "--meta_file", str(configs / "metadata.json"),
            "--logging_file", str(configs / "logging.conf")]


def _refusal(*overrides: str, bundle: str = "unimiss_ct_segmentation", names=("train.json", "smoke.yaml")) -> str | None:
    try:
        check_run_arguments(bundle, [*_argv(bundle, *names), *overrides])
    except RunArgumentError as e:
        assert "\n" not in str(e)
        return str(e)
    return None


@pytest.mark.parametrize("bundle, names", [
    ("unimiss_ct_segmentation", ("train.json",)), ("unimiss_cxr_segmentation", ("train.json", "evaluate.json")),
    ("unimiss_ct_classification", ("inference.json",)), ("unimiss_cxr_classification", ("train.json",)),
    ("unimiss_pretraining", ("train.json", "smoke.yaml")), ("unimiss_drr_generation", ("inference.json",)),
])
def test_typo_is_refused_with_the_nearest_id(bundle, names):
    assert _refusal("--output_dirr", "out", bundle=bundle, names=names) == (
        f"unknown config id 'output_dirr' for {bundle}; did you mean 'output_dir'?")
    assert _refusal("--output_dir", "out", "--dataset_dir", "data", bundle=bundle, names=names) is None


def test_refusals_name_every_bad_key():
    assert _refusal("--num_epoch", "1") == (
        "unknown config id 'num_epoch' for unimiss_ct_segmentation; did you mean 'max_epochs'?")
    assert _refusal("--zzqx", "1") == (
        "unknown config id 'zzqx' for unimiss_ct_segmentation; it is neither defined in train.json, smoke.yaml nor a "
        "run argument")
    assert _refusal("--num_epoch", "1", "--max_epochs", "abc") == (
        "unknown config id 'num_epoch' for unimiss_ct_segmentation; did you mean 'max_epochs'?; "
        "config id 'max_epochs' expects an integer, got 'abc'")


PRETRAINING = {"bundle": "unimiss_pretraining", "names": ("train.json", "smoke.yaml")}


@pytest.mark.parametrize("key, meant, bundle", [
    # the pretraining bundle nests its run length: the fine-tune name, or none, points at it, not at the warm-up
    # spelt most like it
    ("epochs", "train#epochs", PRETRAINING), ("max_epochs", "train#epochs", PRETRAINING),
    ("num_epoch", "train#epochs", PRETRAINING), ("epoch", "train#epochs", PRETRAINING),
    ("batch_size", "train#batch_size", PRETRAINING), ("output_dirr", "output_dir", PRETRAINING),
    # where the run length is at the top, it stays the hint; the FreezeEncoder handler's 'epochs' follows an id
    ("epochs", "max_epochs", {}), ("num_epoch", "max_epochs", {}), ("max_epoch", "max_epochs", {}),
    ("epochs", "max_epochs", {"bundle": "unimiss_cxr_classification", "names": ("train.json",)}),
])
def test_a_name_of_another_bundle_points_at_this_one_s_setting(key, meant, bundle):
    name = bundle.get("bundle", "unimiss_ct_segmentation")
    assert _refusal(f"--{key}", "0", **bundle) == f"unknown config id {key!r} for {name}; did you mean {meant!r}?"


@pytest.mark.parametrize("key, value, message", [
    ("max_epochs", "abc", "config id 'max_epochs' expects an integer, got 'abc'"),
    ("max_epochs", "2.5", "config id 'max_epochs' expects an integer, got 2.5"),
    ("max_epochs", "True", "config id 'max_epochs' expects an integer, got True"),
    ("learning_rate", "fast", "config id 'learning_rate' expects a number, got 'fast'"),
    ("deep_supervision", "maybe", "config id 'deep_supervision' expects true or false, got 'maybe'"),
    ("roi_size", "64", "config id 'roi_size' expects a list of integers such as [16, 64, 64], got 64"),
    ("pixdim", "[2,a,2]", "config id 'pixdim' expects a list of numbers such as [5.0, 5.0, 5.0], got [2, 'a', 2]"),
    # counts of at least one, and a flag whose default is an expression (mixed precision follows the device)
    ("max_epochs", "0", "config id 'max_epochs' expects a whole number of at least 1, got 0"),
    ("val_interval", "-1", "config id 'val_interval' expects a whole number of at least 1, got -1"),
    ("amp", "maybe", "config id 'amp' expects true or false, got 'maybe'"),
])
def test_wrong_type_is_refused(key, value, message):
    assert _refusal(f"--{key}", value) == message



@pytest.mark.parametrize("bundle, key, value, message", [
    ("unimiss_ct_segmentation", "sw_batch_size", "0", "config id 'sw_batch_size' expects a whole number of at least 1, got 0"),
    ("unimiss_ct_segmentation", "sw_overlap", "1", "config id 'sw_overlap' expects a number between 0 and 1, got 1"),
    ("unimiss_cxr_segmentation", "threshold", "1.5", "config id 'threshold' expects a number between 0 and 1, got 1.5"),
    ("unimiss_ct_classification", "threshold", "0", "config id 'threshold' expects a number between 0 and 1, got 0"),
    ("unimiss_ct_segmentation", "sw_overlap", "0", None), ("unimiss_cxr_classification", "threshold", "0.3", None),
])
def test_inference_numbers_out_of_range_are_refused(bundle, key, value, message):
    # sw_batch_size 0 failed every case on its own ("range() arg 3 must not be zero"); a threshold of 1.5 found nothing
    assert _refusal(f"--{key}", value, bundle=bundle, names=("inference.json",)) == message


@pytest.mark.parametrize("key, value, message", [
    ("pixel_spacing", "[1.5,2]", None), ("pixel_spacing", "2", None), ("slab_depth", "37.5", None),
    ("slab_depth", "40", None),
    ("pixel_spacing", "[1.5,'a']", "config id 'pixel_spacing' expects a number or a [row, column] pair of them, got [1.5, 'a']"),
    ("pixel_spacing", "[1,2,3]", "config id 'pixel_spacing' expects a number, got [1, 2, 3]"),
    ("slab_depth", "deep", "config id 'slab_depth' expects a number, got 'deep'"),
])
def test_drr_lengths_take_what_its_docs_offer(key, value, message):
    # the detector's pixels may be [row, column]; slabs are any number of mm (an overlay took both; the check did not)
    assert _refusal(f"--{key}", value, bundle="unimiss_drr_generation", names=("inference.json",)) == message


@pytest.mark.parametrize("bundle, value, message", [
    ("unimiss_ct_classification", "abc", "config id 'freeze_encoder_epochs' expects an integer, got 'abc'"),
    ("unimiss_ct_segmentation", "2.5", "config id 'freeze_encoder_epochs' expects an integer, got 2.5"),
    ("unimiss_cxr_classification", "5", None), ("unimiss_ct_segmentation", "$@max_epochs // 2", None),
])
def test_an_id_whose_default_is_an_expression_is_checked_as_what_it_yields(bundle, value, message):
    # its default ("$@max_epochs if @linear_probe_flag else 0") yields an integer: 'abc' failed in the trainer with
    # "invalid literal for int()", naming no option
    refusal = _refusal("--freeze_encoder_epochs", value, bundle=bundle, names=("train.json", "smoke.yaml"))
    assert refusal == message


@pytest.mark.parametrize("key, value, message", [
    ("mix", "0.5", None), ("mix", "abc", "config id 'mix' expects a number, got 'abc'"),
    ("unsure_mix", "0.5", None), ("unsure_mix", "abc", None),
])
def test_an_expression_with_a_branch_of_another_kind_is_not_refused_for_it(tmp_path, key, value, message):
    # "$@lr if @x else 0" read as an integer by its literal 0 refused 0.5, a value it takes: a referenced number's
    # kind counts, and a branch whose kind is not sure (an expression's) leaves the option unchecked
    overlay = tmp_path / "overlay.json"
    overlay.write_text(json.dumps({"lr": 0.001, "x": True, "mix": "$@lr if @x else 0", "unsure": "$@lr * @max_epochs",
                                   "unsure_mix": "$@unsure if @x else 0"}))
    argv = _argv("unimiss_ct_segmentation", "train.json", "smoke.yaml")
    argv[1] = str([*json.loads(argv[1].replace("'", '"')), str(overlay)])
    try:
        check_run_arguments("unimiss_ct_segmentation", [*argv, f"--{key}", value])
    except RunArgumentError as e:
        assert str(e) == message
    else:
        assert message is None


def test_wrong_type_of_a_nested_id_is_refused():
    assert _refusal("--backbone#spatial_dims", "16", bundle="unimiss_pretraining", names=("train.json",)) == (
        "config id 'backbone#spatial_dims' expects a list of integers such as [2, 3], got 16")


@pytest.mark.parametrize("overrides", [
    ["--max_epochs", "3"], ["--max_epochs=3"], ["--max-epochs", "3"], ["--learning_rate", "1"],
    ["--learning_rate", "1e-3"], ["--deep_supervision", "false"], ["--deep_supervision"], ["--nodeep_supervision"],
    ["--roi_size", "[16,32,32]"], ["--roi_size", "16,32,32"], ["--max_epochs", "$2 * 3"], ["--max_epochs", "@val_interval"],
    ["--pixdim", "[10,10.0,10]"], ["--class_names", "[liver,spleen]"], ["--pretrained_path", "/weights.pt"],
    ["--network_def#embed_dims", "[8,8,8,8]"], ["--network_def::embed_dims", "[8,8,8,8]"],
    ["--train#trainer#max_epochs", "3"], ["--train#preprocessing#transforms#0#keys", "image"],
    # a keyword the component's target takes, though the config does not set it
    ["--optimizer#betas", "[0.9,0.99]"], ["--loss#lambda_dice", "0.5"],
    # run's own arguments, a positional run_id, and what follows "--" (fire's own flags)
    ["training", "--workflow_type", "train", "--args_file", ""], ["--max_epochs", "3", "--", "--verbose"],
    ["--tracking", "mlflow", "--experiment_name", "ct"], ["--amp", "false"], ["--amp", "$False"], ["--max_epochs", "1"],
])
def test_valid_overrides_pass(overrides):
    assert _refusal(*overrides) is None


def test_nested_ids_and_component_keywords():
    assert _refusal("--optimizer#lrr", "1") == ("unknown config id 'optimizer#lrr' for unimiss_ct_segmentation: "
                                                "torch.optim.AdamW takes no argument 'lrr'; did you mean 'optimizer#lr'?")
    assert _refusal("--network_def#embed_dimz", "[8,8,8,8]") is None  # the network takes **variant_overrides
    assert _refusal("--train#handlers#99", "1").startswith("unknown config id 'train#handlers#99'")
    assert _refusal("--experiment_name", "ct").startswith("unknown config id 'experiment_name'")  # only with --tracking
    ids = config_ids({"a": {"b": [1, {"c": 2}]}, "d": 3})
    assert ids == {"a": {"b": [1, {"c": 2}]}, "a#b": [1, {"c": 2}], "a#b#0": 1, "a#b#1": {"c": 2}, "a#b#1#c": 2, "d": 3}


def test_args_file_entries_are_checked(tmp_path):
    args = tmp_path / "args.json"
    configs = [str(CT_SEG / "train.json"), str(CT_SEG / "smoke.yaml")]
    args.write_text(json.dumps({"config_file": configs, "max_epoch": 2}))
    with pytest.raises(RunArgumentError, match="^unknown config id 'max_epoch' .*did you mean 'max_epochs'"):
        check_run_arguments("unimiss_ct_segmentation", ["--args_file", str(args)])
    args.write_text(json.dumps({"config_file": configs, "max_epochs": 2}))
    check_run_arguments("unimiss_ct_segmentation", ["--args_file", str(args), "--val_interval", "1"])


def test_outside_the_command_line_nothing_happens(tmp_path, monkeypatch):
    hook = sys.excepthook
    # pytest is __main__ here, not monai.bundle: an in-process workflow with an extra id runs as before
    monkeypatch.setattr(sys, "argv", ["pytest", "run", "--num_epoch", "1"])
    check_run_arguments("unimiss_ct_segmentation")
    drr = BUNDLES / "unimiss_drr_generation" / "configs"
    wf = ConfigWorkflow(config_file=str(drr / "inference.json"), meta_file=str(drr / "metadata.json"),
                        logging_file=str(drr / "logging.conf"), workflow_type="infer", output_dir=str(tmp_path), extra=1)
    wf.initialize()
    assert sys.excepthook is hook


def test_every_initialize_list_starts_with_the_check():
    checked = []
    for path in sorted(BUNDLES.glob("*/configs/*.json")):
        config = ConfigParser.load_config_file(path)
        if "initialize" in config:
            bundle = path.parents[1].name
            assert config["initialize"][0] == f"$unimiss_monai.utils.check_run_arguments('{bundle}')", path
            checked.append(bundle)
    assert len(set(checked)) == 6 and len(checked) >= 15


# --- real `python -m monai.bundle run` processes (about 10 s of imports each) ---


def _run(tmp_path: Path, *overrides: str, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "monai.bundle", "run", *_argv("unimiss_ct_segmentation", "train.json", "smoke.yaml"),
           "--bundle_root", str(tmp_path / "bundle"), "--output_dir", str(tmp_path / "out"), *overrides]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full_env.pop("UNIMISS_TRACEBACK", None)
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600, env={**full_env, **(env or {})})


def _assert_one_line(proc: subprocess.CompletedProcess, message: str, tmp_path: Path, max_lines: int = 5) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert lines[-2:] == [f"error: {message}", HINT], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and len(lines) <= max_lines, proc.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "bundle").exists()


@pytest.mark.integration
def test_cli_refuses_arguments_before_any_work(tmp_path):
    proc = _run(tmp_path, "--dataset_dir", str(tmp_path), "--num_epoch", "1", "--max_epochs", "abc")
    _assert_one_line(proc, "unknown config id 'num_epoch' for unimiss_ct_segmentation; did you mean 'max_epochs'?; "
                     "config id 'max_epochs' expects an integer, got 'abc'", tmp_path)


@pytest.mark.integration
def test_cli_missing_dataset_dir_is_one_line_and_the_switch_shows_the_traceback(tmp_path):
    missing = tmp_path / "no_such_data"
    proc = _run(tmp_path, "--dataset_dir", str(missing))
    _assert_one_line(proc, f"dataset_dir '{missing}' does not exist; create it with `python -m unimiss_monai samples "
                     f"--out {missing}` or point --dataset_dir at your data", tmp_path)
    full = _run(tmp_path, "--dataset_dir", str(missing), env={"UNIMISS_TRACEBACK": "1"})
    assert full.returncode == 1 and "Traceback (most recent call last)" in full.stderr
    assert f"FileNotFoundError: dataset_dir '{missing}' does not exist" in full.stderr
    # MONAI's wrapper stays at the bottom, as without this package's hook
    assert "RuntimeError: Failed to evaluate ConfigExpression" in "\n".join(full.stderr.splitlines()[-5:])
    assert HINT not in full.stderr and len(full.stderr.splitlines()) > 20


@pytest.mark.integration
def test_cli_transform_error_names_the_file(tmp_path):
    from unimiss_monai.data.sample_sets.ct_segmentation import make_organ_phantom

    data = tmp_path / "data"
    data.mkdir()
    hu, labels, affine = make_organ_phantom((20, 18, 16), (10.0, 10.0, 10.0), seed=3)
    image = hu.astype(np.float32)
    image[3, 4, 5] = np.nan
    nib.save(nib.Nifti1Image(image, affine), data / "ct.nii.gz")
    nib.save(nib.Nifti1Image(labels, affine), data / "label.nii.gz")
    case = {"image": "ct.nii.gz", "label": "label.nii.gz"}
    (data / "datalist.json").write_text(json.dumps({"training": [case], "validation": [case]}))
    proc = _run(tmp_path, "--dataset_dir", str(data), "--roi_size", "[16,32,32]", "--pixdim", "[10.0,10.0,10.0]")
    # MONAI's own warnings and the caching progress bar come first; no traceback
    _assert_one_line(proc, f"{data / 'ct.nii.gz'}: has 1 non-finite (NaN or Inf) value(s) of {image.size}; fix or "
                     "remove those voxels (e.g. replace them with the air value) or drop the case", tmp_path, max_lines=8)
