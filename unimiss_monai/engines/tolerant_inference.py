"""Deprecated module: its names moved to :mod:`unimiss_monai.data.tolerant` (``TolerantDataset``),
:mod:`unimiss_monai.handlers.forward_failure_guard` and :mod:`unimiss_monai.utils.errors` (``root_cause`` is now
``failure_reason``, the one-line text; ``root_cause`` there returns the exception itself)."""

import warnings

from unimiss_monai.utils.lazy import moved_names

_moved = moved_names(__name__, {
    "TolerantDataset": "unimiss_monai.data.tolerant",
    "ForwardFailureGuard": "unimiss_monai.handlers.forward_failure_guard",
    "guard_forward": "unimiss_monai.handlers.forward_failure_guard",
})


def __getattr__(name: str):
    if name == "root_cause":  # the one-line text it returned is failure_reason now
        warnings.warn(f"{__name__}.root_cause moved to unimiss_monai.utils.errors.failure_reason", DeprecationWarning,
                      stacklevel=2)
        from unimiss_monai.utils.errors import failure_reason

        return failure_reason
    return _moved(name)
