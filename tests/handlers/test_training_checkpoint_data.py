"""TrainingCheckpoint records the run's training items: a run of other data trains anew, says so and keeps the
checkpoint (resumed, it trained the remaining epochs on the other data and published the result); the same items in
another order resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine

from unimiss_monai.handlers import TrainingCheckpoint

ITEMS = [{"image": Path("/d/a.nii.gz"), "label": "/d/a_seg.nii.gz"}, {"image": "/d/b.nii.gz", "label": [1.0, 0.0]},
         {"image": "/d/c.nii.gz", "label": np.int64(2)}]


def _run(ckpt_dir, data, max_epochs: int) -> Engine:
    net = torch.nn.Linear(2, 1)
    engine = Engine(lambda e, b: None)
    engine.state.rank = 0
    TrainingCheckpoint(ckpt_dir, {"network": net}, save_every=1, epoch_level=True, data=data).attach(engine)
    engine.run(range(3), max_epochs=max_epochs)
    return engine


def test_a_run_of_other_training_items_trains_anew_and_keeps_the_checkpoint(tmp_path, caplog):
    _run(tmp_path, ITEMS, max_epochs=1)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["data"]
    assert saved[0] == {"image": "/d/a.nii.gz", "label": "/d/a_seg.nii.gz"} and saved[2]["label"] == 2
    assert _run(tmp_path, ITEMS[::-1], max_epochs=2).state.iteration == 6  # the same items: resumed after epoch 1
    other = [*ITEMS[:2], {"image": "/other/c.nii.gz", "label": 2}]
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with caplog.at_level("WARNING"):
        assert _run(tmp_path, other, max_epochs=1).state.iteration == 3  # from the start
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert said == [f"{tmp_path / 'checkpoint.pt'} was written by a run of other training items (1 new, 1 gone of 3; "
                    'e.g. {"image": "/other/c.nii.gz", "label": 2} is new): training anew, not resuming it (kept as '
                    f"{tmp_path / 'checkpoint.pt.prev'}); run with the data it was written with to resume it"], said
    assert (tmp_path / "checkpoint.pt.prev").read_bytes() == before


def test_a_checkpoint_or_a_run_without_the_record_resumes(tmp_path):
    _run(tmp_path, None, max_epochs=1)  # a checkpoint of an earlier version
    assert _run(tmp_path, ITEMS, max_epochs=2).state.iteration == 6
    assert _run(tmp_path, None, max_epochs=3).state.iteration == 9
