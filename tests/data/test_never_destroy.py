"""A run never deletes or overwrites a file it did not create: output folders that overlap the inputs are refused,
a folder of the user's is never replaced by an output folder of the same name, and a file is never written onto a
folder or inside a file."""

from __future__ import annotations

import re

import numpy as np
import pytest

from unimiss_monai.cli import main
from unimiss_monai.data.writers import OUTPUT_MARKER, check_output_dir, save_json, save_png, staged_dir


def test_staged_dir_replaces_only_its_own_folders(tmp_path):
    target = tmp_path / "case"
    with staged_dir(target) as tmp:
        (tmp / "a.txt").write_text("first")
    assert (target / OUTPUT_MARKER).is_file()
    with staged_dir(target) as tmp:  # a rerun replaces what the package wrote
        (tmp / "b.txt").write_text("second")
    assert not (target / "a.txt").exists() and (target / "b.txt").read_text() == "second"

    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="was not written by unimiss_monai"):
        with staged_dir(user) as tmp:
            (tmp / "x").write_text("never")
    assert (user / "notes.txt").read_text() == "keep me" and not (user / "x").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case", "mine"]  # no staging folder left behind


def test_a_file_the_user_put_into_a_folder_of_ours_stops_its_replacement(tmp_path):
    target = tmp_path / "case"
    with staged_dir(target) as tmp:
        (tmp / "slabs").mkdir()
        (tmp / "slabs" / "a.nii.gz").write_text("ours")
    (target / "slabs" / "my_mask.nii.gz").write_text("mine")
    with pytest.raises(FileExistsError, match=r"slabs/my_mask.nii.gz was not written by unimiss_monai"):
        with staged_dir(target) as tmp:
            (tmp / "b.txt").write_text("never")
    assert (target / "slabs" / "my_mask.nii.gz").read_text() == "mine" and (target / "slabs" / "a.nii.gz").exists()
    (target / "slabs" / "my_mask.nii.gz").unlink()  # moved away: the rerun goes on
    with staged_dir(target) as tmp:
        (tmp / "b.txt").write_text("second")
    assert sorted(p.name for p in target.iterdir()) == [OUTPUT_MARKER, "b.txt"]
    # a folder marked before markers listed their files is replaced as it was then
    (target / OUTPUT_MARKER).write_text("written by unimiss_monai; a rerun may replace this folder\n")
    (target / "unlisted.txt").write_text("of an earlier version's run")
    with staged_dir(target) as tmp:
        (tmp / "c.txt").write_text("third")
    assert sorted(p.name for p in target.iterdir()) == [OUTPUT_MARKER, "c.txt"]


@pytest.mark.parametrize("out", [".", "sub", ".."])
def test_check_output_dir_refuses_overlap(tmp_path, out):
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(ValueError, match="overlaps the input folder"):
        check_output_dir((data / out).resolve(), data)
    assert check_output_dir(tmp_path / "outputs", data) == str(tmp_path / "outputs")


def test_drr_generation_into_its_input_folder_is_refused(tmp_path):
    from unimiss_monai.data.phantom import make_ct_phantom
    from unimiss_monai.data.writers import save_nifti
    from unimiss_monai.engines import DRRGenerator

    data = tmp_path / "data"
    p = make_ct_phantom((16, 16, 12), noise_hu=0)
    save_nifti(p.hu, p.affine, data / "ct.nii.gz")
    (data / "README").write_text("mine")
    before = {f.name: f.read_bytes() for f in data.iterdir()}
    with pytest.raises(ValueError, match="overlaps the input folder"):
        DRRGenerator(data, data, views=["AP"], detector_shape=(8, 8), pixel_spacing=8.0)
    assert {f.name: f.read_bytes() for f in data.iterdir()} == before


def test_samples_never_replace_a_users_folder(tmp_path):
    from unimiss_monai.data.samples import samples

    (tmp_path / "ct_segmentation").mkdir()
    (tmp_path / "ct_segmentation" / "my_case.nii.gz").write_bytes(b"user data")
    with pytest.raises(RuntimeError, match="ct_segmentation.*was not written by unimiss_monai"):
        samples(str(tmp_path), synthetic=True, only="ct_segmentation")
    assert (tmp_path / "ct_segmentation" / "my_case.nii.gz").read_bytes() == b"user data"


def test_leftovers_of_a_killed_writer_are_removed_by_the_next_write(tmp_path):
    from unimiss_monai.data.writers import save_json, save_torch

    # what a writer killed before its rename leaves: a tagged temporary file (and a staging folder)
    (tmp_path / ".model.pt.k1ll3d.unimiss-tmp.pt").write_bytes(b"half a checkpoint")
    (tmp_path / ".case.abcd.unimiss-tmp").mkdir()
    (tmp_path / ".model.pt.backup").write_bytes(b"the user's")  # not ours: never touched
    save_torch({"w": 1}, tmp_path / "model.pt")
    with staged_dir(tmp_path / "case") as tmp:
        save_json({}, tmp / "x.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.pt.backup", "case", "model.pt"]


def test_a_temporary_that_is_a_link_goes_and_what_it_points_to_stays(tmp_path):
    """Removing leftovers, of one file or of an old cache, removes a link of the temporary's form, never the user's
    folder or file it points to."""
    import os

    from unimiss_monai.data.writers import remove_leftovers, remove_stale_temporaries

    users = tmp_path / "users"
    users.mkdir()
    (users / "scan.nii.gz").write_bytes(b"the user's")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".case.abcd1234.unimiss-tmp").symlink_to(users, target_is_directory=True)
    (out / ".other.0123abcd.unimiss-tmp").symlink_to(users / "scan.nii.gz")
    remove_leftovers(out / "case")
    assert not os.path.lexists(out / ".case.abcd1234.unimiss-tmp") and (out / ".other.0123abcd.unimiss-tmp").is_symlink()
    assert remove_stale_temporaries(out, older_than_s=-1.0) == 1 and not any(out.iterdir())
    assert (users / "scan.nii.gz").read_bytes() == b"the user's"


def test_a_file_written_onto_a_folder_or_inside_a_file_is_refused_in_one_line(tmp_path):
    """``atomic_path`` (every writer) refuses a destination that is a folder, which ``os.replace`` would fail on with
    an ``IsADirectoryError`` traceback, and one under a file ("[Errno 17] File exists"), naming the path."""
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("keep")
    with pytest.raises(FileExistsError, match=re.escape(f"output {tmp_path / 'adir'} is a folder, not a file: give the path")):
        save_json({}, tmp_path / "adir")
    with pytest.raises(FileExistsError, match=re.escape(f": {tmp_path / 'afile'} is a file, not a folder, so nothing")):
        save_json({}, tmp_path / "afile" / "sub" / "x.json")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["adir", "afile"]  # no temporary left
    assert (tmp_path / "afile").read_text() == "keep"


def test_official_datalist_onto_a_folder_is_one_line(tmp_path):
    save_png(np.zeros((32, 32), dtype=np.uint8), tmp_path / "root" / "2D_images" / "a.png")
    (tmp_path / "adir").mkdir()
    with pytest.raises(FileExistsError) as err:
        main(["official-datalist", "--root", str(tmp_path / "root"), "--out", str(tmp_path / "adir"), "--overwrite", "true"])
    assert "adir is a folder, not a file" in str(err.value) and "\n" not in str(err.value)
    assert list((tmp_path / "adir").iterdir()) == []


def test_an_edit_of_a_file_of_ours_in_a_folder_of_ours_stops_its_replacement(tmp_path):
    """A report picture annotated in place was replaced by the report's rerun: the marker now records each file's
    signature, so an edited file is kept and named; a copy that rewrote file times alone is still replaced."""
    import os
    import shutil

    target = tmp_path / "report_files"
    with staged_dir(target) as tmp:
        (tmp / "drr.png").write_bytes(b"ours")
    marker = (target / OUTPUT_MARKER).read_text().splitlines()
    assert marker[2].startswith("drr.png\t4\t") and len(marker[2].rsplit("\t", 1)[1]) == 64
    copy = tmp_path / "copy" / "report_files"
    shutil.copytree(target, copy)  # new file times, the same content
    os.utime(copy / "drr.png", (1_700_000_000, 1_700_000_000))
    with staged_dir(copy) as tmp:
        (tmp / "drr.png").write_bytes(b"new!")
    assert (copy / "drr.png").read_bytes() == b"new!"
    (target / "drr.png").write_bytes(b"mine")  # annotated in place, of the same size
    with pytest.raises(FileExistsError, match=r"report_files/drr.png was changed after unimiss_monai wrote it \(an "
                                              r"edit of yours\?\) and would be lost"):
        with staged_dir(target) as tmp:
            (tmp / "drr.png").write_bytes(b"never")
    assert (target / "drr.png").read_bytes() == b"mine"

    # a marker of the earlier form (names only) lists a name with a tab in it whole
    (target / "drr.png").unlink()
    (target / "a\tb.png").write_bytes(b"ours")
    (target / OUTPUT_MARKER).write_text("written by unimiss_monai; a rerun may replace this folder\nfiles:\na\tb.png\n")
    with staged_dir(target) as tmp:
        (tmp / "drr.png").write_bytes(b"again")
    assert sorted(p.name for p in target.iterdir()) == [OUTPUT_MARKER, "drr.png"]
