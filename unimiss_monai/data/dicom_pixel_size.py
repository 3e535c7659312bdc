"""The pixel size a DICOM radiograph's header gives, put on the image where its reader left 1 mm.

ITK (GDCM), MONAI's default reader, takes a CR or DX image's pixel size from ``ImagerPixelSpacing`` alone: a film
that records only ``PixelSpacing`` (most CR exports, and DX exports calibrated to the patient) is read at 1 mm per
pixel, without a word, and ``PydicomReader`` reads every radiograph at 1 mm. Its mask is then written 1 mm per pixel,
its areas come out several times too large, and a label of the same film read elsewhere lies on another grid.
"""

from __future__ import annotations

import numpy as np
import torch

from unimiss_monai.data.dicom_checks import dicom_header, spacing_tag_values
from unimiss_monai.data.image_formats import is_dicom_path

__all__ = ["dicom_pixel_size", "header_affine", "on_image_grid", "with_header_pixel_size"]

#: the elements that give a projection image's pixel size, (rows, columns) in mm, in the order ITK takes them for CR
#: and DX: the size at the detector first, then the one calibrated to the patient (``dicom_spacing_problem`` names a
#: bad one in the other order)
_SPACING_TAGS = ("ImagerPixelSpacing", "PixelSpacing")
#: the pixel size readers fall back to where they find none, mm
_READER_DEFAULT_MM = 1.0


def dicom_pixel_size(source: str) -> tuple[float, float] | None:
    """``(row spacing, column spacing)`` in mm of the DICOM file ``source``: its first ``ImagerPixelSpacing`` or
    ``PixelSpacing`` of two positive finite numbers; None for a file that is no DICOM, or a header with neither (all
    zeros, as an uncalibrated detector writes, is none)."""
    ds = dicom_header(source)
    if ds is None:
        return None
    for tag in _SPACING_TAGS:
        try:
            values = spacing_tag_values(ds, tag)  # None: a value that is no list of numbers gives no size
        except Exception:  # noqa: BLE001 - nor does one pydicom cannot decode: a label's header is read here unchecked
            continue
        if values is not None and values.size == 2 and (np.isfinite(values) & (values > 0)).all():
            return float(values[0]), float(values[1])
    return None


def header_affine(affine, source: str):
    """The affine of an image of the DICOM file ``source`` (``(3, 3)`` or ``(4, 4)``, its first two columns the
    image's X and Y axes; X runs along a row, across columns) with the pixel size of its header
    (:func:`dicom_pixel_size`) where its reader left 1 mm on both axes; directions and origin kept. Otherwise (another
    file, a size found by the reader, or none in the header) ``affine`` itself. Of the type it was given."""
    matrix = np.asarray(torch.as_tensor(affine).detach().cpu(), dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] < 3:
        return affine
    if not np.allclose(np.linalg.norm(matrix[:-1, :2], axis=0), _READER_DEFAULT_MM):
        return affine
    size = dicom_pixel_size(source)
    if size is None or np.allclose(size, _READER_DEFAULT_MM):
        return affine
    matrix = matrix.copy()
    matrix[:-1, :2] *= (size[1], size[0])  # along X the distance between columns, along Y between rows
    return torch.as_tensor(matrix, dtype=affine.dtype) if torch.is_tensor(affine) else matrix


def with_header_pixel_size(img, source: str):
    """``img`` (a loaded ``(C, X, Y)`` MetaTensor of the DICOM file ``source``) with its header's pixel size where its
    reader left 1 mm (:func:`header_affine`), in its ``affine``, its ``original_affine`` and its ``spacing``: a mask
    written from it takes them. A new MetaTensor on the same pixels; ``img`` is left as it was. Any other image, or
    one whose reader found a size, is returned itself."""
    from monai.data import MetaTensor

    meta = getattr(img, "meta", None)
    if not meta or meta.get("affine") is None or img.ndim != 3:
        return img
    affine = header_affine(meta["affine"], source)
    if affine is meta["affine"]:
        return img
    meta = {**meta, "affine": affine}
    if meta.get("original_affine") is not None:
        meta["original_affine"] = header_affine(meta["original_affine"], source)
    if "spacing" in meta and np.size(meta["spacing"]) >= 2:
        spacing = np.asarray(meta["spacing"], dtype=np.float64).copy()
        spacing[:2] = np.linalg.norm(np.asarray(torch.as_tensor(affine), dtype=np.float64)[:-1, :2], axis=0)
        meta["spacing"] = spacing
    return MetaTensor(img.as_tensor(), meta=meta, applied_operations=list(img.applied_operations))


def on_image_grid(label, image, source: str):
    """``label`` (a loaded ``(C, X, Y)`` MetaTensor of the DICOM file ``source``, of its ``image``'s shape) on its
    image's grid where its header gives no pixel size: it lies on the image's pixels, as a PNG label does, and its
    distances are the image's mm, not the 1 mm its reader left. A new MetaTensor on the same values; any other label
    is returned itself."""
    from monai.data import MetaTensor

    meta = getattr(label, "meta", None)
    grid = getattr(image, "meta", None)
    if (not meta or not grid or grid.get("affine") is None or not is_dicom_path(source)
            or dicom_pixel_size(source) is not None):
        return label
    meta = {**meta, **{k: grid[k] for k in ("affine", "original_affine", "spacing") if grid.get(k) is not None}}
    return MetaTensor(label.as_tensor(), meta=meta, applied_operations=list(label.applied_operations))
