"""A datalist file that does not exist: refused up front in one line naming the entry where a run must not start
(training, :func:`require_files`), and failing its case alone, in one line naming the file and the fix, where the
others go on (evaluation and inference, :class:`TolerantDataset`)."""

from __future__ import annotations

import json
import logging

import pytest
from monai.transforms import LoadImaged

from unimiss_monai.data.classification_labels import load_classification_datalist
from unimiss_monai.data.datalists import load_datalist, require_files
from unimiss_monai.data.tolerant import FAILED_KEY, TolerantDataset


def _datalist(tmp_path, item: dict, label="a.nii.gz"):
    (tmp_path / "a.nii.gz").write_bytes(b"x")
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"training": [{"image": "a.nii.gz", "label": label}, item]}))
    return path


def test_require_files_names_the_entry_the_file_and_the_fix(tmp_path):
    path = _datalist(tmp_path, {"image": "a.nii.gz", "label": "gone/b.nii.gz"})
    items = json.loads(path.read_text())["training"]
    require_files(items, path, "training")  # only the image is checked unless the label is asked for
    line = (f"{path}['training'][1]: label {str(tmp_path / 'gone/b.nii.gz')!r} does not exist; fix the path "
            f"(relative paths start at {tmp_path})")
    with pytest.raises(FileNotFoundError) as err:
        require_files(items, path, "training", ("image", "label"))
    assert str(err.value) == line
    with pytest.raises(FileNotFoundError) as err:
        load_datalist(path, "training", check_files=True)
    assert str(err.value) == line
    assert len(load_datalist(path, "training")) == 2  # evaluation: the case fails alone in the run


def test_a_list_kept_apart_whose_paths_start_at_its_own_folder_is_told_so(tmp_path):
    """A bundle given ``--datalist`` apart from ``--dataset_dir`` starts relative paths at the data folder; a list
    written relative to its own folder (MONAI's default) failed on a path that named neither."""
    data, lists = tmp_path / "data", tmp_path / "lists"
    (lists / "images").mkdir(parents=True)
    data.mkdir()
    (lists / "images" / "a.nii.gz").write_bytes(b"")
    path = lists / "seg list.json"
    path.write_text(json.dumps({"training": [{"image": "images/a.nii.gz"}]}))
    items = json.loads(path.read_text())["training"]
    with pytest.raises(FileNotFoundError) as err:
        require_files(items, path, "training", base_dir=data)
    assert str(err.value) == (
        f"{path}['training'][0]: image {str(data / 'images/a.nii.gz')!r} does not exist; fix the path (relative paths "
        f"start at {data}); its files are there relative to the datalist's own folder, {lists}, which relative paths "
        f"here do not start from: write them relative to {data}, or absolute")
    require_files(items, path, "training")  # from its own folder, as MONAI reads a list by default
    (lists / "images" / "a.nii.gz").unlink()
    with pytest.raises(FileNotFoundError) as err:  # found in neither: no word of the list's folder
        require_files(items, path, "training", base_dir=data)
    assert str(err.value).endswith(f"fix the path (relative paths start at {data})")


def test_classification_evaluation_lists_an_entry_whose_image_is_gone(tmp_path):
    path = _datalist(tmp_path, {"image": "gone.png", "label": "b"}, label="a")
    with pytest.raises(FileNotFoundError, match=r"\['training'\]\[1\]: image '.*gone.png' does not exist"):
        load_classification_datalist(path, "training", ["a", "b"])
    items = load_classification_datalist(path, "training", ["a", "b"], check_images=False)
    assert items[1]["image"] == str(tmp_path / "gone.png")


@pytest.mark.parametrize("key", ["image", "label"])
def test_a_case_whose_file_is_gone_fails_alone_in_one_line(tmp_path, caplog, key):
    import nibabel as nib
    import numpy as np

    nib.save(nib.Nifti1Image(np.zeros((4, 4), np.float32), np.eye(4)), tmp_path / "a.nii.gz")
    good = str(tmp_path / "a.nii.gz")
    item = {"image": good, "label": good, key: str(tmp_path / "gone.nii.gz")}
    dataset = TolerantDataset([item], LoadImaged(["image", "label"]), placeholder_shape=(1, 4, 4))
    with caplog.at_level(logging.ERROR, logger="unimiss_monai.data.tolerant"):
        reason = dataset[0][FAILED_KEY]
    gone = f"{key} {str(tmp_path / 'gone.nii.gz')!r} does not exist; fix the datalist entry or restore the file"
    assert reason == gone if key == "image" else reason == f"{item['image']}: {gone}"
    # the dataset serves evaluation runs too: its log line names no stage
    assert [r.getMessage() for r in caplog.records] == [f"case {item['image']} failed: {reason}"]
