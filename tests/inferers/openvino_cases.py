"""The cases of ``OpenVINOInferer`` that load OpenVINO, run by ``test_openvino.py`` in a pytest process of their own
(``python -m pytest tests/inferers/openvino_cases.py``): OpenVINO's native libraries stay out of the suite's
long-lived process. Whole-volume sliding-window outputs equal PyTorch's, the compiled network follows the weights it
was built from, and what it cannot run is refused in one line."""

from __future__ import annotations

import pytest
import torch
from monai.inferers import SlidingWindowInferer

from unimiss_monai.benchmarks.inference import count_windows
from unimiss_monai.inferers import openvino as ov_inferer
from unimiss_monai.inferers.openvino import OpenVINOInferer, openvino_available

pytestmark = pytest.mark.skipif(not openvino_available(), reason="openvino is not installed (extra [openvino])")


class _Net(torch.nn.Module):
    """Convolutions down and up, instance norm, GELU and a skip: operators of the kinds the segmentation network has."""

    def __init__(self, out_channels: int = 3):
        super().__init__()
        self.conv1 = torch.nn.Conv3d(1, 8, 3, padding=1)
        self.norm = torch.nn.InstanceNorm3d(8, affine=True)
        self.down = torch.nn.Conv3d(8, 8, 2, stride=2)
        self.up = torch.nn.ConvTranspose3d(8, 8, 2, stride=2)
        self.head = torch.nn.Conv3d(16, out_channels, 1)

    def forward(self, x):
        a = torch.nn.functional.gelu(self.norm(self.conv1(x)))
        b = self.up(torch.nn.functional.leaky_relu(self.down(a)))
        return self.head(torch.cat([a, b], 1))


class _TwoOutputs(_Net):
    def forward(self, x):
        y = super().forward(x)
        return y, y[:, :1]


def _volume(shape=(1, 1, 14, 40, 36)):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(3))


SW = dict(roi_size=(8, 32, 32), sw_batch_size=2, overlap=0.25, mode="gaussian")


def test_sliding_window_output_equals_pytorch(one_thread):
    """Every window through the compiled network (batches of two, a last batch of one) and blended: the volume equals
    PyTorch's own sliding-window output to float32 rounding, and is not the same tensor."""
    torch.manual_seed(0)
    net, x = _Net().eval(), _volume()
    sw = SlidingWindowInferer(**SW)
    with torch.inference_mode():
        reference = sw(x, net)
        out = OpenVINOInferer(sw)(x, net)
    assert out.dtype == torch.float32 and out.shape == reference.shape == (1, 3, 14, 40, 36)
    assert torch.allclose(out, reference, atol=1e-4, rtol=1e-4), float((out - reference).abs().max())
    assert out.data_ptr() != reference.data_ptr()


def test_compiled_once_per_network_and_again_after_new_weights(monkeypatch, one_thread):
    """A second inferer on the same network reuses the compiled model; loading other weights into the network makes
    the next call compile again, and its output follows the new weights (it would be far off with the old ones)."""
    compiles = []
    real = ov_inferer._compile
    monkeypatch.setattr(ov_inferer, "_compile", lambda *a: compiles.append(1) or real(*a))
    torch.manual_seed(1)
    net, x = _Net().eval(), _volume()
    sw = SlidingWindowInferer(**SW)
    with torch.inference_mode():
        first = OpenVINOInferer(sw)(x, net)
        OpenVINOInferer(sw)(x, net)
    assert len(compiles) == 1
    torch.manual_seed(2)
    net.load_state_dict(_Net().state_dict())
    with torch.inference_mode():
        reference = sw(x, net)
        second = OpenVINOInferer(sw)(x, net)
    assert len(compiles) == 2
    assert torch.allclose(second, reference, atol=1e-4, rtol=1e-4)
    assert (first - reference).abs().max() > 100 * (second - reference).abs().max()


def test_network_with_two_outputs_is_refused(one_thread):
    with pytest.raises(ValueError, match="returns 2 outputs; it runs networks with one output tensor"):
        with torch.inference_mode():
            OpenVINOInferer(SlidingWindowInferer(**SW))(_volume(), _TwoOutputs().eval())


def test_compiled_network_is_checked_against_pytorch(monkeypatch, one_thread):
    """The first window's answer is compared with PyTorch's: a conversion that disagrees (made wrong here by one) is
    refused in one line."""
    ov = ov_inferer.import_openvino()
    real = ov.Core.compile_model

    def off_by_one(self, *args, **kwargs):
        compiled = real(self, *args, **kwargs)
        return lambda inputs, **kwargs: [compiled(inputs, **kwargs)[0] + 1.0]

    monkeypatch.setattr(ov.Core, "compile_model", off_by_one)
    with pytest.raises(RuntimeError, match="differs from PyTorch by .* run without the OpenVINO overlay"):
        with torch.inference_mode():
            OpenVINOInferer(SlidingWindowInferer(**SW))(_volume(), _Net().eval())


def test_weights_fingerprint_taken_once_per_call(monkeypatch, one_thread):
    """The weights are read for the cache check, and the compiled model looked up, once per inferer call, not once
    per window: with weights made under ``inference_mode`` (as a bundle's are when loaded there) that check sums every
    weight."""
    calls, lookups = [], []
    real, real_lookup = ov_inferer._fingerprint, ov_inferer.compiled_network
    monkeypatch.setattr(ov_inferer, "_fingerprint", lambda net: calls.append(1) or real(net))
    monkeypatch.setattr(ov_inferer, "compiled_network", lambda *a: lookups.append(1) or real_lookup(*a))
    with torch.inference_mode():
        net = _Net().eval()
        x = _volume()
        sw = SlidingWindowInferer(**{**SW, "sw_batch_size": 1})
        out = OpenVINOInferer(sw)(x, net)
        reference = sw(x, net)
    assert count_windows(x.shape[2:], SW["roi_size"], SW["overlap"]) == 8  # eight windows, one per pass
    assert len(calls) == 1 and len(lookups) == 1
    assert torch.allclose(out, reference, atol=1e-4, rtol=1e-4)


def test_the_device_of_each_window_decides(monkeypatch, one_thread):
    """Windows on the CPU run in OpenVINO even when the whole input is elsewhere (``SlidingWindowInferer(sw_device=
    "cpu")`` over a GPU volume; the meta device stands in for the GPU here), and windows elsewhere run in PyTorch:
    OpenVINO is not asked for them."""
    compiles = []
    real = ov_inferer._compile
    monkeypatch.setattr(ov_inferer, "_compile", lambda *a: compiles.append(1) or real(*a))
    torch.manual_seed(4)
    net, x = _Net().eval(), _volume()
    with torch.inference_mode():
        reference = net(x)
        out = OpenVINOInferer(lambda inputs, network: network(x).to(inputs.device))(x.to("meta"), net)
        assert out.device.type == "meta" and len(compiles) == 1
        on_meta = OpenVINOInferer(lambda inputs, network: network(inputs))(x.to("meta"), net.to("meta"))
    assert on_meta.device.type == "meta" and on_meta.shape == reference.shape and len(compiles) == 1
