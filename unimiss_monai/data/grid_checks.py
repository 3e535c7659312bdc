"""Checks of an image's voxel grid: a degenerate or non-finite affine, a NIfTI header declaring one (readers replace
such a grid by a made-up identity, so the header is the only witness), or a NIfTI header whose sform and qform disagree
or whose voxels are complex. DICOM series and files are checked in :mod:`~unimiss_monai.data.dicom_checks`."""

from __future__ import annotations

import numpy as np
import torch

from unimiss_monai.utils.lazy import moved_names
from unimiss_monai.utils.value_ranges import XRAY_SPACING_MM

__all__ = [
    "CT_SPACING_MM", "MIN_CT_FIELD_MM", "MIN_CT_VOXELS", "SFORM_QFORM_TOLERANCE", "XRAY_SPACING_MM", "check_ct_volume",
    "check_grid", "check_has_voxels", "check_nifti_header", "check_radiograph_spacing", "check_same_plane",
    "ct_size_problem", "is_sheared", "same_grid_reordered",
]


def numbers_text(values) -> str:
    """``[1, 2.5, -3]``: numbers as a message writes them (six significant digits, no ``-0``)."""
    return "[" + ", ".join(f"{float(x) + 0.0:.6g}" for x in values) + "]"  # + 0.0: no "-0"


def _smallest_axis(columns: np.ndarray) -> float:
    return float(np.linalg.svd(columns, compute_uv=False).min()) if np.isfinite(columns).all() else float("nan")


def _degenerate(source: str, what: str, smallest: float) -> ValueError:
    return ValueError(
        f"{source}: its {what} is degenerate (an axis of length {smallest:.3g} mm, or axes that coincide): the file "
        "has no valid voxel grid; rewrite it with the scanner's spacing and orientation"
    )


def _non_finite(source: str, what: str) -> ValueError:
    return ValueError(f"{source}: its {what} holds NaN or Inf, so its voxels have no place in space; rewrite the "
                      "header with the scanner's origin/orientation")


def check_has_voxels(shape, source: str, what: str = "image", layout: str = "") -> None:
    """Raise ``ValueError`` (one line naming ``source``) when ``shape`` has an axis of length 0.

    Run before any count of the image's dimensions: an empty file read as "a 0D image" or "a 2D image" sends the user
    after the wrong fix. ``layout`` qualifies the shape named (``"channel-first "``).
    """
    if 0 in tuple(shape):
        raise ValueError(f"{source}: the {what} is empty ({layout}shape {tuple(int(s) for s in shape)}); re-export it")


def check_grid(affine, spatial_dims: int, source: str, min_spacing: float = 1e-6) -> None:
    """Raise ``ValueError`` (one line naming ``source``) when the affine holds NaN or Inf anywhere (origin included), or
    its first ``spatial_dims`` columns are degenerate.

    Only the image's own axes are looked at for degeneracy: a 2D image may carry a 3D (detector) affine, whose top-left
    2x2 block can be singular while its two columns are perfectly good directions in space.
    """
    a = np.asarray(torch.as_tensor(affine).detach().cpu(), dtype=np.float64)
    if not np.isfinite(a).all():  # a NaN origin passed the axes' check, then broke an SVD or gave NaN output
        raise _non_finite(source, "affine")
    smallest = _smallest_axis(a[:-1, : max(1, min(int(spatial_dims), a.shape[1] - 1))])
    if not np.isfinite(smallest) or smallest < min_spacing:
        raise _degenerate(source, "affine", smallest)


#: voxel sizes (mm) a CT can have: below, the file is in another unit (metres: 0.0008 for 0.8 mm); above, not a CT
CT_SPACING_MM = (0.05, 50.0)
#: how far (mm) from the scanner's origin a CT can lie: tables move some 2 m; 1 km is a broken header, whose voxel
#: positions lose their millimetres in float64 arithmetic (a DRR's source then seems to lie inside the volume)
CT_MAX_ORIGIN_MM = 1e6


def check_ct_volume(shape, affine, source: str) -> None:
    """Raise ``ValueError`` (one line naming ``source``) when a 3D CT of spatial ``shape`` and ``affine`` is one slice
    (a 2D image saved as a volume), has a voxel size outside :data:`CT_SPACING_MM` or lies farther than
    :data:`CT_MAX_ORIGIN_MM` from the scanner's origin. Each gave a case marked "ok" (an all-background segmentation,
    an all-zero DRR) or a wrong message."""
    if min(int(s) for s in shape) < 2:
        raise ValueError(f"{source}: shape {tuple(int(s) for s in shape)} is a single slice, a 2D image, not a CT volume; "
                         "give the whole series (a radiograph goes to the CXR bundles)")
    if affine is None:
        return
    a = np.asarray(torch.as_tensor(affine).detach().cpu(), dtype=np.float64)
    if a.shape[0] < 4 or a.shape[1] < 4:  # a colour picture: three axes, one of them its red, green and blue
        raise ValueError(f"{source}: is a 2D colour image (shape {tuple(int(s) for s in shape)}, its last axis the "
                         "colour channels), not a CT volume; pass a 3D CT (radiographs belong to the X-ray bundles)")
    _check_spacing(a[:3, :3], CT_SPACING_MM, "voxel", "a CT's", "a file in metres gives 0.0008 for 0.8 mm", source)
    distance = float(np.linalg.norm(a[:3, 3]))
    if distance > CT_MAX_ORIGIN_MM:
        raise ValueError(f"{source}: its origin {numbers_text(a[:3, 3])} mm lies {distance:.3g} mm from "
                         "the scanner's origin, where no patient lies (a broken header): rewrite it with the origin "
                         "the scanner recorded, or 0")


#: fewest voxels, and smallest extent (mm), of a CT along two of its axes that a DRR of it can show a body part with:
#: a radiograph has 16 pixels along a side at least, and the smallest body part imaged (a wrist) is some 5 cm across.
#: One axis may be shorter: a slab of a real CT, a few slices thick, is rendered as such
MIN_CT_VOXELS, MIN_CT_FIELD_MM = 16, 30.0


def ct_size_problem(shape, affine) -> str | None:
    """What is wrong with a CT of spatial ``shape`` and ``affine`` (voxel axes in mm) whose size holds no body part:
    fewer than :data:`MIN_CT_VOXELS` voxels, or under :data:`MIN_CT_FIELD_MM` mm, along two of its axes (a 4 x 4 x 4
    test volume, a thumbnail, a crop of one organ); ``None`` for a CT that can. A CT of a small specimen (micro-CT)
    is one too, so callers warn of it and go on, as the fine-tune and pretraining bundles take CTs smaller than
    their crops."""
    voxels = [int(s) for s in shape][:3]
    spacing = (np.linalg.norm(np.asarray(torch.as_tensor(affine).detach().cpu(), dtype=np.float64)[:3, :3], axis=0)
               if affine is not None else np.ones(3))
    field = [n * float(d) for n, d in zip(voxels, spacing)]
    if sorted(voxels)[1] < MIN_CT_VOXELS:
        seen = f"{sum(n < MIN_CT_VOXELS for n in voxels)} of its axes have fewer than {MIN_CT_VOXELS} voxels"
    elif sorted(field)[1] < MIN_CT_FIELD_MM:
        seen = f"{sum(f < MIN_CT_FIELD_MM for f in field)} of its axes are under {MIN_CT_FIELD_MM:g} mm long"
    else:
        return None
    return (f"is {' x '.join(map(str, voxels))} voxels ({' x '.join(f'{f:.3g}' for f in field)} mm): {seen}, too "
            "small to hold a body part")


def check_radiograph_spacing(affine, source: str) -> None:
    """Raise ``ValueError`` (one line naming ``source``) when the pixel size of a 2D radiograph's ``affine`` (its first
    two columns) lies outside :data:`~unimiss_monai.utils.value_ranges.XRAY_SPACING_MM`. A PNG or JPEG carries no spacing and
    is read as 1 mm pixels."""
    a = np.asarray(torch.as_tensor(affine).detach().cpu(), dtype=np.float64)
    _check_spacing(a[:-1, :2], XRAY_SPACING_MM, "pixel", "a radiograph's",
                   "a file in metres gives 0.00015 for 0.15 mm, one in micrometres 150", source)


def _check_spacing(axes: np.ndarray, bounds: tuple[float, float], element: str, owner: str, units_hint: str,
                   source: str) -> None:
    """Raise ``ValueError`` (one line naming ``source``) when a length of the ``axes`` columns (an affine's voxel or
    pixel axes, mm) lies outside ``bounds``: a header in another unit than mm."""
    spacing = np.linalg.norm(axes, axis=0)
    low, high = bounds
    if not ((spacing >= low) & (spacing <= high)).all():
        raise ValueError(f"{source}: {element} size {np.round(spacing, 5).tolist()} mm is not {owner} ({low}-{high} "
                         f"mm; {units_hint}): rewrite it with the spacing in mm")


# sform and qform within this of each other are one grid: per matrix column, 1e-3 mm plus 1e-4 of the column's length
# (the voxel size, or the origin's distance from 0). A scanner's header stores both in float32 (quaternion and offsets
# too), which leaves them some 1e-7 apart relatively: 0.00002 mm at an origin 200 mm away. A real disagreement (another
# voxel size, a shifted origin) is a voxel or more
SFORM_QFORM_TOLERANCE = (1e-3, 1e-4)


def _qform(header) -> np.ndarray | None:
    """The qform as readers build it, or None when its quaternion is invalid (left to the loader, which refuses it).

    The sign of pixdim[0] is qfac and voxel sizes count unsigned, as in nibabel's checked reading: on an unchecked
    header its ``get_qform`` refuses a 0 in pixdim[0] that every reader takes as 1."""
    fixed = header.copy()
    fixed["pixdim"][0] = -1.0 if header["pixdim"][0] < 0 else 1.0
    fixed["pixdim"][1:4] = np.abs(header["pixdim"][1:4])
    try:
        return np.asarray(fixed.get_qform(), dtype=np.float64)
    except ValueError:
        return None


def _describe_grid(matrix: np.ndarray) -> str:
    sizes = np.round(np.linalg.norm(matrix[:3, :3], axis=0), 4).tolist()
    return f"voxel size {sizes} mm, origin {(np.round(matrix[:3, 3], 2) + 0.0).tolist()} mm"  # + 0.0: no "-0.0"


def is_sheared(affine, tolerance: float = 1e-4) -> bool:
    """Whether the 3x3 part of ``affine`` has axes that are not at right angles (a tilted gantry), which a NIfTI qform
    (rotation and voxel sizes) cannot hold: the cosine of an angle between two axes above ``tolerance``."""
    columns = np.asarray(affine, dtype=np.float64)[:3, :3]
    unit = columns / np.maximum(np.linalg.norm(columns, axis=0), 1e-12)
    return bool(np.abs(unit.T @ unit - np.eye(3)).max() > tolerance)


def _written_qform(sform: np.ndarray) -> np.ndarray:
    """The qform a NIfTI writer stores for ``sform`` (nibabel's, as dcm2niix and ITK do: a float32 quaternion, offsets
    and voxel sizes), read back as readers build it."""
    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_qform(sform, code=1)
    written = _qform(header)
    return sform if written is None else written


def _check_forms_agree(source: str, sform: np.ndarray, qform: np.ndarray) -> None:
    """Raise ``ValueError`` when the two voxel-to-world matrices of one file are not one grid: readers differ in which
    one they take (nibabel the sform, ITK may take the qform), so outputs of two readers would no longer overlay."""
    if is_sheared(sform):  # the qform is the nearest grid at right angles: no rewrite of the two can make them agree
        raise ValueError(f"{source}: its sform is sheared (axes not at right angles, as from a tilted gantry), which "
                         "its qform cannot hold, and readers differ in which one they use: set qform_code to 0, or "
                         "resample the volume onto a grid at right angles")
    atol, rtol = SFORM_QFORM_TOLERANCE
    tolerance = atol + rtol * np.linalg.norm(sform[:3], axis=0)
    # compared with the qform a writer makes of this sform, so that both carry the rounding of float32 quaternions,
    # which near a half turn (RAS of a slightly oblique DICOM) puts a 5 mm axis some 0.004 mm off the sform
    if (np.abs(_written_qform(sform)[:3] - qform[:3]) <= tolerance).all():
        return
    s, q = _describe_grid(sform), _describe_grid(qform)
    what = f"sform: {s}; qform: {q}" + ("; they differ in orientation" if s == q else "")
    raise ValueError(f"{source}: its sform and qform disagree ({what}), and readers differ in which one they use: "
                     "rewrite the header so that sform and qform agree, or set one of their codes to 0")


def check_nifti_header(source: str, min_spacing: float = 1e-6) -> None:
    """Raise ``ValueError`` when the NIfTI file ``source`` declares complex voxels, a sform or qform holding NaN or Inf
    or a degenerate one, or a sform and a qform (both in use) that are not one grid.

    Readers replace a degenerate grid by a made-up identity one, keep the real part of complex voxels with no more than
    a warning, and take one of two disagreeing forms, so the header is the only witness. Non-NIfTI or unreadable
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
    dtype = header.get_data_dtype()
    if dtype.kind == "c":
        raise ValueError(f"{source}: its voxels are complex numbers ({dtype.name}), of which a reader keeps the real "
                         "part and drops the rest; save the magnitude (or the real part) as a real-valued image")
    sform_used, qform_used = int(header["sform_code"]) > 0, int(header["qform_code"]) > 0
    # every entry of a form in use reaches the affine: a NaN origin passed the 3x3 check, then broke an SVD
    if sform_used and not np.isfinite(header.get_sform()).all():
        raise _non_finite(str(source), "sform (srow_x/y/z)")
    qform_fields = [header[k] for k in ("quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y", "qoffset_z")]
    if qform_used and not np.isfinite([*qform_fields, *header["pixdim"][1:4]]).all():
        raise _non_finite(str(source), "qform (quatern_b/c/d, qoffset_x/y/z or pixdim)")
    forms = {"sform": header.get_sform() if sform_used else None, "qform": _qform(header) if qform_used else None}
    # only axes the image extends along: a 2D image saved as (X, Y, 1) may carry 0 as its third voxel size
    extent = [i for i in range(3) if int(header["dim"][0]) > i and header["dim"][i + 1] > 1] or [0]
    for name, matrix in forms.items():
        if matrix is not None:
            smallest = _smallest_axis(np.asarray(matrix, dtype=np.float64)[:3, extent])
            if not np.isfinite(smallest) or smallest < min_spacing:
                raise _degenerate(str(source), name, smallest)
    if forms["sform"] is not None and forms["qform"] is not None:
        _check_forms_agree(str(source), np.asarray(forms["sform"], dtype=np.float64), forms["qform"])
    if qform_used or not sform_used:
        # that grid is built from pixdim, whose zeros nibabel replaces by 1 mm (get_qform included)
        n = int(np.clip(header["dim"][0], 1, 3))
        # only axes the image extends along: a 2D image saved as (X, Y, 1) may carry 0 as its third voxel size
        spacing = np.abs(np.asarray([header["pixdim"][i] for i in range(1, n + 1) if header["dim"][i] > 1],
                                    dtype=np.float64))
        if spacing.size == 0:
            return
        if not np.isfinite(spacing).all():
            raise _non_finite(str(source), "voxel size (pixdim)")
        if spacing.min() < min_spacing:
            raise _degenerate(str(source), "voxel size (pixdim)", float(spacing.min()))


def check_same_plane(image_affine, label_affine, image_source: str, label_source: str) -> None:
    """Raise ``ValueError`` (one line naming both files) when a 2D label's pixel grid lies elsewhere in space than its
    image's, on images of the same shape: the pixel axes (first two columns) or the origin of the two affines differ
    by more than :data:`SFORM_QFORM_TOLERANCE` (1e-3 mm plus 1e-4 of the column's length: two writers' float32
    headers of one grid agree that well). The third column, a 2D file's made-up slice axis, is not compared."""
    a, b = (np.asarray(torch.as_tensor(x).detach().cpu(), dtype=np.float64) for x in (image_affine, label_affine))
    if a.shape != b.shape:
        return
    columns = [0, 1, a.shape[1] - 1]
    atol, rtol = SFORM_QFORM_TOLERANCE
    tolerance = atol + rtol * np.linalg.norm(a[:-1][:, columns], axis=0)
    if (np.abs(a[:-1][:, columns] - b[:-1][:, columns]) <= tolerance).all():
        return
    raise ValueError(f"{label_source}: label affine differs from the affine of its image {image_source} (label: "
                     f"{_describe_plane(b)}; image: {_describe_plane(a)}), so its masks lie elsewhere on the body; "
                     "save the label with the image's affine, or resample it onto the image")


def _describe_plane(matrix: np.ndarray) -> str:
    sizes = np.round(np.linalg.norm(matrix[:-1, :2], axis=0), 4).tolist()
    return f"pixel size {sizes} mm, origin {numbers_text(matrix[:-1, -1])} mm"


def same_grid_reordered(affine_a, shape_a, affine_b, shape_b, atol: float = 1e-3) -> bool:
    """Whether two voxel grids (affine, spatial shape) hold the same voxel centres in another axis order or direction:
    one volume saved in RAS and in LAS, or transposed with its affine. Reorienting one onto the other loses nothing,
    where resampling would interpolate. ``atol``: in voxels and mm."""
    a, b = (np.asarray(x, dtype=np.float64) for x in (affine_a, affine_b))
    if a.shape != (4, 4) or b.shape != (4, 4) or len(shape_a) != 3 or len(shape_b) != 3:
        return False
    try:
        m = np.linalg.solve(a, b)  # label voxel -> image voxel
    except np.linalg.LinAlgError:
        return False
    turn = m[:3, :3]
    size = np.abs(turn)
    if not (np.allclose(size.sum(axis=0), 1, atol=atol) and np.allclose(size.max(axis=0), 1, atol=atol)):
        return False  # not a signed permutation of the axes
    if np.allclose(turn, np.eye(3), atol=atol):
        return False  # the same axis order: an offset grid, not a reordered one
    order = size.argmax(axis=0)
    if sorted(order) != [0, 1, 2] or [shape_a[k] for k in order] != list(shape_b):
        return False
    corners = np.array([[0, 0, 0], [s - 1 for s in shape_b]], dtype=np.float64)
    mapped = corners @ turn.T + m[:3, 3]
    return bool(np.all(mapped > -atol) and np.all(mapped < np.asarray(shape_a) - 1 + atol))


# the DICOM checks have a module of their own; their old paths here resolve for one release, with a warning
__getattr__ = moved_names(__name__, {name: "unimiss_monai.data.dicom_checks" for name in (
    "check_dicom_series", "check_dicom_pixel_data", "dicom_image_problem")})
