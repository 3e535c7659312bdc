"""Files a user hands over are read weights-only: a checkpoint whose unpickling would run code is refused before
anything in it runs, by every loader of the package (convert-checkpoint, the pretraining resume, the fine-tune
initialisation and ``load_pretrained``)."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine

from unimiss_monai.handlers import TrainingCheckpoint, load_pretrained_init
from unimiss_monai.handlers.training_checkpoint import capture_rng_state, restore_rng_state
from unimiss_monai.networks import UniMissClassifier, load_pretrained, tiny_overrides
from unimiss_monai.networks.convert import convert_checkpoint
from unimiss_monai.utils import UnsafeCheckpointError, load_torch_file

REPO = Path(__file__).resolve().parents[1]


class Payload:
    """Unpickling this creates ``marker``: the stand-in for code run from a checkpoint."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _hostile(path: Path, marker: Path, content: dict) -> Path:
    torch.save({**content, "payload": Payload(marker)}, path)
    return path


def _official_like() -> dict:
    return {"student": {"module.backbone.transformer.cls_tokens1": torch.zeros(1, 1, 8)}, "epoch": 1}


def test_payload_runs_when_unpickled_without_weights_only(tmp_path):
    """The files below are hostile for real: a plain unpickle creates the marker."""
    marker = tmp_path / "ran"
    path = _hostile(tmp_path / "evil.pt", marker, {"model": {"w": torch.ones(2)}})
    torch.load(path, weights_only=False)
    assert marker.exists()


def _assert_refused(err: BaseException, path: Path, marker: Path) -> None:
    message = str(err)
    assert "\n" not in message, message
    assert str(path) in message and ("io.open" in message or "builtins.open" in message), message
    assert not marker.exists()


def test_convert_checkpoint_refuses_before_looking_at_keys(tmp_path):
    marker = tmp_path / "ran"
    src = _hostile(tmp_path / "checkpoint.pth", marker, _official_like())
    with pytest.raises(UnsafeCheckpointError) as err:
        convert_checkpoint(str(src), str(tmp_path / "out.pt"))
    _assert_refused(err.value, src, marker)
    assert not (tmp_path / "out.pt").exists()


def test_convert_checkpoint_cli_prints_one_line(tmp_path):
    marker = tmp_path / "ran"
    src = _hostile(tmp_path / "checkpoint.pth", marker, _official_like())
    proc = subprocess.run(
        [sys.executable, "-m", "unimiss_monai", "convert-checkpoint", str(src), str(tmp_path / "out.pt")],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert proc.returncode == 1 and not marker.exists()
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and lines[-1].startswith("(set UNIMISS_TRACEBACK=1")
    assert lines[-2].startswith("error: convert-checkpoint: source")
    assert ("io.open" in lines[-2] or "builtins.open" in lines[-2]) and "refused" in lines[-2]
    # torch's own multi-line advice (load with weights_only=False) is replaced, not chained
    assert "weights_only" not in proc.stderr


def test_pretraining_resume_refuses_hostile_checkpoint(tmp_path):
    marker = tmp_path / "ran"
    model = torch.nn.Linear(3, 2)
    (tmp_path / "ckpt").mkdir()
    content = {"model": model.state_dict(), "trainer": {"iteration": 4}}
    path = _hostile(tmp_path / "ckpt" / TrainingCheckpoint.FILENAME, marker, content)
    engine = Engine(lambda e, b: None)
    engine.state.rank = 0
    TrainingCheckpoint(tmp_path / "ckpt", {"model": model}).attach(engine)
    with pytest.raises(RuntimeError, match="^cannot resume: training checkpoint .* or delete it to start over$") as err:
        engine.run(range(2), max_epochs=1)
    _assert_refused(err.value, path, marker)


@pytest.mark.parametrize("unimiss_network", [True, False], ids=["unimiss", "other"])
def test_load_pretrained_init_refuses_hostile_checkpoint(tmp_path, unimiss_network):
    marker = tmp_path / "ran"
    if unimiss_network:
        net = UniMissClassifier(2, 1, 2, variant="mit_tiny", **tiny_overrides("mit_tiny"))
    else:
        net = torch.nn.Linear(3, 2)
    path = _hostile(tmp_path / "pretrain.pt", marker, {"model": net.state_dict()})
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(UnsafeCheckpointError) as err:
        load_pretrained_init(net, str(path))
    _assert_refused(err.value, path, marker)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_load_pretrained_refuses_hostile_checkpoint(tmp_path):
    marker = tmp_path / "ran"
    net = UniMissClassifier(2, 1, 2, variant="mit_tiny", **tiny_overrides("mit_tiny"))
    path = _hostile(tmp_path / "pretrain.pt", marker, {"model": net.state_dict()})
    with pytest.raises(UnsafeCheckpointError) as err:
        load_pretrained(net, str(path))
    _assert_refused(err.value, path, marker)


def test_load_torch_file_names_the_refused_class(tmp_path):
    """An allow-list admits exactly the named classes; anything else is named in the one-line refusal."""
    import argparse

    path = tmp_path / "c.pt"
    torch.save({"args": argparse.Namespace(lr=0.1, data=Path("/data"))}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"holds pathlib\.[\w.]*Path, which is refused \(only "
                       r"tensors, plain containers and argparse\.Namespace are read"):
        load_torch_file(path, "source", allowed=[argparse.Namespace])
    torch.save({"args": argparse.Namespace(lr=0.1, data="/data"), "w": torch.arange(3)}, path)
    loaded = load_torch_file(path, "source", allowed=[argparse.Namespace])
    assert loaded["args"].data == "/data" and torch.equal(loaded["w"], torch.arange(3))
    with pytest.raises(UnsafeCheckpointError, match="holds argparse.Namespace"):
        load_torch_file(path, "source")
    (tmp_path / "text.pt").write_text("not a checkpoint\n")
    with pytest.raises(ValueError, match="is not a file written by torch.save"):
        load_torch_file(tmp_path / "text.pt")


def test_training_checkpoint_rng_state_round_trips_weights_only(tmp_path):
    """The saved RNG states need no unpickling of NumPy objects, and restoring them replays every generator."""
    random.seed(3), np.random.seed(3), torch.manual_seed(3)
    np.random.standard_normal()  # leaves a cached Gaussian in NumPy's state
    path = tmp_path / "rng.pt"
    torch.save(capture_rng_state(), path)
    draws = (random.random(), np.random.standard_normal(3), np.random.randint(0, 2**31), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    restore_rng_state(torch.load(path, weights_only=True))
    again = (random.random(), np.random.standard_normal(3), np.random.randint(0, 2**31), torch.rand(3))
    assert draws[0] == again[0] and np.array_equal(draws[1], again[1]) and draws[2] == again[2]
    assert torch.equal(draws[3], again[3])
