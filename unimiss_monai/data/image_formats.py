"""The image file formats the project knows: which suffix of a file name is its format, which files a folder scan
takes as images, and what is wrong with a file of one of them that a reader could not read (empty, cut short, of
another format renamed).

One list serves every reader of a name (output names, case names, reports) and every folder scan, so that a format
one of them knows is never part of a name for another.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

__all__ = ["ARRAY_SUFFIXES", "DAMAGED_FILE_FIX", "IMAGE_SUFFIXES", "LABEL_MAP_STEMS", "NIFTI_SUFFIXES",
           "NO_GRID_SUFFIXES", "SCANNED_SUFFIXES", "cannot_list", "damaged_file_line", "dicom_files_in",
           "has_pixel_grid", "image_suffix", "is_dicom_file", "is_dicom_path", "is_label_map_folder",
           "is_label_map_name", "listing_problem", "preferred_sub_folder", "scan_images", "split_image_name",
           "unreadable_image_problem", "walk_folders"]

logger = logging.getLogger(__name__)

#: suffixes of the files MONAI's ``LoadImage`` reads (longest first: ``.nii.gz`` before ``.nii``); a suffix of this
#: list is the file's format, never part of its name
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".png", ".jpg", ".jpeg", ".dcm", ".nrrd", ".nhdr", ".mha", ".mhd", ".tif", ".tiff",
                  ".bmp", ".npy", ".npz")
#: numpy arrays: readable when a datalist names them, but a folder scan leaves them out (a folder of scans often
#: holds arrays that are not images)
ARRAY_SUFFIXES = (".npy", ".npz")
#: the files a folder scan takes as images
SCANNED_SUFFIXES = tuple(s for s in IMAGE_SUFFIXES if s not in ARRAY_SUFFIXES)
#: the files a CT folder scan takes as volumes (a DICOM series is a folder)
NIFTI_SUFFIXES = (".nii.gz", ".nii")
#: formats that record no pixel size MONAI reads: loaded with an identity affine, their distances are in pixels
NO_GRID_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".npy", ".npz")

#: endings of a file's stem that mark a label map or a segmentation beside its image (``ct01_label.nii.gz``,
#: ``ct01_labels.nii.gz``, this package's own ``ct01_seg.nii.gz``, 3D Slicer's ``ct01-label.nrrd`` and
#: ``Segmentation.seg.nrrd``), never an image to classify
LABEL_MAP_STEMS = ("_label", "_labels", "_seg", "-label", ".seg")


def image_suffix(name: str | os.PathLike, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> str:
    """The suffix of ``suffixes`` that ``name`` ends with (any letter case; ``""`` for none). A name that is only a
    suffix (``.nii``, a hidden file) has none."""
    lower = os.path.basename(str(name).rstrip("/\\")).lower()
    return next((s for s in suffixes if lower.endswith(s) and len(lower) > len(s)), "")


def has_pixel_grid(name: str | os.PathLike) -> bool:
    """Whether the image file ``name`` records where its pixels lie and how large they are, in mm (NIfTI, DICOM,
    MetaImage, NRRD): one of :data:`NO_GRID_SUFFIXES` is read with an identity affine, 1 mm pixels at the origin, which
    says nothing of its size in space, so its distances count in pixels and its grid is checked against no other."""
    return not image_suffix(name, NO_GRID_SUFFIXES)


def split_image_name(path: str | os.PathLike) -> tuple[str, str]:
    """``(stem, format)`` of an input: ``/d/x.nii.gz`` -> ``("x", "nii.gz")``. Only a suffix of
    :data:`IMAGE_SUFFIXES` is a format; other dots belong to the name (``ct.v2.nii.gz`` -> ``("ct.v2", "nii.gz")``, a
    DICOM series folder ``1.2.840.5`` -> ``("1.2.840.5", "")``)."""
    name = os.path.basename(str(path).rstrip("/\\"))
    suffix = image_suffix(name)
    return (name[: -len(suffix)], suffix[1:]) if suffix else (name, "")


def is_label_map_name(relative: str | os.PathLike) -> bool:
    """Whether a scanned file, by its path below the scanned folder, is a label map rather than an image: its stem
    ends with one of :data:`LABEL_MAP_STEMS`, or a folder on its way is a ``labels*`` folder (``labelsTr``, the
    Medical Segmentation Decathlon's layout)."""
    parts = os.path.normpath(str(relative)).split(os.sep)
    stem = split_image_name(parts[-1])[0].lower()
    return stem.endswith(LABEL_MAP_STEMS) or any(p.lower().startswith("labels") for p in parts[:-1])


def is_label_map_folder(relative: str | os.PathLike) -> bool:
    """Whether a folder, by its path below the scanned folder, holds label maps rather than images: its name reads as
    a label map's (``ct01_labels/``, a map kept as slices) or it is, or lies in, a ``labels*`` folder
    (``labelsTr/``)."""
    relative = Path(relative)
    return bool(relative.parts) and (is_label_map_name(relative) or is_label_map_name(relative / "slice"))


def is_dicom_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` starts as a DICOM file does (a 128-byte preamble, then ``DICM``): archives export radiographs
    with no suffix (``IM0001``) or with a UID for a name, which a suffix test misses."""
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False


def is_dicom_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a DICOM file of an image: ``*.dcm``, or a name without an image suffix (``IM0001``, a
    UID) whose file starts as a DICOM file does; a PNG or NIfTI is not opened to sniff. An export's ``DICOMDIR``, an
    index of the files beside it, is none: a folder holding one and no slice is no series."""
    name = Path(path).name
    if name.upper() == "DICOMDIR":
        return False
    return Path(path).suffix.lower() == ".dcm" or (not image_suffix(name) and is_dicom_file(path))


def dicom_files_in(folder: str | os.PathLike, names: Iterable[str] | None = None) -> Iterator[Path]:
    """The DICOM files (:func:`is_dicom_path`) of ``folder``, in name order, hidden files left out, one at a time: a
    caller that needs the first, or a few, opens no more files than that. ``names``: the folder's file names where the
    caller has listed them already (``os.walk``)."""
    folder = Path(folder)
    if names is None:
        names = (p.name for p in folder.iterdir() if p.is_file())
    return (folder / n for n in sorted(names) if not n.startswith(".") and is_dicom_path(folder / n))


def cannot_list(folder: str | os.PathLike, err: OSError) -> str:
    """One line: ``folder`` of the inputs cannot be listed, why, and the fix. Its images are unknown, so the folder
    stands in the run as an input of its own that fails with this line: the run ends non-zero, not done with them
    left out."""
    denied = err.errno in (errno.EACCES, errno.EPERM)
    fix = ("give this user read and search permission on it (chmod -R u+rX)" if denied
           else "check the disk or share it lies on")
    return (f"{folder}: cannot be listed ({err.strerror or err}), so its images were not read; {fix}, or move it out "
            "of the dataset folder")


def listing_problem(path: str | os.PathLike) -> str | None:
    """:func:`cannot_list`'s line when ``path`` is a folder that cannot be listed, else None."""
    if not os.path.isdir(path):
        return None
    try:
        os.listdir(path)
    except OSError as err:
        return cannot_list(path, err)
    return None


#: the fix for an image file that is damaged: the copy (or the export) is at fault, not the reader
DAMAGED_FILE_FIX = ("replace it with an intact copy: copy it again from its source (check that the copy is complete) "
                    "or export it again")


def _nifti_damage(path: Path, data: bytes) -> str | None:
    """What makes the NIfTI file ``path`` (its bytes ``data``) unreadable (not gzip-compressed, cut short, no NIfTI
    header, fewer bytes than its header declares), or None when none of that is wrong with it."""
    import gzip
    import io
    import zlib

    import nibabel as nib
    import numpy as np

    if path.name.lower().endswith(".gz"):
        if data[:2] != b"\x1f\x8b":
            return "it is not gzip-compressed, as a .nii.gz is (a file of another kind under this name)"
        try:
            data = gzip.decompress(data)
        except EOFError:
            return "it is cut short (its compressed data ends early)"
        except (OSError, zlib.error):
            return "its compressed data is damaged"
    sizes = {int.from_bytes(data[:4], order) for order in ("little", "big")}
    header_class = nib.Nifti2Header if 540 in sizes else nib.Nifti1Header if 348 in sizes else None
    if header_class is None or len(data) < (540 if 540 in sizes else 348):
        return "it holds no NIfTI header"
    try:
        header = header_class.from_fileobj(io.BytesIO(data))
        voxels = int(np.prod(header.get_data_shape())) * header.get_data_dtype().itemsize
        needed = int(header.get_data_offset()) + voxels
    except Exception:  # noqa: BLE001 - nibabel refuses a header in many ways: it is damaged
        return "its NIfTI header is damaged"
    if len(data) < needed:
        return f"it is cut short (it holds {len(data)} bytes where its header declares {needed})"
    return None


#: the first bytes of each picture format: a file that starts otherwise is not of the format its name says
_PICTURE_MAGIC = {".png": (b"\x89PNG",), ".jpg": (b"\xff\xd8\xff",), ".jpeg": (b"\xff\xd8\xff",),
                  ".tif": (b"II*\x00", b"MM\x00*"), ".tiff": (b"II*\x00", b"MM\x00*"), ".bmp": (b"BM",)}


def _picture_damage(path: Path, suffix: str) -> str | None:
    """What makes the picture ``path`` (PNG, JPEG, TIFF, BMP, by its ``suffix``) unreadable to Pillow (cut short, not
    of its format), or None when Pillow decodes it or it is of its format and whole as far as can be told (a TIFF of
    float colour pixels, which Pillow does not take)."""
    from PIL import Image, UnidentifiedImageError

    with open(path, "rb") as f:
        head = f.read(8)
    if not head.startswith(_PICTURE_MAGIC[suffix]):
        return "it is no image of a known format (a file of another kind under this name)"
    try:
        with Image.open(path) as img:
            img.load()
    except UnidentifiedImageError:
        return None  # of its format by its first bytes: a kind of it Pillow does not read, not a damaged file
    except (SyntaxError, ValueError, OSError) as err:
        return "it is cut short" if "truncated" in str(err) else "its image data is damaged"
    return None


def unreadable_image_problem(path: str | os.PathLike) -> str | None:
    """One line naming the image file ``path``, which a reader could not read, saying what is wrong with it (empty,
    cut short, of another format than its name says, damaged) and the fix, or None where the file is whole as far as
    can be told (a NIfTI, DICOM or picture a reader failed on for another reason), cannot be read by this user, or is
    of a format not looked into (MetaImage, NRRD, arrays: only their emptiness is). A reader's own words name neither
    the file nor the fix (``Compressed file ended before the end-of-stream marker was reached``). Never raises: a
    diagnosis that fails leaves the reader's own reason."""
    from unimiss_monai.data.dicom_checks import dicom_file_damage  # it imports this module

    path = Path(path)
    try:
        if not os.access(path, os.R_OK):  # a permission to give, not a copy to replace: the reader's error says it
            return None
        suffix = image_suffix(path)
        dicom = is_dicom_path(path)
        kind = "NIfTI" if suffix in NIFTI_SUFFIXES else "DICOM" if dicom else suffix[1:].upper() or "image"
        if path.stat().st_size == 0:
            damage = "it is empty (0 bytes)"
        elif suffix in NIFTI_SUFFIXES:
            data = path.read_bytes()
            if suffix == ".nii.gz" and data[:2] != b"\x1f\x8b" and _nifti_damage(path.with_suffix(""), data) is None:
                return f"{path}: is a whole NIfTI file, not gzip-compressed as its name says: rename it to .nii"
            damage = _nifti_damage(path, data)
        elif dicom:  # said as a series check says it of one slice: "is no readable DICOM file (...)", "holds 960 ..."
            damage = dicom_file_damage(str(path))
            return f"{path}: {damage}; {DAMAGED_FILE_FIX}" if damage else None
        elif suffix in _PICTURE_MAGIC:
            damage = _picture_damage(path, suffix)
        else:
            damage = None
    except Exception:  # noqa: BLE001 - the reader's own reason stands where the file cannot be looked into
        return None
    return f"{path}: is not a readable {kind} file: {damage}; {DAMAGED_FILE_FIX}" if damage else None


def damaged_file_line(paths: Iterable) -> str | None:
    """The :func:`unreadable_image_problem` line of the first of ``paths`` (an item's values: those that are not a
    file path are passed over) that is a damaged file, or None: which of a case's files (its image, its label) a
    failed load was on, said with the fix."""
    files = (p for p in paths if isinstance(p, (str, os.PathLike)) and os.path.isfile(p))
    return next((line for f in files if (line := unreadable_image_problem(f))), None)


def walk_folders(root: Path, onerror: Callable[[OSError], None] | None = None) -> Iterator[tuple[Path, list, list]]:
    """``os.walk`` of ``root`` top-down, sorted, into linked folders too (a series kept elsewhere and linked in is a
    series of the folder) but each real folder once, and not into hidden folders; prune ``dirs`` to skip some."""
    seen = set()
    for here, dirs, files in os.walk(root, onerror=onerror, followlinks=True):
        real = os.path.realpath(here)
        if real in seen:  # a link back up the tree, or a second link to one folder
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        yield Path(here), dirs, files


def scan_images(folder: str | os.PathLike, suffixes: tuple[str, ...] = SCANNED_SUFFIXES, recursive: bool = False,
                skip_stems: tuple[str, ...] = (), fix: str = "", accounted: Iterable[os.PathLike] = (),
                skip_folders: Iterable[os.PathLike] = ()) -> list[Path]:
    """The image files of ``folder`` (with ``recursive``, of its sub-folders too), sorted: a name ending with one of
    ``suffixes``, or, when ``suffixes`` has ``.dcm``, a DICOM file of any name (:func:`is_dicom_file`). Hidden image
    files, label maps (:func:`is_label_map_name`) and names whose stem ends with one of ``skip_stems`` (a bundle's own
    outputs) are left out, and the count of each is logged, and links to missing files are warned about, so that a
    scan never drops a file unsaid; ``fix`` is
    the caller's way to have image files of other formats read, added to their warning. Files in ``accounted``
    are left out without a word: the caller reads them another way (a DICOM series folder) or has told the user why,
    more precisely than this warning could. Sub-folders (``recursive``) are walked as :func:`walk_folders` does:
    linked ones too, hidden ones and ``skip_folders`` not; one that cannot be listed is warned about and listed itself,
    an input that fails in one line (:func:`cannot_list`), unless ``accounted`` has it."""
    root = Path(folder)
    accounted = {Path(p) for p in accounted}
    found, labels, own, other, hidden, broken = [], [], [], {}, [], []
    if recursive:
        skipped = {Path(p) for p in skip_folders}
        entries = []

        def unlistable(err: OSError) -> None:
            folder = Path(err.filename)
            if is_label_map_folder(folder.relative_to(root)):  # a label-map folder: never read, so no input
                labels.append(folder.relative_to(root))
            elif folder not in accounted:
                logger.warning("%s", cannot_list(folder, err))
                found.append(folder)

        for here, dirs, files in walk_folders(root, unlistable):
            dirs[:] = [d for d in dirs if here / d not in skipped]
            entries += [here / f for f in files]
    else:
        entries = list(root.iterdir())
    for path in sorted(entries):
        if path in accounted:
            continue
        if path.name.startswith("."):
            if image_suffix(path.name, suffixes):  # a hidden copy (macOS writes ._x.png beside x.png on a USB disk)
                hidden.append(path.relative_to(root))
            continue
        if not path.is_file():
            if path.is_symlink() and not path.exists():  # a link to a file that is gone: no input, and said so
                broken.append(path.relative_to(root))
            continue
        if not (image_suffix(path.name, suffixes) or (".dcm" in suffixes and not image_suffix(path.name)
                                                      and is_dicom_file(path))):
            kind = image_suffix(path.name, SCANNED_SUFFIXES)
            if kind and not is_label_map_name(path.relative_to(root)):
                other[kind] = other.get(kind, 0) + 1
            continue
        relative = path.relative_to(root)
        if split_image_name(path.name)[0].endswith(skip_stems):
            own.append(relative)
        elif is_label_map_name(relative):
            labels.append(relative)
        else:
            found.append(path)
    found.sort()
    if broken:
        logger.warning("%s: %d link(s) to missing files left out (%s)", root, len(broken),
                       ", ".join(map(str, broken[:3])) + (", ..." if len(broken) > 3 else ""))
    for group, what in ((labels, "label map(s)"), (own, "output(s) of this bundle"), (hidden, "hidden file(s)")):
        if group:
            logger.info("%s: %d %s left out, not taken as images (%s)", root, len(group), what,
                        ", ".join(map(str, group[:3])) + (", ..." if len(group) > 3 else ""))
    if other:  # an image format the caller does not read: said, since the user may expect those files read
        logger.warning("%s: %d image file(s) of formats not read here left out (%s); the formats read are %s%s",
                       root, sum(other.values()), ", ".join(f"{k}: {n}" for k, n in sorted(other.items())),
                       ", ".join(suffixes), f"; {fix}" if fix else "")
    return found


def preferred_sub_folder(folder: str | os.PathLike, name: str, suffixes: tuple[str, ...] = SCANNED_SUFFIXES,
                         skip_stems: tuple[str, ...] = (), say_left_out: bool = True) -> Path:
    """``folder/name`` when it is a folder (a ``samples`` layout's images to run on: ``inference/``, ``images/``),
    warning about the images elsewhere under ``folder``, which are then left out (``say_left_out``: a ``samples``
    data set's other folders are its training data, nothing to say); else ``folder``."""
    root = Path(folder)
    sub = root / name
    if not sub.is_dir() or not say_left_out:
        return sub if sub.is_dir() else root
    beside = scan_images(root, suffixes, recursive=True, skip_stems=skip_stems, skip_folders=[sub])
    if beside:  # a user's images beside the sub-folder: say they are not the ones run on
        logger.warning("%s: running on the images in %s only; %d elsewhere in the folder left out (%s)", root, sub,
                       len(beside), ", ".join(str(p.relative_to(root)) for p in beside[:3])
                       + (", ..." if len(beside) > 3 else ""))
    return sub
