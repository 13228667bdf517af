import pytest
import torch
from torch import nn

from pyrovae.device import chunks, evaluating, evaluation_method, owners, training_mode


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))

    def forward(self, x):
        return self.inner(x)

    @evaluation_method
    def predict(self, x):
        """Outputs in evaluation mode."""
        return self(x), self.training, self.inner[1].training, torch.is_grad_enabled()


def test_training_mode_sets_every_submodule_and_gives_each_its_own_mode_back():
    a, b = Net(), Net()
    b.inner[1].eval()  # a mixed state, as a user may leave it
    with training_mode((a, b), False):
        assert not any(m.training for m in (*a.modules(), *b.modules()))
    assert all(m.training for m in a.modules()) and b.training and not b.inner[1].training
    with training_mode((b,), True):
        assert all(m.training for m in b.modules())
    assert not b.inner[1].training
    with pytest.raises(RuntimeError, match="inside"), training_mode((a,), False):
        raise RuntimeError("inside")
    assert a.training and a.inner[1].training


def test_evaluating_switches_the_modules_owning_the_callables():
    net = Net()
    with evaluating(net.forward, lambda x: x):
        assert not net.training and not net.inner[1].training
    assert net.training and owners(net.forward) == [net]


def test_an_evaluation_method_runs_without_gradients_in_evaluation_mode():
    net = Net()
    x = torch.ones(3, 2)
    y, training, dropout_training, grad = net.predict(x)
    assert (training, dropout_training, grad) == (False, False, False)
    assert torch.equal(y, net.eval()(x).detach()) and not y.requires_grad  # no dropout
    assert not net.training  # eval() above; predict gives back what it found
    net.train()
    net.predict(x)
    assert net.training and net.inner[1].training and torch.is_grad_enabled()
    assert net.predict.__doc__ == "Outputs in evaluation mode."


def test_chunks_come_in_order_and_are_not_copied_where_they_already_are():
    x = torch.arange(10.0).reshape(5, 2)
    parts = list(chunks(x, 2, torch.device("cpu")))
    assert [len(p) for p in parts] == [2, 2, 1] and torch.equal(torch.cat(parts), x)
    assert parts[1].data_ptr() == x[2:].data_ptr()  # a view of x: nothing copied on its own device
