"""A 2D bundle pointed at a DRR generation output reads the DRRs its datalist lists: a scan took each DRR twice (its
NIfTI and its preview) and the contact sheet, a figure of all views, as one more radiograph."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from unimiss_monai.data.classification_labels import list_images
from unimiss_monai.data.drr_run_folder import drr_run_images
from unimiss_monai.data.xray import list_radiographs
from unimiss_monai.engines.drr_generation import DRRGenerator

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engines"))
from drr_phantoms import SMALL, phantom_case  # noqa: E402


def test_the_drrs_of_a_run_are_read_not_their_previews_or_contact_sheet(tmp_path, caplog):
    data, out = tmp_path / "cts", tmp_path / "drr"
    data.mkdir()
    for name in ("ct01", "ct02"):
        phantom_case(data, name, labels=False)
    DRRGenerator(data, out, **SMALL).run()
    assert {p.name for p in out.rglob("*.png")} >= {"ct01_AP.png", "ct01_contact_sheet.png"}  # what a scan took
    drrs = [{"image": str(out / c / f"{c}_{v}.nii.gz"), "name": f"{c}_{v}"}
            for c in ("ct01", "ct02") for v in ("AP", "LAT_LEFT")]
    with caplog.at_level("INFO"):
        assert list_radiographs(out) == drrs
        assert list_images(out) == drrs
    assert f"{out} is the output of a DRR generation run: its 4 whole-view DRRs listed in datalist.json" in caplog.text


def test_slab_drrs_are_not_read_and_a_run_without_whole_views_is_refused(tmp_path):
    # a slab's DRR shows part of the anatomy on stretched pixels: no radiograph to segment or classify
    data, out = tmp_path / "cts", tmp_path / "drr"
    data.mkdir()
    phantom_case(data, "ct01", labels=False)
    DRRGenerator(data, out, views=["AP"], slab_depth=100.0, slab_detector_shape=(24, 24), progress=False).run()
    listed = json.loads((out / "datalist.json").read_text())
    assert listed["training"] and not listed["testing"]
    with pytest.raises(FileNotFoundError, match=r"drr: a DRR generation output whose datalist.json lists no "
                                                r"whole-view DRR \(a run of slabs only"):
        list_radiographs(out)
    # the CT classifier scans the folder as any other: its slab CTs are among the inputs
    slab_cts = {str(out / item["ct"]) for item in listed["training"]}
    assert len(slab_cts) == 2 and slab_cts <= {item["image"] for item in list_images(out, series=True)}


def test_other_datalists_leave_the_folder_to_the_scan(tmp_path):
    (tmp_path / "datalist.json").write_text(json.dumps({"training": [{"image": "a.png"}], "testing": []}))
    assert drr_run_images(tmp_path) is None and drr_run_images(tmp_path / "absent") is None
    (tmp_path / "datalist.json").write_text("not json")
    assert drr_run_images(tmp_path) is None


def test_a_run_stopped_before_its_datalist_is_told_to_be_finished_by_every_reader(tmp_path):
    """A run killed after some CTs leaves their folders and done records but no datalist.json (written last): the 2D
    bundles scanned its previews and contact sheets as radiographs, pretraining and fine-tuning said "create it with
    samples"; each now says to finish the run, and the rerun's datalist is read."""
    from unimiss_monai.data.datalists import load_datalist
    from unimiss_monai.data.pretraining_datalist import load_pretraining_datalist

    data, out = tmp_path / "cts", tmp_path / "drr"
    data.mkdir()
    for name in ("ct01", "ct02"):
        phantom_case(data, name, labels=False)
    settings = {**SMALL, "views": ["AP"], "slab_depth": 100.0, "slab_detector_shape": (24, 24)}
    DRRGenerator(data, out, **settings).run()
    (out / "datalist.json").unlink()  # as the run leaves it when stopped before its last CT
    words = rf"{out} is the output of a DRR generation run that has not finished \(2 CT\(s\) rendered, no datalist.json"
    for read in (list_radiographs, list_images, lambda f: load_pretraining_datalist(f / "datalist.json"),
                 lambda f: load_datalist(f / "datalist.json")):
        with pytest.raises(FileNotFoundError, match=words + r".*rerun the DRR bundle with the same --output_dir"):
            read(out)
    DRRGenerator(data, out, **settings).run()  # finished: the CTs rendered are skipped
    assert len(load_pretraining_datalist(out / "datalist.json")["ct"]) == 4  # two slabs of each CT


def test_a_datalist_of_the_users_in_a_drr_folder_is_read_as_theirs(tmp_path):
    """The DRR docs tell how to write a CXR datalist of a run's DRRs; written into the run's folder, its test list is
    the input, whether or not the run's own datalist is there beside the done records."""
    (tmp_path / "ct01").mkdir()
    (tmp_path / "ct01" / "ct01_done.json").write_text("{}")
    (tmp_path / "ct01" / "ct01_AP.nii.gz").write_bytes(b"")
    (tmp_path / "datalist.json").write_text(json.dumps({"training": [{"image": "ct01/ct01_AP.nii.gz"}],
                                                        "test": [{"image": "ct01/ct01_AP.nii.gz"}]}))
    assert drr_run_images(tmp_path) is None
    assert list_radiographs(tmp_path) == [{"image": str(tmp_path / "ct01" / "ct01_AP.nii.gz")}]
