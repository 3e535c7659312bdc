"""The pretraining bundle's CT loading, in each recipe, refuses a volume of one value throughout (an all-zero export)
and one of raw scanner values (0..4095, the rescale intercept never applied), and warns, with the fix, about one whose
values do not look like HU (MR-like, no air): each was trained on without a word. Refused, a sample is left out and
named when the run ends (``tests/bundles/test_pretraining_left_out.py``)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from bundle_runner import configs
from monai.bundle import ConfigParser
from monai.transforms import Compose

from unimiss_monai.data.phantom import make_ct_phantom
from unimiss_monai.utils.errors import root_cause

RECIPES = {"unimiss_plus": ("train.json",), "unimiss": ("train.json", "unimiss.yaml"),
           "intra_inter": ("train.json", "recipe_intra_inter.yaml")}


def _ct_loading(files: tuple[str, ...], section: str) -> Compose:
    parser = ConfigParser()
    parser.read_config(configs("unimiss_pretraining", *files))
    steps = parser.get_parsed_content(f"train#{section}")
    return Compose([s for s in steps if type(s).__name__ in ("LoadCTImaged", "CheckSpatialDimsd")])


def _save(path, volume):
    nib.save(nib.Nifti1Image(volume.astype(np.float32), np.diag([2.0, 2.0, 3.0, 1.0])), str(path))
    return str(path)


@pytest.mark.parametrize("recipe, section", [*((r, "ct_files") for r in RECIPES), ("unimiss_plus", "ct_render")])
def test_constant_and_raw_cts_are_refused_and_mr_like_values_warned_about(tmp_path, caplog, recipe, section):
    load = _ct_loading(RECIPES[recipe], section)
    phantom = make_ct_phantom((32, 28, 20))
    good = _save(tmp_path / "good.nii.gz", phantom.hu)
    zero = _save(tmp_path / "zero.nii.gz", np.zeros((32, 28, 20)))
    raw = _save(tmp_path / "raw.nii.gz", phantom.hu + 1024)  # the rescale intercept never applied
    mr = _save(tmp_path / "mr.nii.gz", np.random.default_rng(0).uniform(0, 900, (32, 28, 20)))  # no air, no HU
    drr = _save(tmp_path / "drr.nii.gz", np.random.default_rng(0).uniform(0, 1, (24, 24)))
    paired = section == "ct_files" and recipe == "unimiss_plus"  # the UniMiSS+ files carry their DRR

    def item(ct):
        return {"image": ct, "drr": drr} if paired else {"image": ct}

    with caplog.at_level("WARNING"):
        load(item(good))
        assert not [r for r in caplog.records if r.levelname == "WARNING"]
        with pytest.raises(Exception) as refused:
            load(item(zero))
        assert str(root_cause(refused.value)).startswith(f"{zero}: every voxel has the same value (0), so it holds no "
                                                         "body"), root_cause(refused.value)
        with pytest.raises(Exception) as refused:
            load(item(raw))
        assert str(root_cause(refused.value)).startswith(f"{raw}: next to no values below -50 but padding, "), \
            root_cause(refused.value)
        assert "raw scanner values (HU + 1024), not HU; apply the rescale" in str(root_cause(refused.value))
        load(item(mr))
        load(item(mr))  # the next epoch: said once per file, not once per read
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith(f"{mr}: intensities [0, "), warnings
    assert "no air near -1000 HU" in warnings[0] and "RescaleIntercept, the intercept often -1024" in warnings[0]
