"""Checks that a 2D image given as a radiograph is one, and that a 2D label lies on its image: a mask or label map
given as the radiograph, a CT slice in HU, a pixel size in another unit (:func:`check_radiograph`), a label whose
header puts it elsewhere in space (:func:`check_label_on_radiograph`). Each gave a case marked "ok": a segmentation
of a mask, distances thousands of times too large, masks scored against the wrong place."""

from __future__ import annotations

import torch

from unimiss_monai.data.dicom_pixel_size import dicom_pixel_size, header_affine
from unimiss_monai.data.grid_checks import check_radiograph_spacing, check_same_plane
from unimiss_monai.data.image_formats import has_pixel_grid, image_suffix, is_dicom_path

__all__ = ["LABEL_IMAGE_MAX_VALUES", "check_label_on_radiograph", "check_radiograph"]

#: most distinct values of an image that is a mask or label map, not a radiograph. An exposure spreads over hundreds
#: of grey levels: an 8-bit JPEG of a chest film holds 100-256, a 16-pixel DRR thumbnail dozens; a label map holds one
#: value per structure and 0 (the chest segmentation's five structures give six)
LABEL_IMAGE_MAX_VALUES = 8
#: fewest pixels of an image whose grey levels are counted (16 x 16, the smallest radiograph the transforms take by
#: default): a thumbnail of a few pixels cannot show hundreds of levels
MIN_PIXELS_COUNTED = 256
#: pixels first looked at for the count: more than 8 values among them settles it without sorting a 9-Mpixel film
_SAMPLE = 65536
#: air in HU (-1000) give or take the noise and calibration of a scanner
AIR_HU = (-1100.0, -900.0)
#: least share of pixels at air in HU for an image to be a CT slice: an axial chest slice has air around the body and
#: in the lungs (a third or more); an intensity image has no negative values at all
MIN_AIR_SHARE = 0.1


def _distinct_values(values: torch.Tensor) -> int:
    """How many distinct values ``values`` holds, or ``LABEL_IMAGE_MAX_VALUES + 1`` when it holds more."""
    flat = values.reshape(-1)
    sample = flat[:: max(1, flat.numel() // _SAMPLE)]
    if torch.unique(sample).numel() > LABEL_IMAGE_MAX_VALUES:
        return LABEL_IMAGE_MAX_VALUES + 1
    return int(torch.unique(flat).numel())


def check_radiograph(grey: torch.Tensor, source: str) -> None:
    """Raise ``ValueError`` (one line naming ``source``) when a grey ``(1, X, Y)`` image, finite and not constant, is
    not a radiograph: it is a CT slice in HU (negative values, :data:`MIN_AIR_SHARE` or more of its pixels at air,
    -1000), it holds at most :data:`LABEL_IMAGE_MAX_VALUES` distinct values (a mask or a label map; images under
    :data:`MIN_PIXELS_COUNTED` pixels are not counted) or, read from a header that records it
    (:func:`~unimiss_monai.data.image_formats.has_pixel_grid`: NIfTI, DICOM, MetaImage, NRRD), its pixel size is
    outside :data:`~unimiss_monai.data.grid_checks.XRAY_SPACING_MM`."""
    values = torch.as_tensor(grey).detach()
    # before the count of grey levels: a CT slice without noise (a phantom) holds few values too
    if float(values.min()) < AIR_HU[1]:
        air = float(((values >= AIR_HU[0]) & (values <= AIR_HU[1])).float().mean())
        if air >= MIN_AIR_SHARE:
            raise ValueError(f"{source}: looks like a CT slice in HU ({100 * air:.0f}% of its pixels near -1000, "
                             "air), not a radiograph, whose intensities are not negative; pass an X-ray, or a DRR "
                             "the DRR bundle renders from the whole CT (a radiograph stored with negative values: "
                             "rescale it to non-negative ones)")
    if values.numel() >= MIN_PIXELS_COUNTED and (count := _distinct_values(values)) <= LABEL_IMAGE_MAX_VALUES:
        shown = ", ".join(f"{v:g}" for v in torch.unique(values).tolist())
        raise ValueError(f"{source}: holds only {count} distinct values ({shown}): a mask or label map, not a "
                         "radiograph (whose exposure spreads over hundreds of grey levels); pass the radiograph "
                         "itself (a label belongs in the datalist's 'label')")
    if has_pixel_grid(source) and getattr(grey, "affine", None) is not None:
        check_radiograph_spacing(grey.affine, source)


def check_label_on_radiograph(label: torch.Tensor, image: torch.Tensor, label_source: str, image_source: str) -> None:
    """Raise ``ValueError`` (one line naming both files) when a 2D label and its image of the same shape, both of one
    format whose headers place them in space (NIfTI, MetaImage, NRRD: :func:`~unimiss_monai.data.image_formats.
    has_pixel_grid`), lie on different grids (:func:`~unimiss_monai.data.grid_checks.check_same_plane`). A PNG label,
    or a label of a PNG, has no place of its own: its shape is all there is; a label of another format than its image
    (a NIfTI of a DICOM film) may have been written on no grid of the image's, and is judged by its shape too, as is
    a DICOM label whose header gives no pixel size. A DICOM is compared at its header's pixel size
    (:func:`~unimiss_monai.data.dicom_pixel_size.header_affine`)."""
    if image_suffix(label_source) != image_suffix(image_source) or not has_pixel_grid(image_source):
        return
    if is_dicom_path(label_source) and dicom_pixel_size(label_source) is None:
        return  # a DICOM label that gives no pixel size lies on its image's pixels, as a PNG label does
    a_img, a_lab = getattr(image, "affine", None), getattr(label, "affine", None)
    if a_img is not None and a_lab is not None:
        # a DICOM takes its header's pixel size where its reader left 1 mm. The label transforms have given it to the
        # label, and AsGreyRadiograph (grey_radiograph) to the image, but not every caller did: this function is
        # public, and LabelMapToMasksd takes an image that came through no AsGreyRadiograph. Done twice it changes
        # nothing: an affine at the header's size is no longer the reader's 1 mm
        a_img, a_lab = header_affine(a_img, image_source), header_affine(a_lab, label_source)
        check_same_plane(a_img, a_lab, image_source, label_source)
