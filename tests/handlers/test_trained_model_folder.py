"""A folder given as the trained model (``--ckpt_path models/smoke``) is refused in one line naming the model file to
pass, not told as a missing model (which sent the user to train again a model that was there); ``bench-infer --weights``
is refused naming ``--weights``, the option its user typed."""

from __future__ import annotations

import pytest
import torch
from tiny_nets import EncoderHead as _Net

from unimiss_monai.handlers import load_pretrained_init


def _refusal(path) -> str:
    with pytest.raises(FileNotFoundError) as err:
        load_pretrained_init(_Net(), str(path), trained=True)
    assert "\n" not in str(err.value) and "train this bundle first" not in str(err.value)
    return str(err.value)


def test_a_folder_holding_model_pt_names_that_file(tmp_path):
    folder = tmp_path / "models" / "smoke"
    folder.mkdir(parents=True)
    torch.save({"model": _Net().state_dict()}, folder / "model.pt")
    assert _refusal(folder) == (f"--ckpt_path {folder} is a folder, not a model file; pass the model it holds: "
                                f"--ckpt_path {folder / 'model.pt'} (or --ckpt_dir {folder})")


def test_a_bundle_or_run_folder_names_its_models_model_pt(tmp_path):
    (tmp_path / "models").mkdir()
    torch.save({"model": _Net().state_dict()}, tmp_path / "models" / "model.pt")
    assert _refusal(tmp_path) == (f"--ckpt_path {tmp_path} is a folder, not a model file; pass the model it holds: "
                                  f"--ckpt_path {tmp_path / 'models' / 'model.pt'} (or --ckpt_dir {tmp_path / 'models'})")


def test_a_folder_without_a_model_says_so(tmp_path):
    assert _refusal(tmp_path) == (f"--ckpt_path {tmp_path} is a folder, not a model file, and holds no model.pt; pass "
                                  "the model.pt of a trained run as --ckpt_path, or its folder as --ckpt_dir")


def test_the_model_file_itself_loads(tmp_path):
    torch.save({"model": _Net().state_dict()}, tmp_path / "model.pt")
    assert load_pretrained_init(_Net(), str(tmp_path / "model.pt"), trained=True)["loaded"] == 4


def _bench_refusal(path) -> str:
    from unimiss_monai.benchmarks.inference import _weights

    class _NoSettings:  # a bundle whose load_model records no settings, name or classes
        def get_parsed_content(self, key, default=None):
            return default

    with pytest.raises(FileNotFoundError) as err:
        _weights(_Net(), str(path), 0, _NoSettings())
    assert "--ckpt" not in str(err.value)  # bench-infer has neither option
    return str(err.value)


def test_bench_infer_names_the_option_its_user_typed(tmp_path):
    assert _bench_refusal(tmp_path) == (f"--weights {tmp_path} is a folder, not a model file, and holds no model.pt; "
                                        "pass the model.pt of a trained run as --weights")
    (tmp_path / "models").mkdir()
    torch.save({"model": _Net().state_dict()}, tmp_path / "models" / "model.pt")
    assert _bench_refusal(tmp_path) == (f"--weights {tmp_path} is a folder, not a model file; pass the model it holds: "
                                        f"--weights {tmp_path / 'models' / 'model.pt'}")
