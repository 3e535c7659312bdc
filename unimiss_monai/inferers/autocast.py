"""Mixed-precision inference on any device: the network under ``torch.autocast``, blending and outputs in float32.

MONAI's evaluators autocast on CUDA only (``amp=True`` is ``torch.autocast("cuda")``); on a CPU with native bfloat16
(AVX512-BF16 or AMX) the convolutions of a 3D network run about twice as fast in bfloat16, which is what a CPU
MONAI Label server needs. Only the network call is autocast (weights stay float32, norms and softmax are computed in
float32): the sliding-window weights and the running sums stay in float32, so the blending itself loses nothing.
"""

from __future__ import annotations

import platform
from collections.abc import Callable

import torch
from monai.inferers import Inferer

from unimiss_monai.utils.args import as_bool

__all__ = ["AutocastInferer", "cpu_has_fast_bfloat16"]

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def _onednn_bf16_probe() -> bool:
    # oneDNN's "bfloat16 supported": on x86 any AVX-512 core CPU (Skylake-SP, Cascade Lake) passes, natively or not
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN, or an older torch without the probe
        return False


def cpu_has_fast_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively: on x86 AVX512-BF16 or AMX (oneDNN's own probe also passes plain
    AVX-512 CPUs, on which bfloat16 is emulated), elsewhere oneDNN's probe (ARM's BF16 extension); without it
    bfloat16 is emulated and slower than float32."""
    if not _onednn_bf16_probe():
        return False
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return True
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # an older torch without the flags: not known to be native
        return False


def _as_float32(out):
    """``out`` with every floating-point tensor in float32, also inside tuples, lists and dicts (several heads)."""
    if torch.is_tensor(out):
        return out.float() if out.is_floating_point() else out
    if isinstance(out, tuple) and hasattr(out, "_fields"):  # a named tuple
        return type(out)(*(_as_float32(o) for o in out))
    if isinstance(out, (tuple, list)):
        return type(out)(_as_float32(o) for o in out)
    if isinstance(out, dict):
        return {k: _as_float32(v) for k, v in out.items()}
    return out


class AutocastInferer(Inferer):
    """Run ``inferer`` with every network call under ``torch.autocast(device_type, dtype)``; the network's outputs
    are cast back to float32 before ``inferer`` blends them.

    Args:
        inferer: the inner inferer, called as ``inferer(inputs, network, *args, **kwargs)`` (e.g. a
            ``SlidingWindowInferer``).
        dtype: ``"bfloat16"`` (default) or ``"float16"``.
        device_type: autocast only the network calls whose input (a window, with a sliding window) is on this device
            type (``"cpu"``, ``"cuda"``); the others run as they are. ``None`` (default): autocast on whatever device
            the network runs on. Decided per call, so ``SlidingWindowInferer(sw_device="cuda", device="cpu")``
            autocasts on the GPU.
        enabled: ``False`` makes this inferer ``inferer`` itself (a config can pass
            ``"$unimiss_monai.inferers.autocast.cpu_has_fast_bfloat16()"``). Defaults to ``True``.
        channels_last: hand 5-d windows to the network in ``torch.channels_last_3d`` memory order (the network's
            weights should be converted alike). Defaults to ``False``.

    Examples::

        sw = SlidingWindowInferer(roi_size=(32, 128, 128), sw_batch_size=1, overlap=0.25, mode="gaussian")
        pred = AutocastInferer(sw, device_type="cpu")(image, network)  # float32 (B, C, *spatial)
    """

    def __init__(
        self,
        inferer: Callable[..., torch.Tensor],
        dtype: str = "bfloat16",
        device_type: str | None = None,
        enabled: bool = True,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if str(dtype) not in _DTYPES:
            raise ValueError(f"AutocastInferer: dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        if device_type is not None and device_type not in ("cpu", "cuda"):
            raise ValueError(f"AutocastInferer: device_type must be 'cpu', 'cuda' or None, got {device_type!r}")
        self.inferer, self.dtype, self.device_type = inferer, _DTYPES[str(dtype)], device_type
        # as_bool: from the command line a value is a string, and "false" would count as true
        self.enabled, self.channels_last = as_bool(enabled, "enabled"), as_bool(channels_last, "channels_last")

    def active(self, window: torch.Tensor) -> bool:
        """Whether the network runs under autocast on ``window`` (what the network is given, on its device)."""
        return self.enabled and (self.device_type is None or window.device.type == self.device_type)

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args, **kwargs) -> torch.Tensor:
        """inputs: (B, C_in, *spatial) -> the inner inferer's float32 (B, C_out, *spatial)."""
        if not self.enabled:
            return self.inferer(inputs, network, *args, **kwargs)
        dtype, channels_last = self.dtype, self.channels_last

        # decided per window, on the window's device: a sliding window with ``sw_device="cuda"`` runs the network on
        # the GPU while the whole input (and the blending) stays on the CPU
        def autocast_network(window: torch.Tensor, *net_args, **net_kwargs) -> torch.Tensor:
            if not self.active(window):
                return network(window, *net_args, **net_kwargs)
            if channels_last and window.ndim == 5:
                window = window.contiguous(memory_format=torch.channels_last_3d)
            with torch.autocast(window.device.type, dtype=dtype):
                out = network(window, *net_args, **net_kwargs)
            return _as_float32(out)

        return self.inferer(inputs, autocast_network, *args, **kwargs)
