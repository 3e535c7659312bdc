"""A colour radiograph is refused with a fix the user can give on the command line: ``--luminance true`` (a string
there) makes every AsGreyRadiographd of the X-ray bundles convert RGB by luminance instead."""

from __future__ import annotations

import pytest
import torch
from bundle_runner import BUNDLES, configs
from monai.bundle import ConfigParser
from monai.transforms import Compose

from unimiss_monai.transforms import AsGreyRadiographd

CASES = [(b, c, ids) for b, ids in (("unimiss_cxr_segmentation", ["preprocessing"]),
                                    ("unimiss_cxr_classification", ["preprocessing"]))
         for c in ("inference.json",)] + [
    ("unimiss_cxr_segmentation", "train.json", ["train#preprocessing", "validate#preprocessing"]),
    ("unimiss_cxr_classification", "train.json", ["train#preprocessing", "validate#preprocessing"]),
]


def _grey_steps(bundle: str, config: str, ids: list[str], luminance) -> list[AsGreyRadiographd]:
    parser = ConfigParser()
    parser.read_config(configs(bundle, config))
    parser.update({"bundle_root": str(BUNDLES / bundle), **({} if luminance is None else {"luminance": luminance})})
    steps = []
    for i in ids:
        compose = parser.get_parsed_content(i, instantiate=True)
        steps += [t for t in (compose.transforms if isinstance(compose, Compose) else []) if isinstance(t, AsGreyRadiographd)]
    assert len(steps) == len(ids), (bundle, config, ids)
    return steps


@pytest.mark.parametrize("bundle, config, ids", CASES, ids=[f"{b}:{c}" for b, c, _ in CASES])
def test_luminance_is_a_command_line_option(bundle, config, ids):
    ramp = torch.linspace(0, 1, 256).reshape(16, 16)  # the smallest radiograph taken
    rgb = {"image": torch.stack([ramp * v for v in (0.2, 0.5, 0.9)])}
    for step in _grey_steps(bundle, config, ids, None):
        with pytest.raises(ValueError, match="--luminance true"):
            step(dict(rgb))
    for step in _grey_steps(bundle, config, ids, "true"):
        grey = step(dict(rgb))["image"]
        assert grey.shape == (1, 16, 16) and torch.allclose(grey, ramp[None] * (0.299 * 0.2 + 0.587 * 0.5 + 0.114 * 0.9))
