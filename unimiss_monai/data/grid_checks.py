"""Checks of an image's voxel grid: a degenerate affine, or a NIfTI header declaring one (readers replace such a grid
by a made-up identity, so the header is the only witness)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["check_grid", "check_nifti_header"]


def _smallest_axis(columns: np.ndarray) -> float:
    return float(np.linalg.svd(columns, compute_uv=False).min()) if np.isfinite(columns).all() else float("nan")


def _degenerate(source: str, what: str, smallest: float) -> ValueError:
    return ValueError(
        f"{source}: its {what} is degenerate (an axis of length {smallest:.3g} mm, or axes that coincide): the file "
        "has no valid voxel grid; rewrite it with the scanner's spacing and orientation"
    )


def check_grid(affine, spatial_dims: int, source: str, min_spacing: float = 1e-6) -> None:
    """Raise ``ValueError`` (one line naming ``source``) when the affine's first ``spatial_dims`` columns are degenerate.

    Only the image's own axes are looked at: a 2D image may carry a 3D (detector) affine, whose top-left 2x2 block can
    be singular while its two columns are perfectly good directions in space.
    """
    a = np.asarray(torch.as_tensor(affine).detach().cpu(), dtype=np.float64)
    smallest = _smallest_axis(a[:-1, : max(1, min(int(spatial_dims), a.shape[1] - 1))])
    if not np.isfinite(smallest) or smallest < min_spacing:
        raise _degenerate(source, "affine", smallest)


def check_nifti_header(source: str, min_spacing: float = 1e-6) -> None:
    """Raise ``ValueError`` when the NIfTI file ``source`` declares a degenerate sform or qform.

    Readers replace such a grid by a made-up identity one, so the header is the only witness. Non-NIfTI or unreadable
    files are left to the loader.
    """
    if not str(source).lower().endswith((".nii", ".nii.gz")):
        return
    import nibabel as nib

    try:
        header_class = type(nib.load(source).header)
        with nib.openers.ImageOpener(source) as f:  # unchecked: nibabel's check turns a 0 in pixdim into a 1
            header = header_class.from_fileobj(f, check=False)
    except Exception:  # noqa: BLE001 - unreadable headers are the loader's business
        return
    for name, code, matrix in (("sform", header["sform_code"], header.get_sform),
                               ("qform", header["qform_code"], header.get_qform)):
        if int(code) > 0:
            smallest = _smallest_axis(np.asarray(matrix(), dtype=np.float64)[:3, :3])
            if not np.isfinite(smallest) or smallest < min_spacing:
                raise _degenerate(str(source), name, smallest)
    if int(header["qform_code"]) > 0 or int(header["sform_code"]) == 0:
        # that grid is built from pixdim, whose zeros nibabel replaces by 1 mm (get_qform included)
        n = int(np.clip(header["dim"][0], 1, 3))
        spacing = np.abs(np.asarray(header["pixdim"][1 : n + 1], dtype=np.float64))
        if not np.isfinite(spacing).all() or spacing.min() < min_spacing:
            raise _degenerate(str(source), "voxel size (pixdim)", float(spacing.min()))
