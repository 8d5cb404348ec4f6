"""The Trainer's plain SGD step fused with the probes' statistics (onepass.sgd_step, Probe.sgd_step).

The step must be torch.optim.SGD's to the last bit, and the norms around it those of float64
arithmetic on copies taken here; anything the fused step cannot take is left to the optimiser.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from backprop_lab.engine import experiment, onepass, trainer as trainer_mod
from backprop_lab.engine.trainer import Trainer, plain_sgd

pytestmark = pytest.mark.skipif(not onepass.available(), reason="numba is not installed")

STATS = ("weight_grad_norm", "bias_grad_norm", "update_ratio", "weight_rms", "loss")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(256, 256), (17, 33), (4099,), (1, 5)])
@pytest.mark.parametrize("weight_decay", [0.0, 5e-3])
def test_the_kernel_steps_as_torch_sgd_bit_for_bit(dtype, shape, weight_decay):
    rng = np.random.default_rng(sum(shape))
    for lr in (0.1, 0.37, 3e-3, 1.0):
        w = torch.from_numpy(rng.standard_normal(shape)).to(dtype)
        # gradients over nine decades, down to 1e-24: squares below float32's normal range
        g = torch.from_numpy(rng.standard_normal(shape) * 10 ** rng.uniform(-24, 1, shape)).to(dtype)
        ref = torch.nn.Parameter(w.clone())
        ref.grad = g.clone()
        torch.optim.SGD([ref], lr=lr, weight_decay=weight_decay).step()
        mine, version = w.clone(), None
        version = mine._version
        gg, dd, ww = onepass.sgd_step(mine, g, lr, weight_decay)
        assert torch.equal(mine, ref.detach()), f"lr {lr}: {(mine != ref.detach()).sum()} entries differ"
        assert mine._version > version, "autograd was not told of the write"
        w64, g64, new64 = w.double(), g.double(), ref.detach().double()
        assert gg == pytest.approx(float((g64 ** 2).sum()), rel=1e-12, abs=0)
        assert ww == pytest.approx(float((w64 ** 2).sum()), rel=1e-12, abs=0)
        assert dd == pytest.approx(float(((new64 - w64) ** 2).sum()), rel=1e-12, abs=0)


def test_the_segment_kernel_steps_each_segment():
    rng = np.random.default_rng(3)
    w = rng.standard_normal(1000).astype(np.float32)
    g = (rng.standard_normal(1000) * 1e-3).astype(np.float32)
    starts = np.array([0, 10, 10, 400], dtype=np.intp)   # an empty segment too
    ref = torch.nn.Parameter(torch.from_numpy(w.copy()))
    ref.grad = torch.from_numpy(g.copy())
    torch.optim.SGD([ref], lr=0.2, weight_decay=1e-3).step()
    before = w.copy()
    gsq, dsq, wsq = onepass.segment_sgd_step(w, g, starts, 0.2, 1e-3)
    np.testing.assert_array_equal(w, ref.detach().numpy())
    bounds = list(starts) + [1000]
    for k, (a, b) in enumerate(zip(bounds, bounds[1:])):
        assert gsq[k] == pytest.approx(float((g[a:b].astype(np.float64) ** 2).sum()), rel=1e-12, abs=0)
        assert wsq[k] == pytest.approx(float((before[a:b].astype(np.float64) ** 2).sum()), rel=1e-12, abs=0)
        change = w[a:b].astype(np.float64) - before[a:b]
        assert dsq[k] == pytest.approx(float((change ** 2).sum()), rel=1e-12, abs=0)
    assert gsq[1] == dsq[1] == wsq[1] == 0.0


def _spec(layers, weight_decay=0.0, clip=None, n=128, dim=64):
    return {"data": {"kind": "gaussian", "n": n, "dim": dim, "classes": 3, "test_fraction": 0, "seed": 1},
            "model": {"layers": layers},
            "train": {"batch_size": 32, "optimizer": "sgd", "lr": 0.3, "weight_decay": weight_decay,
                      "clip_norm": clip, "seed": 0}}


BIG = [{"type": "linear", "units": 256}, {"type": "sigmoid"}, {"type": "linear", "units": 256},
       {"type": "relu"}]   # large weights (the kernel) and small ones (the last layer, biases: torch)
SMALL = [{"type": "linear", "units": 30}, {"type": "tanh"}] * 3   # flat parameter buffers


@pytest.mark.parametrize("layers", [BIG, SMALL], ids=["large weights", "small plain stack"])
@pytest.mark.parametrize("weight_decay", [0.0, 1e-3])
def test_the_fused_step_trains_and_measures_as_the_optimiser(monkeypatch, layers, weight_decay):
    """Two trainers on one spec, one with the fused step and one with torch.optim.SGD's own: the same
    weights bit for bit after every step, and the same statistics (float64 sums on the fused step)."""
    fused = Trainer(experiment.build(_spec(layers, weight_decay)))
    plain = Trainer(experiment.build(_spec(layers, weight_decay)))
    for step in range(6):
        a = fused.train_step()
        monkeypatch.setattr(trainer_mod, "plain_sgd", lambda opt: None)
        b = plain.train_step()
        monkeypatch.undo()
        for p, q in zip(fused.module.parameters(), plain.module.parameters()):
            assert torch.equal(p, q), f"step {step}: the weights differ"
        for name in STATS:   # (rtol 1e-6: the optimiser's path takes a small tensor's norm in float32)
            np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-6, err_msg=f"{name}, step {step}")
    assert plain_sgd(fused.optimizer) == (0.3, weight_decay)
    if layers is BIG:
        assert fused.probe.fused_steps == 6, "the fused step was not taken"


def test_the_fused_step_measures_the_change_made():
    """update_ratio, weight_rms and the gradient norms against float64 arithmetic on copies taken
    here, on a net whose first layer's gradients vanish to ~1e-20 (squares below float32's range)."""
    layers = [{"type": "linear", "units": 256, "init": {"scheme": "normal", "std": 1e-3}}, {"type": "sigmoid"}] * 8
    tr = Trainer(experiment.build(_spec(layers)))
    ws = [m.weight for _, m in tr.exp.model.weight_layers]
    for step in range(3):
        before = [w.detach().double().clone() for w in ws]
        grads = {}
        hooks = [w.register_post_accumulate_grad_hook(lambda p, k=k: grads.__setitem__(k, p.grad.double().clone()))
                 for k, w in enumerate(ws)]
        snap = tr.train_step()
        for h in hooks:
            h.remove()
        after = [w.detach().double() for w in ws]
        for k in range(len(ws)):
            # (rel 1e-6: a small tensor's norm is float32's _foreach_norm, as on the torch path)
            assert snap.weight_grad_norm[k] == pytest.approx(float(grads[k].norm()), rel=1e-6, abs=0)
            change = float((after[k] - before[k]).norm() / before[k].norm())
            assert snap.update_ratio[k] == pytest.approx(change, rel=1e-6, abs=0)
            assert snap.weight_rms[k] == pytest.approx(float(before[k].norm()) / math.sqrt(before[k].numel()),
                                                        rel=1e-6, abs=0)
    assert 0 < snap.weight_grad_norm[0] < 1e-16, "the first layer's gradient did not vanish"


def test_what_the_fused_step_does_not_take():
    params = [torch.nn.Parameter(torch.zeros(3))]
    assert plain_sgd(torch.optim.SGD(params, lr=0.1)) == (0.1, 0.0)
    assert plain_sgd(torch.optim.SGD(params, lr=0.1, momentum=0.9)) is None
    assert plain_sgd(torch.optim.SGD(params, lr=0.1, maximize=True)) is None
    assert plain_sgd(torch.optim.Adam(params, lr=0.1)) is None
    two = torch.optim.SGD([{"params": params}, {"params": [torch.nn.Parameter(torch.zeros(2))], "lr": 1.0}], lr=0.1)
    assert plain_sgd(two) is None
    hooked = torch.optim.SGD(params, lr=0.1)
    hooked.register_step_post_hook(lambda *a: None)
    assert plain_sgd(hooked) is None
    scheduled = torch.optim.SGD(params, lr=0.1)
    torch.optim.lr_scheduler.StepLR(scheduled, 10)   # (it wraps the optimiser's step to count it)
    assert plain_sgd(scheduled) is None


def test_clipping_keeps_the_optimisers_step():
    """Gradient norms are those before clipping: a clipped run steps with the optimiser, as before."""
    tr = Trainer(experiment.build(_spec(BIG, clip=1e-3)))
    calls = []
    tr.optimizer.register_step_post_hook(lambda *a: calls.append(1))
    snap = tr.train_step()
    assert calls == [1] and snap.weight_grad_norm[0] > 1e-3


def test_the_steps_change_nothing_where_they_cannot_take_a_gradient():
    ps = [torch.nn.Parameter(torch.randn(64, 64)), torch.nn.Parameter(torch.randn(64))]
    steps = onepass.SGDSteps(ps)
    assert steps.usable
    ps[0].grad = torch.randn(64, 64)   # the bias has no gradient (torch's SGD would skip it)
    before = [p.detach().clone() for p in ps]
    assert steps.step(0.1, 0.0) is None and all(torch.equal(p, b) for p, b in zip(ps, before))
    ps[1].grad = torch.randn(64)
    got = steps.step(0.1, 0.0)
    assert got is not None and got[1, 0] == pytest.approx(float(ps[1].grad.double().square().sum()), rel=1e-12)
    ps[0].data = torch.randn(64, 64)   # new storage: the caller plans again
    assert steps.step(0.1, 0.0) is None and steps.moved
    emb = torch.nn.Embedding(10, 4, sparse=True)
    emb(torch.tensor([1, 2])).sum().backward()
    weights = emb.weight.detach().clone()
    assert onepass.SGDSteps([emb.weight]).step(0.1, 0.0) is None and torch.equal(emb.weight, weights)
    assert not onepass.SGDSteps([torch.randn(8, 8).t()]).usable
    assert not onepass.SGDSteps([torch.randn(8), torch.randn(8, dtype=torch.float64)]).usable
