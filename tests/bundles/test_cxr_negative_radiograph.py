"""The chest bundles warn of a radiograph stored as a negative (air bright, bone dark), at every place they read
one: training, validation, evaluation and inference. Pretraining takes X-rays of any body part, whose layout the
check does not know, and says nothing."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from bundle_runner import BUNDLES, configs
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.transforms import Compose

from unimiss_monai.data.phantom import make_ct_phantom
from unimiss_monai.drr import render, to_radiograph
from unimiss_monai.transforms import AsGreyRadiographd

LOGGER = "unimiss_monai.data.radiograph_polarity"
CXR = "unimiss_cxr_segmentation", "unimiss_cxr_classification"
# (bundle, config files read in turn, ids of the preprocessings that read a radiograph)
CASES = [(b, ["inference.json"], ["preprocessing"]) for b in CXR] + [
    (b, ["train.json"], ["train#preprocessing", "validate#preprocessing"]) for b in CXR] + [
    ("unimiss_cxr_segmentation", ["train.json", "evaluate.json"], ["validate#preprocessing"]),
]


def _grey_steps(bundle: str, files: list[str], ids: list[str]) -> list[AsGreyRadiographd]:
    parser = ConfigParser()
    parser.read_config(configs(bundle, *files))
    parser.update({"bundle_root": str(BUNDLES / bundle)})
    steps = []
    for i in ids:
        content = parser.get_parsed_content(i, instantiate=True)
        transforms = content.transforms if isinstance(content, Compose) else [content]
        steps += [t for t in transforms if isinstance(t, AsGreyRadiographd)]
    assert steps, (bundle, files, ids)
    return steps


@pytest.fixture(scope="module")
def drr() -> np.ndarray:
    """An AP DRR ``(X, Y)`` of the chest phantom, 8-bit, as the synthetic sample sets write them."""
    ph = make_ct_phantom(shape=(40, 40, 32), spacing=(10.0, 10.0, 11.0), seed=0)
    return to_radiograph(render(ph.hu, ph.affine, views=["AP"], detector_shape=(64, 64), pixel_spacing=7.0)[0]).T


def _said(step, pixels: np.ndarray, name: str, caplog) -> list[str]:
    caplog.clear()
    image = MetaTensor(torch.as_tensor(pixels, dtype=torch.float32)[None], meta={"filename_or_obj": name})
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        step({"image": image})
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


@pytest.mark.parametrize("bundle, files, ids", CASES, ids=[f"{b}:{f[-1]}:{len(i)}" for b, f, i in CASES])
def test_the_chest_bundles_warn_of_a_negative(bundle, files, ids, drr, tmp_path, caplog):
    for n, step in enumerate(_grey_steps(bundle, files, ids)):
        assert _said(step, drr, str(tmp_path / f"positive{n}.png"), caplog) == []
        negative = str(tmp_path / f"negative{n}.png")
        (message,) = _said(step, 255 - drr, negative, caplog)
        assert message.startswith(f"{negative}: looks like a negative") and "MONOCHROME2" in message


def test_pretraining_says_nothing_of_an_x_ray(drr, tmp_path, caplog):
    # its X-rays' step, and its CT pairs' step of their DRRs (read here under the X-rays' key)
    steps = _grey_steps("unimiss_pretraining", ["train.json"], ["train#xray_preprocessing#2", "train#ct_files#3"])
    for n, step in enumerate(steps):
        step.keys = ("image",)
        assert _said(step, 255 - drr, str(tmp_path / f"hand{n}.png"), caplog) == []
        # pickled as before the chest option: the disk cache keeps the key of its X-ray entries
        assert "chest" not in step.converter.__dict__
