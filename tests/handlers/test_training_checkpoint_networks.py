"""TrainingCheckpoint refuses, in one line, to resume a checkpoint of another network (the smoke overlay's tiny one
in the ``output_dir`` of a full run), and leaves the file as it is."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine

from unimiss_monai.handlers import TrainingCheckpoint
from unimiss_monai.utils.errors import user_error_message


def _run(ckpt_dir, net: torch.nn.Module, max_epochs: int = 1, resume_finished: bool = True) -> Engine:
    engine = Engine(lambda e, b: None)
    engine.state.rank = 0
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    TrainingCheckpoint(ckpt_dir, {"network": net, "optimizer": optimizer}, save_every=1, epoch_level=True,
                       resume_finished=resume_finished).attach(engine)
    engine.run(range(2), max_epochs=max_epochs)
    return engine


def test_a_checkpoint_of_another_width_is_refused_in_one_line(tmp_path):
    _run(tmp_path, torch.nn.Linear(2, 16))
    ckpt = tmp_path / "checkpoint.pt"
    before = ckpt.read_bytes()
    with pytest.raises(ValueError) as info:
        _run(tmp_path, torch.nn.Linear(2, 128), max_epochs=2)
    message = user_error_message(info.value)
    assert message is not None and "\n" not in message, message
    assert message.startswith(f"cannot resume from {ckpt}: it holds another network")
    assert "network.bias is [16] in the checkpoint, [128] in this run's network" in message
    assert "another --output_dir" in message and "move that checkpoint out of the way" in message
    assert ckpt.read_bytes() == before  # refused, never removed or rewritten


def test_a_checkpoint_of_other_layers_is_refused(tmp_path):
    _run(tmp_path, torch.nn.Sequential(torch.nn.Linear(2, 4)))
    with pytest.raises(ValueError, match=r"network\.1\.bias of this run's network is not in the checkpoint"):
        _run(tmp_path, torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Linear(4, 1)), max_epochs=2)


def test_the_same_network_resumes_and_a_finished_one_is_trained_anew_only_if_it_is_the_same(tmp_path):
    _run(tmp_path, torch.nn.Linear(2, 4))
    assert _run(tmp_path, torch.nn.Linear(2, 4), max_epochs=2).state.iteration == 4  # resumed after epoch 1
    # a finished run of this network that is not resumed is trained anew over its checkpoint
    assert _run(tmp_path, torch.nn.Linear(2, 4), max_epochs=2, resume_finished=False).state.iteration == 4
    # a finished run of another network (another bundle's run in this output_dir, e.g. pretraining's resume
    # checkpoint) is not trained over: its file stays as it was
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(ValueError, match="it holds another network"):
        _run(tmp_path, torch.nn.Linear(2, 8), max_epochs=2, resume_finished=False)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


def test_optimizer_state_of_a_channels_first_checkpoint_takes_the_parameters_layout(tmp_path):
    """A checkpoint written before conv weights were stored channels-last resumes with its moments in the layout of
    the parameters they update, and the same values."""
    def run(layout, max_epochs):
        torch.manual_seed(0)
        net = torch.nn.Conv3d(4, 8, 3).to(memory_format=layout)
        engine = Engine(lambda e, b: (net(torch.ones(1, 4, 3, 3, 3)).sum().backward(), optimizer.step()))
        engine.state.rank = 0
        optimizer = torch.optim.Adam(net.parameters(), lr=0.1)
        TrainingCheckpoint(tmp_path, {"network": net, "optimizer": optimizer}, save_every=1,
                           epoch_level=True).attach(engine)
        engine.run(range(2), max_epochs=max_epochs)
        return net, optimizer

    run(torch.contiguous_format, 1)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["optimizer"]["state"][0]["exp_avg"]
    net, optimizer = run(torch.channels_last_3d, 1)  # finished: resumed, nothing more to train
    moment = optimizer.state[net.weight]["exp_avg"]
    assert saved.is_contiguous() and moment.stride() == net.weight.stride() != saved.stride()
    assert torch.equal(moment, saved)
