"""Checks of DICOM input that readers pass over: a folder whose slices are not one evenly spaced, unsheared series of
one geometry (readers space them evenly, stack them as if alike, read one series of several, or stack a gantry-tilted
series straight, with a warning that names no file, if any), a DICOM file whose pixel data is missing or cut short
(readers fill it with zeros or junk), a file that is no single-sample image of its kind, and a radiograph whose
header gives a negative pixel size (readers take 1 mm). One read of a file's header serves all its checks."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from unimiss_monai.data.grid_checks import numbers_text
from unimiss_monai.data.image_formats import is_dicom_file, is_dicom_path

__all__ = ["check_dicom_pixel_data", "check_dicom_series", "dicom_file_damage", "dicom_header", "dicom_image_problem",
           "dicom_spacing_problem", "spacing_tag_values"]


# what every slice of one series shares, each as (what it is called, its value in a slice or None, the largest
# difference that is still the same: DICOM writes decimals as text, so one value may differ in its last digits)
_SLICE_GEOMETRY = (
    ("orientation (ImageOrientationPatient)", lambda d: d.get("ImageOrientationPatient"), 1e-3),
    ("pixel spacing (PixelSpacing, mm)", lambda d: d.get("PixelSpacing"), 1e-3),
    ("size (Rows, Columns)", lambda d: (d.Rows, d.Columns) if "Rows" in d and "Columns" in d else None, 0.0),
)


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
            return (f"slice {found[worst][0].name} has another {what}, {numbers_text(values[worst])} where the others have "
                    f"{numbers_text(usual)}")
    return None


_SLICE_LOST = ("a reader would leave it out and the series would lose that slice unsaid: copy the series again from "
               "the archive, or remove the file if it is no slice")


def _read_header(path: Path) -> tuple:
    """``(dataset, damage)`` of the DICOM file ``path``: its whole header (as fast as a few tags) and where its pixel
    data ends, not its bytes (an element over 1 KB is only located), and what makes it no readable image (``"is no
    readable DICOM file ..."``, ``"is an image ... whose header is cut short"``), or None. The dataset is None where
    the file cannot be parsed."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, defer_size=1024)
    except InvalidDicomError:
        return None, "is no readable DICOM file (it has no DICOM header)"
    except Exception:  # noqa: BLE001 - any other failure to parse is a damaged file; pydicom's words name no file
        return None, "is no readable DICOM file (its header is damaged or cut short)"
    sop = getattr(ds, "file_meta", {}).get("MediaStorageSOPClassUID")
    if sop is not None and "Image Storage" in str(getattr(sop, "name", "")) and "PixelData" not in ds:
        where = "header" if "Rows" not in ds else "file before its pixel data"
        return ds, f"is an image ({sop.name}) whose {where} is cut short"
    return ds, None


@functools.lru_cache(maxsize=64)
def _header(path: str, file_size: int, mtime_ns: int) -> tuple:
    """:func:`_read_header` of one version of a file (its size and time in the key): the checks of one radiograph
    (its spacing, its pixel data, its modality where the reader left it out) share one read of its header."""
    return _read_header(Path(path))


def dicom_header(source: str):
    """The header of the DICOM file ``source`` (a pydicom dataset, its pixel data only located), read once for all the
    checks of one version of the file; None for a folder, a file that is no DICOM (a PNG or NIfTI is not opened to
    sniff) or one that cannot be parsed."""
    path = Path(source)
    if not path.is_file() or not is_dicom_path(path):
        return None
    st = path.stat()
    return _header(str(path), st.st_size, st.st_mtime_ns)[0]


def dicom_file_damage(source: str) -> str | None:
    """What makes the DICOM file ``source`` unreadable, as words that follow its name (``"is no readable DICOM file
    (it has no DICOM header)"``, ``"holds 960 bytes of pixel data where its header ... needs 3840: the file is cut
    short"``), or None when its header and pixel data are whole. For a reader's own error, which says neither: the
    header read of the checks that ran before the reader failed serves (one read per version of the file)."""
    path = Path(source)
    st = path.stat()
    ds, damage = _header(str(path), st.st_size, st.st_mtime_ns)
    if damage or ds is None:
        return damage
    if "PixelData" not in ds:  # cut short before even its kind of image was told, or no image at all
        return "holds no pixel data: it is cut short, or is a DICOM object without an image"
    return _pixel_data_problem(ds)


#: the DICOM elements that give a projection image's pixel size, (rows, columns) in mm, in the order a bad one is
#: named (``dicom_pixel_size`` reads them in ITK's order, the other way round)
_SPACING_TAGS = ("PixelSpacing", "ImagerPixelSpacing")


def spacing_tag_values(ds, tag: str) -> np.ndarray | None:
    """The numbers of the pixel-size element ``tag`` (``PixelSpacing``, ``ImagerPixelSpacing``) of the header ``ds``,
    flat, as float64: empty where it is absent or empty, None where its value is no list of numbers (pydicom gives
    its text, which does not parse). An element pydicom cannot decode at all (a binary value of the wrong length)
    raises pydicom's error."""
    try:
        return np.asarray(ds.get(tag) or [], dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return None


def dicom_spacing_problem(source: str) -> str | None:
    """What is wrong with the pixel size in the header of the DICOM file ``source``, with the fix, or None: its
    ``PixelSpacing`` or ``ImagerPixelSpacing`` holds a negative, non-finite or (beside a non-zero one) zero value, and
    neither element gives a valid size the reader could take instead (ITK takes ``ImagerPixelSpacing`` for CR and
    DX). A negative size flips the image's axis, a zero one is read as 1 mm, and distances and areas come out in
    made-up units. A file without either element, or with all zeros, keeps the reader's 1 mm, as a PNG does: vendors
    write ``0\\0`` for a detector they did not calibrate (pydicom's sample CR ``RG1_UNCR.dcm``, which the sample
    data sets use, is one). A file that is no DICOM, or a value that is no list of numbers, is the reader's."""
    ds = dicom_header(source)
    if ds is None:
        return None
    bad = None
    for tag in _SPACING_TAGS:
        if (values := spacing_tag_values(ds, tag)) is None:
            continue
        if values.size and (np.isfinite(values) & (values > 0)).all():
            return None  # a valid size to read
        if values.size and (values != 0).any() and bad is None:
            bad = (tag, values)
    if bad is None:
        return None
    return (f"its header's {bad[0]} is {numbers_text(bad[1])}, no pixel size (each must be positive, in mm); set "
            "PixelSpacing or ImagerPixelSpacing in the header to the detector's pixel size, or export it again")


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
    series: dict[str, list] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file() or not (path.suffix.lower() == ".dcm"
                                                                   or is_dicom_file(path)):
            continue
        # the reader leaves a file it cannot read out of the series unsaid: the volume is then a slice short
        ds, damage = _read_header(path)
        if damage:
            raise ValueError(f"{folder}: {path.name} {damage}; {_SLICE_LOST}")
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
    if len(slices) < 2 or any("ImagePositionPatient" not in d or "ImageOrientationPatient" not in d for d in slices):
        return
    iop = np.asarray(slices[0].ImageOrientationPatient, dtype=np.float64)
    normal = np.cross(iop[:3], iop[3:])
    if np.linalg.norm(normal) < 1e-6:  # no orientation to speak of: the reader's to refuse
        return
    normal /= np.linalg.norm(normal)  # orientations written with few digits are not quite unit vectors
    corners = np.asarray([d.ImagePositionPatient for d in slices], dtype=np.float64)
    along = corners @ normal
    order = np.argsort(along, kind="stable")
    positions = along[order]
    if len(slices) >= 3:
        _check_even_spacing(folder, positions, tolerance)
    if positions[-1] - positions[0] > 1e-6:  # slices at one position are the spacing check's to name
        _check_not_tilted(folder, corners[order], normal, slices[0])


def _check_even_spacing(folder: Path, positions: np.ndarray, tolerance: float) -> None:
    """Raise ``ValueError`` when sorted slice ``positions`` (mm along the normal) are not evenly spaced."""
    gaps = np.diff(positions)
    step = float(np.median(gaps))
    worst = int(np.argmax(np.abs(gaps - step)))
    if step <= 0 or abs(gaps[worst] - step) > max(0.01, tolerance * step):
        what = ("two slices at one position" if gaps[worst] < 1e-6 else
                f"a gap of {gaps[worst]:.3g} mm where the slices are {step:.3g} mm apart")
        raise ValueError(f"{folder}: its slices are not evenly spaced ({what}, at {positions[worst]:.1f} mm along the "
                         "slice axis; a slice is missing or doubled): export the whole series again")


def _check_not_tilted(folder: Path, corners: np.ndarray, normal: np.ndarray, first) -> None:
    """Raise ``ValueError`` when the slices' corners (``ImagePositionPatient``, in slice order) drift across the slice
    normal by more than half a pixel: a series from a tilted gantry, whose slices are sheared against their planes.
    Readers stack them straight along the normal, and every slice after the first lies off the anatomy (tens of mm at
    the far end of a 15-degree tilt), with no error."""
    offsets = corners - corners[0]
    across = offsets - np.outer(offsets @ normal, normal)  # each corner's drift within the slice plane
    drift = np.linalg.norm(across, axis=1)
    spacing = [float(v) for v in getattr(first, "PixelSpacing", None) or [1.0, 1.0]]
    if float(drift.max()) > 0.5 * min(spacing):
        slope = float(np.degrees(np.arctan2(drift[-1], abs(offsets[-1] @ normal))))
        raise ValueError(f"{folder}: its slices drift {drift.max():.3g} mm across the slice planes from the first to "
                         f"the last (a gantry tilt of about {slope:.1f} degrees), which readers stack straight, so the "
                         "slices lie off the anatomy: convert it with a tool that handles gantry tilt (dcm2niix "
                         "writes a tilt-corrected copy) and pass that NIfTI")


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
    ds = _header(path, file_size, mtime_ns)[0]
    if ds is None:  # no header to compare with
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
    ds = dicom_header(source)
    if ds is None:
        return None
    try:
        samples, photometric = int(ds.get("SamplesPerPixel", 1) or 1), str(ds.get("PhotometricInterpretation", ""))
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        modality = str(ds.get("Modality", "")).upper()
    except Exception:  # noqa: BLE001 - an element pydicom cannot parse is the reader's business too
        return None
    if (samples == 1) != (photometric.upper() in _ONE_SAMPLE):
        return (f"its header declares PhotometricInterpretation {photometric or 'none'} with {samples} sample(s) per "
                "pixel, which do not go together; export it again as MONOCHROME2 (or save it as PNG)")
    if frames > 1 and modality not in _VOLUME_MODALITIES:  # an enhanced CT or MR holds its volume as frames
        return f"it holds {frames} frames; save each frame as a file of its own (one projection image per file)"
    return None
