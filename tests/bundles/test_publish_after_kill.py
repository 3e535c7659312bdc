"""A fine-tuning run stopped after its last checkpoint but before publishing its best model (killed, or the copy to
``models/model.pt`` failed) has finished training: run again, it publishes that model without training again. It
trained the whole run anew. Once published, running it again trains anew, as before."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from bundle_runner import run_workflow
from ignite.engine import Events

from unimiss_monai.handlers import PublishBestModel
from unimiss_monai.utils.errors import root_cause

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_thread")]
BUNDLE = "unimiss_cxr_segmentation"


class IterationCount:
    """Counts the iterations a trainer runs (added to its handlers)."""

    counted: list[int] = []

    def attach(self, engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: self.counted.append(e.state.iteration))


def _train(data, root) -> list[int]:
    """One smoke training run (one epoch) over ``data``; returns the iterations it ran."""
    IterationCount.counted = []
    run_workflow(BUNDLE, ["train.json", "smoke.yaml"], "train", check=False, dataset_dir=str(data),
                 bundle_root=str(root), output_dir=str(root / "out"), num_workers=0, max_epochs=1,
                 **{"count": {"_target_": f"{__name__}.IterationCount"},
                    "train#trainer#train_handlers": "$@train#handlers + [@count]"})
    return list(IterationCount.counted)


def test_a_run_stopped_before_publishing_publishes_when_run_again(sample_set, tmp_path, monkeypatch):
    from unimiss_monai.data.samples import find_dataset

    data = tmp_path / "data"
    shutil.copytree(find_dataset(sample_set("cxr_segmentation"), "cxr_segmentation"), data)
    datalist = json.loads((data / "datalist.json").read_text())
    datalist["training"] = datalist["training"][:2]
    (data / "datalist.json").write_text(json.dumps(datalist))
    root = tmp_path / "bundle"
    published, best = root / "models" / "smoke" / "model.pt", root / "out" / "checkpoints" / "best_model.pt"

    def killed(self, engine):
        raise RuntimeError("simulated kill before publishing")

    with monkeypatch.context() as patch:
        patch.setattr(PublishBestModel, "__call__", killed)
        with pytest.raises(Exception) as err:  # noqa: PT011 - monai.bundle wraps the handler's error
            _train(data, root)
    assert "simulated kill" in str(root_cause(err.value))
    trainer = torch.load(root / "out" / "checkpoints" / "checkpoint.pt", weights_only=True)["trainer"]
    assert trainer["iteration"] == trainer["epoch_length"] > 0 and best.is_file() and not published.exists()

    assert _train(data, root) == []  # nothing trained: the finished run only published
    assert published.read_bytes() == best.read_bytes()

    assert _train(data, root) == list(range(1, trainer["epoch_length"] + 1))  # published: a rerun trains anew
