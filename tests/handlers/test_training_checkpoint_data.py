"""TrainingCheckpoint records the run's training items: a run of other data trains anew and says so (resumed, it trained
the remaining epochs on the other data and published the result); the same items in another order, or written as
other paths of the same files, resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine

from unimiss_monai.handlers import TrainingCheckpoint

def _items(root: Path) -> list[dict]:
    for name in ("a.nii.gz", "a_seg.nii.gz"):
        (root / name).write_bytes(b"")
    return [{"image": root / "a.nii.gz", "label": str(root / "a_seg.nii.gz")},
            {"image": "/d/b.nii.gz", "label": [1.0, 0.0]}, {"image": "/d/c.nii.gz", "label": np.int64(2)}]


def _run(ckpt_dir, data, max_epochs: int) -> int:
    """The iterations this run trained (not those it resumed past)."""
    ran = []
    net = torch.nn.Linear(2, 1)
    engine = Engine(lambda e, b: ran.append(e.state.iteration))
    engine.state.rank = 0
    TrainingCheckpoint(ckpt_dir, {"network": net}, save_every=1, epoch_level=True, data=data).attach(engine)
    engine.run(range(3), max_epochs=max_epochs)
    return len(ran)


def test_a_run_of_other_training_items_trains_anew(tmp_path, monkeypatch, caplog):
    data = tmp_path / "data"
    data.mkdir()
    items = _items(data)
    _run(tmp_path, items, max_epochs=1)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["data"]
    assert saved[0] == {"image": str(data / "a.nii.gz"), "label": str(data / "a_seg.nii.gz")} and saved[2]["label"] == 2
    monkeypatch.chdir(data)  # the same files written as relative paths, the items in another order: resumed
    relative = [{"image": "a.nii.gz", "label": "./a_seg.nii.gz"}, *items[1:]][::-1]
    assert _run(tmp_path, relative, max_epochs=2) == 3  # epoch 2 only
    other = [*items[:2], {"image": "/other/c.nii.gz", "label": 2}]
    with caplog.at_level("WARNING"):
        assert _run(tmp_path, other, max_epochs=3) == 9  # three epochs from the start
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert said == [f"{tmp_path / 'checkpoint.pt'} was written by a stopped run of other training items (1 new, 1 gone "
                    'of 3; e.g. {"image": "/other/c.nii.gz", "label": 2} is new): training anew, and this run\'s first '
                    "checkpoint replaces it; to continue that run instead, stop this one and run again with the data "
                    "it was written with"], said
    assert not list(tmp_path.glob("checkpoint.pt.prev*"))


def test_a_checkpoint_or_a_run_without_the_record_resumes(tmp_path):
    _run(tmp_path, None, max_epochs=1)  # a checkpoint of an earlier version
    assert _run(tmp_path, _items(tmp_path), max_epochs=2) == 3
    assert _run(tmp_path, None, max_epochs=3) == 3
