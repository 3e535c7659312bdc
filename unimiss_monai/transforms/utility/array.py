"""Input checks on one loaded, channel-first image."""

from __future__ import annotations

import torch
from monai.transforms import Transform

from unimiss_monai.data.dicom_checks import check_dicom_pixel_data, check_dicom_series
from unimiss_monai.data.grid_checks import check_grid, check_has_voxels, check_nifti_header
from unimiss_monai.data.xray import source_name
from unimiss_monai.utils.args import as_bool

__all__ = ["CheckImage", "check_not_empty", "stored_shape"]


def check_not_empty(img, what: str = "image") -> None:
    """Raise ``ValueError`` (one line naming the file) when ``img`` has no voxels (an axis of length 0).

    Run before any count of its dimensions: MONAI's NIfTI reader gives a file of shape ``(64, 0, 30)`` as an array of
    shape ``(0,)``, which read as "a 0D image" or "a 2D image" and sent the user after the wrong fix. The file's own
    shape, kept in the metadata, is the one named.
    """
    if torch.as_tensor(img).numel():
        return
    stored = (getattr(img, "meta", None) or {}).get("spatial_shape")
    stored = [int(s) for s in torch.as_tensor(stored).reshape(-1).tolist()] if stored is not None else []
    if 0 in stored:
        check_has_voxels(stored, source_name(img), what)
    check_has_voxels(tuple(img.shape), source_name(img), what, layout="channel-first ")


def stored_shape(img) -> tuple[tuple[int, ...], str]:
    """The shape of ``img`` as its file holds it (a NIfTI header's), else its spatial shape as loaded, and how to name
    it: loading channel-first moved a 4D or 5D file's last axis to the front, so the loaded shape misdescribes it."""
    dim = (getattr(img, "meta", None) or {}).get("dim")
    if dim is not None and 0 < int(dim[0]) < 8:
        shape = tuple(int(s) for s in dim[1:1 + int(dim[0])])
        return shape, f"shape {shape}"
    return tuple(int(s) for s in img.shape[1:]), f"channel-first shape {tuple(img.shape)}"


class CheckImage(Transform):
    """Refuse an image a network would turn into garbage: no voxels, non-finite values (NaN, +-Inf), or a degenerate
    affine.

    A NaN voxel spreads through every convolution and attention it touches, so a prediction of such an input is
    meaningless even where it looks plausible; a singular affine (a zero or repeated axis) has no physical grid to
    reorient, resample or write back to. Either raises ``ValueError`` with one line naming the file and the fix, which
    the bundles' tolerant datasets turn into one failed case while the others go on.

    Args:
        check_affine: also check the MetaTensor affine and, for NIfTI files, the header's sform/qform (skip for images
            without a physical grid). Defaults to True.
        min_spacing: smallest accepted singular value of the affine's spatial columns (a voxel axis shorter than this,
            in mm, or two axes along the same line, is degenerate). Defaults to 1e-6.
        fail_constant: also refuse an image whose voxels all have one value (an empty export; nothing for a
            network to see). Defaults to False.

    Returns the image unchanged.
    """

    def __init__(self, check_affine: bool = True, min_spacing: float = 1e-6, fail_constant: bool = False) -> None:
        # as_bool: from the command line a value is a string, and "false" would count as true
        self.check_affine = as_bool(check_affine, "check_affine")
        self.min_spacing, self.fail_constant = float(min_spacing), as_bool(fail_constant, "fail_constant")

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        check_not_empty(img)  # an empty export passed every check below and failed later in a resize or a network
        check_dicom_pixel_data(source_name(img))  # a DICOM cut short reads as a whole image of zeros or junk
        t = torch.as_tensor(img)
        if t.is_floating_point() or t.is_complex():
            bad = int((~torch.isfinite(t)).sum())
            if bad:
                raise ValueError(
                    f"{source_name(img)}: has {bad} non-finite (NaN or Inf) value(s) of {t.numel()}; fix or remove those "
                    "voxels (e.g. replace them with the air value) or drop the case"
                )
        if self.fail_constant and t.numel() and bool((t == t.reshape(-1)[0]).all()):
            raise ValueError(
                f"{source_name(img)}: every voxel has the same value ({float(t.reshape(-1)[0]):g}): there is nothing to "
                "see in it; check the export (window, rescale) or drop the case"
            )
        if self.check_affine:
            check_nifti_header(source_name(img), self.min_spacing)
            check_dicom_series(source_name(img))
            affine = getattr(img, "affine", None)
            if affine is not None:
                check_grid(affine, img.ndim - 1, source_name(img), self.min_spacing)
        return img
