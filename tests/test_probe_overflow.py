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
