"""The one-pass kernels (engine/onepass.py) give the numbers their definitions give.

Each kernel is compared with the definition computed here in float64 numpy, on the layouts a
probe meets ((batch, units), (batch, time, units), (batch, channels, h, w)), with units that
are dead, entries that saturate, a shift, NaN and inf; then the probes' two paths (one-pass and
torch) against each other and a vanishing net's norms against float64 autograd, which a
float32 norm gets wrong (its squares are subnormal).
"""
import math
import os

import numpy as np
import pytest
import torch
import torch.nn as nn

from backprop_lab.engine import onepass, probes
from backprop_lab.engine.activations import activation
from backprop_lab.engine.watch import Watch

pytestmark = pytest.mark.skipif(not onepass.available(), reason="numba is not installed")

# (shape, unit axis) of one layer's tensor, as probes._unit_axis gives it
LAYOUTS = [((96, 64), 1), ((12, 9, 48), 2), ((6, 8, 7, 9), 1)]


def layer(shape, seed, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) * scale


def reference_moments(kind, z, a, shift, root, unit_axis):
    """The five raw moments of activation_moments, by their definitions in float64."""
    z64, a64 = z.double().numpy(), a.double().numpy()
    c = z64 - shift
    per_unit = np.moveaxis(z64, unit_axis, 0).reshape(z64.shape[unit_axis], -1)
    if kind in ("sigmoid", "tanh"):
        d = a64 - a64 * a64 if kind == "sigmoid" else 1 - a64 * a64
        dead = int((np.moveaxis(d, unit_axis, 0).reshape(d.shape[unit_axis], -1) == 0).all(1).sum())
        return c.sum(), (c * c).sum(), d.sum(), float((np.abs(z64) > root).sum()), float(dead)
    pos = float((z64 > 0).sum())
    if kind == "identity":
        return c.sum(), (c * c).sum(), 0.0, 0.0, 0.0
    dead = float((per_unit <= 0).all(1).sum()) if kind == "relu" else 0.0
    return c.sum(), (c * c).sum(), pos, pos, dead


@pytest.mark.parametrize("shape,unit_axis", LAYOUTS, ids=["rows", "time", "image"])
@pytest.mark.parametrize("kind", ["sigmoid", "tanh", "relu", "leaky_relu", "identity"])
@pytest.mark.parametrize("shift", [0.0, 2.5])
def test_activation_sums_equal_their_definitions(kind, shape, unit_axis, shift):
    z = layer(shape, 1)
    idx = [slice(None)] * len(shape)
    idx[unit_axis] = 0
    z[tuple(idx)] = -200.0          # unit 0: z far below 0 on every sample (dead for all but leaky)
    idx[unit_axis] = 1
    z[tuple(idx)] = 40.0            # unit 1: sigmoid a rounds to 1 (f' = 0), tanh a = 1
    f = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu,
         "leaky_relu": lambda v: torch.where(v > 0, v, 0.2 * v), "identity": lambda v: v}[kind]
    a = f(z)
    root = probes.saturation_root(kind, torch.float32) if kind in ("sigmoid", "tanh") else 0.0
    got = onepass.activation_sums(kind, z, a, shift, root, unit_axis)
    want = reference_moments(kind, z, a, shift, root, unit_axis)
    np.testing.assert_allclose(got[:3], want[:3], rtol=1e-12, atol=1e-9)
    assert got[3:] == want[3:]      # counts: exactly
    if kind in ("sigmoid", "relu"):
        assert got[4] >= 1          # the pinned units are found dead


@pytest.mark.parametrize("shape,unit_axis", LAYOUTS[:2], ids=["rows", "time"])
@pytest.mark.parametrize("kind", ["sigmoid", "tanh", "relu", "leaky_relu", "identity"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_kernels_at_an_address_equal_their_definitions_and_refuse_what_they_were_not_made_for(kind, shape,
                                                                                            unit_axis, dtype):
    z = layer(shape, 1).to(dtype)
    z[..., 0] = -200.0      # unit 0 dead for all but leaky
    z[..., 1] = 40.0        # unit 1: f' rounds to 0 for sigmoid and tanh
    f = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu,
         "leaky_relu": lambda v: torch.where(v > 0, v, 0.2 * v), "identity": lambda v: v}[kind]
    a = f(z)
    root = probes.saturation_root(kind, dtype) if kind in ("sigmoid", "tanh") else 0.0
    run = onepass.activation_at(kind, z, root)
    got, want = run(z, a, 0.5), reference_moments(kind, z, a, 0.5, root, unit_axis)
    np.testing.assert_allclose(got[:3], want[:3], rtol=1e-12, atol=1e-9)
    assert tuple(got[3:]) == tuple(want[3:])
    other = layer(shape, 2).to(dtype)   # the same layout, new data: read where it lies
    assert run(other, f(other), 0.0)[:3] == pytest.approx(reference_moments(kind, other, f(other), 0.0, root,
                                                                            unit_axis)[:3], rel=1e-12)
    bad = z.clone()
    bad.view(-1)[7] = math.nan
    assert run(bad, f(bad), 0.0) is None                        # not finite: the torch path says which
    assert run(z[:-1].contiguous(), a[:-1].contiguous(), 0.0) is None   # another shape
    assert run(z.float() if dtype == torch.float64 else z.double(), a, 0.0) is None   # another dtype
    wide = torch.cat([z, z], -1)[..., ::2]                      # the same shape, not contiguous
    assert run(wide, wide, 0.0) is None
    g = (layer(shape, 3) * 1e-25).to(dtype)
    d = onepass.delta_at(g)
    sq, per_unit = d(g)
    g64 = g.double().numpy()
    assert sq == pytest.approx(float((g64 ** 2).sum()), rel=1e-12, abs=0)
    np.testing.assert_allclose(per_unit, np.abs(g64).reshape(-1, shape[-1]).sum(0), rtol=1e-12)
    g[0, 0] = math.inf
    assert d(g) is None and d(g[:-1].contiguous()) is None


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_activation_sums_leave_non_finite_layers_to_the_torch_path(bad):
    z = layer((64, 80), 2)
    z[3, 5] = bad
    assert onepass.activation_sums("tanh", z, torch.tanh(z), 0.0, 3.0, 1) is None
    act = activation({"type": "tanh"})
    moments = probes.activation_moments(act, z[None], torch.tanh(z)[None], {}, [0.0])
    assert not math.isfinite(float(moments[0][0]))   # the torch path's NaN / inf, as before


@pytest.mark.parametrize("shape,unit_axis", LAYOUTS, ids=["rows", "time", "image"])
@pytest.mark.parametrize("scale", [1.0, 1e-25])
def test_delta_sums_are_float64_exact_also_for_a_vanishing_gradient(shape, unit_axis, scale):
    g = layer(shape, 3, scale).double().mul(1).float()
    sq, per_unit = onepass.delta_sums(g, unit_axis)
    g64 = g.double().numpy()
    assert sq == pytest.approx(float((g64 ** 2).sum()), rel=1e-12, abs=0)
    want = np.abs(np.moveaxis(g64, unit_axis, 0)).reshape(shape[unit_axis], -1).sum(1)
    np.testing.assert_allclose(per_unit, want, rtol=1e-12)


def test_sum_and_difference_of_squares_are_exact_in_float64():
    w = layer((128, 64), 4)
    step = layer((128, 64), 5, 1e-24)        # an update far below w's float32 spacing...
    after = w + step * 1e18                  # ...and one that is not
    want = float(((after.double() - w.double()) ** 2).sum())
    assert onepass.diff_square(w, after) == pytest.approx(want, rel=1e-12, abs=0)
    assert onepass.sum_square(step) == pytest.approx(float((step.double() ** 2).sum()), rel=1e-12, abs=0)
    assert onepass.diff_square(w, w.clone()) == 0.0
    inf = w.clone()
    inf[0, 0] = math.inf
    assert onepass.diff_square(w, inf) is None


def test_kernels_take_only_large_contiguous_cpu_float_tensors():
    big = torch.zeros(64, 128)
    assert onepass.fits(big) and onepass.fits(big.double())
    assert not onepass.fits(torch.zeros(8, 8))                 # small: the torch path's few calls
    assert not onepass.fits(big.t())                           # not contiguous
    assert not onepass.fits(big.half())


@pytest.mark.parametrize("kind", ["sigmoid", "tanh", "relu"])
def test_the_probes_one_pass_and_torch_paths_agree(kind, monkeypatch):
    act = activation({"type": kind})
    z = layer((256, 64), 6)
    a = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}[kind](z)
    g = layer((256, 64), 7, 1e-3)
    fast = [float(t) for t in probes.activation_moments(act, z[None], a[None], {}, [0.5])]
    fast_d = probes.delta_stats(g[None], True, {})
    monkeypatch.setattr(onepass, "available", lambda: False)
    slow = [float(t) for t in probes.activation_moments(act, z[None], a[None], {}, [0.5])]
    slow_d = probes.delta_stats(g[None], True, {})
    np.testing.assert_allclose(fast, slow, rtol=1e-6)
    np.testing.assert_allclose(fast_d[0].numpy(), slow_d[0].numpy(), rtol=1e-6)
    np.testing.assert_allclose(fast_d[1].numpy(), slow_d[1].double().numpy(), rtol=1e-5)


@pytest.mark.parametrize("path", ["one-pass", "torch"])
def test_a_vanishing_layer_reads_its_true_norms_not_zero(path, tmp_path, monkeypatch):
    """Gradients of ~1e-24: their float32 squares are subnormal, so a float32 norm reads ~0.

    The probes take such a norm in float64 (the one-pass kernels always, the torch path when the
    float32 norm is tiny); weight, bias and delta norms and the update equal float64 autograd."""
    if path == "torch":
        monkeypatch.setattr(onepass, "available", lambda: False)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(32, 128), nn.Sigmoid(), nn.Linear(128, 10))
    x = torch.randn(256, 32)
    opt = torch.optim.SGD(net.parameters(), lr=1e23)   # an update of ~1e-2 relative
    with Watch(net, tmp_path / "run", flush_seconds=0) as w:
        w.begin()
        out = net(x)
        loss = out.sum() * 1e-26     # every gradient ~1e-24 to 1e-28
        opt.zero_grad()
        loss.backward()
        grads = [p.grad.double() for p in net.parameters()]
        before = [p.detach().double().clone() for p in net.parameters()]
        snap = w.step(opt, loss, out)
    after = [p.detach().double() for p in net.parameters()]
    assert 0 < float(grads[0].abs().max()) < 1e-19       # squares below float32's normal range
    for k, (wi, bi) in enumerate([(0, 1), (2, 3)]):
        assert snap.weight_grad_norm[k] == pytest.approx(float(grads[wi].norm()), rel=1e-6, abs=0)
        assert snap.bias_grad_norm[k] == pytest.approx(float(grads[bi].norm()), rel=1e-6, abs=0)
        change = float((after[wi] - before[wi]).norm()) / float(before[wi].norm())
        assert snap.update_ratio[k] == pytest.approx(change, rel=1e-6, abs=0)
    assert snap.delta_norm[1] == pytest.approx(1e-26 * math.sqrt(256 * 10), rel=1e-6, abs=0)
    w1, b1, w2 = before[0], before[1], before[2]
    a = torch.sigmoid(x.double() @ w1.T + b1)
    dz0 = (torch.full((256, 10), 1e-26, dtype=torch.float64) @ w2) * a * (1 - a)
    assert snap.delta_norm[0] == pytest.approx(float(dz0.norm()), rel=1e-5, abs=0)


def _trainer(seed=0, optimizer="momentum"):
    from backprop_lab.engine import experiment
    from backprop_lab.engine.trainer import Trainer
    spec = {"data": {"kind": "gaussian", "n": 128, "dim": 64, "classes": 3, "test_fraction": 0, "seed": 1},
            "model": {"layers": [{"type": "linear", "units": 256}, {"type": "tanh"},   # (above FLAT_MAX)
                                 {"type": "linear", "units": 256}, {"type": "tanh"}]},
            "train": {"batch_size": None, "optimizer": optimizer, "lr": 0.5, "momentum": 0.9, "seed": seed}}
    return Trainer(experiment.build(spec))


def _weights(tr):
    return [m.weight.detach().double().clone() for _, m in tr.exp.model.weight_layers]


@pytest.mark.parametrize("optimizer", ["momentum", "sgd"])
@pytest.mark.parametrize("edit", ["none", "in place", "new storage"])
def test_update_ratio_is_exact_on_every_step_while_the_weights_are_carried(edit, optimizer):
    """From the second step on, the Trainer's large weights are not copied: the last step's pass
    left W' in their buffers. Each step's update_ratio and weight_rms still equal the change made
    (by float64 arithmetic on copies taken here), also after the weights were changed between
    steps by something other than the optimiser (the carried copy is then stale and not used).
    Plain SGD: the step itself takes the change in the same pass (Probe.sgd_step), nothing carried."""
    tr = _trainer(optimizer=optimizer)
    for step in range(4):
        if step == 2 and edit != "none":
            layer = tr.exp.model.weight_layers[1][1]
            with torch.no_grad():
                if edit == "in place":
                    layer.weight.mul_(1.5)
                else:
                    layer.weight.data = layer.weight.detach() * 0.5
        before = _weights(tr)
        snap = tr.train_step()
        after = _weights(tr)
        want = [float((a - b).norm() / b.norm()) for a, b in zip(after, before)]
        np.testing.assert_allclose(snap.update_ratio, want, rtol=1e-6, err_msg=f"step {step}")
        rms = [float(b.norm()) / math.sqrt(b.numel()) for b in before]
        np.testing.assert_allclose(snap.weight_rms, rms, rtol=1e-6, err_msg=f"step {step}")
    if optimizer == "momentum":
        assert tr.probe._carried(), "the large weights were not carried from step to step"
    else:
        # (the step after the weight moved to new storage is the optimiser's: the plan is made again)
        want = 3 if edit == "new storage" else 4
        assert not tr.probe._carried() and tr.probe.fused_steps == want, "plain SGD did not take the fused step"


def test_segment_sums_of_squares_equal_numpy_in_float64():
    """The flat parameter buffers' per-parameter norms (engine/flat_params.py): one pass."""
    x = layer((1000,), 8, 1e-21)               # squares below float32's normal range
    y = x + layer((1000,), 9, 1e-20)
    starts = np.array([0, 10, 10, 400], dtype=np.intp)    # an empty segment too
    bounds = list(starts) + [1000]
    x64, y64 = x.double().numpy(), y.double().numpy()
    want = [float((x64[a:b] ** 2).sum()) for a, b in zip(bounds, bounds[1:])]
    got = onepass.segment_squares(x.numpy(), starts, np.empty(4))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    want = [float(((y64[a:b] - x64[a:b]) ** 2).sum()) for a, b in zip(bounds, bounds[1:])]
    got = onepass.segment_diff_squares(y.numpy(), x.numpy(), starts, np.empty(4))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    assert got[1] == 0.0


def test_numba_is_imported_with_wide_vectors_where_the_cpu_has_avx512():
    """engine/numba_target.py: LLVM's 256-bit preference off for numba's import alone."""
    import subprocess
    import sys
    code = ("import os, llvmlite.binding as l; from backprop_lab.engine import onepass_loops; import numba; "
            "print(numba.config.CPU_FEATURES or ''); print('NUMBA_CPU_FEATURES' in os.environ); "
            "print('+avx512f' in l.get_host_cpu_features().flatten().split(','))")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CPU_FEATURES"}
    features, leaked, avx512 = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                              env=env, check=True).stdout.split("\n")[:3]
    assert leaked == "False", "NUMBA_CPU_FEATURES was left for child processes"
    assert features.endswith(",-prefer-256-bit") == (avx512 == "True")
