"""DRRGenerator on tiny phantoms: outputs, affines, orientation independence, labels, slabs, DICOM series, reading
the next CT ahead, and every bad-input and bad-setting case."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from drr_phantoms import SHAPE, SMALL, SPACING, as_an_earlier_version_wrote
from drr_phantoms import phantom_case as _phantom_case

from unimiss_monai.data import load_ct, make_ct_phantom, phantom_affine, save_nifti, write_dicom_series
from unimiss_monai.drr import render
from unimiss_monai.engines import DRRGenerationError, DRRGenerator


def test_outputs_affines_and_orientation(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    ras = _phantom_case(data, "ras", "RAS")
    _phantom_case(data, "lps", "LPS", labels=False)
    run = DRRGenerator(data, out, **SMALL).run()
    assert run["failures"] == [] and len(run["testing"]) == 4
    expected = render(ras.hu, ras.affine, views=("AP", "LAT_LEFT"), detector_shape=(40, 32), pixel_spacing=8.0)
    for v, view in enumerate(("AP", "LAT_LEFT")):
        drr = nib.load(out / "ras" / f"ras_{view}.nii.gz")
        assert drr.shape == (32, 40)  # (W, H): column axis first
        np.testing.assert_allclose(np.linalg.norm(drr.affine[:3, :2], axis=0), [8.0, 8.0])
        np.testing.assert_allclose(drr.get_fdata().T, expected[v].numpy(), rtol=1e-5, atol=1e-6)
        # the same body stored in LPS voxel order gives the same DRR
        lps = nib.load(out / "lps" / f"lps_{view}.nii.gz").get_fdata()
        np.testing.assert_allclose(lps, drr.get_fdata(), rtol=1e-4, atol=1e-4)
    # projected labels: one channel per phantom structure, zero where the DRR ray misses the body
    labels = nib.load(out / "ras" / "ras_AP_labels.nii.gz").get_fdata()
    names = json.loads((out / "ras" / "ras_labels.json").read_text())
    assert labels.shape == (32, 40, len(names)) and "lung_left" in names.values()
    body = labels.sum(-1) > 0
    ap = nib.load(out / "ras" / "ras_AP.nii.gz").get_fdata()
    assert np.all(ap[~body] < 1e-4) and np.all(ap[body] > 0)
    assert (out / "ras" / "ras_contact_sheet.png").stat().st_size > 0
    assert not (out / "lps" / "lps_AP_labels.nii.gz").exists()
    # datalists point at files that exist
    for item in json.loads((out / "datalist.json").read_text())["testing"]:
        assert (out / item["image"]).is_file() and (out / item["preview"]).is_file()
    per_case = json.loads((out / "ras" / "ras_datalist.json").read_text())
    assert all((out / "ras" / item["image"]).is_file() for item in per_case["testing"])


def test_dicom_series_renders_like_nifti(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    p = make_ct_phantom(SHAPE, affine=phantom_affine(SPACING, SHAPE, "RAS"), noise_hu=0)
    save_nifti(np.rint(p.hu), p.affine, data / "nifti.nii.gz")
    write_dicom_series(p.hu, p.affine, data / "dicom")
    DRRGenerator(data, out, **SMALL).run()
    for view in ("AP", "LAT_LEFT"):
        a = nib.load(out / "nifti" / f"nifti_{view}.nii.gz")
        b = nib.load(out / "dicom" / f"dicom_{view}.nii.gz")
        np.testing.assert_allclose(b.get_fdata(), a.get_fdata(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(b.affine, a.affine, atol=1e-4)


def test_relative_folders_survive_itk_loading_in_the_reader_thread(tmp_path, monkeypatch):
    """ITK, loaded lazily by the first DICOM series the reader thread reads, changes the working folder while it loads
    (itk.support.base.LibraryLoader): with relative folders the main thread's writes of the CT before then named paths
    in ITK's folder, and that CT failed with "another process removed it", every run. Here the reader's load of the
    series does what ITK's loader does, for long enough that the first CT is written meanwhile."""
    import time

    from unimiss_monai.engines import drr_generation

    p = make_ct_phantom(SHAPE, affine=phantom_affine(SPACING, SHAPE, "RAS"), noise_hu=0)
    save_nifti(np.rint(p.hu), p.affine, tmp_path / "data" / "a.nii.gz")
    write_dicom_series(p.hu, p.affine, tmp_path / "data" / "b_series")
    (tmp_path / "itk").mkdir()
    read = drr_generation.load_ct

    def load_ct_as_itk_loads(path):
        if Path(path).is_dir():  # the series: ITK's loader moves to its library folder, imports, moves back
            here = os.getcwd()
            os.chdir(tmp_path / "itk")
            time.sleep(1.0)
            os.chdir(here)
        return read(path)

    monkeypatch.setattr(drr_generation, "load_ct", load_ct_as_itk_loads)
    monkeypatch.chdir(tmp_path)
    DRRGenerator("data", "out", **SMALL).run()
    merged = json.loads((tmp_path / "out" / "datalist.json").read_text())
    assert not merged.get("failures") and {e["image"].split("/")[0] for e in merged["testing"]} == {"a", "b_series"}
    assert not any((tmp_path / "itk").iterdir())


@pytest.mark.parametrize("fraction, stored", [(0.0, np.int16), (0.25, np.float32)])
def test_slab_mode_pairs(tmp_path, fraction, stored):
    data, out = tmp_path / "data", tmp_path / "out"
    p = make_ct_phantom(SHAPE, affine=phantom_affine(SPACING, SHAPE), noise_hu=0)
    hu = (np.rint(p.hu) + fraction).astype(np.float32)
    save_nifti(hu, p.affine, data / "ct.nii.gz")
    run = DRRGenerator(data, out, views=["AP"], slab_depth=50.0, slab_detector_shape=(24, 24), progress=False).run()
    slabs = run["training"]
    assert len(slabs) == 4  # 20 slices of 10 mm in slabs of 5 slices
    covered = sorted((s["start"], s["stop"]) for s in slabs)
    assert covered[0][0] == 0 and covered[-1][1] == SHAPE[2]
    for pair in slabs:
        ct, drr = nib.load(out / pair["ct"]), nib.load(out / pair["drr"])
        assert ct.shape == (32, 28, 5) and drr.shape == (24, 24)
        # whole HU are stored as int16, which loses nothing; the slab reads back as the CT's own voxels
        assert ct.get_data_dtype() == stored
        np.testing.assert_array_equal(load_ct(out / pair["ct"])[0], hu[:, :, pair["start"]:pair["stop"]])
        assert np.isfinite(drr.get_fdata()).all() and drr.get_fdata().max() > 0
        # a slab's affine maps its first voxel to the same world point as the whole CT's voxel (0, 0, start)
        whole = phantom_affine(SPACING, SHAPE)
        np.testing.assert_allclose(ct.affine @ [0, 0, 0, 1], whole @ [0, 0, pair["start"], 1], atol=1e-4)


def test_slab_mode_says_it_projects_no_labels_and_does_not_read_them(tmp_path, caplog):
    """A label map beside the CT was read (and could fail the case) but projected nowhere in slab mode, unsaid."""
    import logging

    data = tmp_path / "data"
    _phantom_case(data, "ct")
    labels = data / "ct_labels.nii.gz"
    save_nifti(np.zeros((3, 3, 3), np.uint8), np.eye(4), labels)  # off the CT's grid: whole views refuse it
    with caplog.at_level(logging.WARNING, logger="unimiss_monai.engines.drr_generation"):
        run = DRRGenerator(data, tmp_path / "out", views=["AP"], slab_depth=50.0, slab_detector_shape=(24, 24),
                           progress=False).run()
    assert len(run["training"]) == 4 and not run.get("failures")
    assert ("slab mode (slab_depth 50 mm) projects no label maps: the 1 beside the CTs are left out; run without "
            "--slab_depth for DRRs with projected labels") in caplog.text
    with pytest.raises(DRRGenerationError, match="ct_labels.nii.gz"):
        DRRGenerator(data, tmp_path / "whole", views=["AP"], progress=False).run()


def test_a_slab_depth_under_half_a_slice_fails_the_case_instead_of_one_slice_slabs(tmp_path):
    from unimiss_monai.engines import DRRGenerationError

    data = tmp_path / "data"
    p = make_ct_phantom(SHAPE, affine=phantom_affine(SPACING, SHAPE), noise_hu=0)  # 10 mm slices
    save_nifti(p.hu, p.affine, data / "ct.nii.gz")
    with pytest.raises(DRRGenerationError) as err:
        DRRGenerator(data, tmp_path / "out", views=["AP"], slab_depth=4.0, slab_detector_shape=(24, 24),
                     progress=False).run()
    assert (f"{data / 'ct.nii.gz'}: slab_depth 4 mm is under half its slice spacing (10 mm), so no slab would be that "
            "thin; pass --slab_depth 10 or more") in str(err.value)
    run = DRRGenerator(data, tmp_path / "out6", views=["AP"], slab_depth=6.0, slab_detector_shape=(24, 24),
                       progress=False).run()
    assert len(run["training"]) == SHAPE[2]  # 6 mm rounds to one slice of 10 mm: slabs of one slice each


def test_a_ct_shallower_than_one_slab_fails_its_case_and_the_others_are_paired(tmp_path, monkeypatch):
    """A 2-slice CT gave one 20 mm slab beside the others' 50 mm ones, listed as a training pair with no word, though
    every slab was said to have one thickness. A failed CT is recorded by its absolute path: the datalist is read
    from its own folder, not from where the run was started."""
    from unimiss_monai.engines import DRRGenerationError

    data = tmp_path / "data"
    p = make_ct_phantom(SHAPE, affine=phantom_affine(SPACING, SHAPE), noise_hu=0)  # 20 slices of 10 mm
    save_nifti(p.hu, p.affine, data / "deep.nii.gz")
    save_nifti(p.hu[:, :, 8:10], p.affine, data / "shallow.nii.gz")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DRRGenerationError) as err:
        DRRGenerator("data", "out", views=["AP"], slab_depth=50.0, slab_detector_shape=(24, 24), progress=False).run()
    assert (f"{os.path.join('data', 'shallow.nii.gz')}: is 20 mm deep (2 slices of 10 mm), less than one 50 mm slab; "
            "pass a CT at least that deep, or a smaller --slab_depth") in str(err.value)
    listed = json.loads((tmp_path / "out" / "datalist.json").read_text())
    assert {(e["name"], e["stop"] - e["start"]) for e in listed["training"]} == {("deep", 5)}
    assert [(f["name"], f["image"]) for f in listed["failures"]] == [("shallow", str(data / "shallow.nii.gz"))]


def test_slab_mode_keeps_row_and_column_pixel_spacing(tmp_path):
    from unimiss_monai.drr import fit_slab_detector, split_slabs

    data, out = tmp_path / "data", tmp_path / "out"
    p = make_ct_phantom(SHAPE, affine=phantom_affine(SPACING, SHAPE), noise_hu=0)
    save_nifti(p.hu, p.affine, data / "ct.nii.gz")
    run = DRRGenerator(data, out, views=["AP"], detector_shape=(40, 32), pixel_spacing=(4.0, 8.0), slab_depth=50.0,
                       slab_detector_shape=(24, 24), progress=False).run()
    slab = split_slabs(p.hu, p.affine, 5)[0]
    # the slab detector has whole 4 mm rows along the superior axis and whole 8 mm columns across it: 19 x 49 pixels
    # (whole 4 mm columns would be 97 of them, 16.17 mm each once resized to 24, not 16.33)
    height, width = fit_slab_detector(slab, (4.0, 8.0), 1020.0, 850.0)
    assert (height, width) == (19, 49)
    for pair in run["training"]:
        affine = nib.load(out / pair["drr"]).affine  # array (W, H): the column spacing first, then the row spacing
        col_mm, row_mm = np.linalg.norm(affine[:3, :2], axis=0)
        np.testing.assert_allclose((row_mm, col_mm), (height * 4.0 / 24, width * 8.0 / 24), rtol=1e-6)
    # a record of slab DRRs that took the row spacing for both axes (no such key) is not reused: the CT renders again
    record = out / "ct" / "ct_done.json"
    done = json.loads(record.read_text())
    assert done["settings"].pop("slab_pixel_spacing") == "row and column"
    record.write_text(json.dumps(done))
    as_an_earlier_version_wrote(record.parent)
    DRRGenerator(data, out, views=["AP"], detector_shape=(40, 32), pixel_spacing=(4.0, 8.0), slab_depth=50.0,
                 slab_detector_shape=(24, 24), progress=False).run()
    assert "slab_pixel_spacing" in json.loads(record.read_text())["settings"]


def test_bad_volumes_fail_alone_and_are_summarised(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    _phantom_case(data, "good", labels=False)
    nan = make_ct_phantom(SHAPE).hu
    nan[1, 2, 3] = np.nan
    save_nifti(nan, phantom_affine(SPACING, SHAPE), data / "nan.nii.gz")
    save_nifti(np.zeros((16, 16), np.float32), np.eye(4), data / "flat.nii.gz")
    (data / "broken.nii.gz").write_bytes(b"\x00" * 64)
    # a 2 m wide volume: the source at sid=850 mm is inside it
    big_shape = (200, 200, 10)
    huge = np.full(big_shape, -1000, np.float32)
    huge[5:-5, 5:-5, 2:-2] = 40.0  # a body filling it: a volume of air alone fails earlier, as holding nothing
    save_nifti(huge, phantom_affine((10.0, 10.0, 10.0), big_shape), data / "huge.nii.gz")
    # a label map resampled with linear interpolation: fractions at every boundary
    lerp = _phantom_case(data, "lerp")
    save_nifti(lerp.labels * 0.75, lerp.affine, data / "lerp_labels.nii.gz")
    with pytest.raises(DRRGenerationError) as info:
        DRRGenerator(data, out, **SMALL).run()
    message = str(info.value)
    assert message.startswith("5 of 6 CT(s) failed")
    assert "nan.nii.gz: has 1 NaN voxels" in message and "flat.nii.gz: is a 2D image" in message
    assert "broken.nii.gz: is not a readable NIfTI file: it is not gzip-compressed" in message
    assert "huge.nii.gz" in message and "inside the volume" in message
    assert "lerp_labels.nii.gz: label map holds values that are not whole numbers" in message
    assert sorted(p.name for p in out.iterdir()) == ["datalist.json", "good"]  # nothing partial, no temp folders
    summary = json.loads((out / "datalist.json").read_text())
    assert len(summary["failures"]) == 5 and len(summary["testing"]) == 2


def test_the_next_ct_is_read_while_one_renders_and_no_further(tmp_path, monkeypatch):
    import threading
    import time

    data = tmp_path / "data"
    for name in ("a", "b", "c"):
        _phantom_case(data, name, labels=False)
    save_nifti(np.zeros((4, 4), np.float32), np.eye(4), data / "b2.nii.gz")  # fails in the reader, not the batch
    events, lock = [], threading.Lock()
    read, process = DRRGenerator._read, DRRGenerator._process

    def logged(kind, fn, pause):
        def wrapper(self, case, *args, **kwargs):
            with lock:
                events.append((kind, case.name, "start"))
            try:
                time.sleep(pause)  # renders take long enough for the reader to get ahead
                return fn(self, case, *args, **kwargs)
            finally:
                with lock:
                    events.append((kind, case.name, "end"))
        return wrapper

    monkeypatch.setattr(DRRGenerator, "_read", logged("read", read, 0.0))
    monkeypatch.setattr(DRRGenerator, "_process", logged("process", process, 0.3))
    with pytest.raises(DRRGenerationError, match=r"b2.nii.gz: is a 2D image") as info:
        DRRGenerator(data, tmp_path / "out", **SMALL).run()
    assert "1 of 4 CT(s) failed" in str(info.value)
    at = {event: i for i, event in enumerate(events)}
    # a's render overlaps b's read; b2 (the next) is read only once a is done, so at most two CTs are held
    assert at[("read", "b", "start")] < at[("process", "a", "end")]
    assert at[("read", "b2", "start")] > at[("process", "a", "end")]
    assert at[("read", "c", "start")] > at[("read", "b", "end")]
    # b2's read failed, so it was never processed; c still was
    assert ("process", "b2", "start") not in at and ("process", "c", "end") in at
    assert json.loads((tmp_path / "out" / "c" / "c_datalist.json").read_text())["testing"]


def test_mr_like_volume_warns_once_per_file_but_renders(tmp_path):
    data = tmp_path / "data"
    for name in ("mr1", "mr2"):
        save_nifti(np.random.default_rng(0).uniform(0, 900, SHAPE).astype(np.float32), phantom_affine(SPACING, SHAPE),
                   data / f"{name}.nii.gz")
    with pytest.warns(UserWarning, match="looks like MR") as record:
        run = DRRGenerator(data, tmp_path / "out", **SMALL).run()
    assert sorted(Path(str(w.message).split(":")[0]).name for w in record if "looks like MR" in str(w.message)) == [
        "mr1.nii.gz", "mr2.nii.gz"]
    assert len(run["testing"]) == 4


def test_a_fresh_process_prints_no_library_deprecation_warnings(tmp_path):
    # the first CT's load imports MONAI's readers; its "warn per file" filter must not show their deprecations
    data = tmp_path / "data"
    p = make_ct_phantom(SHAPE, affine=phantom_affine(SPACING, SHAPE), noise_hu=0)
    save_nifti(p.hu, p.affine, data / "ct.nii.gz")
    code = ("import sys; from unimiss_monai.engines import DRRGenerator; "
            f"DRRGenerator(sys.argv[1], sys.argv[2], **{SMALL!r}).run()")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}

    def stderr(preamble: str, out: str) -> str:
        result = subprocess.run([sys.executable, "-c", preamble + code, str(data), str(tmp_path / out)],
                                capture_output=True, text=True, timeout=300, env=env)
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stderr

    # with every warning shown (a filter that lets all through) the first load does print library deprecations;
    # where it does not, there is nothing for the filter to hold back
    if "DeprecationWarning" not in stderr("import warnings; warnings.simplefilter('always'); ", "shown"):
        pytest.skip("the libraries a first CT load imports warn of no deprecation here")
    quiet = stderr("", "out")
    assert "DeprecationWarning" not in quiet, quiet[-2000:]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(views=["AP", "OBLIQUE"]), "views: unknown DRR view 'OBLIQUE'"),
        (dict(detector_shape=(200_000, 200_000)), "detector_shape: .*GiB"),
        (dict(method="raycast"), "method: 'raycast'"),
        (dict(slab_depth=-1), "slab_depth"),
        (dict(sid=1200.0), "sid"),
        (dict(project_labels="maybe"), "project_labels"),
    ],
)
def test_bad_settings_raise_before_rendering(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        DRRGenerator(tmp_path / "in", tmp_path / "out", **kwargs)


def test_missing_dataset_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        DRRGenerator(tmp_path / "absent", tmp_path / "out", **SMALL).run()


def test_dicom_series_folder_is_a_case(tmp_path):
    p = make_ct_phantom(SHAPE, affine=phantom_affine(SPACING, SHAPE))
    write_dicom_series(p.hu, p.affine, tmp_path / "series")
    run = DRRGenerator(tmp_path / "series", tmp_path / "out", **SMALL).run()
    assert [item["name"] for item in run["testing"]] == ["series", "series"]
