"""The CXR segmentation evaluation (``train.json + evaluate.json + smoke.yaml``) over one good case and four that are
no radiograph with its label: a mask given as the image, a CT slice in HU, pixels of 10 m (a header in another unit)
and a label whose affine lies 500 mm from its image's. Each was scored (HD95 in hundreds of metres, masks compared
with another place); now each fails alone, in one line naming its file and the fix, and the good case is scored."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bundle_runner import run_workflow, smoke_weights

from unimiss_monai.data.phantom import make_ct_phantom
from unimiss_monai.utils.errors import root_cause

pytestmark = pytest.mark.integration
BUNDLE = "unimiss_cxr_segmentation"


def _bad_cases(root: Path, good: dict) -> dict[str, tuple[dict, str, str]]:
    """name -> (datalist entry, the file its reason must name, a pattern of the reason)."""
    image, label = nib.load(root / good["image"]), nib.load(root / good["label"])
    pixels, affine = np.asarray(image.dataobj, np.float32), image.affine

    def save(name: str, array, grid) -> str:
        nib.save(nib.Nifti1Image(np.asarray(array), grid), root / name)
        return name

    mask = save("images/mask.nii.gz", (np.asarray(label.dataobj)[:, :, 0, 0] > 0).astype(np.float32), affine)
    hu = make_ct_phantom(pixels.shape + (8,), (7.0, 7.0, 7.0), seed=0).hu[:, :, 4].astype(np.float32)
    huge = affine.copy()
    huge[:3, :2] *= 1e4 / 7.0
    shifted = label.affine.copy()
    shifted[0, 3] += 500.0
    return {
        "mask": ({**good, "image": mask}, mask, r"holds only 2 distinct values .* a mask or label map"),
        "ct_slice": ({**good, "image": save("images/slice.nii.gz", hu, affine)}, "slice.nii.gz",
                     r"looks like a CT slice in HU"),
        "huge_pixels": ({"image": save("images/huge.nii.gz", pixels, huge),
                         "label": save("labels/huge.nii.gz", np.asarray(label.dataobj), huge)}, "huge.nii.gz",
                        r"pixel size \[10000.*\] mm is not a radiograph's .*rewrite it with the spacing in mm"),
        "shifted_label": ({**good, "label": save("labels/shifted.nii.gz", np.asarray(label.dataobj), shifted)},
                          "shifted.nii.gz", r"label affine differs from the affine of its image .*test_000\.nii\.gz"),
    }


def test_evaluation_fails_each_implausible_case_alone(sample_set, tmp_path):
    from unimiss_monai.data.samples import find_dataset

    samples = Path(find_dataset(sample_set("cxr_segmentation"), "cxr_segmentation"))
    root = tmp_path / "bundle"
    smoke_weights(BUNDLE, root)
    data = tmp_path / "data"
    shutil.copytree(samples, data)
    datalist = json.loads((data / "datalist.json").read_text())
    good = datalist["test"][0]
    bad = _bad_cases(data, good)
    datalist["test"] = [good] + [entry for entry, _, _ in bad.values()]
    (data / "datalist.json").write_text(json.dumps(datalist))
    out = tmp_path / "out"
    try:
        run_workflow(BUNDLE, ["train.json", "evaluate.json", "smoke.yaml"], "eval", check=False,
                     dataset_dir=str(data), bundle_root=str(root), output_dir=str(out), num_workers=0)
        error = ""
    except Exception as err:  # noqa: BLE001 - monai.bundle wraps the report's RuntimeError
        error = str(root_cause(err))
    assert re.match(rf"evaluation: {len(bad)} of {len(bad) + 1} cases failed, listed .* in ", error), error
    report = json.loads((out / "segmentation_report.json").read_text())
    assert report["num_cases"] == 1 and report["cases"][0]["case"] == Path(good["image"]).name.split(".")[0]
    reasons = {f["case"]: f["reason"] for f in report["failed"]}
    assert len(reasons) == len(bad)
    for name, (entry, named, says) in bad.items():
        reason = reasons[str(data / entry["image"])]
        assert "\n" not in reason and Path(named).name in reason and re.search(says, reason), (name, reason)
