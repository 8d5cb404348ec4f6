"""Norms and moments that float32 squares would overflow are stored finite (issue 12, item 3)."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from backprop_lab.engine.watch import Watch

F64 = torch.float64


@pytest.mark.parametrize("scale", [1e25, 1e36])
def test_huge_but_finite_gradients_and_preactivations_are_stored_finite(tmp_path, scale):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 40), nn.Tanh(), nn.Linear(40, 3))
    with torch.no_grad():
        net[0].weight.mul_(1e18)            # z of the tanh ~ 1e18: its squares overflow float32
    x = torch.randn(64, 6)
    ref = [p.detach().to(F64).requires_grad_() for p in net.parameters()]
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    with Watch(net, tmp_path / "run", flush_seconds=0) as w:
        w.begin()
        out = net(x)
        loss = out.sum() * scale           # dL/d(out) = scale: every gradient entry finite in float32
        opt.zero_grad()
        loss.backward()
        grads = [p.grad.to(F64) for p in net.parameters()]
        snap = w.step(opt, loss, out)
    assert all(torch.isfinite(g).all() for g in grads)
    z = (x.to(F64) @ ref[0].T + ref[1]).detach()
    for k, (wi, bi) in enumerate([(0, 1), (2, 3)]):
        assert snap.weight_grad_norm[k] == pytest.approx(float(grads[wi].norm()), rel=1e-5)
        assert snap.bias_grad_norm[k] == pytest.approx(float(grads[bi].norm()), rel=1e-5)
    assert snap.delta_norm[1] == pytest.approx(scale * math.sqrt(64 * 3), rel=1e-5)
    assert np.isfinite(snap.delta_norm).all() and np.isfinite(snap.weight_grad_norm).all()
    assert snap.preact_std[0] == pytest.approx(float(z.std(correction=0)), rel=1e-4)
    assert snap.preact_mean[0] == pytest.approx(float(z.mean()), rel=1e-3, abs=1e-4 * float(z.std()))


def _stack(std1=1.0, std=1.0):
    from backprop_lab.engine import experiment
    layers = [{"type": "linear", "units": 8, "init": {"scheme": "normal", "std": std1}}, {"type": "identity"}]
    layers += [{"type": "linear", "units": 8, "init": {"scheme": "normal", "std": std}}, {"type": "identity"}] * 3
    return experiment.build({"data": {"kind": "gaussian", "n": 32, "dim": 5, "test_fraction": 0},
                             "model": {"layers": layers}, "train": {"batch_size": None}})


def test_a_forward_overflow_names_the_first_layer_whose_output_became_inf():
    from backprop_lab.engine.trainer import Trainer
    tr = Trainer(_stack(1e15, 1e15))   # |z| ~ 1e15, 1e31, then 1e46: inf at the third linear layer
    tr.train_step()
    assert tr.stop_reason.startswith("loss became nan at step 0; first non-finite: the output of 5 linear")
    assert tr.stop_reason.kind.value == "non_finite" and tr.stop_reason.step == 0


def test_non_finite_weights_are_named_before_any_output():
    from backprop_lab.engine.trainer import Trainer
    exp = _stack()
    with torch.no_grad():
        exp.model.weight_layers[2][1].weight[0, 0] = math.inf
    tr = Trainer(exp)
    tr.train_step()
    assert tr.stop_reason.endswith("first non-finite: the weights of 5 linear"), tr.stop_reason


def test_the_diagnosis_names_the_layer_the_re_run_found():
    from backprop_lab.engine.diagnosis import diagnose
    from backprop_lab.engine.history import History
    from backprop_lab.engine.trainer import Trainer
    tr = Trainer(_stack(1e15, 1e15))
    h = History.for_probe(tr.probe)
    h.stop_reason = tr.run(5, on_snapshot=h.append)
    f = next(f for f in diagnose(h) if f.kind == "non_finite")
    assert f.evidence["first_non_finite"] == "the output of 5 linear" and f.layers[0] == "5 linear"
    assert "first non-finite number in the output of 5 linear" in f.message


@pytest.mark.parametrize("scale", [1e-22, 1.0, 1e20])
def test_a_fused_layers_time_gradient_norms_are_float64_ones_also_where_they_vanish(scale):
    """dL/dh_t of a fused layer [time steps, batch, units]: each step's norm equals the float64
    one, where the early steps' gradient is so small (1e-22 x ...) that its float32 squares are
    denormals or 0, where it is ordinary, and where its squares overflow float32."""
    from backprop_lab.engine import probes
    torch.manual_seed(0)
    g = torch.randn(100, 64, 64)
    g[:40] *= scale
    want = g.to(F64).square().sum((1, 2)).sqrt()
    got = probes._time_norms(g)
    assert got.dtype == F64
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
    small = g[:, :2, :3].contiguous()   # below the kernels' size: safe_norms
    torch.testing.assert_close(probes._time_norms(small), small.to(F64).square().sum((1, 2)).sqrt(),
                               rtol=1e-6, atol=0)
