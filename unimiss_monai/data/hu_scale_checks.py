"""Checks that a CT's values are on the HU scale throughout: not scaled (HU x 10 keeps air and bone far apart, as HU
does, yet every tissue lands at another place; values scaled to [0, 1] or attenuation coefficients span almost
nothing), not stored without its rescale (raw scanner values, HU + 1024) or with its sign flipped, and not shifted on
some slices (one DICOM slice exported with another rescale intercept). Each passed every other check (at most a
warning) and gave DRRs and segmentations marked ok.

Raised as :class:`ValueError` with one line naming the file; :func:`unimiss_monai.data.ct_io.check_not_air_only`
makes them with the other checks of a CT's values.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BELOW_AIR_SHARE", "MASS_SHARE", "MIN_SPAN_HU", "NEGATED_AIR_HU", "RAW_AIR_HU", "RAW_TISSUE_HU",
           "SCALED_AIR_HU", "SLICE_SHIFT_HU", "SOFT_TISSUE_HU", "check_not_below_air", "check_not_negated",
           "check_not_unrescaled", "check_slice_levels", "check_span"]

#: the least a CT's values can span: scanner noise alone (some 10 HU) spreads a crop inside one organ over tens of HU,
#: while values scaled to [0, 1], or attenuation coefficients per mm, span 1 or less
MIN_SPAN_HU = 2.0
#: where the air of a CT scaled by some 4 to 15 (HU x 10 puts air at -10000) lands, far below air (-1000 HU) and any
#: tissue; a CT's padding lies below air too, but as one value (-1024, -2048, -3024, -32768: outside this band; one
#: inside it is left out as the value most of the band holds) or, resampled with cubic interpolation, in a thin ring
SCALED_AIR_HU = (-15000.0, -4000.0)
#: share of a CT's values in :data:`SCALED_AIR_HU` that marks another scale: HU x 10 puts all its air there (a third
#: or more of a chest CT); the ring where cubic resampling blends padding into air is well under this
BELOW_AIR_SHARE = 0.05
#: a shift of a slice's every level (its air, its median, its brightest) by this much or more against the slices
#: beside it is a rescale intercept of its own (a slice at 0 among slices at -1024 is shifted by 1024); anatomy changes
#: from one slice to the next change each level by another amount
SLICE_SHIFT_HU = 500.0
#: where air (-1024 to -924 HU) lies in a CT stored without its rescale intercept of -1024 (raw scanner values)
RAW_AIR_HU = (-50.0, 100.0)
#: where fat and soft tissue (-174 to 226 HU) lie in a CT stored without its rescale intercept of -1024
RAW_TISSUE_HU = (850.0, 1250.0)
#: where air (-1100 to -900 HU) lies in a CT whose sign was flipped
NEGATED_AIR_HU = (900.0, 1100.0)
#: fat, water, soft tissue and blood; where a CT whose sign was flipped keeps them too
SOFT_TISSUE_HU = (-150.0, 150.0)
#: the least share of a CT's values that makes a mass of air or of soft tissue: a chest CT, or a crop of one reaching
#: past the body's edge, holds more of each, while contrast or metal fills a few voxels
MASS_SHARE = 0.05
# next to nothing: at most this share of a CT's values beyond its air where it holds none (below air stored without its
# rescale, at -1000 HU in a CT whose sign was flipped), the noise of its air; a CT in HU has its air, lung and fat
# below 0 (a fifth of a chest CT or more), and a crop inside its body its fat
_NONE_SHARE = 0.02
# the same where the CT holds padding there: the ring where cubic resampling blends the padding into air holds 3 % of
# the sample chest CT resampled to 3/4 of its size, 5 % resampled from half of it
_RING_SHARE = 0.08
# the share of a CT's values between air and soft tissue stored without the rescale (lung, the partial volume of the
# skin's edge) that a raw CT has: a synthetic volume of blocks (air, 40 HU, bone at 1000 HU) has none
_SOME_SHARE = 0.01
# the least share of air whose sign was flipped that makes a CT a negated one: a negated chest CT holds some 40 %, and
# a small crop of vertebra or rib in HU (11 x 11 x 20 mm) up to 6 % of cortical bone near +1000 HU
_NEGATED_AIR_SHARE = 0.10
# the most values above air whose sign was flipped (padding left out) for each one of that air: in HU nothing lies
# below air but padding, while a crop of cortical bone in HU spreads from 900 HU well above 1100 HU
_BEYOND_NEGATED_AIR = 0.05
# a slice with air around the body has its 5th percentile at about -1000 HU, whatever anatomy it crosses; aerated lung
# (about -850 HU with its noise) stays above this
_AIR_AROUND_HU = -950.0
# the least spread (95th less 5th percentile) of a slice of the body: its noise alone gives tens of HU
_MIN_SLICE_SPREAD_HU = 10.0
# the least ratio of two neighbouring slices' spreads across a shift: a shifted slice keeps its anatomy's spread
_SAME_SPREAD = 0.8
# how far the shifts of a slice's levels may differ from one another and still be one shift: an intercept moves all
# of them alike (up to the rounding of the stored values)
_SAME_SHIFT = 0.15


def _without_padding(band: np.ndarray) -> np.ndarray:
    """``band`` (values of a CT, flat) without the one whole value that holds more than half of them: an export's
    padding, where air or tissue is spread by noise."""
    if not band.size:
        return band
    whole = np.rint(band)  # resampled, a padding value holds float noise of a millionth of an HU
    values, counts = np.unique(whole, return_counts=True)
    return band[whole != values[counts.argmax()]] if counts.max() > band.size / 2 else band


def _share(values: np.ndarray, band: tuple[float, float], size: int) -> float:
    """The share of ``size`` values that ``values`` holds in ``band`` (low included, high not)."""
    return np.count_nonzero((values >= band[0]) & (values < band[1])) / max(size, 1)


def check_span(low: float, high: float, source: str) -> None:
    """Raise ``ValueError`` when a CT's values run from ``low`` to ``high`` (its minimum and maximum, not the same)
    within :data:`MIN_SPAN_HU`: values scaled to [0, 1] or attenuation coefficients (about 0.02 per mm), not HU."""
    if 0 < high - low < MIN_SPAN_HU:
        raise ValueError(f"{source}: its values run only from {low:.4g} to {high:.4g}, where a CT in HU spans hundreds "
                         "(air -1000, soft tissue 40, bone 1000; even a crop inside one organ spans its noise): values "
                         "scaled to [0, 1] or attenuation coefficients, not HU; pass the CT in HU")


def check_not_below_air(sample: np.ndarray, source: str) -> None:
    """Raise ``ValueError`` when more than :data:`BELOW_AIR_SHARE` of a CT's values (``sample``, flat) lie in
    :data:`SCALED_AIR_HU`, a padding value that holds most of them left out."""
    low, high = SCALED_AIR_HU
    band = sample[(sample >= low) & (sample <= high)]
    if band.size <= BELOW_AIR_SHARE * sample.size:
        return
    band = _without_padding(band)
    if band.size > BELOW_AIR_SHARE * sample.size:
        raise ValueError(
            f"{source}: {100 * band.size / sample.size:.0f} % of its values lie between {low:.0f} and {high:.0f}, far "
            "under air (-1000 HU), where no tissue is: not in HU (a scaled export, e.g. HU x 10?); rewrite it in HU "
            "(value x RescaleSlope + RescaleIntercept)")


def check_not_unrescaled(sample: np.ndarray, source: str) -> None:
    """Raise ``ValueError`` when a CT's values (``sample``, flat) are raw scanner values, HU + 1024: next to nothing
    below its air but padding (and the ring where resampling blends that into air), a mass of air in
    :data:`RAW_AIR_HU` and one of fat and soft tissue in :data:`RAW_TISSUE_HU` (each :data:`MASS_SHARE` or more), that
    one outweighing the bone above it and what lies between it and air (lung, the skin's partial volume), of which
    there is some. A crop inside the body in HU (no air) has its soft tissue near 0 and no mass near 1000; a crop of
    bone and muscle has its cortical bone near 1000 HU, but more trabecular bone and partial volume below that."""
    low = _without_padding(sample[sample < RAW_AIR_HU[0]])
    padding = np.count_nonzero(sample < RAW_AIR_HU[0]) - low.size
    body = sample.size - padding  # the values less the padding
    # padding below air, resampled with cubic interpolation, blends into air in a thin ring
    if low.size > (_RING_SHARE if padding else _NONE_SHARE) * body:  # air, lung or fat in HU
        return
    air, tissue = _share(sample, RAW_AIR_HU, body), _share(sample, RAW_TISSUE_HU, body)
    between = _share(sample, (RAW_AIR_HU[1], RAW_TISSUE_HU[0]), body)
    above = _share(sample, (RAW_TISSUE_HU[1], np.inf), body)
    if min(air, tissue) >= MASS_SHARE and tissue >= max(between, above) and between >= _SOME_SHARE:
        raise ValueError(
            f"{source}: next to no values below {RAW_AIR_HU[0]:.0f} but padding, {100 * air:.0f} % near 0 (air "
            f"stored without its rescale) and {100 * tissue:.0f} % near 1000 (soft tissue): raw scanner values "
            "(HU + 1024), not HU; apply the rescale (value x RescaleSlope + RescaleIntercept, the intercept usually "
            "-1024)")


def check_not_negated(sample: np.ndarray, source: str) -> None:
    """Raise ``ValueError`` when a CT's values (``sample``, flat) are HU with their sign flipped: next to no air at
    -1000, a mass of air in :data:`NEGATED_AIR_HU` (a tenth of the values or more) with next to nothing above it
    but padding (and the ring where resampling blends that into air), a mass of soft tissue in :data:`SOFT_TISSUE_HU`
    (:data:`MASS_SHARE` or more), and some values below :data:`RAW_AIR_HU` (soft tissue and bone; raw scanner values,
    told by :func:`check_not_unrescaled`, have none there). Contrast or metal at 1000 HU in a CT in HU fills a few
    voxels beside its air, and a crop of cortical bone spreads well above 1100 HU."""
    high = _without_padding(sample[sample >= NEGATED_AIR_HU[1]])
    padding = np.count_nonzero(sample >= NEGATED_AIR_HU[1]) - high.size
    body = sample.size - padding  # the values less the padding
    if _share(sample, (-NEGATED_AIR_HU[1], -NEGATED_AIR_HU[0]), body) > _NONE_SHARE:  # air in HU
        return
    air, tissue = _share(sample, NEGATED_AIR_HU, body), _share(sample, SOFT_TISSUE_HU, body)
    below = _share(sample, (-np.inf, RAW_AIR_HU[0]), body)
    # padding above air (its sign flipped too), resampled with cubic interpolation, blends into air in a thin ring
    beyond = high.size / max(body, 1) - (_RING_SHARE if padding else 0.0)
    if (air >= _NEGATED_AIR_SHARE and tissue >= MASS_SHARE and beyond <= _BEYOND_NEGATED_AIR * air
            and below > _NONE_SHARE):
        raise ValueError(
            f"{source}: {100 * air:.0f} % of its values lie near +1000 with next to nothing above them but padding, "
            "and next to none near -1000: air with its sign flipped (soft tissue just below 0, bone far below), not "
            "HU; multiply the values by -1 (a negative RescaleSlope in the export?)")


def _levels(vol: np.ndarray) -> np.ndarray:
    """The 5th, 50th and 95th percentiles of each slice across the last axis of ``vol`` (X, Y, Z), (Z, 3), on a grid
    of about 64 x 64 values per slice."""
    step = max(1, int(np.sqrt(vol.shape[0] * vol.shape[1] / 4096)))
    sample = np.moveaxis(vol[::step, ::step, :], 2, 0).reshape(vol.shape[2], -1).astype(np.float32)
    return np.percentile(sample, [5.0, 50.0, 95.0], axis=1).T


def check_slice_levels(vol: np.ndarray, source: str) -> None:
    """Raise ``ValueError`` when, between two neighbouring slices across the last axis (a DICOM series is stacked
    along it, an axial CT in RAS or LPS runs along it), every level moves by the same :data:`SLICE_SHIFT_HU` or more:
    the slices from there on (or up to there) were exported with another rescale intercept. Only a step from or to a
    slice with air around the body counts: a crop inside it is left alone. ``vol``: the volume, with leading singleton
    axes (a channel) or none."""
    while vol.ndim > 3 and vol.shape[0] == 1:
        vol = vol[0]
    if vol.ndim != 3 or vol.shape[2] < 2:
        return
    levels = _levels(vol)
    steps = np.diff(levels, axis=0)  # (Z - 1, 3): each level's change from one slice to the next
    size = np.abs(steps).max(axis=1)
    same = (np.abs(steps).min(axis=1) >= SLICE_SHIFT_HU) & (np.sign(steps).min(axis=1) == np.sign(steps).max(axis=1))
    same &= (size - np.abs(steps).min(axis=1)) <= _SAME_SHIFT * size
    # one side of the step holds air: inside the body (a crop) one slice of lung beside one of liver can move every
    # level alike, while air around the body keeps the 5th percentile where it is whatever anatomy a slice crosses
    same &= np.minimum(levels[:-1, 0], levels[1:, 0]) <= _AIR_AROUND_HU
    # a slice of one value (padding where a crop runs past the scan) is no slice of the body, shifted or not; and a
    # shift keeps a slice's spread, where a slice resampled from body and padding has less of it than its neighbour
    spread = levels[:, 2] - levels[:, 0]
    narrow, wide = np.minimum(spread[:-1], spread[1:]), np.maximum(spread[:-1], spread[1:])
    same &= (narrow >= _MIN_SLICE_SPREAD_HU) & (narrow >= _SAME_SPREAD * wide)
    shifts = np.flatnonzero(same)
    if shifts.size:
        k = int(shifts[0])
        first = steps[k]
        raise ValueError(
            f"{source}: from slice {k} to slice {k + 1} (along the last axis of shape {tuple(vol.shape)}) every level "
            f"of the slice (its air, median and brightest) moves by about {float(np.median(first)):+.0f} HU, as from "
            f"a rescale intercept of its own{f' ({shifts.size} such steps)' if shifts.size > 1 else ''}: export the "
            "series again or drop the shifted slices")
