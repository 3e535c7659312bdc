"""Slab mode of DRR generation (``slab_depth > 0``, the CT-DRR pairs of UniMiSS+): a CT cut into axial slabs of that
thickness, each slab written as a CT of its own and rendered from every view, its DRR resized to the slab detector
shape. :class:`~unimiss_monai.engines.drr_generation.DRRGenerator` renders each CT of such a run here; the pairs are
the ``training`` entries of its datalists (the files are listed in that module's docstring)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm import tqdm

from unimiss_monai.data.ct_inputs import CTCase
from unimiss_monai.data.ct_io import CTInputError
from unimiss_monai.data.writers import save_ct, save_nifti, save_png

if TYPE_CHECKING:
    from unimiss_monai.engines.drr_generation import DRRGenerator

__all__ = ["render_slab_pairs"]


def render_slab_pairs(generator: DRRGenerator, case: CTCase, hu: np.ndarray, affine: np.ndarray, out: Path,
                      bar: tqdm) -> dict:
    """Write the slab CTs and slab DRRs of ``case`` (its HU and affine, read) under ``out`` with the settings of
    ``generator``; returns its datalist entry, one ``training`` pair per slab and view. A CT whose slices are thicker
    than twice the slab depth, or that is shallower than one slab, raises :class:`CTInputError` naming it."""
    from unimiss_monai.drr import render_slabs, split_slabs, superior_axis, to_radiograph, volume_center

    # slab_depth is in mm; the slab splitter counts slices along the superior axis
    axis = superior_axis(affine)
    spacing = float(np.linalg.norm(affine[:3, axis]))
    if generator.slab_depth < spacing / 2:  # it rounds to no slice: one-slice slabs, rendered as if asked for
        raise CTInputError(f"{case.image}: slab_depth {generator.slab_depth:g} mm is under half its slice spacing "
                           f"({spacing:g} mm), so no slab would be that thin; pass --slab_depth {spacing:g} or more")
    thickness = max(1, int(round(generator.slab_depth / spacing)))
    if hu.shape[axis] < thickness:  # its one slab would be thinner than every other pair the run writes
        raise CTInputError(f"{case.image}: is {hu.shape[axis] * spacing:g} mm deep ({hu.shape[axis]} slices of "
                           f"{spacing:g} mm), less than one {generator.slab_depth:g} mm slab; pass a CT at least that "
                           "deep, or a smaller --slab_depth")
    slabs = split_slabs(hu, affine, thickness)
    bar.total += (len(slabs) - 1) * len(generator.views)
    bar.refresh()
    g, (sh, sw) = generator.geometry, generator.slab_detector_shape
    images, spacing = {}, None
    for view in generator.views:
        rendered, spacing = render_slabs(hu, affine, thickness, view=view, output_shape=(sh, sw),
                                         pixel_spacing=g.pixel_spacing, sdd=g.sdd, sid=g.sid,
                                         method=generator.method, device=generator.device, return_spacing=True)
        images[view] = rendered.detach().cpu().numpy()
        bar.update(len(slabs))
    stems = [f"slabs/{case.name}_slab{i:03d}" for i in range(len(slabs))]
    # compressing the slab CTs is most of a slab-mode case's time; zlib releases the GIL, so they are written on
    # every core this process has (2.15 -> 1.53 s per case for the sample CT on 2 cores, see the bundle docs)
    with ThreadPoolExecutor(max_workers=torch.get_num_threads()) as pool:
        ct_paths = list(pool.map(lambda i: save_ct(slabs[i].volume, slabs[i].affine, out / f"{stems[i]}.nii.gz"),
                                 range(len(slabs))))
    training = []
    for i, (slab, stem, ct_path) in enumerate(zip(slabs, stems, ct_paths)):
        for view in generator.views:
            image = images[view][i]
            center = volume_center(slab.volume.shape, slab.affine)
            affine_2d = generator.drr_affine(view, center, (sh, sw), tuple(spacing[i]))
            training.append({"name": case.name, "slab": i, "start": slab.start, "stop": slab.stop, "view": view,
                             "ct": ct_path, "drr": save_nifti(image.T, affine_2d, out / f"{stem}_{view}.nii.gz"),
                             # the resized slab DRR has anisotropic pixels: the preview shows true proportions
                             "preview": save_png(to_radiograph(image), out / f"{stem}_{view}.png", spacing[i])})
    return {"testing": [], "training": training}
