"""Simulated lesions: placement inside the lung, size, attenuation; heart enlargement geometry."""

from __future__ import annotations

import numpy as np
import pytest

from unimiss_monai.data.lesions import ellipsoid_weights, enlarge_region, insert_lesion
from unimiss_monai.data.phantom import PHANTOM_LABELS, make_ct_phantom

SPACING = (4.0, 4.0, 4.0)
LUNG = [v for v, n in PHANTOM_LABELS.items() if n.startswith("lung")]
HEART = [v for v, n in PHANTOM_LABELS.items() if n == "heart"]


@pytest.fixture(scope="module")
def phantom():
    return make_ct_phantom(shape=(64, 64, 48), spacing=SPACING, seed=0, noise_hu=0.0)


def test_ellipsoid_volume_matches_analytic():
    # a 20 x 16 x 12 mm (semi-axes) ellipsoid on a 1 mm grid: volume 4/3 pi abc
    w = ellipsoid_weights((50, 40, 30), (25, 20, 15), (10.0, 8.0, 6.0), (1.0, 1.0, 1.0))
    assert w.sum() == pytest.approx(4 / 3 * np.pi * 10 * 8 * 6, rel=0.03)
    assert w[25, 20, 15] == 1.0 and w[0, 0, 0] == 0.0


def test_insert_lesion_inside_lung(phantom):
    lung = np.isin(phantom.labels, LUNG)
    rng = np.random.default_rng(3)
    out, mask, lesion = insert_lesion(phantom.hu, lung, SPACING, rng, diameter_mm=(16.0, 24.0))
    assert mask.any() and lung[lesion.center]
    assert (mask & lung).sum() >= 0.85 * mask.sum()
    # the lesion turns air-filled lung (-850 HU) into soft tissue (~40 HU); everything else is untouched
    assert out[lesion.center] == pytest.approx(40.0, abs=60.0)  # 4 sigma of the 15 HU texture
    assert np.mean(out[mask]) > -400.0  # border voxels are a partial-volume blend with lung
    changed = np.abs(out - phantom.hu) > 1e-3
    assert not (changed & ~lung).any()
    # largest diameter in range; voxel count close to the ellipsoid's volume
    assert 16.0 <= lesion.diameter_mm <= 24.0
    a, b, c = lesion.semi_axes_mm
    assert lesion.voxels * np.prod(SPACING) == pytest.approx(4 / 3 * np.pi * a * b * c, rel=0.35)
    assert np.array_equal(phantom.hu, make_ct_phantom(shape=(64, 64, 48), spacing=SPACING, seed=0, noise_hu=0.0).hu)


def test_insert_lesion_reproducible_and_errors(phantom):
    lung = np.isin(phantom.labels, LUNG)
    a = insert_lesion(phantom.hu, lung, SPACING, np.random.default_rng(7))[0]
    b = insert_lesion(phantom.hu, lung, SPACING, np.random.default_rng(7))[0]
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="lung mask is empty"):
        insert_lesion(phantom.hu, np.zeros_like(lung), SPACING, np.random.default_rng(0))
    with pytest.raises(ValueError, match="same 3D shape"):
        insert_lesion(phantom.hu[0], lung[0], SPACING, np.random.default_rng(0))
    with pytest.raises(ValueError, match="fits the lung mask"):
        insert_lesion(phantom.hu, lung, SPACING, np.random.default_rng(0), diameter_mm=(400.0, 500.0), max_tries=3)


def test_insert_lesion_centre_drawn_inside_center_mask(phantom):
    lung = np.isin(phantom.labels, LUNG)
    inside = np.argwhere(lung)[len(np.argwhere(lung)) // 2]
    box = np.zeros_like(lung)
    box[tuple(slice(c - 1, c + 2) for c in inside)] = True
    for seed in range(5):
        _, mask, lesion = insert_lesion(phantom.hu, lung, SPACING, np.random.default_rng(seed), diameter_mm=(8.0, 12.0),
                                        center_mask=box)
        assert box[lesion.center] and lung[lesion.center] and mask[lesion.center]
    # the lesion may still reach beyond the centre mask: it only has to lie in the lung
    assert (mask & ~box).any()
    with pytest.raises(ValueError, match="inside center_mask"):
        insert_lesion(phantom.hu, lung, SPACING, np.random.default_rng(0), center_mask=~lung)


def test_enlarge_heart_scales_extent_and_spares_bone(phantom):
    heart = np.isin(phantom.labels, HEART)
    out, region = enlarge_region(phantom.hu, phantom.labels, HEART, scale=(1.3, 1.3, 1.0))
    assert region.sum() > heart.sum() * 1.3  # about 1.3 x 1.3 in area (minus what bone blocks)
    width = lambda m: np.ptp(np.argwhere(m)[:, 0]) + 1  # noqa: E731 - left-right extent in voxels
    assert width(region) / width(heart) == pytest.approx(1.3, abs=0.15)
    bone = phantom.hu >= 250
    np.testing.assert_array_equal(out[bone], phantom.hu[bone])
    # lung voxels taken over by the heart now have heart attenuation
    taken = region & np.isin(phantom.labels, LUNG)
    assert taken.any() and np.median(out[taken]) == pytest.approx(50.0, abs=5.0)
    assert np.quantile(out[taken], 0.1) > -500.0  # only the outermost shell is a partial-volume blend
    with pytest.raises(ValueError, match="no voxel has a label"):
        enlarge_region(phantom.hu, phantom.labels, [99])
    with pytest.raises(ValueError, match=">= 1"):
        enlarge_region(phantom.hu, phantom.labels, HEART, scale=(0.8, 1.0, 1.0))
