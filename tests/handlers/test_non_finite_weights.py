"""Weights holding NaN or Inf are refused when they are read, whichever loader reads them: a diverged network would
predict empty masks scored as results. The refusal is one line naming the file and the tensor, with no advice about
overlays (no option of the run can mend the file)."""

from __future__ import annotations

import pytest
import torch

from unimiss_monai.handlers import load_pretrained_init
from unimiss_monai.networks import build_backbone, load_pretrained
from unimiss_monai.networks.pretrained import read_checkpoint
from unimiss_monai.utils.finite import NonFiniteWeightsError

from tiny_nets import EncoderHead as _Net, tiny_segmentation as _seg


def _poisoned(net: torch.nn.Module, value: float) -> tuple[dict[str, torch.Tensor], str]:
    """``net``'s state dict with one element of its last floating tensor set to ``value``, and that tensor's name."""
    state = {k: v.clone() for k, v in net.state_dict().items()}
    name = [k for k, v in state.items() if v.is_floating_point()][-1]
    state[name].view(-1)[0] = value
    return state, name


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("make", [_seg, _Net], ids=["unimiss", "other"])
@pytest.mark.parametrize("trained", [True, False], ids=["trained", "pretrained"])
def test_a_non_finite_tensor_is_refused_in_one_line_naming_file_and_tensor(tmp_path, make, trained, value):
    net = make()
    state, name = _poisoned(net, value)
    path = tmp_path / "model.pt"
    torch.save({"model": state}, path)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(NonFiniteWeightsError) as err:
        load_pretrained_init(net, path, trained=trained)
    message = str(err.value)
    assert "\n" not in message and str(path) in message and f"tensor {name} holds NaN or Inf" in message
    assert "configs/smoke.yaml" not in message
    # refused before loading: the network keeps its own weights
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    # the same file with finite values loads
    torch.save({"model": before}, path)
    load_pretrained_init(make(), path, trained=trained)


def test_a_pretraining_export_with_nan_is_refused_and_a_state_dict_is_named_without_a_path(tmp_path):
    backbone = build_backbone("mitplus", (2, 3), preset="smoke")
    state, name = _poisoned(backbone, float("nan"))
    path = tmp_path / "model.pt"
    torch.save({"model": state}, path)
    with pytest.raises(NonFiniteWeightsError, match=rf"^pretrained checkpoint {path}: tensor {name} holds NaN or Inf"):
        load_pretrained(build_backbone("mitplus", (2, 3), preset="smoke"), path)
    with pytest.raises(NonFiniteWeightsError, match=rf"^pretrained checkpoint: tensor {name} holds"):
        read_checkpoint(state)
    state[name] = torch.nan_to_num(state[name])
    assert set(read_checkpoint(state)[0]) == set(state)
