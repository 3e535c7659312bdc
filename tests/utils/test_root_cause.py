"""The one root-cause walker: through MONAI's wrappers (``applying transform``, ``Failed to evaluate``), explicit
causes and handled contexts, to the error that actually happened, and the one-line reason built on it."""

from __future__ import annotations

import pytest
from monai.bundle import ConfigParser
from monai.transforms import Compose, Lambdad

from raising import raised
from unimiss_monai.data.ct_io import CTInputError
from unimiss_monai.utils.errors import (
    case_failure_reason, exception_chain, failed_transform, failure_reason, root_cause,
)


def _refuse(_):
    raise ValueError("/data/ct.nii.gz: has 3 non-finite value(s)\nsecond line of detail")


def test_through_a_compose_to_the_transform_error():
    err = raised(lambda: Compose([Lambdad("image", _refuse)])({"image": 0}))
    assert str(err).startswith("applying transform")
    cause = root_cause(err)
    assert type(cause) is ValueError and str(cause).startswith("/data/ct.nii.gz: has 3")
    assert failure_reason(err) == "ValueError: /data/ct.nii.gz: has 3 non-finite value(s)"
    assert failed_transform(err) == "Lambdad"


def test_through_config_evaluation():
    err = raised(lambda: ConfigParser({"x": "$int('seven')"}).get_parsed_content("x"))
    assert str(err).startswith("Failed to evaluate") and failed_transform(err) is None
    assert failure_reason(err) == "ValueError: invalid literal for int() with base 10: 'seven'"


def test_chain_order_context_and_suppression():
    def handled():
        try:
            raise KeyError("first")
        except KeyError:
            raise RuntimeError("while handling")

    err = raised(handled)
    assert [type(e) for e in exception_chain(err)] == [RuntimeError, KeyError] and isinstance(root_cause(err), KeyError)

    def suppressed():
        try:
            raise KeyError("hidden")
        except KeyError:
            raise RuntimeError("on its own") from None

    err = raised(suppressed)
    assert root_cause(err) is err and failure_reason(err) == "RuntimeError: on its own"


def test_a_cycle_ends_and_an_empty_message_gives_the_type():
    a, b = ValueError("a"), TypeError()
    a.__cause__, b.__cause__ = b, a
    assert list(exception_chain(a)) == [a, b] and root_cause(a) is b
    assert failure_reason(a) == "TypeError"


@pytest.mark.parametrize("err", [ValueError("plain"), OSError(2, "No such file")])
def test_an_unwrapped_error_is_its_own_cause(err):
    assert root_cause(err) is err and failure_reason(err) == f"{type(err).__name__}: {err}"


def _refuse_read(_):
    try:
        raise OSError("not a gzip file")
    except OSError as err:  # as the CT reader does: its own line, with the reader's error behind it
        raise CTInputError("/d/label.nii.gz: cannot be read as a label; pass an intact NIfTI file") from err


def test_a_case_reason_names_the_file_at_fault_once():
    # this package's own refusal of one of the case's files, behind MONAI's wrapper: its line alone
    err = raised(lambda: Compose([Lambdad("label", _refuse_read)])({"label": 0}))
    assert case_failure_reason(err, "/d/ct.nii.gz", ["/d/label.nii.gz"]) == (
        "/d/label.nii.gz: cannot be read as a label; pass an intact NIfTI file")
    # another library's error keeps its type, even where it names the case
    err = raised(lambda: Compose([Lambdad("image", _refuse)])({"image": 0}))
    assert case_failure_reason(err, "/data/ct.nii.gz") == "ValueError: /data/ct.nii.gz: has 3 non-finite value(s)"
    assert case_failure_reason(err, "/data/other.nii.gz") == (
        "/data/other.nii.gz: ValueError: /data/ct.nii.gz: has 3 non-finite value(s)")
    # a case whose path begins another file's name is not the file the line names: the case still comes first
    err = raised(lambda: Compose([Lambdad("label", _refuse_read)])({"label": 0}))
    assert case_failure_reason(err, "/d/label").startswith("/d/label: ")


def test_a_place_the_file_system_refuses_is_one_line_naming_the_folder_chosen():
    """A read-only or full destination, or one without permission, printed a 30-line traceback naming this package's
    hidden temporary; it is the user's to fix by choosing another place, and said so naming that place."""
    import errno
    import os

    from unimiss_monai.utils.errors import user_error_message

    def refused(code, path):
        return OSError(code, os.strerror(code), path)

    assert user_error_message(refused(errno.EROFS, "/ro/out/.model.pt.1a2b.unimiss-tmp.pt")) == (
        "cannot write in the folder /ro/out (read-only file system); choose another place for the output")
    assert user_error_message(refused(errno.ENOSPC, "/full/x.json")) == (
        "cannot write in /full/x.json (no space left on device); choose another place for the output, or free space "
        "there")
    assert user_error_message(PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/data/ct.nii.gz")) == (
        "/data/ct.nii.gz: permission denied; mend its permissions (or its folder's), or choose another place")
    # a hidden folder of the user's is named itself: only this package's temporaries stand for their folder
    assert user_error_message(PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/home/u/.cache")).startswith(
        "/home/u/.cache: permission denied")
    assert user_error_message(refused(errno.EIO, "/disk/x")) is None  # a failing disk is no choice of the user's
    assert user_error_message(refused(errno.EROFS, None)) is None  # nothing to name: the traceback says more


def test_a_full_disk_is_one_line_without_a_file_name_and_names_tmpdir_for_the_temporary_folder(tmp_path, monkeypatch):
    """A write() that fills the disk names no file (it printed a traceback), and a full temporary folder was told to
    "choose another place", which no option of a command chooses: TMPDIR does. An output folder a user chose inside
    the temporary folder is still theirs to move."""
    import errno
    import os
    import tempfile

    from unimiss_monai.utils.errors import user_error_message

    def full(path=None):
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), *([str(path)] if path else []))

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert user_error_message(full()) == (
        f"no space left on device while writing; free space where the output goes (or, for temporary files, in "
        f"{tmp_path}: set TMPDIR to a folder with room), or choose another place")
    assert user_error_message(full(tmp_path / "tmpk2x9_a1" / "c.npy")) == (
        f"cannot write in {tmp_path}/tmpk2x9_a1/c.npy (no space left on device); free space there, or set TMPDIR to "
        "a folder with room")
    assert user_error_message(full(tmp_path / "run" / "x.nii.gz")) == (
        f"cannot write in {tmp_path}/run/x.nii.gz (no space left on device); choose another place for the output, or "
        "free space there")

    # where the temporary folder has not been looked up yet, looking it up would write in it: on a full disk that
    # fails too, and the hook printed its own traceback over the error's
    def no_folder():
        raise FileNotFoundError("No usable temporary directory found")

    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.setattr(tempfile, "gettempdir", no_folder)
    monkeypatch.setenv("TMPDIR", "/scratch/t")
    assert "in /scratch/t: set TMPDIR" in user_error_message(full())


def _forbidden(_):
    raise PermissionError(13, "Permission denied", "/data/locked.nii.gz")


def test_a_place_refused_in_a_dataloader_worker_is_one_line():
    """torch re-raises a worker's error as the text of its traceback: a PermissionError there printed the traceback."""
    import torch
    from monai.data import Dataset
    from monai.transforms import Lambda

    from unimiss_monai.utils.errors import user_error_message

    loader = torch.utils.data.DataLoader(Dataset([{"image": 0}], transform=Compose([Lambda(_forbidden)])),
                                         num_workers=1)
    err = raised(lambda: next(iter(loader)))
    assert str(err).startswith("Caught RuntimeError in DataLoader worker process 0")  # MONAI wraps it first
    assert user_error_message(err) == ("/data/locked.nii.gz: permission denied; mend its permissions (or its "
                                       "folder's), or choose another place")


def test_a_rename_refused_in_a_worker_names_the_file_refused():
    from unimiss_monai.utils.errors import _from_worker_text

    text = ("Traceback (most recent call last):\n  File \"x.py\", line 1, in f\n"
            "PermissionError: [Errno 13] Permission denied: '/a/src.npy' -> '/b/dst.npy'\n")
    assert _from_worker_text(text) == ("/a/src.npy: permission denied; mend its permissions (or its folder's), or "
                                       "choose another place")
