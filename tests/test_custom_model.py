"""A user's own nn.Module from a Python file, and the Watch probe for a user's own loop."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from backprop_lab.engine import experiment, record
from backprop_lab.engine.spec import SpecError
from backprop_lab.engine.trainer import Trainer
from backprop_lab.engine.watch import Watch

NET = '''
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self, hidden=12):
        super().__init__()
        self.fc1 = nn.Linear(2, hidden)
        self.act = nn.Tanh()
        self.fc2 = nn.Linear(hidden, 3)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))
'''


def spec(**model):
    return {"data": {"kind": "spirals", "n": 90, "test_fraction": 0}, "model": {"python": "net.py",
            "class": "Net", **model}, "train": {"batch_size": None}}


def test_custom_module_is_instrumented_and_matches_autograd(tmp_path):
    (tmp_path / "net.py").write_text(NET)
    exp = experiment.build(spec(kwargs={"hidden": 7}), tmp_path)
    assert [n for n, _ in exp.model.weight_layers] == ["fc1 (Linear)", "fc2 (Linear)"]
    assert [n for n, _, _ in exp.model.act_layers] == ["act (Tanh)"]
    net = exp.model.module
    x, y = torch.as_tensor(exp.data.x_train), torch.as_tensor(exp.data.y_train)
    loss = F.cross_entropy(net(x), y)
    g = torch.autograd.grad(loss, [net.fc1.weight, net.fc2.bias])
    snap = Trainer(exp).train_step()
    assert snap.weight_grad_norm[0] == pytest.approx(float(g[0].norm()), rel=1e-6)
    assert snap.bias_grad_norm[1] == pytest.approx(float(g[1].norm()), rel=1e-6)


@pytest.mark.parametrize("source, cls, message", [
    ("raise ImportError('no lib')", "Net", "failed to import: ImportError: no lib"),
    (NET, "Missing", "defines no 'Missing'"),
    (NET.replace("nn.Linear(hidden, 3)", "nn.Linear(hidden, 5)"), "Net", "output has shape (5,), the data needs 3"),
    (NET.replace("nn.Linear(2, hidden)", "nn.Linear(4, hidden)"), "Net", "does not fit the data"),
])
def test_broken_user_modules_give_clear_messages(tmp_path, source, cls, message):
    (tmp_path / "net.py").write_text(source)
    with pytest.raises(SpecError) as e:
        experiment.build(spec(**{"class": cls}), tmp_path)
    assert message in str(e.value)


def test_watch_records_a_users_loop_and_the_record_reloads(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    ref = None
    with Watch(model, tmp_path / "run", flush_seconds=0) as w:
        for i in range(5):
            w.begin()
            out = model(x)
            loss = F.cross_entropy(out, y)
            opt.zero_grad()
            loss.backward()
            if i == 0:
                ref = float(model[0].weight.grad.norm())
            w.step(opt, loss, out, y)
    h, s = record.load(tmp_path / "run")
    assert len(h) == 5 and h.layer_names == ["0 (Linear)", "2 (Linear)"]
    assert h.series("weight_grad_norm")[0, 0] == pytest.approx(ref, rel=1e-6)
    assert np.isfinite(h.series("update_ratio")).all() and h.stop_reason == "finished"
