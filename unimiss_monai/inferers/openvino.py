"""Whole-volume inference on a CPU through OpenVINO: the network is traced once with PyTorch and compiled by OpenVINO
for this CPU; windows, blending and outputs stay MONAI's.

Why: on a CPU without native bfloat16 (AVX2, no AVX-512), most of a 32x128x128 window of the CT segmentation network
is spent in 3D convolutions that PyTorch already hands to oneDNN, one operator at a time. OpenVINO compiles the whole
graph (fused operators, its own blocked memory layout) and runs the same window about 1.6x as fast in float32, with
outputs equal to PyTorch's to about 1e-4 (measured: ``docs/README.md`` of the CT segmentation bundle, "Performance").

The compiled model is kept per network object (not per inferer, which a config may build anew for every request) and
is rebuilt when the network's weights, buffers or train/eval mode change, so loading other weights into the same
module is never answered by the old ones. OpenVINO is an optional dependency (``pip install openvino==2026.4.1``, the
``[openvino]`` extra).

OpenVINO's Python package counts its use in ``~/intel`` and sends usage events (imports, conversions, operator
statistics) to Intel unless a consent file there says no or the ``CI`` variable is ``true``. A run here should send
nothing and write nothing outside its outputs, so OpenVINO is imported and converts with ``CI=true`` for the duration;
the variable is put back afterwards.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import time
import warnings
import weakref
from collections.abc import Callable, Iterator

import torch
from monai.inferers import Inferer

from unimiss_monai.utils.args import as_bool

__all__ = ["OpenVINOInferer", "import_openvino", "openvino_available"]

logger = logging.getLogger(__name__)

_PRECISIONS = ("f32", "bf16")
# network -> {(window shape, threads, precision): (weights fingerprint, compiled model)}
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def openvino_available() -> bool:
    """Whether the ``openvino`` package is installed (found without importing it)."""
    return importlib.util.find_spec("openvino") is not None


@contextlib.contextmanager
def _usage_statistics_off() -> Iterator[None]:
    # the one switch OpenVINO's telemetry reads besides its consent file in the home folder (see the module docstring)
    before = os.environ.get("CI")
    os.environ["CI"] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("CI", None)
        else:
            os.environ["CI"] = before


def import_openvino():
    """The ``openvino`` module, imported with its usage statistics off (nothing sent, nothing written to ``~/intel``)."""
    with _usage_statistics_off():
        import openvino
    return openvino


# largest |OpenVINO - PyTorch| on the first window, relative to the output's range, accepted per precision: float32
# differs by rounding only (a few 1e-5 on the CT network); bfloat16 keeps 8 bits of mantissa
_TOLERANCE = {"f32": 1e-3, "bf16": 0.1, None: 0.1}


def _fingerprint(network: torch.nn.Module) -> tuple:
    # storage address and in-place version of every tensor: load_state_dict and optimiser steps bump the version,
    # replacing a tensor changes the address; tensors made under inference_mode keep no version, so their sum stands in
    tensors = list(network.parameters()) + list(network.buffers())
    return (network.training,) + tuple(
        (t.data_ptr(), float(t.detach().double().sum()) if t.is_inference() else t._version) for t in tensors)


def _compile(network: torch.nn.Module, example: torch.Tensor, threads: int, precision: str | None):
    """``network`` traced on ``example`` (1, C, *spatial), converted and compiled, and checked to answer ``example``
    as PyTorch does."""
    ov = import_openvino()
    with torch.no_grad(), warnings.catch_warnings():
        # the tracer warns about Python numbers taken from shapes, which the fixed window shape keeps constant
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # tracing first and converting the traced module takes about half as long as letting OpenVINO trace
        traced = torch.jit.trace(network, example, check_trace=False)
        expected = network(example)
    with _usage_statistics_off():
        # copies of the weights: shared ones keep Python objects inside OpenVINO's constants, released later from
        # whatever thread frees the compiled model; the same reason for share_inputs=False below
        model = ov.convert_model(traced, example_input=example, share_weights=False)
    if len(model.outputs) != 1 or not torch.is_tensor(expected):
        raise ValueError(f"OpenVINOInferer: the network returns {len(model.outputs)} outputs; it runs networks with one "
                         "output tensor (turn deep supervision off for inference)")
    config = {"INFERENCE_NUM_THREADS": int(threads), "PERFORMANCE_HINT": "LATENCY"}
    if precision is not None:
        config["INFERENCE_PRECISION_HINT"] = precision
    compiled = ov.Core().compile_model(model, "CPU", config)
    got = torch.from_numpy(compiled(example.numpy(), share_inputs=False)[0])
    scale = max(float(expected.abs().max()), 1e-6)
    error = float((got - expected).abs().max()) / scale if got.shape == expected.shape else float("inf")
    if not error <= _TOLERANCE[precision]:
        raise RuntimeError(f"OpenVINOInferer: the compiled network differs from PyTorch by {error:.2g} of the output's "
                           f"range on the first window ({_TOLERANCE[precision]:g} allowed at precision {precision}); "
                           "run without the OpenVINO overlay")
    return compiled


def compiled_network(network: torch.nn.Module, window: torch.Tensor, threads: int, precision: str | None = None,
                     fingerprint: tuple | None = None):
    """The OpenVINO model of ``network`` for windows shaped like ``window`` (1, C, *spatial), compiled (and traced
    on ``window``) on first use and again only after the network's weights or mode changed. ``fingerprint``: the
    network's, when the caller took it already (taking it reads every weight made under ``inference_mode``)."""
    key = (tuple(window.shape), int(threads), precision)
    cache = _COMPILED.setdefault(network, {})
    fingerprint = _fingerprint(network) if fingerprint is None else fingerprint
    hit = cache.get(key)
    if hit is None or hit[0] != fingerprint:
        start = time.perf_counter()
        cache[key] = hit = (fingerprint, _compile(network, window, threads, precision))
        logger.info("OpenVINOInferer: %s traced, compiled for this CPU (%s, %d threads, windows %s) and checked against "
                    "PyTorch in %.1f s", type(network).__name__, precision or "OpenVINO's precision", threads,
                    "x".join(map(str, window.shape[2:])), time.perf_counter() - start)
    return hit[1]


class OpenVINOInferer(Inferer):
    """Run ``inferer`` with every network call on CPU inputs answered by the network compiled with OpenVINO.

    The network is traced on the first window (its shape then fixed: a sliding window's windows all have the ROI's
    shape) after its weights are loaded, and each window of a batch runs through the compiled model in turn (batching
    windows gains nothing on a CPU). The compiled model's answer to that first window is checked against PyTorch's.
    The network must take one tensor, return one tensor and take the same path through its code whatever the values
    (a trace records one path; a branch on values would be frozen); inputs on a GPU run as they are.

    Args:
        inferer: the inner inferer, called as ``inferer(inputs, network, *args, **kwargs)`` (e.g. a
            ``SlidingWindowInferer``).
        precision: OpenVINO's inference precision: ``"f32"``, ``"bf16"`` (computed natively only on CPUs with
            AVX512-BF16 or AMX), or ``None`` for OpenVINO's choice on this CPU (bf16 where native, else f32).
            Defaults to ``"f32"``.
        threads: CPU threads OpenVINO uses; ``None`` (default): ``torch.get_num_threads()`` at the call.
        enabled: ``False`` makes this inferer ``inferer`` itself. Defaults to ``True``.

    Examples::

        sw = SlidingWindowInferer(roi_size=(32, 128, 128), sw_batch_size=1, overlap=0.25, mode="gaussian")
        pred = OpenVINOInferer(sw)(image, network.eval())  # float32 (B, C_out, *spatial)
    """

    def __init__(
        self,
        inferer: Callable[..., torch.Tensor],
        precision: str | None = "f32",
        threads: int | None = None,
        enabled: bool = True,
    ) -> None:
        super().__init__()
        if precision is not None and precision not in _PRECISIONS:
            raise ValueError(f"OpenVINOInferer: precision must be one of {list(_PRECISIONS)} or None, got {precision!r}")
        if threads is not None and int(threads) < 1:
            raise ValueError(f"OpenVINOInferer: threads must be at least 1, got {threads!r}")
        enabled = as_bool(enabled, "enabled")  # from the command line a value is a string
        if enabled and not openvino_available():
            raise ImportError("OpenVINOInferer: the openvino package is not installed; install it with "
                              "`pip install openvino==2026.4.1` (this package's [openvino] extra), or leave out the "
                              "OpenVINO overlay")
        self.inferer, self.precision, self.enabled = inferer, precision, enabled
        self.threads = None if threads is None else int(threads)

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args, **kwargs) -> torch.Tensor:
        """inputs: (B, C_in, *spatial) -> the inner inferer's float32 (B, C_out, *spatial); the network calls on CPU
        tensors run in OpenVINO, any others in PyTorch."""
        if not self.enabled:
            return self.inferer(inputs, network, *args, **kwargs)
        if not isinstance(network, torch.nn.Module):
            raise TypeError(f"OpenVINOInferer: the network must be a torch.nn.Module, got {type(network).__name__}")
        threads = self.threads or torch.get_num_threads()
        precision = self.precision
        # once per call, not per window: the weights do not change inside one inference, so neither does the
        # compiled model of a window shape (a sliding window's windows share one)
        fingerprint: list = []  # taken at the first CPU window
        resolved: dict[tuple[int, ...], object] = {}

        # decided per window, on the window's device: with ``sw_device="cuda"`` the network runs on the GPU as it is,
        # though the whole input stays on the CPU
        def openvino_network(window: torch.Tensor, *net_args, **net_kwargs) -> torch.Tensor:
            if window.device.type != "cpu":
                return network(window, *net_args, **net_kwargs)
            if net_args or net_kwargs:
                raise TypeError("OpenVINOInferer: the compiled network takes the window only; this inferer passed "
                                f"{len(net_args)} more positional and {sorted(net_kwargs)} keyword arguments")
            window = window.as_tensor() if hasattr(window, "as_tensor") else window  # a MetaTensor's metadata is not traced
            window = window.detach().float().contiguous()
            compiled = resolved.get(tuple(window.shape[1:]))
            if compiled is None:  # traced on the first window
                fingerprint[:] = fingerprint or [_fingerprint(network)]
                compiled = resolved[tuple(window.shape[1:])] = compiled_network(
                    network, window[:1], threads, precision, fingerprint[0])
            outs = [torch.from_numpy(compiled(w[None].numpy(), share_inputs=False)[0]) for w in window]
            return torch.cat(outs).float()

        return self.inferer(inputs, openvino_network, *args, **kwargs)
