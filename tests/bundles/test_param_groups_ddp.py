"""Layer-wise LR decay survives ``DistributedDataParallel``: each fine-tune bundle's optimizer has the same parameter
groups (count, lr, weight decay, members) with and without its ``multi_gpu_train.json`` overlay.

A one-process gloo group on 127.0.0.1 makes DDP constructible on CPU, so the overlays are parsed as they ship."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist
from monai.bundle import ConfigParser
from torch import nn

from bundle_runner import BUNDLES, configs
from unimiss_monai.networks import param_groups_lrd

FINE_TUNE = [f"unimiss_{m}_{t}" for m in ("ct", "cxr") for t in ("classification", "segmentation")]


@pytest.fixture(scope="module")
def process_group():
    if dist.is_initialized():  # another module's group serves as well
        yield
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _groups(optimizer: torch.optim.Optimizer, network: nn.Module) -> list[tuple]:
    """Each parameter group as ``(lr, weight_decay, lr_scale, sorted member names)``, in optimizer order."""
    names = {id(p): n for n, p in network.named_parameters()}
    return [
        (g["lr"], g["weight_decay"], g.get("lr_scale"), sorted(names[id(p)] for p in g["params"]))
        for g in optimizer.param_groups
    ]


def _parse(bundle: str, *files: str) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(configs(bundle, "train.json", *files, "smoke.yaml"))
    parser.update({"bundle_root": str(BUNDLES / bundle), "device": "$torch.device('cpu')"})
    return parser


@pytest.mark.parametrize("bundle", FINE_TUNE)
def test_multi_gpu_overlay_keeps_parameter_groups(bundle, process_group, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "0")
    single = _parse(bundle)
    expected = _groups(single.get_parsed_content("optimizer"), single.get_parsed_content("network_def"))
    # layer-wise decay is on in every fine-tune bundle: more than the one group a fallback would give
    layer_decay = single.get_parsed_content("layer_decay")
    assert layer_decay < 1.0 and len(expected) > 2
    assert len({lr for lr, *_ in expected}) > 1
    assert {wd for _, wd, *_ in expected} == {0.0, single.get_parsed_content("weight_decay")}

    multi = _parse(bundle, "multi_gpu_train.json")
    ddp = multi.get_parsed_content("network")
    assert isinstance(ddp, nn.parallel.DistributedDataParallel)
    optimizer = multi.get_parsed_content("optimizer")
    got = _groups(optimizer, ddp.module)
    assert got == expected
    # the optimizer steps the very tensors DDP synchronises
    ddp_params = {id(p) for p in ddp.parameters()}
    assert all(id(p) in ddp_params for g in optimizer.param_groups for p in g["params"])


def test_param_groups_lrd_looks_through_wrappers(process_group):
    """``param_groups_lrd`` of a DDP- or DataParallel-wrapped network equals that of the bare network, so a config
    that passes the wrapped ``@network`` still gets layer-wise decay."""
    parser = _parse("unimiss_cxr_segmentation")
    net = parser.get_parsed_content("network_def")
    bare = param_groups_lrd(net, 1e-3, 0.05, 0.5)
    for wrapped in (nn.parallel.DistributedDataParallel(net), nn.DataParallel(nn.DataParallel(net))):
        groups = param_groups_lrd(wrapped, 1e-3, 0.05, 0.5)
        assert len(groups) == len(bare) > 2
        for g, b in zip(groups, bare):
            assert (g["lr"], g["weight_decay"], g["lr_scale"]) == (b["lr"], b["weight_decay"], b["lr_scale"])
            assert [id(p) for p in g["params"]] == [id(p) for p in b["params"]]
    lrs = sorted({g["lr"] for g in bare})
    # groups are powers of layer_decay below the head's base_lr
    assert lrs[-1] == pytest.approx(1e-3) and lrs[-2] == pytest.approx(5e-4)
