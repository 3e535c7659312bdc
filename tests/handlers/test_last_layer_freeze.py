import pytest
import torch
from ignite.engine import Engine
from monai.engines import SupervisedTrainer
from torch import nn

from unimiss_monai.handlers import LastLayerFreezeHandler


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.mlp = nn.Linear(4, 4)
        self.last_layer = nn.Linear(4, 2)

    def forward(self, x):
        return self.last_layer(self.mlp(x))


def test_last_layer_fixed_in_frozen_epochs_only_inside_monai_trainer():
    """The handler runs between backward and optimizer.step(): the last layer does not move in epoch 1 while the rest
    does, and it moves from epoch 2 on."""
    net = Head()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    data = [{"image": torch.randn(3, 4), "label": torch.randn(3, 2)} for _ in range(2)]
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=1, train_data_loader=data, network=net, optimizer=opt,
        loss_function=nn.MSELoss(),
    )
    LastLayerFreezeHandler(net, freeze_epochs=1).attach(trainer)
    last0, mlp0 = net.last_layer.weight.detach().clone(), net.mlp.weight.detach().clone()
    trainer.run()
    assert torch.equal(net.last_layer.weight, last0)
    assert not torch.equal(net.mlp.weight, mlp0)
    trainer.state.max_epochs = 2
    trainer.run()
    assert trainer.state.epoch == 2 and not torch.equal(net.last_layer.weight, last0)


def test_cancel_gradients_direct_call_and_errors():
    net = Head()
    handler = LastLayerFreezeHandler(net, freeze_epochs=2, name_filter=lambda n: n.startswith("last_layer."))
    net(torch.randn(2, 4)).sum().backward()
    assert handler.cancel_gradients(3) is False and net.last_layer.weight.grad is not None
    assert handler.cancel_gradients(2) is True
    assert net.last_layer.weight.grad is None and net.mlp.weight.grad is not None
    with pytest.raises(ValueError, match="matches name_filter"):
        LastLayerFreezeHandler(net, name_filter="does_not_exist")
    with pytest.raises(ValueError, match="BACKWARD_COMPLETED"):
        LastLayerFreezeHandler(net).attach(Engine(lambda e, b: None))
