"""Whether a frontal chest radiograph is a negative: a PNG exported inverted, or a DICOM whose MONOCHROME1/2 tag
contradicts its pixels, so that air is bright and bone dark. Read as it is, it was segmented or classified as a
radiograph, and its masks and findings were of an inverted image, reported as a success.

On a frontal (PA or AP) chest film, positive, the lungs and the air beside the body (the darkest pixels) lie out to
the sides and the spine and mediastinum (among the brightest) down the middle; on a negative it is the other way
round. :func:`chest_polarity` measures that on the image's inner part (a border of :data:`BORDER` left out each side,
where a CR film's collimation is bright and a label may be burnt in): how much farther from the patient's midline its
darkest quarter of pixels lies than its brightest quarter. The midline is taken halfway between the mean columns of
those two quarters, not as the image's middle column: a patient 40-50 mm off-centre in a 300 mm field put the spine
far enough from the middle column for a positive to score as a negative. That midline is the same for an image and
its inverse, so inverting an image flips the sign of its score. It looks at where the dark pixels lie, not at how
dark the border is: collimated borders are bright on a positive too.

Measured on the real PA film ``RG1_UNCR.dcm`` (CR, collimated borders; cropped to its middle and to its upper half
too), DRRs of the real chest CT (AP and PA, fields of 300 to 448 mm at poses up to 10 degrees and 30 mm off, 448 mm
up to 15 degrees and 50 mm off; line integrals and 8-bit), the chest sample sets' radiographs and the test phantoms'
DRRs, every positive scored 0.171 or more and each of them inverted (and DRRs of detected intensity, air bright)
-0.171 or less. Frontal DRRs of the real CT 30 to 50 mm off-centre scored 0.073 or more in a 300 mm field, 0.155 in
350 mm and 0.213 in 400 mm: none is called a negative, nor any in narrower fields (288 mm: 0.044, 250 mm: 0.006).
There, 40-50 mm off, the check tells little: 12 of those 60 inverses scored -0.006 to -0.047 and go unsaid. Lateral
DRRs scored 0.052 or more. A crop with the spine off to one side (a spot view, a film cut by 30%) scored down to
-0.43; the message names it. A film of another body part has no such layout: the check is for the chest bundles only,
and it warns, never refuses.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from unimiss_monai.utils.logged_warnings import note
from unimiss_monai.utils.once import first_time

__all__ = ["BORDER", "NEGATIVE_BELOW", "NEGATIVE_CHEST", "chest_polarity", "warn_if_negative_chest"]

logger = logging.getLogger(__name__)

#: topic of :func:`~unimiss_monai.utils.once.first_time`: each file is said once in a run
NEGATIVE_CHEST = "negative chest radiograph"
#: share of each side left out: a CR film's collimated border (bright on a positive) lies within it
BORDER = 0.125
#: pixels along each side of the grid the image is averaged onto: lungs and mediastinum stay apart, a 9-Mpixel film
#: costs little, and a 64-pixel DRR and a full-size film are judged at one scale
GRID = 64
#: score under which a chest radiograph is said to be a negative: positives scored 0.171 or more, negatives -0.171
#: or less (0.006 and -0.006 with the patient far off-centre in a narrow field). Below what an image with no layout
#: to speak of scores (uniform noise: -0.2 to 0.22 at 16 pixels, -0.047 to 0.047 from 64), so that one is seldom
#: called a negative
NEGATIVE_BELOW = -0.05
#: fewest pixels along each side for a verdict (the smallest radiograph the transforms take)
MIN_SIDE = 16


def chest_polarity(grey: torch.Tensor) -> float | None:
    """How much farther from the patient's midline the darkest quarter of a grey ``(1, X, Y)`` chest radiograph's
    inner pixels lies than its brightest quarter, in half-widths of the inner part (-1 to 1; X runs across the image,
    along a row): above 0 for a positive (lungs and air dark, out to the sides), below 0 for a negative. The midline
    is the column halfway between the two quarters' mean columns. ``None`` where there is no verdict: a side under
    :data:`MIN_SIDE` pixels, or inner pixels of one grey level."""
    values = torch.as_tensor(grey).detach()
    if values.ndim != 3 or min(values.shape[1:]) < MIN_SIDE:
        return None
    small = F.adaptive_avg_pool2d(values[None, :1].float(), (GRID, GRID))[0, 0].double()
    cut = round(GRID * BORDER)
    inner = small[cut:GRID - cut, cut:GRID - cut]
    half = inner.shape[0] / 2
    low, high = torch.quantile(inner.reshape(-1), torch.tensor([0.25, 0.75], dtype=inner.dtype))
    if low >= high:
        return None
    dark, bright = inner <= low, inner >= high
    column = (torch.arange(inner.shape[0], dtype=inner.dtype) + 0.5)[:, None].expand_as(inner)
    # not the image's middle column: the patient may lie off-centre. Halfway between the dark and the bright pixels
    # is where the spine lies on a positive and on a negative alike, and the same column for an image and its inverse
    midline = (column[dark].mean() + column[bright].mean()) / 2
    across = (column - midline).abs() / half
    return float(across[dark].mean() - across[bright].mean())


def warn_if_negative_chest(grey: torch.Tensor, source: str) -> bool:
    """Warn, once per ``source`` in a run, when a grey ``(1, X, Y)`` frontal chest radiograph looks like a negative
    (:func:`chest_polarity` under :data:`NEGATIVE_BELOW`); whether it does. The image is used as it is."""
    score = chest_polarity(grey)
    if score is None or score >= NEGATIVE_BELOW:
        return False
    message = ("%s: looks like a negative, air brighter than bone (its darkest pixels lie down the middle, where a "
               "chest film's spine and mediastinum are bright: polarity %.2f, a positive scores above 0), so its masks "
               "and findings are of an inverted image; invert it, or export it as MONOCHROME2 (a DICOM whose pixels "
               "contradict its MONOCHROME1/2 tag: correct the tag). A lateral film or a crop with the spine off to one "
               "side can look so too: these bundles take whole frontal (PA/AP) chest films")
    if first_time(NEGATIVE_CHEST, source):
        logger.warning(message, source, score)
    else:  # said already in this run: a disk-cache entry of this file computed now must hold it all the same
        note(logger, logging.WARNING, message, source, score)
    return True
