"""A folder is one DICOM series only when its DICOM files are its CTs: a stray slice among NIfTI CTs is named and
left out (the folder was read as a series of that one slice, and failed whole), and a DICOM file is found wherever it
sorts among the folder's files (only the first eight were looked at). Series are found at any depth (an archive's
export nests them), and the CT files in sub-folders that no series holds are named, not dropped unsaid."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np

from unimiss_monai.data import find_ct_cases, make_ct_phantom
from unimiss_monai.data.ct_io import dicom_files, is_dicom_series_dir
from unimiss_monai.data.dicom_series import write_dicom_series

SHAPE = (24, 20, 12)


def _save(path, array, affine):
    nib.save(nib.Nifti1Image(np.asarray(array), affine), str(path))
    return path


def test_a_stray_slice_among_nifti_cts_is_named_and_the_cts_are_read(tmp_path, caplog):
    p = make_ct_phantom(SHAPE)
    series = tmp_path / "series"
    write_dicom_series(p.hu, p.affine, series)
    data = tmp_path / "data"
    data.mkdir()
    for name in ("ct01.nii.gz", "ct02.nii.gz"):
        _save(data / name, p.hu, p.affine)
    # "IM0001.dcm" sorts before the CTs, so the first eight files hold it
    shutil.copy(dicom_files(series)[0], data / "IM0001.dcm")
    with caplog.at_level("WARNING"):
        assert [c.name for c in find_ct_cases(data)] == ["ct01", "ct02"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    # once, with the fix that applies to a slice (a folder of its own), not also as a file of another format
    assert warnings == [f"{data}: 1 DICOM file(s) among 2 NIfTI CTs left out (IM0001.dcm): a DICOM series is read "
                        "from a folder of its own"], warnings
    # the series itself, with a dcm2niix conversion beside its slices, is still one series
    _save(series / "series.nii.gz", p.hu, p.affine)
    assert [c.image for c in find_ct_cases(series)] == [series]


def test_a_dicom_file_is_found_after_the_first_eight_files(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    for i in range(10):
        (folder / f"a{i:02d}.txt").write_text("notes")
    assert not is_dicom_series_dir(folder)
    p = make_ct_phantom(SHAPE)
    write_dicom_series(p.hu, p.affine, tmp_path / "series")
    shutil.copy(dicom_files(tmp_path / "series")[0], folder / "z_1.2.840.113619")  # a UID for a name, sorted last
    assert is_dicom_series_dir(folder) and [f.name for f in dicom_files(folder)] == ["z_1.2.840.113619"]


def test_series_at_any_depth_are_cases_named_by_their_path(tmp_path):
    p = make_ct_phantom(SHAPE)
    data = tmp_path / "archive"
    for patient in ("P1", "P2"):  # two exports with the same study and series folder names
        write_dicom_series(p.hu, p.affine, data / patient / "ST1" / "SE1")
    write_dicom_series(p.hu, p.affine, data / "ct03")
    _save(data / "P1" / "ST1" / "SE1_labels.nii.gz", np.zeros(SHAPE, np.uint8), p.affine)
    _save(data / "ct03_labels.nii.gz", np.zeros(SHAPE, np.uint8), p.affine)
    # a label map kept as DICOM slices is no CT (it was read as case "ct01_labels")
    write_dicom_series(p.hu, p.affine, data / "ct01_labels")
    _save(data / "ct01.nii.gz", p.hu, p.affine)
    cases = {c.name: c for c in find_ct_cases(data)}
    assert list(cases) == ["P1_ST1_SE1", "P2_ST1_SE1", "ct01", "ct03"]
    assert cases["P2_ST1_SE1"].image == data / "P2" / "ST1" / "SE1"
    assert cases["P1_ST1_SE1"].labels == data / "P1" / "ST1" / "SE1_labels.nii.gz"
    assert cases["P2_ST1_SE1"].labels is None and cases["ct03"].labels == data / "ct03_labels.nii.gz"
    assert cases["ct01"].labels is None  # its DICOM label folder is no volume format a label map is read in


def test_ct_files_in_sub_folders_no_series_holds_are_named(tmp_path, caplog):
    p = make_ct_phantom(SHAPE)
    data = tmp_path / "data"
    (data / "more").mkdir(parents=True)
    _save(data / "ct01.nii.gz", p.hu, p.affine)
    for name in ("ct02.nii.gz", "ct03.nii.gz"):
        _save(data / "more" / name, p.hu, p.affine)
    _save(data / "more" / "ct02_labels.nii.gz", np.zeros(SHAPE, np.uint8), p.affine)  # a label map: not said
    write_dicom_series(p.hu, p.affine, tmp_path / "series")
    shutil.copy(dicom_files(tmp_path / "series")[0], data / "more" / "scout.dcm")  # a stray slice makes no series
    with caplog.at_level("WARNING"):
        assert [c.name for c in find_ct_cases(data)] == ["ct01"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"{data}: 3 CT file(s) in sub-folders left out (more/ct02.nii.gz, more/ct03.nii.gz, "
                        "more/scout.dcm): a folder's CTs are read from the folder itself and from DICOM series "
                        "folders at any depth; list the others in a datalist.json there"], warnings


def test_a_dicom_file_beside_series_folders_makes_no_series(tmp_path, caplog):
    # an export's dose report at its top, or beside a study's series: the folder was read as a one-file series, and at
    # the top every series below it was dropped unsaid
    p = make_ct_phantom(SHAPE)
    data = tmp_path / "export"
    for patient in ("P1", "P2"):
        write_dicom_series(p.hu, p.affine, data / patient / "ST1" / "SE1")
    report = dicom_files(data / "P1" / "ST1" / "SE1")[0]
    shutil.copy(report, data / "DoseReport.dcm")
    shutil.copy(report, data / "P2" / "ST1" / "DoseReport")  # no suffix: found as DICOM by its header
    with caplog.at_level("WARNING"):
        assert [c.name for c in find_ct_cases(data)] == ["P1_ST1_SE1", "P2_ST1_SE1"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"{data}: 1 DICOM file(s) beside the series folders below it left out (DoseReport.dcm): a "
                        "DICOM series is read from a folder of its own",
                        f"{data / 'P2' / 'ST1'}: 1 DICOM file(s) beside the series folders below it left out "
                        "(DoseReport): a DICOM series is read from a folder of its own"], warnings


def test_label_folders_holding_dicom_files_are_warned_about(tmp_path, caplog):
    p = make_ct_phantom(SHAPE)
    data = tmp_path / "data"
    write_dicom_series(p.hu, p.affine, data / "ct05")
    write_dicom_series(p.hu, p.affine, data / "ct05_labels")  # a label map kept as slices: not read as labels
    write_dicom_series(p.hu, p.affine, data / "Labelson_J" / "SE1")  # a CT in a folder whose name reads as labels
    (data / "labelsTr").mkdir()
    _save(data / "labelsTr" / "ct05.nii.gz", np.zeros(SHAPE, np.uint8), p.affine)
    with caplog.at_level("INFO"):
        assert [(c.name, c.labels) for c in find_ct_cases(data)] == [("ct05", None)]
    said = [(r.levelname, r.getMessage()) for r in caplog.records if "label-map folder" in r.getMessage()]
    assert said == [("WARNING", f"{data}: 2 label-map folder(s) holding DICOM files left out, not taken as CT series "
                                "(Labelson_J, ct05_labels): a label map is read from a volume file "
                                "(<case>_labels.nii.gz); rename a folder that holds a CT"),
                    ("INFO", f"{data}: 1 label-map folder(s) left out, not taken as series (labelsTr)")], said


def test_a_series_folder_with_a_report_below_it_stays_a_series(tmp_path, caplog):
    # the report of a sub-folder was the case, and the slices of the series were said to be strays
    p = make_ct_phantom(SHAPE)
    data = tmp_path / "data"
    series = write_dicom_series(p.hu, p.affine, data / "SE1")
    (series / "SR").mkdir()
    shutil.copy(dicom_files(series)[0], series / "SR" / "DoseReport")
    with caplog.at_level("WARNING"):
        assert [(c.name, c.image) for c in find_ct_cases(series)] == [("SE1", series)]
        assert [(c.name, c.image) for c in find_ct_cases(data)] == [("SE1", series)]
    said = {r.getMessage() for r in caplog.records if r.levelname == "WARNING"}
    assert said == {f"{series}: 1 DICOM file(s) in folders below the series folder left out (SR/DoseReport): a DICOM "
                    "series is read from a folder of its own"}, said


def test_a_linked_series_folder_is_a_case_once(tmp_path):
    p = make_ct_phantom(SHAPE)
    store = write_dicom_series(p.hu, p.affine, tmp_path / "store" / "SE1")
    data = tmp_path / "data"
    data.mkdir()
    _save(data / "ct01.nii.gz", p.hu, p.affine)
    (data / "case_a").symlink_to(store, target_is_directory=True)
    (data / "case_a" / "loop").symlink_to(data, target_is_directory=True)  # a link back up is walked once
    cases = [(c.name, c.image) for c in find_ct_cases(data)]
    assert cases == [("case_a", data / "case_a"), ("ct01", data / "ct01.nii.gz")]


def test_a_stray_file_atop_an_export_opens_few_slices_and_the_tree_is_walked_once(tmp_path, monkeypatch):
    # an export's slices named by UIDs are opened to be told from other files: deciding which folder is the series
    # opened every slice of every series below a stray file at the top, and the files left out were walked again
    from unimiss_monai.data import image_formats

    p = make_ct_phantom(SHAPE)
    data = tmp_path / "export"
    for patient in ("P1", "P2"):
        series = write_dicom_series(p.hu, p.affine, data / patient / "SE1")
        for i, path in enumerate(dicom_files(series)):
            path.rename(series / f"1.2.840.{i}")
    shutil.copy(series / "1.2.840.0", data / "DoseReport")
    opened, walks = [], []
    sniff, walk = image_formats.is_dicom_file, image_formats.os.walk
    monkeypatch.setattr(image_formats, "is_dicom_file", lambda path: opened.append(path) or sniff(path))
    monkeypatch.setattr(image_formats.os, "walk", lambda top, **kw: walks.append(top) or walk(top, **kw))
    assert [c.name for c in find_ct_cases(data)] == ["P1_SE1", "P2_SE1"]
    assert SHAPE[2] == 12 and len(opened) <= 8, sorted(opened)  # of 25 files: a few of each folder
    assert walks == [data], walks
