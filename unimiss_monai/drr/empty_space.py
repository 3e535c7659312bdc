"""Empty-space skipping for the Siddon walk: a map of the volume's blocks that hold a nonzero voxel.

Air at or below -1000 HU is exactly zero attenuation, so a CT's corners outside the circular field of view and much of
the air around the body add nothing to a line integral. :func:`prepare_volume <unimiss_monai.drr.prepare_volume>`
marks, while it converts HU (:func:`.prepare_kernels.hu_to_mu_kernel`), every ``BLOCK``-voxel cube that holds a
nonzero value; the Siddon kernel then walks each ray's ends block by block (:func:`.kernels.skip_empty`) and starts and
stops its exact voxel walk at the first and last marked block. Only cubes of exact zeros are skipped, so the line
integrals are the same (the walk's slab boundaries are computed from another start, which may move a float32 pixel by
a rounding step). On the sample chest CT 84 % of the 16-voxel blocks are marked, yet an AP view runs 1.07-1.08x and a
lateral one 1.10-1.12x faster at 256x256 (DRR bundle docs).

The map is built from the values it describes, so it is only valid while they are unchanged: ``prepare_volume`` makes
the array it converted read-only, and a volume handed in as float32 attenuation (used without a copy, so the caller
may change it) gets no map. :func:`project_labels <unimiss_monai.drr.project_labels>` builds its map of the blocks
holding any label (:func:`nonzero_block_map`) in each call, for the walk it runs right after.
"""

from __future__ import annotations

import numpy as np

from unimiss_monai.drr.prepare_kernels import BLOCK, SCAN, nonzero_runs_kernel

__all__ = ["BLOCK", "block_grid", "run_grid", "block_map", "nonzero_block_map", "no_skipping"]


def block_grid(shape) -> tuple[int, int, int]:
    """Shape of the block map of a volume of ``shape`` (memory order): ``ceil(n / BLOCK)`` per axis."""
    return tuple(-(-int(n) // BLOCK) for n in shape)  # type: ignore[return-value]


def run_grid(shape) -> tuple[int, int, int]:
    """Shape of the map :func:`.prepare_kernels.hu_to_mu_kernel` marks: blocks of rows and planes, runs along rows."""
    return (*block_grid(shape)[:2], -(-int(shape[2]) // SCAN))  # type: ignore[return-value]


def block_map(runs: np.ndarray) -> np.ndarray:
    """The block map ``(B0, B1, B2)`` uint8 from a map of runs (:func:`run_grid`): a block is marked where one of its
    runs is."""
    per = BLOCK // SCAN
    padded = np.zeros((*runs.shape[:2], -(-runs.shape[2] // per) * per), np.uint8)
    padded[..., : runs.shape[2]] = runs
    return np.ascontiguousarray(padded.reshape(*runs.shape[:2], -1, per).max(axis=-1))


def nonzero_block_map(values: np.ndarray) -> np.ndarray:
    """The block map of an integer volume given in its memory order (C-contiguous): blocks holding a nonzero value."""
    runs = np.zeros(run_grid(values.shape), np.uint8)
    nonzero_runs_kernel(values, runs)
    return block_map(runs)


def no_skipping() -> tuple[np.ndarray, int]:
    """A map and block size under which every ray's walk starts and ends where it enters and leaves the volume."""
    return np.ones((1, 1, 1), np.uint8), 1 << 30
