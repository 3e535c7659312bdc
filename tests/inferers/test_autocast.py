"""``cpu_has_fast_bfloat16``: true only where the CPU computes bfloat16 natively (AVX512-BF16 or AMX on x86), so the
CT bundle's CPU overlay does not switch an AVX-512 CPU without them (Skylake-SP, Cascade Lake) to emulated bfloat16;
``AutocastInferer`` hands back every output tensor of the network in float32, several heads included."""

from __future__ import annotations

import platform

import pytest
import torch

from unimiss_monai.inferers import autocast

x86 = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 CPU flags")


@x86
@pytest.mark.parametrize("avx512_bf16, amx, expected", [(False, False, False), (True, False, True), (False, True, True)])
def test_fast_bfloat16_follows_the_native_cpu_flags(monkeypatch, avx512_bf16, amx, expected):
    # oneDNN's own probe answers yes on any AVX-512 core CPU, where bfloat16 is emulated and slower than float32
    monkeypatch.setattr(autocast, "_onednn_bf16_probe", lambda: True, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert autocast.cpu_has_fast_bfloat16() is expected


@x86
def test_no_onednn_means_no_fast_bfloat16(monkeypatch):
    monkeypatch.setattr(autocast, "_onednn_bf16_probe", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert autocast.cpu_has_fast_bfloat16() is False


class _TwoHeads(torch.nn.Module):
    """A network with deep-supervision-style outputs: a tuple, a list inside it, and a dict."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return y, [y[:, :1]], {"aux": y * 2}


def test_every_output_tensor_comes_back_in_float32():
    from monai.inferers import SimpleInferer

    net = _TwoHeads().eval()
    with torch.no_grad():
        out = autocast.AutocastInferer(SimpleInferer(), device_type="cpu")(torch.rand(1, 1, 8, 8), net)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            raw = net(torch.rand(1, 1, 8, 8))
    assert raw[0].dtype == torch.bfloat16  # the network itself answers in bfloat16 under autocast
    assert out[0].dtype == out[1][0].dtype == out[2]["aux"].dtype == torch.float32
    assert isinstance(out, tuple) and isinstance(out[1], list) and isinstance(out[2], dict)


class _Recorder(torch.nn.Module):
    """Notes whether CPU autocast was on when it ran."""

    def __init__(self):
        super().__init__()
        self.autocast: list[bool] = []

    def forward(self, x):
        self.autocast.append(torch.is_autocast_enabled("cpu"))
        return x * 2


def _on_cpu(inputs, network):
    """An inner inferer whose windows lie on another device than its input, as ``SlidingWindowInferer(sw_device=...)``
    makes them: here the input is on the meta device and the window on the CPU."""
    return network(torch.ones(1, 1, 4, 4)).to(inputs.device)


@pytest.mark.parametrize("device_type", ["cpu", None])
def test_autocast_is_decided_by_the_device_the_network_runs_on(device_type):
    net = _Recorder()
    out = autocast.AutocastInferer(_on_cpu, device_type=device_type)(torch.empty(1, 1, 4, 4, device="meta"), net)
    assert net.autocast == [True] and out.dtype == torch.float32
    net = _Recorder()
    autocast.AutocastInferer(_on_cpu, device_type="cuda")(torch.empty(1, 1, 4, 4, device="meta"), net)
    assert net.autocast == [False]  # a CPU window is not autocast when only CUDA calls are asked for
