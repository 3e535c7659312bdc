"""Memory layout of a volume for the compiled kernels: the C-ordered view of its bytes, whatever its axis order.

The kernels walk a flat C-ordered array. A CT read with nibabel is Fortran-ordered (``x`` fastest), and a flipped or
transposed view has permuted or negative strides; copying such a volume into C order costs more than rendering a
view from it (a 512x512x133 transpose takes about 0.4 s on two cores, a 256x256 view about 0.05 s). Instead the volume
is kept in its own memory order and the rays are expressed in that order's voxel coordinates, which are the volume's
coordinates with the axes permuted and some reversed: the same line integrals, no copy.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["MemoryLayout", "memory_layout", "from_memory_order", "frame_in_memory_order", "points_in_memory_order"]


class MemoryLayout(NamedTuple):
    """``array``: C-contiguous view of the volume's memory, ``array[m] == volume[v]`` where, for memory axis ``k``,
    ``v[perm[k]] = m[k]``, or ``shape[k] - 1 - m[k]`` when ``flips[k]``."""

    array: np.ndarray
    perm: tuple[int, int, int]
    flips: tuple[bool, bool, bool]


def memory_layout(volume: np.ndarray) -> MemoryLayout | None:
    """The C-ordered view of a 3-D array whose elements fill one block of memory in some axis order; None otherwise
    (a strided slice such as ``volume[::2]``)."""
    # size-1 axes have meaningless strides; keep them first so they never break the order of the others
    perm = tuple(sorted(range(3), key=lambda a: (volume.shape[a] > 1, -abs(volume.strides[a]))))
    view = volume.transpose(perm)
    flips = tuple(bool(view.strides[k] < 0 and view.shape[k] > 1) for k in range(3))
    view = view[tuple(slice(None, None, -1) if f else slice(None) for f in flips)]
    if not view.flags.c_contiguous:
        return None
    return MemoryLayout(view, perm, flips)  # type: ignore[arg-type]


def from_memory_order(array: np.ndarray, perm, flips) -> np.ndarray:
    """The volume-ordered view of a C-ordered ``array`` laid out like a :class:`MemoryLayout` (no copy)."""
    view = array[tuple(slice(None, None, -1) if f else slice(None) for f in flips)]
    return view.transpose(np.argsort(perm))


def frame_in_memory_order(frame: np.ndarray, layout: MemoryLayout) -> np.ndarray:
    """A detector frame ``(4, 3)`` (rows: source, pixel (0, 0), row step, column step; voxel-index coordinates of the
    volume) in the voxel coordinates of its memory order."""
    out = np.ascontiguousarray(frame[:, list(layout.perm)])
    for k, flipped in enumerate(layout.flips):
        if flipped:  # index n - 1 - i: points reflect, steps reverse
            out[:2, k] = layout.array.shape[k] - 1 - out[:2, k]
            out[2:, k] = -out[2:, k]
    return out


def points_in_memory_order(points: np.ndarray, layout: MemoryLayout) -> np.ndarray:
    """Voxel-index points ``(..., 3)`` of the volume in the voxel coordinates of its memory order (C-contiguous)."""
    out = np.ascontiguousarray(points[..., list(layout.perm)])
    for k, flipped in enumerate(layout.flips):
        if flipped:
            out[..., k] = layout.array.shape[k] - 1 - out[..., k]
    return out
