"""Folder scans of inference inputs (``scan_images``, ``list_images``, ``list_radiographs``): every image is found,
a DICOM of any name included, and what is left out (label maps, a bundle's own outputs, radiographs beside an
``inference/`` folder) is left out aloud."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from unimiss_monai.data.case_names import OutputNames
from unimiss_monai.data.classification_labels import list_images
from unimiss_monai.data.image_formats import is_dicom_file, is_label_map_name, scan_images
from unimiss_monai.data.xray import list_radiographs

DICOM = b"\0" * 128 + b"DICM" + b"\2\0\1\0"  # what a DICOM file starts with; enough for the scan


def _touch(path: Path, content: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_label_maps_are_told_apart_by_name_and_folder():
    assert is_label_map_name("ct01_label.nii.gz") and is_label_map_name("ct01_labels.nii") and is_label_map_name("ct01_seg.nii.gz")
    assert is_label_map_name("labelsTr/ct01.nii.gz") and is_label_map_name("a/labels/ct01.nii.gz")
    assert not is_label_map_name("ct01.nii.gz") and not is_label_map_name("imagesTr/labelled_ct.nii.gz")
    assert not is_label_map_name("images/ct01_label_free.nii.gz")


def test_ct_classification_takes_no_label_map_and_says_what_it_left_out(tmp_path, caplog):
    ct = _touch(tmp_path / "crop.nii.gz")
    nested = _touch(tmp_path / "more" / "case2.nii.gz")
    for name in ("crop_label.nii.gz", "crop_seg.nii.gz", "labelsTr/case3.nii.gz"):
        _touch(tmp_path / name)
    with caplog.at_level(logging.INFO, logger="unimiss_monai.data.image_formats"):
        found = list_images(tmp_path, (".nii.gz", ".nii", ".mha", ".nrrd"))
    assert found == [{"image": str(ct)}, {"image": str(nested), "name": "more_case2"}]  # named by its path
    assert "3 label map(s) left out" in caplog.text and "crop_label.nii.gz" in caplog.text


def test_a_dicom_of_any_name_is_a_radiograph_where_dicom_is_scanned(tmp_path):
    named = _touch(tmp_path / "IM0001", DICOM)
    uid = _touch(tmp_path / "1.2.840.113619.2.55", DICOM)
    _touch(tmp_path / "notes.txt", b"a" * 200)
    _touch(tmp_path / "README", b"\0" * 128 + b"DICX")
    assert is_dicom_file(named) and not is_dicom_file(tmp_path / "README") and not is_dicom_file(tmp_path / "nothing")
    assert list_radiographs(tmp_path) == [{"image": str(uid)}, {"image": str(named)}]
    assert list_images(tmp_path, (".png", ".dcm")) == [{"image": str(uid)}, {"image": str(named)}]
    with pytest.raises(FileNotFoundError, match="no image"):  # CT classification scans no DICOM file
        list_images(tmp_path, (".nii.gz", ".nii"))


def test_ct_classification_takes_a_dicom_series_folder_as_one_input(tmp_path, caplog):
    """With ``series`` (CT classification's inference), each folder holding a DICOM series is one input and its files
    are its own: its slices and a conversion beside them are no inputs of their own, the conversion is said to be left
    out; a stray slice among NIfTI crops is no series, and is said to be left out as a format not read."""
    crops = [_touch(tmp_path / name) for name in ("crop_a.nii.gz", "crop_b.nii.gz")]
    series = tmp_path / "patient1" / "series"
    for i in range(3):
        _touch(series / f"IM{i:04d}", DICOM)
    conversion = _touch(series / "series.nii.gz")  # dcm2niix's, beside the slices
    _touch(tmp_path / "stray.dcm", DICOM)
    suffixes = (".nii.gz", ".nii")
    with caplog.at_level(logging.WARNING):
        found = list_images(tmp_path, suffixes, series="true")  # a config's string is a bool too
    assert found == [*({"image": str(p)} for p in crops), {"image": str(series), "name": "patient1_series"}]
    warnings = [r.getMessage() for r in caplog.records]
    assert any("1 image file(s) beside its slices left out (series.nii.gz)" in w for w in warnings), warnings
    assert any("1 image file(s) of formats not read here left out (.dcm: 1)" in w for w in warnings), warnings
    # the folder given is the series
    assert list_images(series, suffixes, series=True) == [{"image": str(series), "name": "series"}]
    assert [i["image"] for i in list_images(tmp_path, suffixes)] == [str(p) for p in (*crops, conversion)]  # files


def test_what_makes_no_series_folder(tmp_path, caplog):
    """Crops of any format read (MHA, NRRD) outnumbering a stray slice, an export's DICOMDIR index, and label-map
    folders holding DICOM files make no series; the crops stay inputs, the label maps are said to be left out."""
    suffixes = (".nii.gz", ".nii", ".mha", ".nrrd")
    crops = [_touch(tmp_path / "crops" / name) for name in ("crop1.mha", "crop2.mha", "crop3.nrrd")]
    _touch(tmp_path / "crops" / "IM0001", DICOM)
    export = tmp_path / "cd"
    _touch(export / "DICOMDIR", DICOM)
    slices = [_touch(export / "DICOM" / "S1" / f"IM{i}", DICOM) for i in range(2)]
    for labels in ("ct01_labels", "labelsTr/case1"):
        _touch(tmp_path / labels / "IM0001", DICOM)
    with caplog.at_level(logging.INFO):
        found = list_images(tmp_path, suffixes, series=True)
    assert found == [{"image": str(slices[0].parent), "name": "cd_DICOM_S1"},
                     *({"image": str(p), "name": f"crops_{p.name.split('.')[0]}"} for p in crops)]
    assert "2 label-map folder(s) holding DICOM files left out" in caplog.text


def test_a_dicom_file_beside_series_folders_is_named_once(tmp_path, caplog):
    # the series scan names it, and the scan for image files no longer names it again as a format not read
    _touch(tmp_path / "DoseReport.dcm", DICOM)
    series = [tmp_path / p / "ST1" / "SE1" for p in ("P1", "P2")]
    for folder in series:
        for i in range(3):
            _touch(folder / f"IM{i}", DICOM)
    with caplog.at_level(logging.WARNING):
        found = list_images(tmp_path, (".nii.gz",), series=True)
    assert found == [{"image": str(f), "name": f"{f.parts[-3]}_ST1_SE1"} for f in series]
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path}: 1 DICOM file(s) beside the series folders below it left out (DoseReport.dcm): a DICOM series is "
        "read from a folder of its own"]


def test_radiographs_beside_an_inference_folder_and_own_overlays_are_left_out_aloud(tmp_path, caplog):
    inside = [_touch(tmp_path / "inference" / name) for name in ("chest.png", "P1/ST1/IM1.dcm")]
    _touch(tmp_path / "inference" / "chest_overlay.png")
    _touch(tmp_path / "mine.png")
    _touch(tmp_path / "P2" / "IM1.png")  # in a sub-folder beside inference/: was left out unsaid
    with caplog.at_level(logging.INFO):
        found = list_radiographs(tmp_path)
    # sub-folders read too, an image there named by its path
    assert found == [{"image": str(inside[1]), "name": "P1_ST1_IM1"}, {"image": str(inside[0])}]
    assert f"in {tmp_path / 'inference'} only; 2 elsewhere in the folder left out (P2/IM1.png, mine.png)" in caplog.text
    assert "1 output(s) of this bundle left out" in caplog.text and "chest_overlay.png" in caplog.text
    more = _touch(tmp_path / "images" / "extra" / "x.png")  # a classification folder's images/ and the rest
    with caplog.at_level(logging.WARNING):
        assert list_images(tmp_path, (".png",)) == [{"image": str(more), "name": "extra_x"}]
    assert f"in {tmp_path / 'images'} only; 4 elsewhere in the folder left out (P2/IM1.png, " in caplog.text


def test_inputs_of_one_file_name_in_sub_folders_are_named_by_their_paths(tmp_path):
    # numbered by their order (IM1_png, IM1_png_2), a name passed to another patient's image when one was added;
    # by its path, an input's name depends on no other input
    alike = [_touch(tmp_path / p / "ST1" / "IM1.png") for p in ("P1", "P2")]
    top, single = _touch(tmp_path / "IM1.png"), _touch(tmp_path / "P3" / "chest.png")
    expected = [{"image": str(top)}, {"image": str(alike[0]), "name": "P1_ST1_IM1"},
                {"image": str(alike[1]), "name": "P2_ST1_IM1"}, {"image": str(single), "name": "P3_chest"}]
    assert list_radiographs(tmp_path) == expected
    assert list_images(tmp_path, (".png",)) == expected
    names = OutputNames(expected)
    assert [names.name(i["image"]) for i in expected] == ["IM1", "P1_ST1_IM1", "P2_ST1_IM1", "P3_chest"]
    # a folder name the file name starts with is not repeated (the DRR bundle's OUT/ct01/ct01_AP.png)
    drr = _touch(tmp_path / "ct01" / "ct01_AP.png")
    assert {"image": str(drr), "name": "ct01_AP"} in list_images(tmp_path, (".png",))


def test_hidden_files_and_other_formats_are_not_scanned(tmp_path, caplog):
    kept = _touch(tmp_path / "a.png")
    _touch(tmp_path / ".b.png")
    _touch(tmp_path / ".DS_Store")
    _touch(tmp_path / "c.npy")
    (tmp_path / "gone.png").symlink_to(tmp_path / "moved_away.png")
    with caplog.at_level(logging.INFO):
        assert scan_images(tmp_path) == [kept]
    # neither the hidden copy nor the link to a file that is gone is dropped unsaid
    said = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert ("WARNING", f"{tmp_path}: 1 link(s) to missing files left out (gone.png)") in said, said
    assert ("INFO", f"{tmp_path}: 1 hidden file(s) left out, not taken as images (.b.png)") in said, said


def test_a_ct_folder_scan_takes_no_label_map_as_a_ct(tmp_path, caplog):
    """The CT scan of the DRR and CT segmentation bundles: a CT's ``_labels`` map pairs with it, and a ``_label`` map
    or an earlier run's ``_seg`` output beside it are left out aloud, not segmented or rendered as CTs."""
    from unimiss_monai.data.ct_inputs import find_ct_cases

    for name in ("ct01.nii.gz", "ct01_labels.nii.gz", "ct01_label.nii.gz", "ct01_seg.nii.gz", "ct02.nii"):
        _touch(tmp_path / name)
    with caplog.at_level(logging.INFO, logger="unimiss_monai.data"):
        cases = find_ct_cases(tmp_path)
    assert [(c.name, c.image.name) for c in cases] == [("ct01", "ct01.nii.gz"), ("ct02", "ct02.nii")]
    assert cases[0].labels == tmp_path / "ct01_labels.nii.gz" and cases[1].labels is None
    assert "3 label map(s) left out" in caplog.text and "ct01_seg.nii.gz" in caplog.text


def test_images_of_formats_a_bundle_does_not_read_are_left_out_aloud(tmp_path, caplog):
    """A classification bundle reads the formats of its image_suffixes: a .tif or .bmp radiograph beside them is not
    dropped unsaid (the segmentation bundle, which reads every format, would process it)."""
    from unimiss_monai.data.classification_labels import list_images

    png = _touch(tmp_path / "a.png")
    _touch(tmp_path / "b.tif")
    _touch(tmp_path / "c.bmp")
    _touch(tmp_path / "d_label.tif")  # a label map is left out as one, not as another format
    with caplog.at_level(logging.WARNING):
        assert list_images(tmp_path, suffixes=(".png", ".dcm")) == [{"image": str(png)}]
    assert "2 image file(s) of formats not read here left out (.bmp: 1, .tif: 1); the formats read are .png, .dcm" in caplog.text


def test_a_recursive_scan_walks_linked_folders_and_skips_hidden_ones(tmp_path):
    store = _touch(tmp_path / "store" / "b.png").parent
    data = tmp_path / "data"
    kept = _touch(data / "a.png")
    (data / "linked").symlink_to(store, target_is_directory=True)  # was left out unsaid
    _touch(data / ".ipynb_checkpoints" / "a-checkpoint.png")  # was read as a radiograph
    linked = {"image": str(data / "linked" / "b.png"), "name": "linked_b"}
    assert list_radiographs(data) == [{"image": str(kept)}, linked]


def test_a_samples_set_runs_on_its_inference_folder_unsaid(tmp_path, caplog):
    # its images/ and labels/ are its training data: a warning on every demo run would say nothing
    from unimiss_monai.data.samples import MANIFEST

    data = tmp_path / "cxr_segmentation"
    inside = _touch(data / "inference" / "test_000.png")
    _touch(data / "images" / "train_000.png")
    (data / "datalist.json").write_text('{"training": [], "test": [{"image": "inference/test_000.png"}]}')
    manifest = {"datasets": {"cxr_segmentation": {"datalist": "cxr_segmentation/datalist.json"}}}
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING):
        assert list_radiographs(data) == [{"image": str(inside)}]
    assert not caplog.records, caplog.text
