"""Checks of an image's voxel grid: a degenerate or non-finite affine, a NIfTI header declaring one (readers replace
such a grid by a made-up identity, so the header is the only witness), a NIfTI header whose sform and qform disagree or
whose voxels are complex, or a DICOM folder whose slices are not one evenly spaced series of one geometry (readers space
them evenly, stack them as if alike, or read one series of several, with a warning that names no file); and a DICOM
file whose pixel data is missing or cut short, which readers fill with zeros or junk."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from unimiss_monai.data.image_formats import is_dicom_file, is_dicom_path

__all__ = [
    "CT_SPACING_MM", "SFORM_QFORM_TOLERANCE", "check_ct_volume", "check_dicom_pixel_data", "check_dicom_series",
    "dicom_image_problem", "check_grid", "check_has_voxels", "check_nifti_header", "is_sheared",
]


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
    spacing = np.linalg.norm(a[:3, :3], axis=0)
    low, high = CT_SPACING_MM
    if not ((spacing >= low) & (spacing <= high)).all():
        raise ValueError(f"{source}: voxel size {np.round(spacing, 5).tolist()} mm is not a CT's ({low}-{high} mm; a "
                         "file in metres gives 0.0008 for 0.8 mm): rewrite it with the spacing in mm")
    distance = float(np.linalg.norm(a[:3, 3]))
    if distance > CT_MAX_ORIGIN_MM:
        raise ValueError(f"{source}: its origin {_numbers(a[:3, 3])} mm lies {distance:.3g} mm from "
                         "the scanner's origin, where no patient lies (a broken header): rewrite it with the origin "
                         "the scanner recorded, or 0")


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


# what every slice of one series shares, each as (what it is called, its value in a slice or None, the largest
# difference that is still the same: DICOM writes decimals as text, so one value may differ in its last digits)
_SLICE_GEOMETRY = (
    ("orientation (ImageOrientationPatient)", lambda d: d.get("ImageOrientationPatient"), 1e-3),
    ("pixel spacing (PixelSpacing, mm)", lambda d: d.get("PixelSpacing"), 1e-3),
    ("size (Rows, Columns)", lambda d: (d.Rows, d.Columns) if "Rows" in d and "Columns" in d else None, 0.0),
)


def _numbers(values) -> str:
    return "[" + ", ".join(f"{float(x) + 0.0:.6g}" for x in values) + "]"  # + 0.0: no "-0"


def _odd_slice(slices: list) -> str | None:
    """Which slice (by file name) of ``slices`` ((path, dataset) pairs of one series) has another orientation, pixel
    spacing or size than the others, and what differs; None when they agree. A slice lacking a tag is left to the
    reader."""
    for what, value, tolerance in _SLICE_GEOMETRY:
        found = [(path, v) for path, d in slices if (v := value(d)) is not None]
        try:
            values = np.asarray([v for _, v in found], dtype=np.float64)
        except (TypeError, ValueError):  # a malformed tag (another count of numbers) is the reader's business
            continue
        if values.ndim != 2 or len(values) < 2:
            continue
        # the most common value (to the tolerance): a median over two groups would be neither's
        alike = (np.abs(values[:, None] - values[None]).max(axis=2) <= max(tolerance, 1e-9)).sum(axis=1)
        usual = values[int(np.argmax(alike))]
        worst = int(np.argmax(np.abs(values - usual).max(axis=1)))
        if np.abs(values[worst] - usual).max() > tolerance:
            if alike.max() * 2 <= len(values):
                return f"its slices have no common {what}: {len(values) - int(alike.max())} of {len(values)} differ"
            return (f"slice {found[worst][0].name} has another {what}, {_numbers(values[worst])} where the others have "
                    f"{_numbers(usual)}")
    return None


_SLICE_LOST = ("a reader would leave it out and the series would lose that slice unsaid: copy the series again from "
               "the archive, or remove the file if it is no slice")


def check_dicom_series(source: str, tolerance: float = 0.01) -> None:
    """Raise ``ValueError`` (one line naming the folder) when the DICOM folder ``source`` holds more than one series,
    a slice whose orientation, pixel spacing or size (rows, columns) differs from the others', two slices at one
    position, or slices whose spacing varies by more than ``tolerance`` (a fraction of the median spacing, at least
    0.01 mm): a missing slice. ITK reads the first of several series, stacks slices of another geometry as if alike and
    spreads a series with gaps evenly, so the labels no longer lie on the anatomy. So does a DICOM file (``*.dcm``, or
    one that starts as DICOM) that cannot be parsed or is cut short (its header, or its uncompressed pixel data): ITK
    leaves it out of the series unsaid. Files that are not DICOM, and series without positions (a single multi-frame
    file), are left to the reader; anything that is not a folder is left alone."""
    folder = Path(source)
    if not folder.is_dir():
        return
    import pydicom
    from pydicom.errors import InvalidDicomError

    series: dict[str, list] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file() or not (path.suffix.lower() == ".dcm"
                                                                   or is_dicom_file(path)):
            continue
        # the reader leaves a file it cannot read out of the series unsaid: the volume is then a slice short
        try:  # the whole header (as fast as a few tags) and where the pixel data ends, not its bytes
            ds = pydicom.dcmread(path, defer_size=1024)
        except Exception as err:  # noqa: BLE001 - any failure to parse is a damaged file
            reason = ("it has no DICOM header" if isinstance(err, InvalidDicomError)
                      else f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'unreadable'}")
            # from None: the run reports an error's root cause, which would be pydicom's, naming no file
            raise ValueError(f"{folder}: {path.name} is no readable DICOM file ({reason}); {_SLICE_LOST}") from None
        sop = getattr(ds, "file_meta", {}).get("MediaStorageSOPClassUID")
        if sop is not None and "Image Storage" in str(getattr(sop, "name", "")) and "PixelData" not in ds:
            where = "header" if "Rows" not in ds else "file before its pixel data"
            raise ValueError(f"{folder}: {path.name} is an image ({sop.name}) whose {where} is cut short; "
                             f"{_SLICE_LOST}")
        # a DICOMDIR, or a report in the export (a dose report has a series of its own), is no slice: it has no rows
        if "SeriesInstanceUID" in ds and "Rows" in ds:
            if problem := _pixel_data_problem(ds):
                raise ValueError(f"{folder}: {path.name} {problem}; {_SLICE_LOST}")
            series.setdefault(str(ds.SeriesInstanceUID), []).append((path, ds))
    if len(series) > 1:
        counts = ", ".join(f"{len(v)} slices" for v in series.values())
        raise ValueError(f"{folder}: holds {len(series)} DICOM series ({counts}); a reader would take one and drop the "
                         "rest: put each series in a folder of its own")
    with_paths = next(iter(series.values()), [])
    odd = _odd_slice(with_paths)
    if odd:
        raise ValueError(f"{folder}: {odd}; a reader stacks it as if it matched, and the volume is distorted: remove "
                         "that slice if it is no part of the series (a localizer), else export the series again")
    slices = [ds for _, ds in with_paths]
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


def check_dicom_pixel_data(source: str) -> None:
    """Raise ``ValueError`` (one line naming the file) when the DICOM file ``source`` has no pixel data, or less
    uncompressed pixel data than its header declares (a copy cut short): readers fill the rest with zeros or junk, and
    the image is segmented as if whole. Compressed pixel data, folders and other files are left to the reader."""
    path = Path(source)
    if not path.is_file():
        return
    if not is_dicom_path(path):
        return  # a PNG or NIfTI is not opened to sniff for DICOM, epoch after epoch
    st = path.stat()
    _check_pixel_data(str(path), source, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _check_pixel_data(path: str, source: str, file_size: int, mtime_ns: int) -> None:
    """:func:`check_dicom_pixel_data` of one version of a file (its size and time in the key): an epoch reads each
    header once, not once per pass."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:  # the pixel data's length, not its bytes: an element over 1 KB is only located
        ds = pydicom.dcmread(path, defer_size=1024)
    except (AttributeError, TypeError, KeyError, ValueError, InvalidDicomError):  # no header to compare with
        return
    if problem := _pixel_data_problem(ds):
        raise ValueError(f"{source}: {problem}; copy it again from the archive")


def _pixel_data_problem(ds) -> str | None:
    """What is wrong with the pixel data of the DICOM dataset ``ds`` (read with ``defer_size``): none, or less
    uncompressed pixel data than its header declares (a copy cut short); None when it is whole, compressed or its header
    cannot tell."""
    from pydicom.dataelem import RawDataElement
    from pydicom.pixels.utils import get_expected_length

    try:
        if "PixelData" not in ds:
            return "holds no pixel data (a DICOM object without an image); pass the image file"
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            return None
        element = ds.get_item("PixelData")
        # read (up to 1 KB): its bytes, which a file cut short has fewer of than its declared length; deferred: the
        # length pydicom located, up to the file's end
        value = element.value
        size = element.length if isinstance(element, RawDataElement) and value is None else len(value)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        needed = int(get_expected_length(ds, unit="bytes"))  # pydicom's count: 1-bit and 4:2:2 colour included
    except (AttributeError, TypeError, KeyError, ValueError):  # no header to compare with
        return None
    if size >= needed:
        return None
    return (f"holds {size} bytes of pixel data where its header ({ds.Rows} x {ds.Columns}, {ds.BitsAllocated} bits, "
            f"{frames} frame(s)) needs {needed}: the file is cut short")


#: photometric interpretations of one sample per pixel; the colour ones (RGB, YBR_*) need three
_ONE_SAMPLE = ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR")
#: modalities whose frames are slices of one volume, not projections: a CT to render DRRs from, not to split
_VOLUME_MODALITIES = ("CT", "MR", "PT", "NM")


def dicom_image_problem(source: str) -> str | None:
    """What in the header of the DICOM file ``source`` keeps a reader from decoding it as one grey image, said with
    the fix, or None (not a DICOM file, or nothing found). For a reader's own error, which names neither the file nor
    the fault (ITK: ``itk.Image is not wrapped for input type itk.Vector[itk.US,3]``)."""
    path = Path(source)
    if not path.is_file() or not is_dicom_path(path):
        return None
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        samples, photometric = int(ds.get("SamplesPerPixel", 1) or 1), str(ds.get("PhotometricInterpretation", ""))
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        modality = str(ds.get("Modality", "")).upper()
    except Exception:  # noqa: BLE001 - a header pydicom cannot parse is the reader's business too
        return None
    if (samples == 1) != (photometric.upper() in _ONE_SAMPLE):
        return (f"its header declares PhotometricInterpretation {photometric or 'none'} with {samples} sample(s) per "
                "pixel, which do not go together; export it again as MONOCHROME2 (or save it as PNG)")
    if frames > 1 and modality not in _VOLUME_MODALITIES:  # an enhanced CT or MR holds its volume as frames
        return f"it holds {frames} frames; save each frame as a file of its own (one projection image per file)"
    return None
