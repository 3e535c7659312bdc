"""``user_error_message`` and ``install_error_hook``: the root cause behind MONAI's wrappers, one line for errors a
user can fix, the traceback for everything else and behind ``UNIMISS_TRACEBACK=1``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
import torch
import tqdm
from monai.bundle import ConfigParser
from monai.data import Dataset
from monai.transforms import Compose, Lambda

import unimiss_monai
from raising import raised
from unimiss_monai.utils import UnsafeCheckpointError, as_bool, install_error_hook, user_error_message

BOOL_MESSAGE = "config id 'flag' is 'maybe', not a boolean; use true/false, yes/no or 1/0 (any case)"


def _refuse(_):
    raise ValueError("/data/ct.nii.gz: has 1 non-finite (NaN or Inf) value(s) of 10; fix or remove those voxels")


def test_root_cause_behind_monai_wrappers():
    # "Failed to evaluate" (a $ expression), "Failed to instantiate" (a _target_), "applying transform" (Compose)
    evaluated = raised(lambda: ConfigParser({"imports": ["$import unimiss_monai"],
                                              "x": "$unimiss_monai.utils.as_bool('maybe', 'flag')"}).get_parsed_content("x"))
    instantiated = raised(lambda: ConfigParser({"c": {"_target_": "unimiss_monai.utils.as_bool", "value": "maybe",
                                                       "name": "flag"}}).get_parsed_content("c"))
    transformed = raised(lambda: Compose([Lambda(_refuse)])({"image": 0}))
    assert str(evaluated).startswith("Failed to evaluate") and str(instantiated).startswith("Failed to instantiate")
    assert str(transformed).startswith("applying transform")
    assert user_error_message(evaluated) == user_error_message(instantiated) == BOOL_MESSAGE
    assert user_error_message(transformed) == str(raised(lambda: _refuse(None)))


def test_which_errors_count_as_fixable():
    assert user_error_message(FileNotFoundError("dataset_dir 'x' does not exist")) == "dataset_dir 'x' does not exist"
    assert user_error_message(FileExistsError("out exists; pass --overwrite true")) == "out exists; pass --overwrite true"
    assert user_error_message(UnsafeCheckpointError("a.pt: refused")) == "a.pt: refused"
    assert user_error_message(KeyError("no 'image' entry in datalist.json; add one")) == "no 'image' entry in datalist.json; add one"
    # a bare missing key, a type error, an error from elsewhere, or a message of several lines is a bug to read in full
    assert user_error_message(KeyError("image")) is None
    assert user_error_message(TypeError("unsupported operand")) is None
    assert user_error_message(raised(lambda: torch.zeros(2) @ torch.zeros(3))) is None
    assert user_error_message(ValueError("first line\nsecond line")) is None
    assert user_error_message(KeyboardInterrupt()) is None
    # an error raised while another was handled is not looked through: only MONAI's wrappers are
    def while_handling():
        try:
            as_bool("maybe", "flag")
        except ValueError:
            raise TypeError("cleanup failed")
    assert user_error_message(raised(while_handling)) is None


def test_runtime_error_counts_only_when_raised_by_the_package():
    package_file = str(Path(unimiss_monai.__file__).parent / "engines" / "raised_here.py")
    raise_it = compile("raise RuntimeError('inference: no case was segmented (2 failed, see above)')", package_file, "exec")
    assert user_error_message(raised(lambda: exec(raise_it))) == "inference: no case was segmented (2 failed, see above)"
    assert user_error_message(raised(lambda: exec("raise RuntimeError('no case was segmented')"))) is None


def test_dataloader_worker_error_is_unwrapped():
    # torch re-raises a worker's error as text: "Caught RuntimeError in DataLoader worker process 0. Original Traceback
    # ...", around MONAI's "applying transform" around the ValueError
    loader = torch.utils.data.DataLoader(Dataset([{"image": 0}], transform=Compose([Lambda(_refuse)])), num_workers=1)
    err = raised(lambda: next(iter(loader)))
    assert str(err).startswith("Caught RuntimeError in DataLoader worker process 0")
    assert user_error_message(err) == str(raised(lambda: _refuse(None)))


def test_hook_prints_two_lines_or_passes_on(monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(sys, "excepthook", lambda *args: seen.append(args[1]))
    monkeypatch.delenv("UNIMISS_TRACEBACK", raising=False)
    install_error_hook()
    install_error_hook()  # a second install wraps nothing twice
    fixable, bug = ValueError("dataset_dir 'x' does not exist"), TypeError("bug")
    sys.excepthook(ValueError, fixable, None)
    assert capsys.readouterr().err.splitlines() == ["error: dataset_dir 'x' does not exist",
                                                   "(set UNIMISS_TRACEBACK=1 for the full traceback)"]
    sys.excepthook(TypeError, bug, None)
    monkeypatch.setenv("UNIMISS_TRACEBACK", "1")
    sys.excepthook(ValueError, fixable, None)
    assert seen == [bug, fixable] and capsys.readouterr().err == ""


def test_a_failure_of_the_hook_itself_passes_the_error_on(monkeypatch, capsys):
    """Whatever goes wrong in reading the error, the error is still reported, with its traceback."""
    import unimiss_monai.utils.errors as errors

    seen = []
    monkeypatch.setattr(sys, "excepthook", lambda *args: seen.append(args[1]))
    monkeypatch.delenv("UNIMISS_TRACEBACK", raising=False)
    install_error_hook()

    def broken(exc):
        raise FileNotFoundError("No usable temporary directory found")

    monkeypatch.setattr(errors, "user_error_message", broken)
    fixable = ValueError("dataset_dir 'x' does not exist")
    sys.excepthook(ValueError, fixable, None)
    assert seen == [fixable] and capsys.readouterr().err == ""


@pytest.mark.parametrize("value", ["0", ""])
def test_traceback_switch_off_values(monkeypatch, capsys, value):
    monkeypatch.setattr(sys, "excepthook", lambda *args: None)
    monkeypatch.setenv("UNIMISS_TRACEBACK", value)
    install_error_hook()
    sys.excepthook(ValueError, ValueError("bad value"), None)
    assert capsys.readouterr().err.startswith("error: bad value\n")


def test_hook_closes_progress_bars_first(monkeypatch, capsys):
    # a bar left open redraws at exit, after the message, and the message would start after its carriage return
    monkeypatch.setattr(sys, "excepthook", lambda *args: None)
    install_error_hook()
    bar = tqdm.tqdm(total=3, file=sys.stderr, desc="Epoch [1/2]")
    bar.update(1)
    sys.excepthook(ValueError, ValueError("bad value"), None)
    err = capsys.readouterr().err
    assert err.endswith("\nerror: bad value\n(set UNIMISS_TRACEBACK=1 for the full traceback)\n"), repr(err)
    assert "1/3" in err.rsplit("error:", 1)[0] and bar not in tqdm.tqdm._instances


def test_a_failed_batch_is_listed_whole():
    # the DRR bundle ends a run in which some CTs failed with one error listing each; behind MONAI's wrapper of the
    # config expression that ran it, the list is the message, not a traceback
    from unimiss_monai.engines.drr_generation import DRRGenerationError

    listing = "2 of 3 CT(s) failed:\n  - a.nii.gz: has 4 NaN voxels; fill them\n  - b.nii.gz: a 2D image"

    def run():
        try:
            raise DRRGenerationError(listing)
        except DRRGenerationError as err:
            raise RuntimeError("Failed to evaluate ConfigExpression: \"$__local_refs['generator'].run()\"") from err

    assert user_error_message(raised(run)) == listing


def test_the_error_that_ends_a_run_is_logged_without_traceback_when_it_is_the_users(monkeypatch, tmp_path):
    # MONAI's StatsHandler logs the error that ends an engine's run with logger.exception, just before the hook's line
    from ignite.engine import Engine
    from monai.handlers import StatsHandler
    from PIL import Image, UnidentifiedImageError

    monkeypatch.setattr(sys, "excepthook", lambda *args: None)
    monkeypatch.delenv("UNIMISS_TRACEBACK", raising=False)
    (tmp_path / "bad.png").write_text("not a picture")
    unreadable = raised(lambda: Image.open(tmp_path / "bad.png"))
    assert isinstance(unreadable, UnidentifiedImageError) and user_error_message(unreadable) == str(unreadable)
    install_error_hook()
    install_error_hook()
    logger, seen = logging.getLogger("test_errors.stats"), []
    monkeypatch.setattr(logger, "handle", seen.append)

    def run(error: Exception, wrapped: bool = True) -> logging.LogRecord:
        def step(engine, batch):
            if not wrapped:
                raise error
            raise RuntimeError("applying transform <LoadImaged>") from error

        engine = Engine(step)
        StatsHandler(iteration_log=False, epoch_log=False, name=logger.name).attach(engine)
        with pytest.raises(RuntimeError):
            engine.run([0])
        return next(r for r in reversed(seen) if r.funcName == "exception_raised")

    fixable, unidentified, bug = (run(e) for e in (ValueError("a.nii.gz: has NaN voxels; fill them"), unreadable,
                                                   TypeError("bug")))
    assert fixable.exc_info is None and unidentified.exc_info is None and bug.exc_info is not None
    assert fixable.getMessage() == "Exception: applying transform <LoadImaged>: a.nii.gz: has NaN voxels; fill them"
    assert unidentified.getMessage().endswith(f": {unreadable}")
    loader = torch.utils.data.DataLoader(Dataset([{"image": 0}], transform=Compose([Lambda(_refuse)])), num_workers=1)
    worker = run(raised(lambda: next(iter(loader))), wrapped=False)  # its text: the worker's formatted traceback
    assert worker.exc_info is None and worker.getMessage() == (
        "Exception: Caught RuntimeError in DataLoader worker process 0.: " + str(raised(lambda: _refuse(None))))
    try:  # an error caught and logged anywhere else keeps its traceback: nothing prints its line at exit
        raise ValueError("operands could not be broadcast")
    except ValueError:
        logger.exception("a run failed; the study goes on")
    assert seen[-1].exc_info is not None
    monkeypatch.setenv("UNIMISS_TRACEBACK", "1")
    assert run(ValueError("bad value")).exc_info is not None
    logger.exception("failed %s %s", "only one argument")  # a bad call is logging's to report, as without the hook
    assert seen[-1].msg == "failed %s %s"


def test_ctrl_c_is_one_line_and_still_ends_the_process_as_interrupted(monkeypatch, capsys):
    """Ctrl-C during a bundle run: no traceback from the hook or from the StatsHandler record, exit status 130."""
    import os
    import signal
    import subprocess

    from ignite.engine import Engine
    from monai.handlers import StatsHandler

    from unimiss_monai.utils.errors import INTERRUPTED

    seen = []
    monkeypatch.setattr(sys, "excepthook", lambda *args: seen.append(args[1]))
    monkeypatch.delenv("UNIMISS_TRACEBACK", raising=False)
    install_error_hook()
    sys.excepthook(KeyboardInterrupt, KeyboardInterrupt(), None)
    assert capsys.readouterr().err.splitlines() == [INTERRUPTED, "(set UNIMISS_TRACEBACK=1 for the full traceback)"]
    logger, records = logging.getLogger("test_errors.ctrl_c"), []
    monkeypatch.setattr(logger, "handle", records.append)

    def step(engine, batch):
        raise KeyboardInterrupt

    engine = Engine(step)
    StatsHandler(iteration_log=False, epoch_log=False, name=logger.name).attach(engine)
    with pytest.raises(KeyboardInterrupt):
        engine.run([0])
    logged = next(r for r in reversed(records) if r.funcName == "exception_raised")
    assert logged.exc_info is None and logged.getMessage() == INTERRUPTED
    monkeypatch.setenv("UNIMISS_TRACEBACK", "1")  # asked for: the traceback, from the hook before
    interrupt = KeyboardInterrupt()
    sys.excepthook(KeyboardInterrupt, interrupt, None)
    assert seen == [interrupt] and capsys.readouterr().err == ""
    code = "from unimiss_monai.utils import install_error_hook; install_error_hook(); raise KeyboardInterrupt"
    env = {k: v for k, v in os.environ.items() if k != "UNIMISS_TRACEBACK"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**env, "PYTHONPATH": str(Path(unimiss_monai.__file__).parents[1])})
    assert proc.returncode in (-signal.SIGINT, 128 + signal.SIGINT) and proc.stderr.splitlines()[0] == INTERRUPTED
