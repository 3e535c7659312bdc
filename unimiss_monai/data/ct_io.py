"""Read a CT (NIfTI file or DICOM series folder) into an (X, Y, Z) HU array and a 4x4 RAS affine, with validation.

A DICOM series goes through MONAI's ``ITKReader``, which applies the rescale slope/intercept and converts DICOM's LPS
patient frame to RAS (:class:`~unimiss_monai.data.ct_series_reader.CTSeriesReader`, in float pixels when float32 is
asked for: a slice's own rescale then cannot wrap around); a NIfTI file through nibabel, whose affine is the RAS one
``NibabelReader`` gives, so the same body gives the same world coordinates whichever format it came in. Voxel order is
left as stored: the affine carries the orientation. Nothing goes through ``LoadImage``, whose conversion copies every
volume into C order: for a NIfTI CT (stored x-fastest) that transposing copy, and one more in the intensity check, made
loading the sample chest CT take 1.3 s instead of 0.5 s, most of a DRR run's time per CT; the renderer reads any memory
order.

Reading a CT is still most of a DRR case, and most of that is gzip. A ``.nii.gz`` is therefore decompressed in one
call, its voxels taken as a view of the decompressed bytes, and scaled into float32 in one pass (:func:`_read_nifti`):
0.39 s for the sample chest CT, against 0.50 s through ``NibabelReader`` on its own and 1.04 s (0.47-5.0) when reads
follow each other in one process; that reader streams the file in small reads and scales it in float64 before the
float32 copy. The HU are the same.
"""

from __future__ import annotations

import gzip
import logging
import warnings
from pathlib import Path

import numpy as np

from unimiss_monai.data.dicom_checks import check_dicom_series
from unimiss_monai.data.grid_checks import (
    check_ct_volume,
    check_grid,
    check_has_voxels,
    check_nifti_header,
    ct_size_problem,
)
from unimiss_monai.data.hu_scale_checks import (
    check_not_below_air,
    check_not_negated,
    check_not_unrescaled,
    check_slice_levels,
    check_span,
)
from unimiss_monai.data.image_formats import (
    NIFTI_SUFFIXES,
    cannot_list,
    dicom_files_in,
    is_dicom_file,
    unreadable_image_problem,
)

__all__ = [
    "MAX_AIR_ONLY_HU", "MAX_PLAUSIBLE_HU", "CTInputError", "check_not_air_only", "load_ct", "load_label_map",
    "label_value_problem", "is_dicom_file", "dicom_files", "is_dicom_series_dir", "warn_if_not_ct_hu",
]

logger = logging.getLogger(__name__)

# CT has air near -1000 HU; a volume whose darkest voxels are this bright is most likely MR or unscaled raw values
MR_LIKE_LOW_PERCENTILE_HU = -300.0
# air is -1000 HU, spread by scanner noise of some tens of HU; the least dense tissue, aerated lung (about -850 to
# -700 HU), never comes without vessels, fat (-100 HU) and chest wall around it. A volume whose densest voxel is no
# denser than this holds no body at all (an air scan, an export or rescale gone wrong): its DRRs are blank and it gives
# a network nothing to learn. Noise may lift an air scan's densest voxel above it; then it passes, as before
MAX_AIR_ONLY_HU = -900.0
# no CT in HU has its median this far from 0: metal can reach 3071 HU (12-bit) or some 30000 HU (extended scales), but
# in a few voxels, which cannot move the median, even of a small crop around an implant; a volume in another unit (a
# rescale slope of 1000 for 1) has its air or its soft tissue there, and was rendered and segmented, marked ok
MAX_PLAUSIBLE_HU = 10000.0


class CTInputError(ValueError):
    """A CT input that cannot be used; the message names the file and the fix, on one line."""


def dicom_files(path: Path) -> list[Path]:
    """The DICOM files of folder ``path``, sorted (every file without a known suffix is opened)."""
    return list(dicom_files_in(path))


def is_dicom_series_dir(path: Path) -> bool:
    """True when ``path`` is a folder holding at least one DICOM file, wherever it sorts; stops at the first one, so
    that a series folder of UID-named slices costs one file opened."""
    return path.is_dir() and next(dicom_files_in(path), None) is not None


def _read_nifti(path: Path, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Voxels (in their stored memory order; ``dtype`` None: as stored, or float64 where the header scales them) and
    RAS affine of a NIfTI-1 or NIfTI-2 file."""
    import nibabel as nib

    data = path.read_bytes()
    if path.name.lower().endswith(".gz"):
        data = gzip.decompress(data)  # one call: nibabel's stream of small reads takes 1.3x longer
    nifti2 = 540 in (int.from_bytes(data[:4], "little"), int.from_bytes(data[:4], "big"))
    img = (nib.Nifti2Image if nifti2 else nib.Nifti1Image).from_bytes(data)
    proxy = img.dataobj  # where nibabel would read the voxels: dtype, shape, offset (352 at least in a .nii)
    stored = np.frombuffer(data, proxy.dtype, int(np.prod(proxy.shape)), proxy.offset)
    stored = stored.reshape(proxy.shape, order=proxy.order)  # x-fastest: a view of the bytes, no copy
    slope, inter = float(proxy.slope), float(proxy.inter)  # nibabel's reading: 1 and 0 when unset
    if slope == 1.0 and inter == 0.0:
        return stored.astype(dtype or stored.dtype), img.affine  # a writable copy, not a view of the bytes
    target = np.dtype(dtype if dtype is not None else np.float64)
    # integers of at most 16 bits with whole-number scaling stay whole numbers below 2**24: float32 holds them exactly,
    # so one float32 pass gives what nibabel's float64 scaling rounded to float32 gives
    exact = (stored.dtype.kind in "iu" and stored.dtype.itemsize <= 2 and slope.is_integer() and inter.is_integer()
             and abs(slope) * 65536 + abs(inter) < 2**24)
    values = stored.astype(np.float32 if exact and target == np.float32 else np.float64)
    if slope != 1.0:
        values *= slope
    if inter != 0.0:
        values += inter
    return values.astype(target, copy=False), img.affine


def _read(path: Path, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Voxels (stored memory order) and RAS affine of a NIfTI file or a DICOM series folder."""
    if not path.is_dir() and path.name.lower().endswith(NIFTI_SUFFIXES):
        return _read_nifti(path, dtype)
    from monai.data import ITKReader

    from unimiss_monai.data.ct_series_reader import CTSeriesReader  # monai: imported when a series is read

    # float32 asked for: a grey series in float pixels, so that a slice's own rescale cannot wrap around
    reader = CTSeriesReader() if dtype is not None and np.dtype(dtype) == np.float32 else ITKReader()
    array, meta = reader.get_data(reader.read(str(path)))
    return np.asarray(array, dtype=dtype), meta["affine"]  # in the stored memory order


def _load(path: Path, what: str, dtype) -> tuple[np.ndarray, np.ndarray]:
    if not path.exists():
        raise CTInputError(f"{path}: {what} not found; check the path (--dataset_dir) or create sample data with "
                           f"`python -m unimiss_monai samples --out DIR`")
    try:  # a folder a scan could not list is a case of its own, which fails here, from the one listing made anyway
        series_dir = path.is_dir() and is_dicom_series_dir(path)
    except OSError as err:
        raise CTInputError(cannot_list(path, err)) from None
    if path.is_dir() and not series_dir:
        raise CTInputError(f"{path}: folder holds no DICOM files; pass a NIfTI file or a folder of one DICOM series")
    try:  # headers only, before the voxels are read: a reader drops the imaginary part of complex voxels with no more
        # than a warning, and stacks slices of another geometry as if alike or fails on them with a message naming none
        check_nifti_header(str(path))
        check_dicom_series(str(path))
    except ValueError as err:
        raise CTInputError(str(err)) from None
    try:
        array, affine = _read(path, dtype)
    except Exception as err:  # readers raise many types; the user needs the file name and what to do
        # a damaged file (empty, cut short, another format renamed) is said so: the reader's words name no fix
        if not path.is_dir() and (damage := unreadable_image_problem(path)):
            raise CTInputError(damage) from None
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise CTInputError(f"{path}: cannot be read as a {what} ({reason}); pass an intact NIfTI (.nii/.nii.gz) file "
                           f"or a folder holding one DICOM series") from err
    affine = np.asarray(affine, dtype=np.float64)
    try:  # a degenerate grid would be replaced by a made-up one, and every physical distance would be wrong
        check_grid(affine, 3, str(path))
    except ValueError as err:
        raise CTInputError(str(err)) from None
    # a trailing singleton (time or channel) axis is harmless; anything else is not one 3D volume
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    return array, affine


def load_ct(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Load a CT volume in HU.

    Args:
        path: a ``.nii``/``.nii.gz`` file (or a volume of a format ITK reads: ``.mha``, ``.mhd``, ``.nrrd``,
            ``.nhdr``), or a folder holding one DICOM series (any file names).

    Returns:
        ``(hu, affine)``: ``hu`` (X, Y, Z) float32 in HU, ``affine`` 4x4 float64 voxel-to-world in RAS mm.

    Raises:
        CTInputError: the file is missing or unreadable, is empty (an axis of length 0), is a 2D image, is not a single
            3D volume, has NaN or Inf voxels, holds nothing denser than air or values no CT in HU reaches (in the
            whole volume, or in some of its slices: one slice of a series with a wrong rescale slope), or has a
            degenerate or non-finite voxel grid (or a NIfTI header whose sform and qform disagree, or complex voxels).

    Warns:
        UserWarning: the intensities do not look like CT HU (no air near -1000 HU; e.g. an MR volume), or the CT is
            too small to hold a body part (:func:`~unimiss_monai.data.grid_checks.ct_size_problem`: a 4 x 4 x 4 test
            volume, a crop of one organ).
    """
    path = Path(path)
    hu, affine = _load(path, "CT volume", np.float32)
    try:  # before counting axes: an axis of length 0 is no missing dimension, and no 2D image
        check_has_voxels(hu.shape, str(path), "volume")
    except ValueError as err:
        raise CTInputError(str(err)) from None
    spatial = [s for s in hu.shape if s > 1]
    if hu.ndim < 3 or len(spatial) < 3:
        raise CTInputError(f"{path}: is a 2D image (shape {tuple(hu.shape)}), not a CT volume; pass a 3D CT "
                           f"(radiographs belong to the X-ray bundles)")
    if hu.ndim > 3:
        raise CTInputError(f"{path}: has shape {tuple(hu.shape)}, not one 3D volume; split it and pass one 3D CT per file")
    try:  # a voxel size in metres rendered an all-zero DRR, marked ok
        check_ct_volume(hu.shape, affine, str(path))
    except ValueError as err:
        raise CTInputError(str(err)) from None
    bad = int((~np.isfinite(hu)).sum())
    if bad:  # +-Inf would render as infinite pixels and a black preview
        kind = "NaN" if int(np.isnan(hu).sum()) == bad else "non-finite (NaN or Inf)"
        raise CTInputError(f"{path}: has {bad} {kind} voxels; replace them (e.g. with -1024 HU, air) before rendering")
    check_not_air_only(hu, str(path))  # rendered, it was an all-zero DRR marked ok
    warn_if_not_ct_hu(hu, str(path), "DRRs are only meaningful for CT in HU")
    if small := ct_size_problem(hu.shape, affine):  # rendered without a word, its DRRs showed a blur marked ok
        message = (f"{path}: {small}; its DRRs show no radiograph's anatomy: pass the whole CT, not a crop, test "
                   "volume or thumbnail of it")
        warnings.warn(message, UserWarning, stacklevel=2)
        logger.warning(message)
    return np.asarray(hu, dtype=np.float32), affine  # any memory order: the renderer and torch read strides


def _as_array(hu) -> np.ndarray:
    """``hu`` (an array or tensor) as a numpy array, without a copy where it is on the CPU."""
    return np.asarray(hu.detach().cpu() if hasattr(hu, "detach") else hu)


def _flat(hu) -> np.ndarray:
    """``hu`` (an array or tensor) as one flat array in memory order: a view, where ``reshape(-1)`` of an x-fastest
    NIfTI volume would first copy all of it into C order."""
    return _as_array(hu).ravel(order="K")


def _sample(flat: np.ndarray, size: int = 200_000) -> np.ndarray:
    """About ``size`` evenly strided values of ``flat``: enough for a percentile or a first maximum of a volume."""
    return flat[:: max(1, flat.size // size)]


def warn_if_not_ct_hu(hu, source: str, consequence: str = "the network was trained on CT in HU") -> bool:
    """Warn (``UserWarning`` and the log, naming ``source``) when a volume has no air near -1000 HU, i.e. looks like MR
    or unscaled raw values rather than CT; returns whether it warned. ``hu``: any array or tensor of the volume."""
    a = _sample(_flat(hu)).astype(np.float32, copy=False)  # a percentile needs no more than a sample
    low = float(np.percentile(a, 1.0)) if a.size else 0.0
    if low <= MR_LIKE_LOW_PERCENTILE_HU:
        return False
    message = (f"{source}: intensities [{float(a.min()):.0f}, {float(a.max()):.0f}] have no air near -1000 HU, so this "
               f"looks like MR or unscaled data, not CT; {consequence}; raw scanner values are HU once the DICOM "
               "rescale is applied (value x RescaleSlope + RescaleIntercept, the intercept often -1024)")
    warnings.warn(message, UserWarning, stacklevel=2)
    logger.warning(message)
    return True


def _check_not_beyond_hu(flat: np.ndarray, sample: np.ndarray, source: str) -> None:
    """Raise :class:`CTInputError` when a volume's median (on ``sample``) lies beyond +-:data:`MAX_PLAUSIBLE_HU`."""
    if float(np.abs(sample).max()) <= MAX_PLAUSIBLE_HU:  # any CT in HU: no median to compute
        return
    middle = float(np.median(sample))
    if abs(middle) > MAX_PLAUSIBLE_HU:
        raise CTInputError(f"{source}: values from {float(flat.min()):.0f} to {float(flat.max()):.0f} with a median "
                           f"of {middle:.0f}, where a CT in HU has its median within +-{MAX_PLAUSIBLE_HU:.0f} (metal "
                           "moves only its highest values): not in HU (check the rescale slope/intercept)")


#: share of a slice's values beyond +-MAX_PLAUSIBLE_HU that marks it as stored in another unit (a rescale slope of
#: 1000 puts all but water's there): half, the slice's median
SLICE_BEYOND_SHARE = 0.5


def _check_slices_in_hu(vol: np.ndarray, source: str) -> None:
    """Raise :class:`CTInputError` when some but not all slices of a volume hold :data:`SLICE_BEYOND_SHARE` or more of
    their values beyond +-:data:`MAX_PLAUSIBLE_HU`. One DICOM slice exported with another unit (a rescale slope of
    1000) leaves the volume's median where it is, and its DRRs and segmentation were garbage marked ok.

    Slices are the planes across the last axis: a DICOM series is stacked along it, and an axial CT in RAS or LPS runs
    along it. An implant runs across them, so even in a tight crop it fills less than half of one. A minimum below
    -:data:`MAX_PLAUSIBLE_HU` found in most slices is padding (-32768 outside the scan circle; air to the renderer) and
    is left out, and a slice of one value (padding where a resampled CT has no data) is no unit. ``vol``: the volume,
    with leading singleton axes (a channel) or none."""
    while vol.ndim > 3 and vol.shape[0] == 1:
        vol = vol[0]
    if vol.ndim != 3:
        return
    slices = np.moveaxis(vol, 2, 0)
    step = max(1, int(np.sqrt(slices.shape[1] * slices.shape[2] / 4096)))  # a share needs thousands of values
    sample = slices[:, ::step, ::step].reshape(slices.shape[0], -1).astype(np.float32)
    counted = np.ones(sample.shape, bool)
    lowest = float(sample.min())
    if lowest < -MAX_PLAUSIBLE_HU and (sample == lowest).any(axis=1).mean() >= 0.5:
        counted = sample != lowest  # in most slices: the scan circle's padding, not one slice's unit
    beyond = (np.abs(sample) > MAX_PLAUSIBLE_HU) & counted
    share = beyond.sum(axis=1) / np.maximum(counted.sum(axis=1), 1)
    share[sample.min(axis=1) == sample.max(axis=1)] = 0.0
    bad = np.flatnonzero(share >= SLICE_BEYOND_SHARE)
    if 0 < bad.size < share.size:  # every slice beyond is the whole volume's unit, told by the volume's check
        one = bad.size == 1
        raise CTInputError(
            f"{source}: {bad.size} of its {share.size} slices (along the last axis of shape {tuple(vol.shape)}; "
            f"{'index' if one else 'the first at index'} {bad[0]}) {'holds' if one else 'hold'} "
            f"{100 * share[bad[0]]:.0f} % of {'its' if one else 'their'} values beyond +-{MAX_PLAUSIBLE_HU:.0f}, "
            f"which no CT in HU reaches: {'that slice was' if one else 'those slices were'} exported with another "
            "rescale slope/intercept than the rest; export the series again or drop the slice")


#: at most this many distinct whole values, from 0, a third or more 0: a label map (TotalSegmentator has 117 classes); a CT in HU
#: holds air (-1000) and fat (-100), and even a crop inside an organ holds its noise's hundreds of values
LABEL_MAP_MAX_VALUES = 255


def _check_not_label_map(sample: np.ndarray, source: str) -> None:
    """Raise :class:`CTInputError` when a volume's values (``sample``) are a label map's: whole numbers from 0, at
    most :data:`LABEL_MAP_MAX_VALUES` of them, a third or more of them 0. Segmented, classified or rendered as a CT, a
    mask gave a case marked ok with no more than a warning."""
    if sample.size == 0 or float(sample.min()) != 0.0 or np.count_nonzero(sample == 0) < sample.size / 3:
        return
    values = np.unique(sample)
    if 2 <= values.size <= LABEL_MAP_MAX_VALUES and np.array_equal(values, np.round(values)):
        raise CTInputError(f"{source}: holds {values.size} distinct whole values from 0 to {float(values[-1]):.0f}, "
                           "a third or more of its voxels 0, and no air: a label map or mask (or a CT clipped at 0), "
                           "not a CT in HU; pass the CT in HU")


def check_not_air_only(hu, source: str) -> None:
    """Raise :class:`CTInputError` (one line naming ``source``) when a CT's values are not those of a body in HU: it
    holds nothing denser than air (every voxel at most :data:`MAX_AIR_ONLY_HU`) or one value throughout, or its median,
    or that of some of its slices, lies beyond +-:data:`MAX_PLAUSIBLE_HU` (another unit, a wrong rescale slope), they
    are a label map's (a mask given as the CT), or they are on another scale, raw scanner values (no rescale
    intercept), negated or shifted on some slices (:mod:`~unimiss_monai.data.hu_scale_checks`). ``hu``: any array or
    tensor of the volume, its values finite. The checks are here so that every caller (the DRR reader, the
    pretraining, classification and segmentation input checks) makes them all."""
    vol = _as_array(hu)
    a = vol.ravel(order="K")  # a view in memory order (see _flat)
    if not a.size:
        return
    sample = _sample(a)
    _check_not_beyond_hu(a, sample, source)
    if float(np.abs(sample).max()) > MAX_PLAUSIBLE_HU:  # only then can a slice lie beyond
        _check_slices_in_hu(vol, source)
    _check_not_label_map(sample, source)
    try:
        check_span(float(a.min()), float(a.max()), source)
        check_not_below_air(sample, source)
        check_not_unrescaled(sample, source)
        check_not_negated(sample, source)
        check_slice_levels(vol, source)
    except ValueError as err:
        raise CTInputError(str(err)) from None
    # one value throughout (an all-zero export): no body to render or train on, yet neither air nor beyond HU
    if float(sample.min()) == float(sample.max()) > MAX_AIR_ONLY_HU and float(a.min()) == float(a.max()):
        raise CTInputError(f"{source}: every voxel has the same value ({float(a[0]):g}), so it holds no body; check "
                           "the export (rescale slope/intercept, window) or drop the case")
    # a sample settles it for any volume with a body in it; only one the sample finds no tissue in is read whole
    if float(sample.max()) > MAX_AIR_ONLY_HU:
        return
    densest = float(a.max())
    if densest <= MAX_AIR_ONLY_HU:
        raise CTInputError(f"{source}: holds nothing denser than air (max {densest:.0f} HU); check the export (rescale "
                           "slope/intercept) or drop the case")


def label_value_problem(labels: np.ndarray) -> str | None:
    """Why a label volume stored as floating point cannot be read as labels (``"3 NaN or infinite voxels"``,
    ``"values that are not whole numbers (e.g. 1.5)"``), or None when every value is a whole number; integer volumes
    always pass. Read in the stored memory order."""
    if labels.dtype.kind != "f":
        return None
    values = labels.ravel(order="K")
    bad = int((~np.isfinite(values)).sum())
    if bad:
        return f"{bad} NaN or infinite voxels"
    fractional = values[values != np.round(values)]
    return f"values that are not whole numbers (e.g. {fractional[0]:g})" if fractional.size else None


def load_label_map(path: str | Path, ct_shape: tuple[int, ...], ct_affine: np.ndarray) -> np.ndarray:
    """Load a label map that lies on the CT's voxel grid; returns (X, Y, Z) int32.

    Raises:
        CTInputError: the file is missing/unreadable, holds values that are not whole numbers (NaN, or fractions from
            resampling with linear interpolation), or its grid (shape or affine) differs from the CT's.
    """
    path = Path(path)
    labels, affine = _load(path, "label map", None)  # as stored: a cast would truncate 1.5 to 1 and NaN to -2**31
    problem = label_value_problem(labels)
    if problem:
        raise CTInputError(f"{path}: label map holds {problem}, as after resampling with linear interpolation; "
                           f"resample it with nearest neighbour")
    labels = np.asarray(labels, dtype=np.int32)
    if tuple(labels.shape) != tuple(ct_shape):
        raise CTInputError(f"{path}: label map shape {tuple(labels.shape)} differs from the CT's {tuple(ct_shape)}; "
                           f"resample the labels onto the CT grid (nearest neighbour)")
    if not np.allclose(affine, ct_affine, atol=1e-2):
        raise CTInputError(f"{path}: label map affine differs from the CT's; resample the labels onto the CT grid")
    return labels  # int32, in the stored memory order like the CT
