"""Compiled one-pass kernels (numba) that prepare a CT for the DRR: HU to attenuation marking empty space, count of
non-finite voxels.

Like :mod:`.kernels`, these run without Python's interpreter lock (``nogil``) and this file holds every function and
constant its cached kernels compile in: numba's on-disk cache is invalidated only when the file that defines a kernel
changes.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

__all__ = ["BLOCK", "SCAN", "hu_to_mu_kernel", "nonfinite_count_kernel", "nonzero_runs_kernel"]

# voxels per edge of a block of the map of empty space (:mod:`.empty_space`), and per run along a row from which
# the conversion marks it (BLOCK a multiple of SCAN); the kernel below compiles both in, so they live here
BLOCK, SCAN = 16, 8


@njit(parallel=True, nogil=True, cache=True)  # no fastmath: it would drop the NaN/Inf test
def hu_to_mu_kernel(hu, mu_water, bone_slope, convert, out, bits, runs):
    """One pass over a 3-D volume: attenuation (1/mm) into ``out`` (same shape, float32); returns the number of
    non-finite voxels (NaN, +-Inf).

    ``convert`` True maps HU with :func:`unimiss_monai.drr.attenuation.hu_to_mu`'s model, False copies values that
    are already attenuation. ``hu`` may have any strides and dtype (one compiled variant each); loops run in ``out``'s
    C order, so a C-ordered ``hu`` streams. Arithmetic is float64 per voxel in registers, rounded once to float32.
    Non-finite voxels are written as 0: the kernels that render compile with fast-math, which assumes no NaN or Inf,
    so such a volume is refused (:func:`unimiss_monai.drr.prepare_volume`) rather than rendered.

    ``runs`` (zeros of :func:`.empty_space.run_grid` of ``out.shape``) gets a 1 for every run of ``SCAN`` voxels
    along a row with a nonzero value, by row and plane block of ``BLOCK``: ``runs[i // BLOCK, j // BLOCK, k // SCAN]``.
    The runs are found from ``bits`` (``out`` viewed as uint32, the sign bit ignored, so -0.0 is empty) while each row
    is still in cache; threads sharing a block only ever store 1 into it. A run of fixed length unrolls into one vector
    OR; longer loops, or a division per run to index whole blocks, made the pass 1.5x slower.
    """
    n0, n1, n2 = out.shape
    whole = n2 // SCAN
    bad = 0
    for i in prange(n0):
        for j in range(n1):
            for k in range(n2):
                h = np.float64(hu[i, j, k])
                if not math.isfinite(h):
                    bad += 1
                    out[i, j, k] = 0.0
                    continue
                if convert:
                    if h > 0.0:
                        h *= bone_slope
                    h = mu_water * (1.0 + h / 1000.0)
                    if h < 0.0:
                        h = 0.0
                out[i, j, k] = h
            bi, bj = i // BLOCK, j // BLOCK
            for r in range(whole):
                word = np.uint32(0)
                for t in range(SCAN):
                    word |= bits[i, j, r * SCAN + t]
                if word & np.uint32(0x7FFFFFFF):
                    runs[bi, bj, r] = 1
            word = np.uint32(0)
            for k in range(whole * SCAN, n2):  # the row's last, shorter run
                word |= bits[i, j, k]
            if word & np.uint32(0x7FFFFFFF):
                runs[bi, bj, whole] = 1
    return bad


@njit(parallel=True, nogil=True, cache=True)
def nonfinite_count_kernel(values):
    """Number of non-finite voxels (NaN, +-Inf) of a 3-D float volume, without a boolean temporary."""
    n0, n1, n2 = values.shape
    bad = 0
    for i in prange(n0):
        for j in range(n1):
            for k in range(n2):
                if not math.isfinite(values[i, j, k]):
                    bad += 1
    return bad


@njit(parallel=True, nogil=True, cache=True)
def nonzero_runs_kernel(values, runs):
    """Mark, like :func:`hu_to_mu_kernel`, every run of ``SCAN`` voxels of an integer volume ``values`` (C order) that
    holds a nonzero value: ``runs[i // BLOCK, j // BLOCK, k // SCAN] = 1`` (zeros of :func:`.empty_space.run_grid`).
    """
    n0, n1, n2 = values.shape
    whole = n2 // SCAN
    for i in prange(n0):
        bi = i // BLOCK
        for j in range(n1):
            bj = j // BLOCK
            for r in range(whole):  # integers OR to zero only if all are zero
                word = values[i, j, r * SCAN]
                for t in range(1, SCAN):
                    word |= values[i, j, r * SCAN + t]
                if word != 0:
                    runs[bi, bj, r] = 1
            for k in range(whole * SCAN, n2):
                if values[i, j, k] != 0:
                    runs[bi, bj, whole] = 1
