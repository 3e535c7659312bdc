"""A CT far smaller than a body part (a 4 x 4 x 4 test volume, a crop of one organ, a specimen) is rendered, as the
fine-tune and pretraining bundles take such CTs too, but not without a word: its DRRs show no radiograph's anatomy.
A slab of a real CT, thin along one axis only, is no such CT."""

from __future__ import annotations

import json
import logging
import re
import warnings

import numpy as np
import pytest

from unimiss_monai.data import load_ct, save_nifti
from unimiss_monai.engines import DRRGenerator


def _ct(path, shape, spacing):
    hu = np.full(shape, -1000.0, np.float32)
    hu[tuple(slice(s // 4, max(s // 4 + 1, 3 * s // 4)) for s in shape)] = 40.0  # soft tissue inside air
    return save_nifti(hu, np.diag([*spacing, 1.0]), path)


@pytest.mark.parametrize("shape, spacing, seen", [
    ((4, 4, 4), (1.0, 1.0, 1.0), r"is 4 x 4 x 4 voxels \(4 x 4 x 4 mm\): 3 of its axes have fewer than 16 voxels"),
    ((12, 12, 8), (2.0, 2.0, 5.0), r"is 12 x 12 x 8 voxels \(24 x 24 x 40 mm\): 3 of its axes have fewer"),  # a crop
    ((40, 40, 40), (0.5, 0.5, 0.5), r"is 40 x 40 x 40 voxels \(20 x 20 x 20 mm\): 3 of its axes are under 30 mm"),
])
def test_a_ct_too_small_for_a_body_part_is_loaded_with_a_warning_naming_it(tmp_path, shape, spacing, seen):
    path = _ct(tmp_path / "small.nii.gz", shape, spacing)
    name = re.escape(str(tmp_path / "small.nii.gz"))
    with pytest.warns(UserWarning, match=rf"^{name}: {seen}.*, too small to hold a body part.*pass the whole CT"):
        hu, _ = load_ct(path)
    assert hu.shape == shape


@pytest.mark.parametrize("shape, spacing", [
    ((64, 64, 2), (2.0, 2.0, 2.0)),  # a slab two slices thick: 128 x 128 x 4 mm
    ((16, 16, 16), (2.0, 2.0, 2.0)),  # the fewest voxels, and 32 mm along each axis
])
def test_a_slab_and_a_ct_of_a_body_part_say_nothing(tmp_path, shape, spacing):
    path = _ct(tmp_path / "ct.nii.gz", shape, spacing)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        load_ct(path)


def test_the_drr_run_renders_a_tiny_ct_and_warns_of_it_alone(tmp_path, caplog):
    data, out = tmp_path / "data", tmp_path / "out"
    _ct(data / "tiny.nii.gz", (4, 4, 4), (1.0, 1.0, 1.0))
    _ct(data / "chest.nii.gz", (20, 20, 12), (16.0, 16.0, 20.0))
    with caplog.at_level(logging.WARNING):
        DRRGenerator(data, out, views=["AP"], detector_shape=(24, 24), pixel_spacing=16.0, progress=False).run()
    said = [r.getMessage() for r in caplog.records if "too small to hold a body part" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith(str(data / "tiny.nii.gz")), said
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else None
    assert (out / "tiny" / "tiny_AP.nii.gz").is_file() and (out / "chest" / "chest_AP.nii.gz").is_file(), summary
