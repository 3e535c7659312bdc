"""2D radiograph helpers: bring any loaded radiograph (PNG, DICOM, 2D NIfTI) to one grey channel, check multi-label
masks against their image, and write PNG overlays of 2D predictions.

Axis convention: MONAI's readers put the image's x (column) axis first, so a loaded radiograph is ``(C, X, Y)``; the
PNG writer here transposes back to rows x columns.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import LoadImage, MapTransform, Transform

from unimiss_monai.data.writers import atomic_path
from unimiss_monai.transforms.utility import CheckImage

__all__ = [
    "AsGreyRadiograph",
    "AsGreyRadiographd",
    "AsGreyRadiographD",
    "AsGreyRadiographDict",
    "CheckMultiLabelMaskd",
    "CheckMultiLabelMaskD",
    "CheckMultiLabelMaskDict",
    "SaveOverlayPNGd",
    "SaveOverlayPNGD",
    "SaveOverlayPNGDict",
    "InferenceSummary",
    "SkipFailedd",
    "list_radiographs",
    "load_radiograph",
    "with_background_channel",
    "overlay_rgb",
    "write_overlay_png",
    "OVERLAY_COLOURS",
]

# distinguishable on a grey radiograph: red, green, blue, yellow, magenta, cyan, orange, violet
OVERLAY_COLOURS: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25),
    (240, 50, 230), (70, 240, 240), (245, 130, 48), (145, 30, 180),
)


def _source(img) -> str:
    meta = getattr(img, "meta", {}) or {}
    return str(meta.get("filename_or_obj", "") or "<array>")


def _drop_trailing_singletons(img: torch.Tensor) -> torch.Tensor:
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


def _needs_inversion(meta: Mapping) -> bool:
    # ITK (GDCM), MONAI's default DICOM reader, already returns MONOCHROME1 pixels as MONOCHROME2 and names tags
    # "gggg|eeee"; PydicomReader returns the stored pixels and may drop the tag, so read it from the file then
    if any("|" in str(k) for k in meta):
        return False
    value = meta.get("00280004")
    if value is None:
        name = str(meta.get("filename_or_obj", "") or "")
        if not name or not os.path.isfile(name):
            return False
        try:
            import pydicom

            value = pydicom.dcmread(name, stop_before_pixels=True, specific_tags=["PhotometricInterpretation"]).get("PhotometricInterpretation", "")
        except Exception:  # not a DICOM file
            return False
    if isinstance(value, Mapping):
        value = (value.get("Value") or [""])[0]
    return str(value or "").strip().upper() == "MONOCHROME1"


class AsGreyRadiograph(Transform):
    """Bring a loaded, channel-first radiograph to one grey channel and two spatial dims: ``(1, X, Y)``.

    - trailing singleton spatial dims (a DICOM frame ``(C, X, Y, 1)``, a NIfTI ``(X, Y, 1)``) are dropped, from the
      metadata's ``spatial_shape`` too;
    - a real 3D volume (more than two spatial dims longer than 1) is refused: this handles projection images only;
    - RGB/RGBA images whose colour channels are equal (a grey PNG saved as colour) keep one channel; with
      ``luminance=True`` other RGB/RGBA images become their ITU-R BT.601 luminance ``0.299 R + 0.587 G + 0.114 B``
      (alpha dropped); any other channel count is refused;
    - DICOM ``MONOCHROME1`` (bright = low attenuation) read by ``PydicomReader`` is inverted so that dense structures
      are bright, as in ``MONOCHROME2``, PNG exports and DRRs (``ITKReader``, MONAI's default, has already done so).

    Args:
        invert_monochrome1: invert ``PydicomReader`` images whose metadata says ``MONOCHROME1``. Defaults to True.
        luminance: convert colour RGB/RGBA images to grey by luminance instead of refusing them (e.g. DRRs or X-rays
            exported through a colour pipeline). Defaults to False.

    Raises:
        ValueError: naming the file, for a 3D volume or an unexpected channel count.
    """

    # ITU-R BT.601 luma weights of R, G, B
    BT601 = (0.299, 0.587, 0.114)

    def __init__(self, invert_monochrome1: bool = True, luminance: bool = False) -> None:
        self.invert_monochrome1 = invert_monochrome1
        self.luminance = luminance

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        name = _source(img)
        if img.ndim < 3:
            raise ValueError(f"{name}: expected a channel-first radiograph (C, X, Y), got shape {tuple(img.shape)}; load it with ensure_channel_first=True")
        img = _drop_trailing_singletons(img)
        if img.ndim > 3:
            spatial = tuple(img.shape[1:])
            raise ValueError(f"{name}: got a 3D volume of spatial shape {spatial}; this 2D X-ray model takes one projection image (PNG, DICOM or 2D NIfTI) — render a DRR from a CT first")
        channels = img.shape[0]
        if channels in (3, 4) and torch.equal(img[0], img[1]) and torch.equal(img[0], img[2]):
            img = img[:1]
        elif channels in (3, 4) and self.luminance:
            rgb = img[:3] if img.is_floating_point() else img[:3].float()
            weights = torch.tensor(self.BT601, dtype=rgb.dtype, device=rgb.device).view(3, 1, 1)
            img = (rgb * weights).sum(0, keepdim=True)
        elif channels != 1:
            fix = "convert it to greyscale" + ("" if self.luminance or channels not in (3, 4) else " or set luminance=True")
            raise ValueError(f"{name}: expected a grey radiograph (1 channel, or RGB with equal channels), got {channels} channels of shape {tuple(img.shape[1:])}; {fix}")
        # NaN/Inf pixels or a blank image would become a confident "no finding" or an empty mask
        CheckImage(fail_constant=True)(img)
        meta = getattr(img, "meta", {}) or {}
        if self.invert_monochrome1 and _needs_inversion(meta):
            img = img.max() + img.min() - img
        return img


class AsGreyRadiographd(MapTransform):
    """Dictionary version of :class:`AsGreyRadiograph`."""

    def __init__(self, keys: KeysCollection, invert_monochrome1: bool = True, luminance: bool = False,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = AsGreyRadiograph(invert_monochrome1, luminance)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d


class CheckMultiLabelMaskd(MapTransform):
    """Check a multi-label mask ``(C, X, Y[, 1])`` against its image: one channel per structure, values in {0, 1},
    same spatial size as the image. Trailing singleton spatial dims of the mask are dropped.

    Args:
        keys: mask key(s).
        image_key: key of the image the mask belongs to (already through :class:`AsGreyRadiographd`).
        structures: names of the structures, one per mask channel (their number is checked).

    Raises:
        ValueError: naming the file, for a wrong channel count, values outside {0, 1} or a size mismatch.
    """

    def __init__(self, keys: KeysCollection, image_key: str = "image", structures: Sequence[str] = (), allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.image_key = image_key
        self.structures = list(structures)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        image = d[self.image_key]
        for key in self.key_iterator(d):
            mask = d[key]
            name = _source(mask)
            mask = _drop_trailing_singletons(mask)
            if self.structures and mask.shape[0] != len(self.structures):
                raise ValueError(f"{name}: label has {mask.shape[0]} channels, expected {len(self.structures)} (one binary mask per structure: {self.structures}); save masks as (X, Y, 1, C)")
            values = torch.unique(torch.as_tensor(mask)).tolist()
            bad = [v for v in values if v not in (0, 1)]
            if bad:
                raise ValueError(f"{name}: label values {bad[:5]} are outside the declared set {{0, 1}} (each channel is a binary mask of one structure)")
            if tuple(mask.shape[1:]) != tuple(image.shape[1:]):
                raise ValueError(f"{name}: label spatial size {tuple(mask.shape[1:])} does not match image {_source(image)} size {tuple(image.shape[1:])}; resample the label to the image grid")
            d[key] = mask
        return d


def load_radiograph(path: str | os.PathLike) -> MetaTensor:
    """Load a PNG, DICOM or 2D NIfTI radiograph as a float ``(1, X, Y)`` MetaTensor (see :class:`AsGreyRadiograph`)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"radiograph {str(path)!r} does not exist")
    img = LoadImage(image_only=True, ensure_channel_first=True, dtype=np.float32)(str(path))
    return AsGreyRadiograph()(img)


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
    lo, hi = np.percentile(image, (1, 99)) if image.size else (0.0, 1.0)
    grey = np.clip((image - lo) / max(hi - lo, 1e-6), 0, 1)
    rgb = np.repeat(grey[..., None] * 255.0, 3, axis=-1)
    for i, mask in enumerate(masks):
        colour = np.asarray(colours[i % len(colours)], dtype=np.float32)
        rgb[mask] = (1 - alpha) * rgb[mask] + alpha * colour
    return np.ascontiguousarray(np.clip(rgb, 0, 255).astype(np.uint8).transpose(1, 0, 2))


def write_overlay_png(path: str | os.PathLike, image, masks, names: Sequence[str] = (), alpha: float = 0.4) -> str:
    """Write :func:`overlay_rgb` of ``image`` ``(X, Y)``/``(C, X, Y)`` and ``masks`` ``(S, X, Y)`` to ``path`` as a PNG,
    with a colour legend of ``names`` in the top-left corner. Written to a temporary file, then renamed."""
    from PIL import Image, ImageDraw

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.fromarray(overlay_rgb(image, masks, alpha))
    draw = ImageDraw.Draw(picture)
    for i, label in enumerate(names):
        draw.rectangle((4, 4 + 12 * i, 12, 12 + 12 * i), fill=OVERLAY_COLOURS[i % len(OVERLAY_COLOURS)])
        draw.text((16, 2 + 12 * i), str(label), fill=(255, 255, 255))
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")
    return str(path)


class SaveOverlayPNGd(MapTransform):
    """Write ``<output_dir>/<input file stem>_overlay.png``: the image with its predicted masks (post-processing).

    Args:
        keys: the mask key (``(S, X, Y)``, binary).
        image_key: the image key (``(C, X, Y)``, same size as the masks).
        output_dir: folder of the PNGs (created).
        names: structure names for the legend, one per mask channel.
        alpha: mask opacity. Defaults to 0.4.
    """

    def __init__(self, keys: KeysCollection, image_key: str = "image", output_dir: str | os.PathLike = ".", names: Sequence[str] = (), alpha: float = 0.4, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.image_key = image_key
        self.output_dir = Path(output_dir)
        self.names = list(names)
        self.alpha = alpha

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        image = d[self.image_key]
        stem = Path(_source(image)).name
        for suffix in (".nii.gz", ".nii", ".png", ".dcm", ".jpg", ".jpeg"):
            if stem.lower().endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        for key in self.key_iterator(d):
            mask, img = _drop_trailing_singletons(d[key]), _drop_trailing_singletons(image)
            write_overlay_png(self.output_dir / f"{stem}_overlay.png", img, mask, self.names, self.alpha)
        return d


AsGreyRadiographD = AsGreyRadiographDict = AsGreyRadiographd
CheckMultiLabelMaskD = CheckMultiLabelMaskDict = CheckMultiLabelMaskd
SaveOverlayPNGD = SaveOverlayPNGDict = SaveOverlayPNGd


RADIOGRAPH_SUFFIXES = (".nii.gz", ".nii", ".png", ".dcm", ".jpg", ".jpeg")


def list_radiographs(folder: str | os.PathLike) -> list[dict[str, str]]:
    """``[{"image": path}]`` for every radiograph in ``folder``: its ``inference/`` sub-folder when there is one (the
    ``cxr_segmentation`` sample layout), else the folder itself; our own ``*_overlay.png`` outputs are skipped."""
    root = Path(folder)
    if (root / "inference").is_dir():
        root = root / "inference"
    if not root.is_dir():
        raise FileNotFoundError(f"dataset_dir {str(root)!r} is not a folder of radiographs (PNG, DICOM or 2D NIfTI)")
    files = sorted(
        p for p in root.iterdir()
        if p.is_file() and p.name.lower().endswith(RADIOGRAPH_SUFFIXES) and not p.name.endswith("_overlay.png")
    )
    if not files:
        raise FileNotFoundError(f"{root}: no radiographs found (looked for {', '.join(RADIOGRAPH_SUFFIXES)})")
    return [{"image": str(p)} for p in files]


def with_background_channel(items, keys: Sequence[str] = ("pred", "label")):
    """Prepend ``1 - any(structure)`` to the multi-label masks of each item, so reports that expect a background
    channel 0 (:class:`unimiss_monai.engines.SegmentationReport`) score each overlapping structure on its own channel."""
    def one(item):
        out = dict(item)
        for key in keys:
            mask = item[key]
            background = 1 - (torch.as_tensor(mask) > 0.5).any(0, keepdim=True).to(torch.as_tensor(mask).dtype)
            out[key] = torch.cat([background, mask]) if not isinstance(mask, MetaTensor) else MetaTensor(
                torch.cat([background, mask.as_tensor()]), affine=mask.affine, meta=mask.meta)
        return out

    return [one(i) for i in items] if isinstance(items, list) else one(items)


class SkipFailedd(Transform):
    """Apply ``transform`` to a data dictionary unless it carries a non-empty ``failed_key`` (an input that could not
    be read, see :class:`unimiss_monai.engines.tolerant_inference.TolerantDataset`)."""

    def __init__(self, transform, failed_key: str = "failed") -> None:
        self.transform = transform
        self.failed_key = failed_key

    def __call__(self, data):
        return data if data.get(self.failed_key) else self.transform(data)


class InferenceSummary:
    """Ignite handler: record each case as written or failed, then print a summary and write
    ``<output_dir>/inference_summary.json`` (atomically) at the end of the run. Attaching also installs
    :func:`~unimiss_monai.engines.tolerant_inference.guard_forward`, so a case whose network forward fails is recorded
    as failed and the run goes on.

    Args:
        output_dir: folder of the summary.
        case_key, failed_key: item keys of the input path and of the failure message (empty when it worked).
    """

    def __init__(self, output_dir: str | os.PathLike, case_key: str = "case", failed_key: str = "failed") -> None:
        self.output_dir = Path(output_dir)
        self.case_key, self.failed_key = case_key, failed_key
        self.cases: list[dict[str, str]] = []

    def attach(self, engine) -> None:
        from ignite.engine import Events

        from unimiss_monai.engines.tolerant_inference import guard_forward

        engine.add_event_handler(Events.STARTED, guard_forward)  # at STARTED: evaluators set their inferer after attach
        engine.add_event_handler(Events.STARTED, lambda _: self.cases.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def collect(self, engine) -> None:
        batch = engine.state.batch
        items = batch if isinstance(batch, list) else [batch]
        for item in items:
            cases, failures = item.get(self.case_key, ""), item.get(self.failed_key, "")
            for case, failed in zip(*(v if isinstance(v, (list, tuple)) else [v] for v in (cases, failures))):
                self.cases.append({"case": str(case), "status": f"failed: {failed}" if failed else "ok"})

    def write(self, engine=None) -> str:
        failed = [c for c in self.cases if c["status"] != "ok"]
        from unimiss_monai.data.writers import save_json

        path = save_json({"num_cases": len(self.cases), "num_failed": len(failed), "cases": self.cases},
                         self.output_dir / "inference_summary.json")
        print(f"[inference] {len(self.cases) - len(failed)} of {len(self.cases)} radiographs segmented -> {self.output_dir}", flush=True)
        for c in failed:
            print(f"[inference]   {c['case']}: {c['status']}", flush=True)
        if self.cases and len(failed) == len(self.cases):  # nothing segmented: the run must not exit 0
            raise RuntimeError(f"inference: no radiograph was segmented ({len(failed)} failed, see above)")
        return str(path)
