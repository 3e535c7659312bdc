"""A segmentation training run whose datalist names a file that does not exist is refused before any work, in one
line naming ``datalist.json['<split>'][i]``, the file and the fix, as the classification bundles refuse it (it used to
start, and fail when training reached the file with a reader's words naming no datalist entry)."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from bundle_runner import run_workflow

from unimiss_monai.utils.errors import root_cause

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("bundle", ["unimiss_ct_segmentation", "unimiss_cxr_segmentation"])
@pytest.mark.parametrize("split, key", [("training", "image"), ("training", "label"), ("validation", "image")])
def test_training_refuses_a_missing_file_up_front(bundle, split, key, sample_set, tmp_path):
    from unimiss_monai.data.samples import find_dataset

    name = bundle.removeprefix("unimiss_")
    data = tmp_path / "data"
    shutil.copytree(find_dataset(sample_set(name), name), data)
    datalist = json.loads((data / "datalist.json").read_text())
    missing = str(tmp_path / "x" / "none.nii.gz")
    datalist[split][-1][key] = missing
    (data / "datalist.json").write_text(json.dumps(datalist))
    out = tmp_path / "out"
    with pytest.raises(Exception) as err:  # noqa: PT011 - monai.bundle wraps the datalist's FileNotFoundError
        run_workflow(bundle, ["train.json", "smoke.yaml"], "train", check=False, dataset_dir=str(data),
                     bundle_root=str(tmp_path / "bundle"), output_dir=str(out), num_workers=0, max_epochs=1)
    cause = root_cause(err.value)
    index = len(datalist[split]) - 1
    assert isinstance(cause, FileNotFoundError), repr(cause)
    assert re.fullmatch(rf".*datalist\.json\[{split!r}\]\[{index}\]: {key} {re.escape(repr(missing))} does not exist; "
                        r"fix the path \(relative paths start at .*\)", str(cause)), str(cause)
    assert not (out / "checkpoints").exists() and not (tmp_path / "bundle" / "models").exists()
