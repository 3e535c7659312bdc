"""The report's DRR section on the outputs of a DRR generation run: failures beyond the few listed, runs made in slab
mode, and more CTs than are shown."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np

from unimiss_monai.report.document import Figure, Note, Paragraph
from unimiss_monai.report.run_folder import RunFolder
from unimiss_monai.report.sections.drr import drr_section


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def _drr(path, spacing=(1.5, 1.5)):
    """A small ``(W, H)`` DRR: a brighter band across the middle rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full((16, 12), 0.5, np.float32)
    image[:, 4:8] = 2.0
    nib.save(nib.Nifti1Image(image, np.diag([*spacing, 1.0, 1.0])), str(path))


def _texts(section, kind=Note):
    return [b.text for b in section.blocks if isinstance(b, kind)]


def test_failures_beyond_the_listed_ones_are_counted_and_their_full_list_named(tmp_path):
    drr = tmp_path / "unimiss_drr_generation"
    _drr(drr / "good" / "good_AP.nii.gz")
    failures = [{"name": f"bad{i}", "image": f"/cts/bad{i}.nii.gz", "error": f"error {i}"} for i in range(5)]
    _write(drr / "datalist.json", {"testing": [{"name": "good", "view": "AP", "image": "good/good_AP.nii.gz"}],
                                   "training": [], "failures": failures})
    (note,) = [t for t in _texts(drr_section(RunFolder(tmp_path))) if "failed" in t]
    assert note.startswith("5 CT(s) failed")
    assert all(f"bad{i}: error {i}" in note for i in range(3)) and "bad4" not in note
    assert "and 2 more" in note and str(drr / "datalist.json") in note


def test_a_run_whose_every_ct_failed_says_which_failed(tmp_path):
    drr = tmp_path / "unimiss_drr_generation"
    _write(drr / "datalist.json", {"testing": [], "training": [], "failures": [
        {"name": "bad", "image": "/cts/bad.nii.gz", "error": "has 3 NaN voxels"}]})
    notes = _texts(drr_section(RunFolder(tmp_path)))
    assert any("1 CT(s) failed" in t and "bad: has 3 NaN voxels" in t for t in notes)
    assert not any("run the drr_generation step" in t for t in notes)


def _slab_run(tmp_path, slabs=3, views=("AP", "LAT_LEFT")):
    """A slab-mode run as the DRR bundle writes it: no whole views, slab CTs and slab DRRs under ``<case>/slabs/``."""
    drr = tmp_path / "unimiss_drr_generation"
    training = []
    for i in range(slabs):
        stem = f"ct/slabs/ct_slab{i:03d}"
        for view in views:
            _drr(drr / f"{stem}_{view}.nii.gz", spacing=(0.3, 0.2))
            training.append({"name": "ct", "slab": i, "start": 16 * i, "stop": 16 * (i + 1), "view": view,
                             "ct": f"{stem}.nii.gz", "drr": f"{stem}_{view}.nii.gz", "preview": f"{stem}_{view}.png"})
    _write(drr / "ct" / "ct_done.json", {"settings": {"views": list(views), "slab_depth": 40.0}, "testing": [],
                                         "training": training})
    _write(drr / "datalist.json", {"testing": [], "training": training, "failures": []})
    return drr


def test_a_slab_mode_run_shows_its_slab_drrs_instead_of_calling_them_missing(tmp_path):
    drr = _slab_run(tmp_path)
    section = drr_section(RunFolder(tmp_path))
    assert not any("no DRR files" in t for t in _texts(section))
    (figure,) = [b for b in section.blocks if isinstance(b, Figure)]
    assert figure.png.startswith(b"\x89PNG") and "slab" in figure.alt.lower()
    assert "AP" in figure.alt and "LAT_LEFT" in figure.alt
    (said,) = [t for t in _texts(section, Paragraph) if "slab mode" in t]
    assert "40 mm" in said and str(drr / "datalist.json") in said


def test_cts_beyond_those_shown_are_counted_and_those_without_drrs_said_to_have_none(tmp_path):
    drr = tmp_path / "unimiss_drr_generation"
    for name in ("a", "b", "c", "d"):
        (drr / name).mkdir(parents=True)
    notes = _texts(drr_section(RunFolder(tmp_path)))
    assert [t for t in notes if "no DRR files" in t and str(drr / "a") in t]
    assert sum("no DRR files" in t for t in notes) == 3
    assert any("3 of 4 CTs" in t and str(drr) in t for t in notes)


def test_a_ct_with_many_slabs_shows_a_few_and_says_how_many_there_are(tmp_path):
    _slab_run(tmp_path, slabs=9, views=("AP",))
    (figure,) = [b for b in drr_section(RunFolder(tmp_path)).blocks if isinstance(b, Figure)]
    assert "6 of 9" in figure.caption
    assert "slabs 0, " in figure.alt and figure.alt.endswith(", 8")  # the first and the last slab among them


def test_slab_drrs_are_those_the_datalist_lists_and_a_folder_without_one_is_read_by_file_name(tmp_path):
    drr = _slab_run(tmp_path, slabs=2, views=("AP",))
    _drr(drr / "ct" / "slabs" / "ct_slab007_AP.nii.gz")  # a stray file of that name pattern, listed nowhere
    (figure,) = [b for b in drr_section(RunFolder(tmp_path)).blocks if isinstance(b, Figure)]
    assert figure.alt.endswith("slabs 0, 1") and "2 of" not in figure.caption
    (drr / "datalist.json").unlink()
    (drr / "ct" / "ct_done.json").unlink()
    (figure,) = [b for b in drr_section(RunFolder(tmp_path)).blocks if isinstance(b, Figure)]
    assert figure.alt.endswith("slabs 0, 1, 7")


def test_the_section_reads_what_a_slab_mode_run_of_the_engine_writes(tmp_path):
    """The seam: the DRR engine's own slab-mode outputs (two CTs, one too shallow for a slab), read by the section."""
    import pytest

    from unimiss_monai.data import make_ct_phantom, phantom_affine, save_nifti
    from unimiss_monai.engines import DRRGenerationError, DRRGenerator

    shape, spacing = (32, 28, 20), (8.0, 8.0, 10.0)
    phantom = make_ct_phantom(shape, affine=phantom_affine(spacing, shape), noise_hu=0)
    save_nifti(phantom.hu, phantom.affine, tmp_path / "cts" / "deep.nii.gz")
    save_nifti(phantom.hu[:, :, 8:10], phantom.affine, tmp_path / "cts" / "shallow.nii.gz")
    drr = tmp_path / "run" / "unimiss_drr_generation"
    with pytest.raises(DRRGenerationError):
        DRRGenerator(tmp_path / "cts", drr, views=["AP"], slab_depth=50.0, slab_detector_shape=(24, 24),
                     progress=False).run()
    section = drr_section(RunFolder(tmp_path / "run"))
    (figure,) = [b for b in section.blocks if isinstance(b, Figure)]
    assert figure.name == "drr_deep_slabs" and "slabs 0, 1, 2, 3" in figure.alt  # 20 slices of 10 mm in 5-slice slabs
    (said,) = [t for t in _texts(section, Paragraph) if "slab mode" in t]
    assert "50 mm" in said
    notes = _texts(section)
    assert not any("no DRR files" in t for t in notes)
    assert any(t.startswith("1 CT(s) failed: shallow: ") and "less than one 50 mm slab" in t for t in notes), notes


def test_a_drr_run_stopped_before_its_datalist_is_said_to_be_unfinished_and_alone_is_no_report(tmp_path):
    """A run killed after some CTs leaves their folders and done records but no datalist.json: the section showed
    them as a finished run's, and, the only bundle folder, the report said to run the demo."""
    import sys
    from pathlib import Path

    import pytest

    from unimiss_monai.engines.drr_generation import DRRGenerator
    from unimiss_monai.report.command import report

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engines"))
    from drr_phantoms import SMALL, phantom_case

    data, drr = tmp_path / "cts", tmp_path / "run" / "unimiss_drr_generation"
    data.mkdir()
    phantom_case(data, "ct01", labels=False)
    DRRGenerator(data, drr, **{**SMALL, "views": ["AP"]}).run()
    (drr / "datalist.json").unlink()
    notes = _texts(drr_section(RunFolder(tmp_path / "run")))
    assert notes[0].startswith(f"{drr} is the output of a DRR generation run that has not finished (1 CT(s) rendered")
    assert notes[0].endswith("the DRRs below are those of the CTs it finished.")
    for given in (tmp_path / "run", drr):  # the run folder, or the DRR bundle's own
        with pytest.raises(FileNotFoundError, match=r"has not finished .*rerun the DRR bundle with the same "
                                                    r"--output_dir"):
            report(given)
    assert not (tmp_path / "run" / "report.html").exists() and not (drr / "report.html").exists()
