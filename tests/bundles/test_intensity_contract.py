"""One HU-to-input mapping for every 3D encoder: what pretraining feeds the CT branch is what each CT fine-tuning
bundle feeds the same encoder, also where a volume is padded (a fine-tuning run keeps the pretrained encoder frozen
for its first epochs, so a shifted or rescaled input would meet weights that never saw it).

Each mapping is read from the bundle's own configs: the intensity transforms of its preprocessing are applied to
known HU values, and the values a bundle pads with (crop padding, sliding-window borders) must be what air maps to.
"""

from __future__ import annotations

import pytest
import torch
from bundle_runner import configs
from monai.bundle import ConfigParser
from monai.inferers import SlidingWindowInferer
from monai.transforms import Compose, ScaleIntensityRanged, SpatialPadd

from unimiss_monai.transforms.intensity import ScaleCTIntensityd

HU = torch.tensor([-1024.0, -1000.0, -500.0, 0.0, 40.0, 400.0, 1000.0, 3000.0]).reshape(1, -1, 1, 1)
AIR = -1000.0
INTENSITY = (ScaleCTIntensityd, ScaleIntensityRanged)


def _parser(bundle: str, *names: str) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(configs(bundle, *names))
    return parser


def _flat(transform) -> list:
    """The transforms of a (nested) ``Compose`` or list, in order."""
    if isinstance(transform, Compose):
        return [t for inner in transform.transforms for t in _flat(inner)]
    if isinstance(transform, (list, tuple)):
        return [t for inner in transform for t in _flat(inner)]
    return [transform]


def _mapping(transforms) -> torch.Tensor:
    """``HU`` through the intensity transforms among ``transforms`` (at least one)."""
    found = [t for t in _flat(transforms) if isinstance(t, INTENSITY)]
    assert found, "no intensity transform in the bundle's preprocessing"
    data = {"image": HU.clone()}
    for t in found:
        data = t(data)
    return torch.as_tensor(data["image"]).flatten()


@pytest.fixture(scope="module")
def pretraining() -> torch.Tensor:
    """What the pretraining bundle's CT branch maps ``HU`` to."""
    return _mapping(_parser("unimiss_pretraining", "train.json").get_parsed_content("train#ct_views"))


@pytest.mark.parametrize("bundle, config, key", [
    ("unimiss_ct_segmentation", "train.json", "train#preprocessing"),
    ("unimiss_ct_segmentation", "train.json", "validate#preprocessing"),
    ("unimiss_ct_segmentation", "inference.json", "preprocessing"),
    ("unimiss_ct_classification", "train.json", "train#preprocessing"),
    ("unimiss_ct_classification", "inference.json", "preprocessing"),
])
def test_fine_tuning_maps_hu_as_pretraining_does(pretraining, bundle, config, key):
    ours = _mapping(_parser(bundle, config).get_parsed_content(key))
    torch.testing.assert_close(ours, pretraining)


def test_ct_segmentation_pads_and_slides_over_air(pretraining):
    air = pretraining[HU.flatten().tolist().index(AIR)].item()
    train = _parser("unimiss_ct_segmentation", "train.json")
    pads = [t for t in _flat(train.get_parsed_content("train#preprocessing")) if isinstance(t, SpatialPadd)]
    image = {"image": torch.zeros(1, 2, 2, 2), "label": torch.ones(1, 2, 2, 2, dtype=torch.uint8)}
    for pad in pads:
        pad.padder.spatial_size = (4, 4, 4)  # a volume smaller than the window
        image = pad(image)
    assert image["image"].shape == image["label"].shape == (1, 4, 4, 4)
    assert image["image"][0, 0, 0, 0].item() == pytest.approx(air) and image["image"][0, 1, 1, 1].item() == 0.0
    assert image["label"][0, 0, 0, 0].item() == 0 and image["label"][0, 1, 1, 1].item() == 1  # labels pad with background
    inferers = [train.get_parsed_content("validate#inferer"),
                _parser("unimiss_ct_segmentation", "inference.json").get_parsed_content("sw_inferer")]
    assert all(isinstance(i, SlidingWindowInferer) and i.cval == pytest.approx(air) for i in inferers)
