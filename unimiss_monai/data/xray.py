"""2D radiograph IO: read any radiograph (PNG, DICOM, 2D NIfTI) as one grey channel, list a folder of them, give
multi-label masks the background channel the segmentation report expects, and write masks over a radiograph as PNG.

Axis convention: MONAI's readers put the image's x (column) axis first, so a loaded radiograph is ``(C, X, Y)``.
Overlays of predicted masks are written here too (:func:`write_overlay_png`), so that the post-processing transform
``SaveOverlayPNGd`` can use them; the transforms built on this module live in :mod:`unimiss_monai.transforms.xray`
(``AsGreyRadiographd``, ``CheckMultiLabelMaskd``) and :mod:`unimiss_monai.transforms.io` (``SaveOverlayPNGd``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import LoadImage

from unimiss_monai.conventions import grey_levels, structure_colour
from unimiss_monai.data.case_names import named_inputs
from unimiss_monai.data.dicom_checks import dicom_header, dicom_image_problem, dicom_spacing_problem
from unimiss_monai.data.dicom_pixel_size import with_header_pixel_size
from unimiss_monai.data.drr_run_folder import drr_run_images
from unimiss_monai.data.image_formats import (
    NIFTI_SUFFIXES,
    SCANNED_SUFFIXES,
    listing_problem,
    preferred_sub_folder,
    scan_images,
    unreadable_image_problem,
)
from unimiss_monai.data.listed_inputs import listed_images
from unimiss_monai.data.samples import held_out_images
from unimiss_monai.data.writers import save_png
from unimiss_monai.utils.lazy import moved_names
from unimiss_monai.utils.once import first_time

__all__ = [
    "BT601",
    "MAX_LEGEND_SHARE",
    "MIN_LEGEND_FONT_PX",
    "OVERLAY_COLOURS",
    "dicom_modality",
    "drop_trailing_singletons",
    "grey_radiograph",
    "list_radiographs",
    "load_radiograph",
    "needs_inversion",
    "overlay_rgb",
    "source_name",
    "with_background_channel",
    "write_overlay_png",
]

logger = logging.getLogger(__name__)

#: DICOM modalities whose single images are slices through the body, never projections: no radiograph
CROSS_SECTION_MODALITIES = ("CT", "MR", "PT")
# ITU-R BT.601 luma weights of R, G, B
BT601 = (0.299, 0.587, 0.114)


def source_name(img) -> str:
    """The file an image was read from (its MetaTensor's ``filename_or_obj``), or ``"<array>"``."""
    meta = getattr(img, "meta", {}) or {}
    return str(meta.get("filename_or_obj", "") or "<array>")


def drop_trailing_singletons(img: torch.Tensor) -> torch.Tensor:
    """``(C, X, Y, 1[, 1])`` -> ``(C, X, Y)``, with the metadata's ``spatial_shape`` cut to match.

    ITK reads a DICOM frame (and NiBabel a NIfTI) as ``(X, Y, 1)``; left at three entries on a 2D tensor,
    ``spatial_shape`` makes MONAI's ``SaveImage`` take the prediction's channel axis for a spatial one, and it keeps that
    choice for every later file it writes. The 4x4 affine stays, as on any 2D MetaTensor.
    """
    dropped = False
    while img.ndim > 3 and img.shape[-1] == 1:
        img, dropped = img[..., 0], True
    if dropped and isinstance(img, MetaTensor) and "spatial_shape" in img.meta:
        img.meta["spatial_shape"] = np.asarray(img.shape[1:], dtype=np.int64)
    return img


def _dicom_value(meta: Mapping, tag: str, keyword: str, itk_key: str | None = None) -> str:
    """The value of the DICOM element ``tag`` (``"00280004"``, ``keyword`` ``PhotometricInterpretation``) of an image,
    upper case: from its metadata (ITK's ``itk_key``, ``"0028|0004"``, where ITK read it: ITK names every tag of the
    file), or from its file's header where PydicomReader left it out; ``""`` for none, or a file that is no DICOM (a
    PNG is not opened to sniff). Several values (``ImageType``) come joined by ``\\``."""
    if itk_key is not None and any("|" in str(k) for k in meta):
        return str(meta.get(itk_key, "") or "").strip().upper()
    value = meta.get(tag)
    if value is None:
        # the header all the checks of this file read once; None for a PNG or a header pydicom cannot parse, where
        # the reader's error says it
        ds = dicom_header(str(meta.get("filename_or_obj", "") or ""))
        try:
            value = ds.get(keyword, "") if ds is not None else ""
        except Exception:  # noqa: BLE001 - an element pydicom cannot parse: none to go by
            return ""
    if isinstance(value, Mapping):
        value = "\\".join(map(str, value.get("Value") or []))
    elif isinstance(value, Sequence) and not isinstance(value, str):  # a list, or pydicom's MultiValue
        value = "\\".join(map(str, value))
    return str(value or "").strip().upper()


def needs_inversion(meta: Mapping) -> bool:
    """Whether a radiograph with this metadata holds DICOM ``MONOCHROME1`` pixels (bright = low attenuation)."""
    # ITK (GDCM), MONAI's default DICOM reader, already returns MONOCHROME1 pixels as MONOCHROME2 and names tags
    # "gggg|eeee"; PydicomReader returns the stored pixels and may drop the tag, so read it from the file then
    if any("|" in str(k) for k in meta):
        return False
    return _dicom_value(meta, "00280004", "PhotometricInterpretation") == "MONOCHROME1"


def dicom_modality(meta: Mapping) -> str:
    """The DICOM ``Modality`` of an image with this metadata (``"DX"``, ``"CT"``), upper case; ``""`` for none (a
    PNG, a NIfTI). ITK names every tag of the file ``gggg|eeee``; PydicomReader keeps only some."""
    return _dicom_value(meta, "00080060", "Modality", "0008|0060")


def grey_radiograph(img: torch.Tensor, invert_monochrome1: bool = True, luminance: bool = False) -> torch.Tensor:
    """A loaded, channel-first radiograph as one grey channel and two spatial dims: ``(1, X, Y)``.

    - trailing singleton spatial dims (a DICOM frame ``(C, X, Y, 1)``, a NIfTI ``(X, Y, 1)``) are dropped, from the
      metadata's ``spatial_shape`` too;
    - a real 3D volume (more than two spatial dims longer than 1) is refused: this handles projection images only;
    - RGB/RGBA images whose colour channels are equal (a grey PNG saved as colour) keep one channel; with
      ``luminance=True`` other RGB/RGBA images become their ITU-R BT.601 luminance ``0.299 R + 0.587 G + 0.114 B``
      (alpha dropped); any other channel count is refused;
    - a DICOM whose PixelSpacing or ImagerPixelSpacing is negative or partly zero is refused (ITK reads it as 1 mm;
      all zeros, an uncalibrated detector, is read as 1 mm like a missing one); one whose reader left 1 mm where its
      header gives a size (a CR with only PixelSpacing) takes the header's (:func:`~unimiss_monai.data.
      dicom_pixel_size.with_header_pixel_size`);
    - DICOM ``MONOCHROME1`` (bright = low attenuation) read by ``PydicomReader`` is inverted so that dense structures
      are bright, as in ``MONOCHROME2``, PNG exports and DRRs (``ITKReader``, MONAI's default, has already done so).

    Args:
        img: the loaded radiograph, channel first.
        invert_monochrome1: invert ``PydicomReader`` images whose metadata says ``MONOCHROME1``. Defaults to True.
        luminance: convert colour RGB/RGBA images to grey by luminance instead of refusing them (e.g. DRRs or X-rays
            exported through a colour pipeline). Defaults to False.

    Raises:
        ValueError: naming the file, for a 3D volume, an unexpected channel count or a DICOM whose header gives a
            negative pixel size.
    """
    name = source_name(img)
    if img.ndim < 3:
        raise ValueError(f"{name}: expected a channel-first radiograph (C, X, Y), got shape {tuple(img.shape)}; load it with ensure_channel_first=True")
    img = drop_trailing_singletons(img)
    if img.ndim > 3:
        spatial = tuple(img.shape[1:])
        problem = dicom_image_problem(name)  # a multi-frame DICOM reads as a volume: not told to render a DRR
        if problem:
            raise ValueError(f"{name}: {problem}")
        raise ValueError(f"{name}: got a 3D volume of spatial shape {spatial}; this 2D X-ray model takes one projection image (PNG, DICOM or 2D NIfTI) — render a DRR from a CT first")
    meta = getattr(img, "meta", {}) or {}
    modality = dicom_modality(meta)
    # one slice of a CT read as a chest X-ray: a cross-section, segmented as garbage. A CT's scout (its ImageType
    # LOCALIZER) is a projection, an X-ray, and so is an NM planar image's kind: neither is refused
    if modality in CROSS_SECTION_MODALITIES and "LOCALIZER" not in _dicom_value(meta, "00080008", "ImageType",
                                                                                "0008|0008"):
        raise ValueError(f"{name}: is one slice of a {modality} volume (DICOM Modality {modality}), a cross-section, "
                         "not a projection radiograph; this 2D X-ray model takes X-rays (CR, DX) and DRRs, which the "
                         "DRR bundle renders from a CT's whole series")
    if problem := dicom_spacing_problem(name):  # ITK reads a negative pixel size as 1 mm, unsaid
        raise ValueError(f"{name}: {problem}")
    img = with_header_pixel_size(img, name)  # ITK reads a CR with only PixelSpacing at 1 mm
    channels = img.shape[0]
    if channels in (3, 4) and torch.equal(img[0], img[1]) and torch.equal(img[0], img[2]):
        img = img[:1]
    elif channels in (3, 4) and luminance:
        rgb = img[:3] if img.is_floating_point() else img[:3].float()
        weights = torch.tensor(BT601, dtype=rgb.dtype, device=rgb.device).view(3, 1, 1)
        img = (rgb * weights).sum(0, keepdim=True)
    elif channels != 1:
        # --luminance is one of the settings a trained model records: at inference it fits only a model trained so
        fix = "convert it to greyscale" + ("" if luminance or channels not in (3, 4) else
                                           ", or pass --luminance true, which converts colour by luminance (a trained "
                                           "model takes it only when it was trained with it too)")
        if str(name).lower().endswith(NIFTI_SUFFIXES):  # NIfTI keeps colour as its own data type, rarely used
            fix = "a NIfTI's 4th axis (frames, time points) is read as its channels: save the one frame as a 2D image"
        raise ValueError(f"{name}: expected a grey radiograph (1 channel, or RGB with equal channels), got {channels} channels of shape {tuple(img.shape[1:])}; {fix}")
    meta = getattr(img, "meta", {}) or {}
    if invert_monochrome1 and needs_inversion(meta):
        img = img.max() + img.min() - img
    return img


def load_radiograph(path: str | os.PathLike) -> MetaTensor:
    """Load a PNG, DICOM or 2D NIfTI radiograph as a float ``(1, X, Y)`` MetaTensor (see :func:`grey_radiograph`).

    Raises:
        FileNotFoundError: there is no such file.
        ValueError: one line naming the file and the fix, for a damaged file (empty, cut short, of another format than
            its name says; :func:`~unimiss_monai.data.image_formats.unreadable_image_problem`) and for every image
            :func:`grey_radiograph` refuses.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"radiograph {str(path)!r} does not exist")
    try:
        img = LoadImage(image_only=True, ensure_channel_first=True, dtype=np.float32)(str(path))
    except Exception:  # a damaged file: the reader's words (``image file is truncated``) name no fix
        if path.is_dir() or not (damage := unreadable_image_problem(path)):
            raise
        raise ValueError(damage) from None  # the run reports an error's root cause: this line, not the reader's
    return grey_radiograph(img)


def list_radiographs(folder: str | os.PathLike) -> list[dict[str, str]]:
    """``[{"image": path}]`` for every radiograph under ``folder``, sub-folders included (PNG, JPEG, DICOM of any name,
    2D NIfTI, ...; see :func:`~unimiss_monai.data.image_formats.scan_images`): under its ``inference/`` sub-folder when
    there is one (the ``cxr_segmentation`` sample layout; the others are said to be left out), else under the folder
    itself; of a DRR generation run's output, the DRRs its ``datalist.json`` lists
    (:func:`~unimiss_monai.data.drr_run_folder.drr_run_images`), not their previews; of another folder with a
    ``datalist.json``, the images of its first non-empty ``testing``, ``test``, ``validation`` or ``training`` list
    (:func:`~unimiss_monai.data.listed_inputs.listed_images`). A radiograph in a sub-folder is
    named by its path below the folder (:func:`~unimiss_monai.data.case_names.named_inputs`). Label maps and this
    bundle's own ``*_overlay.png`` outputs are left out; what is left out is logged."""
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"dataset_dir {str(folder)!r} is not a folder of radiographs (PNG, DICOM or 2D NIfTI)")
    if problem := listing_problem(folder):  # refused before anything is loaded, as the CT bundles refuse it
        raise ValueError(problem)
    drrs = drr_run_images(folder)  # not its previews and contact sheets, which a scan would take as radiographs too
    if drrs is not None:
        return named_inputs(Path(folder), drrs)
    # a samples data set's images/ and labels/ are its training data: its inference/ is the one to run on, unsaid
    samples_set = held_out_images(folder) is not None
    if not samples_set and (listed := listed_images(folder)) is not None:  # a fine-tune data set: its test images
        return listed
    root = preferred_sub_folder(folder, "inference", SCANNED_SUFFIXES, ("_overlay",), say_left_out=not samples_set)
    if samples_set and root != Path(folder):  # said as a fine-tune folder's datalist list is: what is run on
        logger.info("%s is a samples data set: its radiographs to run on are those in %s (its test split is scored "
                    "by evaluate.json)", folder, root)
    # sub-folders too (an archive's PATIENT/STUDY/IMAGE.dcm), as the classification bundles read a folder
    files = scan_images(root, SCANNED_SUFFIXES, recursive=True, skip_stems=("_overlay",))
    if not files:
        raise FileNotFoundError(f"{root}: no radiographs found (looked for {', '.join(SCANNED_SUFFIXES)} and "
                                "DICOM files of any name)")
    return named_inputs(root, files)  # alike file names in sub-folders are told apart by their paths


def with_background_channel(items, keys: Sequence[str] = ("pred", "label")):
    """Prepend ``1 - any(structure)`` to the multi-label masks of each item, so reports that expect a background
    channel 0 (:class:`unimiss_monai.handlers.SegmentationReport`) score each overlapping structure on its own channel."""
    def one(item):
        out = dict(item)
        for key in keys:
            mask = item[key]
            background = 1 - (torch.as_tensor(mask) > 0.5).any(0, keepdim=True).to(torch.as_tensor(mask).dtype)
            out[key] = torch.cat([background, mask]) if not isinstance(mask, MetaTensor) else MetaTensor(
                torch.cat([background, mask.as_tensor()]), meta={**mask.meta, "affine": mask.affine})
        return out

    return [one(i) for i in items] if isinstance(items, list) else one(items)


# distinguishable on a grey radiograph: red, green, blue, yellow, magenta, cyan, orange, violet
OVERLAY_COLOURS: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25),
    (240, 50, 230), (70, 240, 240), (245, 130, 48), (145, 30, 180),
)


def overlay_rgb(image: np.ndarray | torch.Tensor, masks: np.ndarray | torch.Tensor, alpha: float = 0.4, colours: Sequence[tuple[int, int, int]] = OVERLAY_COLOURS) -> np.ndarray:
    """Blend binary masks onto a grey image.

    Args:
        image: ``(X, Y)`` or ``(C, X, Y)`` (channel 0 is shown), any range (scaled by its 1st/99th percentiles).
        masks: ``(S, X, Y)`` binary masks, one per structure; overlaps blend both colours.
        alpha: opacity of the mask colours. Defaults to 0.4.
        colours: one RGB colour per structure (cycled).

    Returns:
        ``(Y, X, 3)`` uint8 RGB array, rows x columns as an image viewer shows it.
    """
    image = np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image, dtype=np.float32)
    masks = np.asarray(masks.detach().cpu() if isinstance(masks, torch.Tensor) else masks) > 0.5
    if image.ndim == 3:
        image = image[0]
    if masks.ndim == 2:
        masks = masks[None]
    if masks.shape[1:] != image.shape:
        raise ValueError(f"overlay: masks of size {masks.shape[1:]} do not match the image size {image.shape}")
    rgb = np.repeat(grey_levels(image)[..., None] * 255.0, 3, axis=-1)
    for i, mask in enumerate(masks):
        colour = np.asarray(colours[i % len(colours)], dtype=np.float32)
        rgb[mask] = (1 - alpha) * rgb[mask] + alpha * colour
    return np.ascontiguousarray(np.clip(rgb, 0, 255).astype(np.uint8).transpose(1, 0, 2))


#: the most of an overlay picture its legend may cover: over a smaller picture (a thumbnail DRR) it is left out
MAX_LEGEND_SHARE = 0.25
#: the smallest legend font (px): smaller, PIL's letters run together
MIN_LEGEND_FONT_PX = 7
#: the topic of :mod:`unimiss_monai.utils.once` under which the output folders whose run was told that a legend was
#: left out are kept: once per folder in a run, not once per picture. The overlays are written by the main process (a
#: post-processing step), never by a data-loading worker; ranks pool the topic after a dealt-out check, which is right
#: too: they write into one output folder, so what one said of it the others need not say again
LEGEND_LEFT_OUT = "overlay legend left out"


def write_overlay_png(path: str | os.PathLike, image, masks, names: Sequence[str] = (), alpha: float = 0.4) -> str:
    """Write :func:`overlay_rgb` of ``image`` ``(X, Y)``/``(C, X, Y)`` and ``masks`` ``(S, X, Y)`` to ``path`` as a PNG,
    with a colour legend of ``names`` in the corner that covers the fewest masked pixels (top-left when several
    cover none; written atomically). Named structures take their colour of every picture
    (:func:`unimiss_monai.conventions.structure_colour`); unnamed ones :data:`OVERLAY_COLOURS`. The PNG keeps the
    image's size: on a small image the legend shrinks, to a :data:`MIN_LEGEND_FONT_PX` font, and where it would still
    cover more than :data:`MAX_LEGEND_SHARE` of the picture it is left out, which the log says once per folder."""
    from PIL import Image, ImageDraw, ImageFont

    colours = [structure_colour(str(n)) for n in names] + list(OVERLAY_COLOURS)  # unnamed masks: the cycle
    picture = Image.fromarray(overlay_rgb(image, masks, alpha, colours))
    draw = ImageDraw.Draw(picture)
    # the legend grows with the picture (12 px rows from 400 to 800 px, 48 px on a 1841 x 1955 radiograph) and
    # shrinks below 400 px down to its smallest font; each name is written white on black, and each swatch
    # outlined, so both show on bright bone and on any colour
    k = _legend_scale(min(picture.size))
    font = ImageFont.load_default(size=round(10 * k))
    width = round(18 * k) + max((draw.textbbox((0, 0), str(n), font=font)[2] for n in names), default=0)
    height = round(12 * k * len(names) + 4 * k)
    if names and width * height > MAX_LEGEND_SHARE * picture.size[0] * picture.size[1]:
        _say_legend_left_out(Path(path), names, picture.size)
        names = ()
    left, top0 = _legend_corner(np.asarray(masks) > 0.5, width, height, picture.size) if names else (0, 0)
    for i, label in enumerate(names):
        top = top0 + 12 * k * i
        draw.rectangle(tuple(round(v) for v in (left + 4 * k, top + 4 * k, left + 12 * k, top + 12 * k)),
                       fill=tuple(colours[i % len(colours)]), outline=(0, 0, 0))
        at = (round(left + 16 * k), round(top + 2 * k))
        draw.rectangle(draw.textbbox(at, str(label), font=font), fill=(0, 0, 0))
        draw.text(at, str(label), fill=(255, 255, 255), font=font)
    return str(save_png(np.asarray(picture), path))


def _legend_scale(side: int) -> float:
    """The legend's size on a picture whose shorter side is ``side`` px, as a multiple of its 10 px font: whole
    multiples from 400 px up (as the legend always was there), below it in step with the picture, down to
    :data:`MIN_LEGEND_FONT_PX`."""
    if side >= 400:
        return float(side // 400)
    return max(MIN_LEGEND_FONT_PX / 10, side / 400)


def _say_legend_left_out(path: Path, names: Sequence[str], size: tuple[int, int]) -> None:
    """Log, once per output folder, that the overlays of ``names`` there have no legend, with the colour key."""
    if not first_time(LEGEND_LEFT_OUT, str(path.parent.resolve())):
        return
    key = ", ".join(f"{n} #{''.join(f'{c:02x}' for c in structure_colour(str(n)))}" for n in names)
    logger.warning("%s: its overlay of %d x %d pixels is too small for a legend (it would cover over %d%% of it), "
                   "so the overlays here that small have none; each structure has its colour of every picture of "
                   "this project (unimiss_monai.conventions.STRUCTURE_COLOURS, the report's legends): %s", path,
                   size[0], size[1], round(100 * MAX_LEGEND_SHARE), key)


def _legend_corner(masks: np.ndarray, width: int, height: int, size: tuple[int, int]) -> tuple[int, int]:
    """``(left, top)`` of a ``width`` x ``height`` legend in the corner of a ``size`` (W, H) picture under which the
    ``(S, X, Y)`` masks hold the fewest pixels: at the top-left it would cover the right lung's apex of every
    radiograph whose lungs reach the top of the picture."""
    union = masks.reshape(-1, *masks.shape[-2:]).any(0) if masks.size else np.zeros(size, bool)  # (X, Y) = (W, H)
    w, h = min(width, size[0]), min(height, size[1])
    corners = [(0, 0), (size[0] - w, 0), (0, size[1] - h), (size[0] - w, size[1] - h)]
    return min(corners, key=lambda c: int(union[c[0]:c[0] + w, c[1]:c[1] + h].sum()))  # first of equals: top-left


_XRAY, _IO = "unimiss_monai.transforms.xray", "unimiss_monai.transforms.io"
# moved names keep working for one release, with a DeprecationWarning naming the new place
__getattr__ = moved_names(__name__, {
    "AsGreyRadiograph": _XRAY, "AsGreyRadiographd": _XRAY, "AsGreyRadiographD": _XRAY, "AsGreyRadiographDict": _XRAY,
    "CheckMultiLabelMaskd": _XRAY, "CheckMultiLabelMaskD": _XRAY, "CheckMultiLabelMaskDict": _XRAY,
    "SaveOverlayPNGd": _IO, "SaveOverlayPNGD": _IO, "SaveOverlayPNGDict": _IO,
    "SkipFailedd": "unimiss_monai.transforms.utility",
    "InferenceSummary": "unimiss_monai.handlers.inference_summary",
})
