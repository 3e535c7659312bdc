"""A diverging run ends in one line: ``NonFiniteGuard``'s ``FloatingPointError`` is an error a user can fix (no
traceback), and when the batch names no files (a pipeline that drops the meta data) the line says so and names the
likely fix instead of "check these files"."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from monai.data import DataLoader
from monai.engines import SupervisedTrainer

from unimiss_monai.handlers import NonFiniteGuard
from unimiss_monai.utils.errors import user_error_message

pytestmark = pytest.mark.usefixtures("one_thread")

HINT = "(set UNIMISS_TRACEBACK=1 for the full traceback)"
# a trainer on images without meta data (EnsureTyped(track_meta=False) in the bundles) whose third batch holds an Inf;
# the script prints nothing itself, so stderr is what the user sees
SCRIPT = textwrap.dedent("""
    import logging, sys
    import torch
    from monai.data import DataLoader
    from monai.engines import SupervisedTrainer
    from monai.handlers import StatsHandler
    from unimiss_monai.handlers import NonFiniteGuard
    from unimiss_monai.utils.errors import install_error_hook

    install_error_hook()
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)
    data = [{"image": torch.full((1, 4), float("nan") if i == 4 else 1.0), "label": torch.zeros(1, 1)}
            for i in range(6)]
    net = torch.nn.Linear(4, 1)
    SupervisedTrainer(device=torch.device("cpu"), max_epochs=1, train_data_loader=DataLoader(data, batch_size=2),
                      network=net, optimizer=torch.optim.SGD(net.parameters(), lr=0.01),
                      loss_function=torch.nn.MSELoss(),
                      train_handlers=[StatsHandler(output_transform=lambda x: None), NonFiniteGuard(net)]).run()
""")
NO_FILES = ("training loss is nan at epoch 1, iteration 3; nothing was trained on it, no model was saved from it: the "
            "batch names no files to check (its 'image' carries no file names); most likely the learning rate is too "
            "high: lower the learning rate and train anew (delete the run's checkpoints/checkpoint.pt first: resuming "
            "keeps the old rate); else check the training inputs for NaN/Inf values")


def _trainer(data: list[dict]) -> SupervisedTrainer:
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 1)
    return SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=1, train_data_loader=DataLoader(data, batch_size=2, shuffle=False),
        network=net, optimizer=torch.optim.SGD(net.parameters(), lr=0.01), loss_function=torch.nn.MSELoss(),
        train_handlers=[NonFiniteGuard(net)],
    )


def test_a_batch_without_file_names_gets_the_likely_fix():
    data = [{"image": torch.full((1, 4), float("nan") if i == 4 else 1.0), "label": torch.zeros(1, 1)}
            for i in range(6)]
    with pytest.raises(FloatingPointError) as err:
        _trainer(data).run()
    assert str(err.value) == NO_FILES
    assert "check these files" not in str(err.value)


def test_the_guards_error_is_a_user_error_and_numpys_is_not():
    with pytest.raises(FloatingPointError) as err:
        _trainer([{"image": torch.full((1, 4), float("nan")), "label": torch.zeros(1, 1)}] * 2).run()
    assert user_error_message(RuntimeError("Failed to evaluate ConfigExpression")) is None
    wrapped = RuntimeError("Failed to evaluate ConfigExpression: \"$@train#trainer.run()\"")
    wrapped.__cause__ = err.value
    assert user_error_message(wrapped) == str(err.value)
    with np.errstate(over="raise"), pytest.raises(FloatingPointError) as numpy_err:
        np.exp(np.float32(1000))
    assert user_error_message(numpy_err.value) is None  # raised outside this package: a bug, its traceback kept


def test_a_diverged_run_ends_in_one_line_without_a_traceback(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("UNIMISS_TRACEBACK", None)
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-2:] == [f"error: {NO_FILES}", HINT], proc.stderr[-3000:]
