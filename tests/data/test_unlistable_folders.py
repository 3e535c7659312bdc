"""A folder of the inputs that cannot be listed (no read permission) stands in the run as an input of its own that
fails in one line naming it and the fix, so the run ends non-zero; the inputs beside it are read. It was warned about
and left out, and the run exited 0 with its images never read.

Tests run as root here, where permissions do not stop a listing, so the listing is made to fail as ``os.walk`` and
``os.listdir`` meet it: a ``PermissionError`` naming the folder."""

from __future__ import annotations

import errno
import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from monai.transforms import LoadImaged

from unimiss_monai.data import find_ct_cases, make_ct_phantom, save_nifti
from unimiss_monai.data.classification_labels import list_images
from unimiss_monai.data.ct_io import CTInputError, load_ct
from unimiss_monai.data.dicom_series import write_dicom_series
from unimiss_monai.data.image_formats import cannot_list
from unimiss_monai.data.tolerant import FAILED_KEY, TolerantDataset
from unimiss_monai.data.xray import list_radiographs
from unimiss_monai.engines import DRRGenerationError, DRRGenerator

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engines"))
from drr_phantoms import SMALL, phantom_case  # noqa: E402


def _locked(monkeypatch, folder) -> str:
    """Make ``folder`` fail as a folder of mode 000 does: it cannot be listed, nor anything in it looked at; returns
    the line its failure says."""
    folder = os.path.realpath(folder)
    scandir, listdir, stat = os.scandir, os.listdir, os.stat

    def refuse(real, inside: bool):
        def call(path=".", *args, **kwargs):
            real_path = os.path.realpath(path)
            if real_path == folder and not inside or inside and real_path.startswith(folder + os.sep):
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real(path, *args, **kwargs)
        return call

    monkeypatch.setattr(os, "scandir", refuse(scandir, inside=False))
    monkeypatch.setattr(os, "listdir", refuse(listdir, inside=False))
    monkeypatch.setattr(os, "stat", refuse(stat, inside=True))
    return ("cannot be listed (Permission denied), so its images were not read; give this user read and search "
            "permission on it (chmod -R u+rX), or move it out of the dataset folder")


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


def _ct(path):
    p = make_ct_phantom((20, 18, 10))
    save_nifti(p.hu, p.affine, path)


def test_a_ct_folder_that_cannot_be_listed_is_a_case_that_fails_in_one_line(tmp_path, monkeypatch, caplog):
    data = tmp_path / "data"
    (data / "locked").mkdir(parents=True)
    _ct(data / "ct01.nii.gz")
    said = _locked(monkeypatch, data / "locked")
    with caplog.at_level("WARNING"):
        cases = find_ct_cases(data)
    assert [(c.name, c.image) for c in cases] == [("ct01", data / "ct01.nii.gz"), ("locked", data / "locked")]
    assert [w for w in _warnings(caplog) if said in w] == [f"{data / 'locked'}: {said}"]
    with pytest.raises(CTInputError, match=f"^{re.escape(str(data / 'locked'))}: {re.escape(said)}$"):
        load_ct(data / "locked")
    load_ct(data / "ct01.nii.gz")  # the listing of the others is untouched


def test_a_dataset_folder_that_cannot_be_listed_is_refused_in_one_line(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    said = _locked(monkeypatch, tmp_path / "data")
    with pytest.raises(CTInputError, match=f"^{re.escape(str(tmp_path / 'data'))}: {re.escape(said)}$"):
        find_ct_cases(tmp_path / "data")


def test_the_drr_run_renders_the_others_and_ends_non_zero_naming_the_folder(tmp_path, monkeypatch):
    data, out = tmp_path / "data", tmp_path / "out"
    phantom_case(data, "good", labels=False)
    (data / "P2" / "SE1").mkdir(parents=True)
    said = _locked(monkeypatch, data / "P2")
    with pytest.raises(DRRGenerationError) as info:
        DRRGenerator(data, out, **SMALL).run()
    assert str(info.value).startswith("1 of 2 CT(s) failed"), info.value
    assert f"{data / 'P2'}: {said}" in str(info.value)
    listed = json.loads((out / "datalist.json").read_text())
    assert len(listed["failures"]) == 1 and len(listed["testing"]) == 2  # the good CT's two views


def test_a_radiograph_folder_that_cannot_be_listed_fails_as_an_input(tmp_path, monkeypatch, caplog):
    data = tmp_path / "cxr"
    (data / "P2").mkdir(parents=True)
    save_nifti(np.zeros((8, 8), np.float32), np.eye(4), data / "P1.nii.gz")
    said = _locked(monkeypatch, data / "P2")
    with caplog.at_level("WARNING"):
        items = list_radiographs(data)
    assert [i["image"] for i in items] == [str(data / "P1.nii.gz"), str(data / "P2")]
    assert sum(said in w for w in _warnings(caplog)) == 1
    loaded = TolerantDataset(items, LoadImaged("image"), placeholder_shape=(1, 8, 8))
    assert [item[FAILED_KEY] for item in loaded] == ["", f"{data / 'P2'}: {said}"]


@pytest.mark.parametrize("series", [False, True])
def test_the_classifiers_list_it_once_as_an_input(tmp_path, monkeypatch, caplog, series):
    data = tmp_path / "data"
    (data / "locked").mkdir(parents=True)
    _ct(data / "ct01.nii.gz")
    said = _locked(monkeypatch, data / "locked")
    with caplog.at_level("WARNING"):
        items = list_images(data, series=series)
    assert [i["image"] for i in items] == [str(data / "ct01.nii.gz"), str(data / "locked")]
    assert sum(said in w for w in _warnings(caplog)) == 1  # one walk says it, the other leaves it to the first


def test_a_series_folder_given_keeps_its_locked_sub_folder_as_a_case(tmp_path, monkeypatch):
    p = make_ct_phantom((20, 18, 6))
    write_dicom_series(p.hu, p.affine, tmp_path / "SE1")
    (tmp_path / "SE1" / "locked").mkdir()
    _locked(monkeypatch, tmp_path / "SE1" / "locked")
    assert [c.image for c in find_ct_cases(tmp_path / "SE1")] == [tmp_path / "SE1", tmp_path / "SE1" / "locked"]


@pytest.mark.parametrize("labels", ["labelsTr", "ct01_labels"])
def test_a_locked_label_map_folder_is_left_out_as_a_listed_one_is(tmp_path, monkeypatch, caplog, labels):
    data = tmp_path / "data"
    (data / labels).mkdir(parents=True)
    _ct(data / "ct01.nii.gz")
    _locked(monkeypatch, data / labels)
    with caplog.at_level("WARNING"):
        assert [c.name for c in find_ct_cases(data)] == ["ct01"]
        assert [i["image"] for i in list_images(data)] == [str(data / "ct01.nii.gz")]
    assert not [w for w in _warnings(caplog) if "cannot be listed" in w]


def test_the_2d_listers_refuse_a_locked_folder_before_any_work(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    said = _locked(monkeypatch, tmp_path / "data")
    for lister in (list_radiographs, list_images):
        with pytest.raises(ValueError, match=f"^{re.escape(str(tmp_path / 'data'))}: {re.escape(said)}$"):
            lister(tmp_path / "data")


def test_a_listing_that_fails_for_another_reason_is_not_told_to_chmod():
    line = cannot_list("/d/share", OSError(errno.EIO, "Input/output error", "/d/share"))
    assert line == ("/d/share: cannot be listed (Input/output error), so its images were not read; check the disk or "
                    "share it lies on, or move it out of the dataset folder")
