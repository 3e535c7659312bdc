"""A fine-tune training run over a datalist with inputs that fail their checks (a CT of air alone, a mask given as the
radiograph) is refused before any training, in one error naming every such item by its place in the datalist, each
with its reason. It stopped at the first one its loader reached (the CT bundles while filling the memory cache, the
CXR bundles mid-epoch), and each rerun found the next."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bundle_runner import run_workflow
from PIL import Image

from unimiss_monai.utils.errors import root_cause

pytestmark = pytest.mark.integration


def _air_ct(item: dict, root: Path, name: str) -> dict:
    """The case with its CT replaced by one of air alone (-1000 HU and noise) on the same grid."""
    src = nib.load(root / item["image"])
    air = -1000.0 + np.random.default_rng(0).uniform(-20, 20, src.shape).astype(np.float32)
    nib.save(nib.Nifti1Image(air, src.affine), root / f"{name}.nii.gz")
    return {**item, "image": f"{name}.nii.gz"}


def _mask_radiograph(item: dict, root: Path, name: str) -> dict:
    """The case with its radiograph replaced by a mask (a PNG of two values)."""
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 8:30] = 255
    Image.fromarray(mask).save(root / f"{name}.png")
    return {**item, "image": f"{name}.png"}


# bundle -> (the broken copy of a case, what its reason says)
BAD = {
    "unimiss_ct_segmentation": (_air_ct, r"holds nothing denser than air"),
    "unimiss_ct_classification": (_air_ct, r"holds nothing denser than air"),
    "unimiss_cxr_segmentation": (_mask_radiograph, r"holds only 2 distinct values .*? a mask or label map"),
    "unimiss_cxr_classification": (_mask_radiograph, r"holds only 2 distinct values .*? a mask or label map"),
}


@pytest.mark.parametrize("bundle, split", [*((b, "training") for b in BAD), ("unimiss_cxr_segmentation", "validation"),
                                           ("unimiss_ct_segmentation", "validation")])
def test_training_names_every_bad_input_up_front(bundle, split, sample_set, tmp_path):
    from unimiss_monai.data.samples import find_dataset

    name = bundle.removeprefix("unimiss_")
    data = tmp_path / "data"
    shutil.copytree(find_dataset(sample_set(name), name), data)
    datalist = json.loads((data / "datalist.json").read_text())
    make, says = BAD[bundle]
    items = datalist[split]
    good = items[0]
    items.insert(1, make(good, data, "bad_a"))
    items.append(make(good, data, "bad_b"))
    (data / "datalist.json").write_text(json.dumps(datalist))
    out = tmp_path / "out"
    with pytest.raises(Exception) as err:  # noqa: PT011 - monai.bundle wraps the refusal's ValueError
        run_workflow(bundle, ["train.json", "smoke.yaml"], "train", check=False, dataset_dir=str(data),
                     bundle_root=str(tmp_path / "bundle"), output_dir=str(out), num_workers=0, max_epochs=1)
    cause = root_cause(err.value)
    assert isinstance(cause, ValueError), repr(cause)
    message = str(cause)
    last = len(items) - 1
    assert message.startswith(f"datalist {data / 'datalist.json'}: 2 of the {len(items)} items of {split!r} cannot be "
                              "trained on; fix or remove each, then run again: [1] "), message
    named = re.findall(r"\[(\d+)\] (\S+?): ", message)
    assert [(int(i), Path(p).name) for i, p in named] == [(1, items[1]["image"]), (last, items[last]["image"])]
    assert len(re.findall(says, message)) == 2 and "\n" not in message, message
    assert not (out / "checkpoints").exists() and not (tmp_path / "bundle" / "models").exists()
