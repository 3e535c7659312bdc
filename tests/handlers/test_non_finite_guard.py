"""NonFiniteGuard: a NaN loss stops training before the optimiser steps on it, naming the batch's files; a step that
leaves NaN/Inf weights stops the run before anything can save them."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Events
from monai.data import DataLoader, MetaTensor
from monai.engines import SupervisedTrainer

from unimiss_monai.handlers import NonFiniteGuard
from unimiss_monai.handlers.non_finite_guard import batch_files
from unimiss_monai.utils.finite import first_non_finite

pytestmark = pytest.mark.usefixtures("one_thread")


def _data(bad: int | None = None) -> list[dict]:
    items = []
    for i in range(6):
        image = torch.full((1, 4), float(i + 1))
        if i == bad:
            image[0, 2] = float("inf")
        items.append({"image": MetaTensor(image, meta={"filename_or_obj": f"/data/case{i}.nii.gz"}), "label": torch.zeros(1, 1)})
    return items


def _trainer(data: list[dict], lr: float = 0.01) -> tuple[SupervisedTrainer, torch.nn.Module]:
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 1)
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=1, train_data_loader=DataLoader(data, batch_size=2, shuffle=False),
        network=net, optimizer=torch.optim.SGD(net.parameters(), lr=lr), loss_function=torch.nn.MSELoss(),
        train_handlers=[NonFiniteGuard(net)],
    )
    return trainer, net


def test_first_non_finite_names_the_tensor():
    state = {"a": [torch.ones(2), {"b": torch.tensor([1.0, float("nan")])}], "n": torch.tensor([2**62]), "s": "x"}
    assert first_non_finite(state) == "a.1.b"
    assert first_non_finite({"a": torch.ones(3), "i": torch.arange(3), "f": float("inf")}) is None  # numbers unchecked


def test_batch_files_reads_collated_and_decollated_batches():
    batch = next(iter(DataLoader(_data(), batch_size=3)))
    assert batch_files(batch) == ["/data/case0.nii.gz", "/data/case1.nii.gz", "/data/case2.nii.gz"]
    assert batch_files([{"image": MetaTensor(torch.ones(1), meta={"filename_or_obj": "a.png"})}] * 2) == ["a.png"]
    assert batch_files({"image": torch.ones(2)}) == []


def test_nan_loss_stops_before_the_step_naming_the_batch_files():
    trainer, net = _trainer(_data(bad=3))  # batch 2 holds cases 2 and 3
    before = {}
    trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: before.update({k: v.clone() for k, v in net.state_dict().items()}))
    with pytest.raises(FloatingPointError) as err:
        trainer.run()
    message = str(err.value)
    assert message.startswith("training loss is inf at epoch 1, iteration 2 (batch files: /data/case2.nii.gz, /data/case3.nii.gz)")
    assert "nothing was trained on it" in message and "\n" not in message
    # the weights are those from before the failing iteration: the optimiser never stepped on the NaN
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_a_step_to_inf_weights_stops_the_run_at_that_iteration():
    trainer, net = _trainer(_data(), lr=3e38)  # a finite loss, but the step overflows float32 weights
    with pytest.raises(FloatingPointError, match=r"^weight weight became NaN/Inf in the optimiser step of epoch 1, iteration 1 "):
        trainer.run()
    assert trainer.state.iteration == 1 and not torch.isfinite(net.weight).all()


def test_finite_training_runs_through():
    trainer, net = _trainer(_data())
    trainer.run()
    assert trainer.state.iteration == 3 and torch.isfinite(net.weight).all()
