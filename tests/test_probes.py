"""Every statistic the probes record equals the same quantity computed independently
with torch.autograd on a copy of the model and the same batch (float64 reference)."""
import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine import experiment
from engine.build import Recurrent, Residual
from engine.trainer import Trainer

RTOL = 1e-6
MAX_DERIVATIVE = {"sigmoid": 0.25, "gelu": 1.1289}


def rel(a, b):
    a, b = float(torch.as_tensor(a).detach()), float(torch.as_tensor(b).detach())
    return abs(a - b) / max(abs(b), 1e-30)


def full_batch_spec(layers, kind="gaussian", loss=None, optimizer="sgd", extra_train=None, n=96, dim=5):
    data = {"kind": kind, "n": n, "test_fraction": 0, "seed": 3}
    if kind == "gaussian":
        data.update(dim=dim, classes=4)
    train = {"batch_size": None, "optimizer": optimizer, "lr": 0.05, "seed": 1, **(extra_train or {})}
    if loss:
        train["loss"] = loss
    return {"data": data, "model": {"layers": layers}, "train": train}


def reference(exp):
    """Independent autograd on a float64 copy: outputs' grads, activations' inputs, param grads."""
    model = copy.deepcopy(exp.model.module).double()
    x = torch.as_tensor(exp.data.x_train).double()
    y = torch.as_tensor(exp.data.y_train)
    # the copy's modules in the same order as the originals
    originals = [m for _, m in exp.model.weight_layers]
    copies = dict(zip([id(m) for m in exp.model.module.modules()], model.modules()))
    layer_copies = [copies[id(m)] for m in originals]
    act_copies = [copies[id(m)] for _, m, _ in exp.model.act_layers]
    outs, acts = {}, {}
    hooks = [m.register_forward_hook(lambda mod, i, o, k=k: outs.__setitem__(k, o[0] if isinstance(o, tuple) else o))
             for k, m in enumerate(layer_copies)]
    hooks += [m.register_forward_hook(lambda mod, i, o, k=k: acts.__setitem__(k, i[0]))
              for k, m in enumerate(act_copies)]
    out = model(x)
    loss = F.cross_entropy(out, y) if exp.data.task == "classification" and exp.spec["train"]["loss"] != "mse" \
        else F.mse_loss(out, F.one_hot(y, out.shape[-1]).double() if exp.data.task == "classification" else y.double())
    for o in outs.values():
        o.retain_grad()
    loss.backward()
    for h in hooks:
        h.remove()
    return model, layer_copies, act_copies, outs, acts, float(loss.detach())


def per_layer_norm(module, prefix):
    sq = [p.grad.double().pow(2).sum() for n, p in module.named_parameters() if n.split(".")[-1].startswith(prefix)]
    return math.sqrt(float(sum(sq))) if sq else math.nan


@pytest.mark.parametrize("act", ["sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "softplus", "identity"])
def test_layer_and_activation_statistics_match_autograd(act):
    layers = [{"type": "linear", "units": 16, "init": {"scheme": "normal", "std": 1.5}}, {"type": act},
              {"type": "linear", "units": 12, "bias": False}, {"type": act}]
    exp = experiment.build(full_batch_spec(layers))
    model, lcopies, acopies, outs, acts, loss = reference(exp)
    snap = Trainer(exp).train_step()
    assert rel(snap.loss, loss) < RTOL
    for k, m in enumerate(lcopies):
        assert rel(snap.weight_grad_norm[k], per_layer_norm(m, "weight")) < RTOL
        if any(n.startswith("bias") for n, _ in m.named_parameters()):
            assert rel(snap.bias_grad_norm[k], per_layer_norm(m, "bias")) < RTOL
        else:
            assert math.isnan(snap.bias_grad_norm[k])
        delta = outs[k].grad
        assert rel(snap.delta_norm[k], delta.norm()) < RTOL
    offsets = np.cumsum([0] + Trainer(experiment.build(full_batch_spec(layers))).probe.units)
    for k in range(len(lcopies)):
        want = outs[k].grad.abs().mean(0).numpy()
        got = snap.neuron_grad[offsets[k]:offsets[k + 1]]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-12)
    mx = MAX_DERIVATIVE.get(act, 1.0)
    for k, m in enumerate(acopies):
        z = acts[k].detach().clone().requires_grad_()
        d, = torch.autograd.grad(m(z).sum(), z)
        assert rel(snap.preact_mean[k], z.mean()) < 1e-5  # float32 sums of ~1e3 entries
        assert rel(snap.preact_std[k], z.std(correction=0)) < RTOL * 10
        assert rel(snap.mean_derivative[k], d.mean()) < 1e-5
        assert snap.saturated_frac[k] == pytest.approx(float((d < 0.01 * mx).double().mean()), abs=1e-12)
        assert snap.dead_frac[k] == pytest.approx(float((d == 0).all(0).double().mean()), abs=1e-12)


def test_relu_dead_units_and_saturation_are_counted():
    layers = [{"type": "linear", "units": 20, "bias_init": {"scheme": "normal", "mean": -3.0, "std": 0.1},
               "init": {"scheme": "normal", "std": 0.1}}, {"type": "relu"}]
    exp = experiment.build(full_batch_spec(layers))
    snap = Trainer(exp).train_step()
    assert snap.dead_frac[0] == 1.0          # z = 0.1 w.x - 3 < 0 for every sample
    assert snap.saturated_frac[0] == 1.0
    assert snap.mean_derivative[0] == 0.0
    assert np.all(snap.neuron_grad[:20] == 0)  # dead units pass no gradient


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "momentum"])
def test_update_ratio_is_the_relative_change_of_the_weights(optimizer):
    layers = [{"type": "linear", "units": 8}, {"type": "tanh"}]
    exp = experiment.build(full_batch_spec(layers, optimizer=optimizer))
    before = [m.weight.detach().clone() for _, m in exp.model.weight_layers]
    snap = Trainer(exp).train_step()
    for k, (_, m) in enumerate(exp.model.weight_layers):
        want = (m.weight.detach() - before[k]).norm() / before[k].norm()
        assert rel(snap.update_ratio[k], want) < 1e-5


def test_statistics_are_taken_before_clipping_and_the_update_is_clipped():
    layers = [{"type": "linear", "units": 8, "init": {"scheme": "normal", "std": 3.0}}, {"type": "relu"}]
    spec = full_batch_spec(layers, extra_train={"clip_norm": 1e-3, "lr": 1.0})
    exp = experiment.build(spec)
    model, lcopies, *_ = reference(exp)
    w0 = [p.detach().clone() for p in exp.model.module.parameters()]
    snap = Trainer(exp).train_step()
    assert rel(snap.weight_grad_norm[0], per_layer_norm(lcopies[0], "weight")) < RTOL
    step = math.sqrt(sum(float((p.detach() - q).pow(2).sum()) for p, q in zip(exp.model.module.parameters(), w0)))
    assert step == pytest.approx(1e-3, rel=1e-3)  # lr 1 times a gradient clipped to norm 1e-3


def test_mse_loss_batchnorm_layernorm_and_residual_projection():
    layers = [{"type": "linear", "units": 10}, {"type": "batchnorm"}, {"type": "tanh"},
              {"type": "residual", "layers": [{"type": "linear", "units": 6}, {"type": "sigmoid"}]},
              {"type": "layernorm"}]
    exp = experiment.build(full_batch_spec(layers, loss="mse"))
    names = [n for n, _ in exp.model.weight_layers]
    assert names == ["1 linear", "2 batchnorm", "4.1 linear", "4 proj", "5 layernorm", "out linear"]
    assert isinstance(exp.model.module[3], Residual) and exp.model.module[3].proj is not None
    model, lcopies, acopies, outs, acts, loss = reference(exp)
    snap = Trainer(exp).train_step()
    assert rel(snap.loss, loss) < RTOL
    for k, m in enumerate(lcopies):
        assert rel(snap.weight_grad_norm[k], per_layer_norm(m, "weight")) < RTOL
        assert rel(snap.delta_norm[k], outs[k].grad.norm()) < RTOL


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_time_gradient_is_the_total_derivative_through_later_steps(cell):
    spec = {"data": {"kind": "memory", "n": 40, "length": 7, "test_fraction": 0, "seed": 2},
            "model": {"layers": [{"type": cell, "units": 5}]}, "train": {"batch_size": None}}
    exp = experiment.build(spec)
    rec = copy.deepcopy(exp.model.module[0]).double()
    head = copy.deepcopy(exp.model.module[1]).double()
    x = torch.as_tensor(exp.data.x_train).double()
    h = x.new_zeros(len(x), 5)
    c = x.new_zeros(len(x), 5)
    hs = []
    for t in range(x.shape[1]):
        if cell == "lstm":
            h, c = rec.cell(x[:, t], (h, c))
        else:
            h = rec.cell(x[:, t], h)
        h.retain_grad()
        hs.append(h)
    loss = F.cross_entropy(head(h), torch.as_tensor(exp.data.y_train))
    loss.backward()
    snap = Trainer(exp).train_step()
    assert isinstance(exp.model.module[0], Recurrent)
    want = np.array([float(g.grad.norm()) for g in hs])
    np.testing.assert_allclose(snap.time_grad_norm, want, rtol=1e-5)
    # the fused module would report only the direct part: the probe must not
    assert want[0] > 0 and snap.time_grad_norm[-1] == pytest.approx(want[-1], rel=1e-5)


def test_bias_grad_of_a_linear_layer_feeding_batchnorm_is_zero():
    layers = [{"type": "linear", "units": 8}, {"type": "batchnorm"}, {"type": "relu"}]
    snap = Trainer(experiment.build(full_batch_spec(layers))).train_step()
    assert snap.bias_grad_norm[0] < 1e-6 * snap.delta_norm[0]


def test_unused_module_weights_are_nan_not_zero():
    from engine.probes import Probe
    from engine.build import Model
    lin, unused = nn.Linear(3, 2), nn.Linear(3, 2)
    net = nn.Sequential(lin)
    probe = Probe(Model(net, [("a", lin), ("b", unused)], [], None, []))
    probe.begin()
    net(torch.randn(4, 3)).sum().backward()
    wg, bg = probe.grad_norms()
    assert math.isfinite(float(wg[0])) and math.isnan(float(wg[1]))
