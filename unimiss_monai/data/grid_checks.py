"""Checks of an image's voxel grid: a degenerate affine, a NIfTI header declaring one (readers replace such a grid
by a made-up identity, so the header is the only witness), or a DICOM folder whose slices are not one evenly spaced
series (readers space them evenly, or read one series of several, with a warning that names no file)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = [
    "CT_SPACING_MM", "check_ct_volume", "check_dicom_series", "check_grid", "check_has_voxels", "check_nifti_header",
]


def _smallest_axis(columns: np.ndarray) -> float:
    return float(np.linalg.svd(columns, compute_uv=False).min()) if np.isfinite(columns).all() else float("nan")


def _degenerate(source: str, what: str, smallest: float) -> ValueError:
    return ValueError(
        f"{source}: its {what} is degenerate (an axis of length {smallest:.3g} mm, or axes that coincide): the file "
        "has no valid voxel grid; rewrite it with the scanner's spacing and orientation"
    )


def check_has_voxels(shape, source: str, what: str = "image", layout: str = "") -> None:
    """Raise ``ValueError`` (one line naming ``source``) when ``shape`` has an axis of length 0.

    Run before any count of the image's dimensions: an empty file read as "a 0D image" or "a 2D image" sends the user
    after the wrong fix. ``layout`` qualifies the shape named (``"channel-first "``).
    """
    if 0 in tuple(shape):
        raise ValueError(f"{source}: the {what} is empty ({layout}shape {tuple(int(s) for s in shape)}); re-export it")


def check_grid(affine, spatial_dims: int, source: str, min_spacing: float = 1e-6) -> None:
    """Raise ``ValueError`` (one line naming ``source``) when the affine's first ``spatial_dims`` columns are degenerate.

    Only the image's own axes are looked at: a 2D image may carry a 3D (detector) affine, whose top-left 2x2 block can
    be singular while its two columns are perfectly good directions in space.
    """
    a = np.asarray(torch.as_tensor(affine).detach().cpu(), dtype=np.float64)
    smallest = _smallest_axis(a[:-1, : max(1, min(int(spatial_dims), a.shape[1] - 1))])
    if not np.isfinite(smallest) or smallest < min_spacing:
        raise _degenerate(source, "affine", smallest)


#: voxel sizes (mm) a CT can have: below, the file is in another unit (metres: 0.0008 for 0.8 mm); above, not a CT
CT_SPACING_MM = (0.05, 50.0)


def check_ct_volume(shape, affine, source: str) -> None:
    """Raise ``ValueError`` (one line naming ``source``) when a 3D CT of spatial ``shape`` and ``affine`` is one slice
    (a 2D image saved as a volume) or has a voxel size outside :data:`CT_SPACING_MM`. Either gave a case marked "ok":
    an all-background segmentation, an all-zero DRR."""
    if min(int(s) for s in shape) < 2:
        raise ValueError(f"{source}: shape {tuple(int(s) for s in shape)} is a single slice, a 2D image, not a CT volume; "
                         "give the whole series (a radiograph goes to the CXR bundles)")
    if affine is None:
        return
    a = np.asarray(torch.as_tensor(affine).detach().cpu(), dtype=np.float64)
    spacing = np.linalg.norm(a[:3, :3], axis=0)
    low, high = CT_SPACING_MM
    if not ((spacing >= low) & (spacing <= high)).all():
        raise ValueError(f"{source}: voxel size {np.round(spacing, 5).tolist()} mm is not a CT's ({low}-{high} mm; a "
                         "file in metres gives 0.0008 for 0.8 mm): rewrite it with the spacing in mm")


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
        # only axes the image extends along: a 2D image saved as (X, Y, 1) may carry 0 as its third voxel size
        spacing = np.abs(np.asarray([header["pixdim"][i] for i in range(1, n + 1) if header["dim"][i] > 1],
                                    dtype=np.float64))
        if spacing.size == 0:
            return
        if not np.isfinite(spacing).all() or spacing.min() < min_spacing:
            raise _degenerate(str(source), "voxel size (pixdim)", float(spacing.min()))


def check_dicom_series(source: str, tolerance: float = 0.01) -> None:
    """Raise ``ValueError`` (one line naming the folder) when the DICOM folder ``source`` holds more than one series,
    two slices at one position, or slices whose spacing varies by more than ``tolerance`` (a fraction of the median
    spacing, at least 0.01 mm): a missing slice. ITK reads the first of several series and spreads a series with gaps
    evenly, so the labels no longer lie on the anatomy. Files that are not DICOM, and series without positions
    (a single multi-frame file), are left to the reader; anything that is not a folder is left alone."""
    folder = Path(source)
    if not folder.is_dir():
        return
    import pydicom

    from unimiss_monai.data.image_formats import is_dicom_file

    series: dict[str, list] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or not (path.suffix.lower() == ".dcm" or is_dicom_file(path)):
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True,
                                 specific_tags=["SeriesInstanceUID", "ImagePositionPatient", "ImageOrientationPatient"])
        except Exception:  # noqa: BLE001 - an unreadable file is the reader's business
            continue
        if "SeriesInstanceUID" in ds:  # a DICOMDIR or a report in the export is no slice of any series
            series.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
    if len(series) > 1:
        counts = ", ".join(f"{len(v)} slices" for v in series.values())
        raise ValueError(f"{folder}: holds {len(series)} DICOM series ({counts}); a reader would take one and drop the "
                         "rest: put each series in a folder of its own")
    slices = next(iter(series.values()), [])
    if len(slices) < 3 or any("ImagePositionPatient" not in d or "ImageOrientationPatient" not in d for d in slices):
        return
    iop = np.asarray(slices[0].ImageOrientationPatient, dtype=np.float64)
    normal = np.cross(iop[:3], iop[3:])
    positions = np.sort([float(np.dot(normal, np.asarray(d.ImagePositionPatient, dtype=np.float64))) for d in slices])
    gaps = np.diff(positions)
    step = float(np.median(gaps))
    worst = int(np.argmax(np.abs(gaps - step)))
    if step <= 0 or abs(gaps[worst] - step) > max(0.01, tolerance * step):
        what = ("two slices at one position" if gaps[worst] < 1e-6 else
                f"a gap of {gaps[worst]:.3g} mm where the slices are {step:.3g} mm apart")
        raise ValueError(f"{folder}: its slices are not evenly spaced ({what}, at {positions[worst]:.1f} mm along the "
                         "slice axis; a slice is missing or doubled): export the whole series again")
