"""Every probe statistic equals the same quantity computed independently with torch.autograd.

The reference never uses the probes: it deep-copies the module before training,
replays the first (full) batch through the copy with plain F.cross_entropy /
F.mse_loss, takes dL/dW and dL/db with torch.autograd.grad, dL/dz of each layer's
output through its own forward hooks, f'(z) from autograd of the activation
module itself, and the update by doing the optimiser step by hand.

Gradients are referenced in float64 (the truth the float32 run approximates);
activation statistics are referenced on the float32 z of the same forward pass
(what the probe sees) with float64 reductions, and updates are done by hand in
the model's own precision (the float32 rounding of W' is part of the update the
probe measures). Everything then agrees to a relative 1e-6, in float32 as the
app runs and in a float64 run of the same engine code.
"""
import copy
import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from backprop_lab.engine import experiment
from backprop_lab.engine.build import Recurrent, Residual
from backprop_lab.engine.trainer import Trainer

RTOL = 1e-6
F64 = torch.float64


# ----------------------------------------------------------------------------- set-up
def make_spec(layers, data=None, **train):
    data = data or {"kind": "gaussian", "n": 96, "dim": 5, "classes": 4}
    train = {"batch_size": None, "optimizer": "sgd", "lr": 0.05, "seed": 1, **train}
    return {"data": {"test_fraction": 0, "seed": 3, **data}, "model": {"layers": layers}, "train": train}


def build(spec, dtype=torch.float32, base_dir=None):
    """An experiment; in float64 its module and inputs are converted (the engine is dtype-generic)."""
    exp = experiment.build(spec, base_dir)
    if dtype == F64:
        exp.model.module.double()
        d = exp.data
        exp.data = dataclasses.replace(d, x_train=d.x_train.astype(np.float64), x_test=d.x_test.astype(np.float64),
                                       y_train=d.y_train if d.task == "classification" else d.y_train.astype(np.float64))
    return exp


def max_derivative(act_module) -> float:
    """max over z of f'(z), found by autograd on a fine grid (independent of engine.activations)."""
    z = torch.cat([torch.linspace(-30, 30, 600_001, dtype=F64), torch.zeros(1, dtype=F64)]).requires_grad_()
    d, = torch.autograd.grad(act_module(z).sum(), z)
    return float(d.max())


@dataclasses.dataclass
class Reference:
    loss: float
    weight_grad_norm: np.ndarray   # [L]
    bias_grad_norm: np.ndarray     # [L], NaN without bias
    deltas: list                   # [L] tensors dL/d(output of the layer)
    grads: dict                    # parameter name -> dL/dp
    params: dict                   # parameter name -> p (before the update)
    z: list                        # [A] inputs of the activation layers
    df: list                       # [A] f'(z) by autograd of the activation module
    max_df: list                   # [A]

    def act_stats(self):
        """preact_mean, preact_std, mean_derivative, saturated_frac, dead_frac of each activation layer."""
        out = []
        for z, d, mx in zip(self.z, self.df, self.max_df):
            z, d = z.double(), d.double()
            units = z.shape[-1]
            dead = (d == 0).reshape(-1, units).all(0).double().mean()
            out.append([float(z.mean()), float(z.std(correction=0)), float(d.mean()),
                        float((d < 0.01 * mx).double().mean()), float(dead)])
        return np.array(out).reshape(len(self.z), 5)

    def neuron_grad(self):
        return [d.double().abs().reshape(-1, d.shape[-1]).mean(0).numpy() for d in self.deltas]


def autograd_reference(exp, module, dtype) -> Reference:
    """Replay the full batch through ``module`` (a deep copy of exp.model.module taken before training)."""
    net = module.to(dtype)
    path = {id(m): name for name, m in exp.model.module.named_modules()}
    layers = [net.get_submodule(path[id(m)]) for _, m in exp.model.weight_layers]
    acts = [net.get_submodule(path[id(m)]) for _, m, _ in exp.model.act_layers]
    outs, zs = [None] * len(layers), [None] * len(acts)
    hooks = [m.register_forward_hook(lambda mod, i, o, k=k: outs.__setitem__(k, o)) for k, m in enumerate(layers)]
    hooks += [m.register_forward_hook(lambda mod, i, o, k=k: zs.__setitem__(k, i[0])) for k, m in enumerate(acts)]
    x = torch.as_tensor(exp.data.x_train).to(dtype)
    y = torch.as_tensor(exp.data.y_train)
    out = net(x)
    for h in hooks:
        h.remove()
    if exp.spec["train"]["loss"] == "mse":
        target = F.one_hot(y, out.shape[-1]).to(dtype) if exp.data.task == "classification" else y.to(dtype)
        loss = F.mse_loss(out, target)
    else:
        loss = F.cross_entropy(out, y)
    names = list(dict(net.named_parameters()))
    params = [p for _, p in net.named_parameters()]
    g = torch.autograd.grad(loss, params + outs, allow_unused=True)
    grads = dict(zip(names, g[:len(params)]))
    owned = {id(p): n for n, p in net.named_parameters()}

    def norm(m, prefix):
        ps = [owned[id(p)] for n, p in m.named_parameters() if n.split(".")[-1].startswith(prefix)]
        return math.sqrt(sum(float(grads[n].double().square().sum()) for n in ps)) if ps else math.nan
    z_list, df_list, mx_list = [], [], []
    for m, z in zip(acts, zs):
        z = z.detach().clone().requires_grad_()
        d, = torch.autograd.grad(m(z).sum(), z)
        z_list.append(z.detach())
        df_list.append(d)
        mx_list.append(max_derivative(copy.deepcopy(m).double()))
    return Reference(float(loss.detach()), np.array([norm(m, "weight") for m in layers]),
                     np.array([norm(m, "bias") for m in layers]), list(g[len(params):]), grads,
                     {n: p.detach().clone() for n, p in net.named_parameters()}, z_list, df_list, mx_list)


def references(exp):
    """(float64 gradients, activations and grads in the model's own precision), both before training."""
    own = next(exp.model.module.parameters()).dtype
    r64 = autograd_reference(exp, copy.deepcopy(exp.model.module), F64)
    rown = r64 if own == F64 else autograd_reference(exp, copy.deepcopy(exp.model.module), own)
    return r64, rown


def assert_rel(got, want, what, rtol=RTOL):
    np.testing.assert_allclose(np.asarray(got, float), np.asarray(want, float), rtol=rtol, atol=0, err_msg=what)


def assert_mean_close(got, mean, std, rtol=RTOL):
    """|got - mean| <= rtol * max(|mean|, std).

    A mean near zero (zero by construction after batchnorm) has no relative
    precision in float32: the sum of n entries of size ~std carries an error of
    ~1e-8 std whatever the mean, so it is judged on the scale of z's spread.
    In a float64 run the same comparison holds to 1e-15."""
    got, mean, std = (np.asarray(v, float) for v in (got, mean, std))
    scale = np.maximum(np.abs(mean), std)
    bad = ~(np.abs(got - mean) <= rtol * scale)
    assert not bad.any(), f"preact_mean {got[bad]} != {mean[bad]} (std {std[bad]})"


def check_step_statistics(exp, tr=None):
    """Run one step (of ``tr``, else of a new Trainer: its first step) and compare every statistic
    with the references of the module as it is; returns the snapshot."""
    r64, rown = references(exp)
    tr = tr or Trainer(exp)
    snap = tr.train_step()
    assert_rel(snap.loss, r64.loss, "loss")
    assert_rel(snap.weight_grad_norm, r64.weight_grad_norm, "weight_grad_norm")
    assert_rel(snap.bias_grad_norm, r64.bias_grad_norm, "bias_grad_norm")   # NaN == NaN where no bias
    assert_rel(snap.delta_norm, [float(d.double().norm()) for d in r64.deltas], "delta_norm")
    offsets = np.cumsum([0] + tr.probe.units)
    for k, want in enumerate(r64.neuron_grad()):
        assert_rel(snap.neuron_grad[offsets[k]:offsets[k + 1]], want, f"neuron_grad of layer {k}")
    stats = rown.act_stats()
    assert_mean_close(snap.preact_mean, stats[:, 0], stats[:, 1])
    assert_rel(snap.preact_std, stats[:, 1], "preact_std")
    assert_rel(snap.mean_derivative, stats[:, 2], "mean_derivative")
    # ratios of integer counts: any count that differs moves them by 1/entries >> 1e-12
    assert_rel(snap.saturated_frac, stats[:, 3], "saturated_frac", rtol=1e-12)
    assert_rel(snap.dead_frac, stats[:, 4], "dead_frac", rtol=1e-12)
    return snap, r64, rown


def hand_update_ratio(exp, ref, update):
    """||W' - W|| / ||W|| per weight layer, with W' = W - update(name, W, grad) in the model's precision."""
    path = {id(m): name for name, m in exp.model.module.named_modules()}
    ratios = []
    for _, m in exp.model.weight_layers:
        prefix = path[id(m)]
        num = den = 0.0
        for n, _ in m.named_parameters():
            if not n.startswith("weight"):
                continue
            full = f"{prefix}.{n}" if prefix else n
            w = ref.params[full]
            after = w - update(full, w, ref.grads[full])
            num += float((after.double() - w.double()).square().sum())
            den += float(w.double().square().sum())
        ratios.append(math.sqrt(num) / math.sqrt(den))
    return np.array(ratios)


DTYPES = pytest.mark.parametrize("dtype", [torch.float32, F64], ids=["float32", "float64"])


# ----------------------------------------------------------------------------- every statistic
ACTIVATIONS = [{"type": "sigmoid"}, {"type": "tanh"}, {"type": "relu"}, {"type": "leaky_relu", "slope": 0.2},
               {"type": "elu", "alpha": 1.5}, {"type": "gelu"}, {"type": "softplus"}, {"type": "identity"}]


@DTYPES
@pytest.mark.parametrize("act", ACTIVATIONS, ids=lambda a: a["type"])
def test_every_statistic_matches_autograd_for_each_activation(act, dtype):
    # std 1.5 weights spread z over the saturating and the linear range of each f
    layers = [{"type": "linear", "units": 16, "init": {"scheme": "normal", "std": 1.5}}, dict(act),
              {"type": "linear", "units": 12, "bias": False}, dict(act)]
    exp = build(make_spec(layers), dtype)
    snap, _, _ = check_step_statistics(exp)
    assert snap.weight_grad_norm.shape == (3,) and snap.preact_mean.shape == (2,)
    assert math.isnan(snap.bias_grad_norm[1]) and not np.isnan(snap.bias_grad_norm[[0, 2]]).any()


@pytest.mark.parametrize("act", ACTIVATIONS, ids=lambda a: a["type"])
def test_every_statistic_matches_autograd_in_layers_measured_inside_their_hooks(act):
    # 640 samples x 32 units is above STACK_MAX: these layers are reduced in their hooks, not in collect
    from backprop_lab.engine.probes import STACK_MAX
    layers = [{"type": "linear", "units": 32, "init": {"scheme": "normal", "std": 1.5}}, dict(act),
              {"type": "linear", "units": 28, "bias": False}, dict(act)]
    data = {"kind": "gaussian", "n": 640, "dim": 5, "classes": 4}
    assert 640 * 28 > STACK_MAX
    check_step_statistics(build(make_spec(layers, data=data)))


@DTYPES
@pytest.mark.parametrize("act", ACTIVATIONS, ids=lambda a: a["type"])
def test_large_layers_seen_before_are_measured_at_their_address_and_still_match_autograd(act, dtype):
    # a plain stack's large layers, from their second step on: z, a and dL/dz are read where they
    # lie by onepass.activation_at / delta_at (the probe's quick path), with nothing checked by numba
    layers = [{"type": "linear", "units": 32, "init": {"scheme": "normal", "std": 1.5}}, dict(act),
              {"type": "linear", "units": 28, "bias": False}, dict(act)]
    exp = build(make_spec(layers, data={"kind": "gaussian", "n": 640, "dim": 5, "classes": 4}), dtype)
    tr = Trainer(exp)
    tr.train_step()
    tr.train_step()
    closed_form = act["type"] not in ("elu", "gelu", "softplus")
    assert len(tr.probe._act_quick) == (2 if closed_form else 0)
    assert all("delta_at" in tr.probe._lean[("delta", i)][0].__qualname__ for i in (0, 1))   # (the head is small)
    check_step_statistics(exp, tr)


@pytest.mark.parametrize("n,seen", [(96, 0), (640, 0), (640, 2)], ids=["kept", "in-hook", "seen-before"])
@pytest.mark.parametrize("act", ["sigmoid", "tanh"])
def test_units_with_zero_derivative_on_every_sample_are_dead_in_both_paths(act, n, seen):
    # biases of std 30 pin some units where f'(z) rounds to 0 on every sample (dead), others
    # saturate on some samples only: the per-unit pass that finds them must run here
    layers = [{"type": "linear", "units": 32, "init": {"scheme": "normal", "std": 1.0},
               "bias_init": {"scheme": "normal", "mean": 0.0, "std": 30.0}}, {"type": act}]
    # (their gradients underflow in float32: only the activation statistics are compared)
    exp = build(make_spec(layers, data={"kind": "gaussian", "n": n, "dim": 5, "classes": 4}))
    tr = Trainer(exp)
    for _ in range(seen):   # (then the layer is measured at its address: the quick path)
        tr.train_step()
    _, rown = references(exp)
    snap, stats = tr.train_step(), rown.act_stats()
    assert_rel(snap.preact_std, stats[:, 1], "preact_std")
    assert_rel(snap.mean_derivative, stats[:, 2], "mean_derivative")
    assert_rel(snap.saturated_frac, stats[:, 3], "saturated_frac", rtol=1e-12)
    assert_rel(snap.dead_frac, stats[:, 4], "dead_frac", rtol=1e-12)
    assert 0 < snap.dead_frac[0] < 1


def test_sigmoid_net_with_strong_init_shows_saturation_that_matches_autograd():
    layers = [{"type": "linear", "units": 32, "init": {"scheme": "normal", "std": 6.0}}, {"type": "sigmoid"}]
    snap, _, _ = check_step_statistics(build(make_spec(layers)))
    assert 0.3 < snap.saturated_frac[0] < 1.0   # |z| > 5.99 on a good share of the entries


def test_relu_with_a_negative_bias_has_dead_units_that_match_autograd():
    layers = [{"type": "linear", "units": 20, "init": {"scheme": "normal", "std": 0.5},
               "bias_init": {"scheme": "normal", "mean": -2.5, "std": 1.0}}, {"type": "relu"}]
    snap, _, _ = check_step_statistics(build(make_spec(layers)))
    assert 0 < snap.dead_frac[0] < 1   # some units never fire on the batch, some do


def test_units_dead_on_every_sample_pass_no_gradient():
    layers = [{"type": "linear", "units": 20, "init": {"scheme": "normal", "std": 0.1},
               "bias_init": {"scheme": "normal", "mean": -3.0, "std": 0.1}}, {"type": "relu"}]
    snap = Trainer(build(make_spec(layers))).train_step()
    assert snap.dead_frac[0] == 1.0 and snap.saturated_frac[0] == 1.0 and snap.mean_derivative[0] == 0.0
    assert np.all(snap.neuron_grad[:20] == 0) and snap.bias_grad_norm[0] == 0.0


STRUCTURES = {
    "batchnorm": [{"type": "linear", "units": 10, "bias": False}, {"type": "batchnorm"}, {"type": "tanh"}],
    "layernorm": [{"type": "linear", "units": 10}, {"type": "layernorm"}, {"type": "gelu"}],
    "residual_projection": [{"type": "linear", "units": 10}, {"type": "tanh"},
                            {"type": "residual", "layers": [{"type": "linear", "units": 6}, {"type": "sigmoid"}]}],
    "residual_same_width": [{"type": "linear", "units": 8}, {"type": "relu"},
                            {"type": "residual", "layers": [{"type": "linear", "units": 8}, {"type": "relu"},
                                                            {"type": "linear", "units": 8}]}, {"type": "elu"}],
    "dropout_off": [{"type": "linear", "units": 8}, {"type": "dropout", "p": 0.0}, {"type": "softplus"}],
}


@DTYPES
@pytest.mark.parametrize("name", STRUCTURES)
def test_every_statistic_matches_autograd_through_normalisation_and_residual_blocks(name, dtype):
    check_step_statistics(build(make_spec(STRUCTURES[name]), dtype))


def test_a_residual_block_that_changes_width_gets_a_bias_free_projection():
    exp = build(make_spec(STRUCTURES["residual_projection"]))
    names = [n for n, _ in exp.model.weight_layers]
    assert names == ["1 linear", "3.1 linear", "3 proj", "out linear"]
    block = exp.model.module[2]
    assert isinstance(block, Residual) and block.proj is not None and block.proj.bias is None
    snap = Trainer(exp).train_step()
    assert math.isnan(snap.bias_grad_norm[2])
    same = build(make_spec(STRUCTURES["residual_same_width"]))
    assert same.model.module[2].proj is None and "3 proj" not in [n for n, _ in same.model.weight_layers]


@DTYPES
@pytest.mark.parametrize("target", ["classes", "regression"])
def test_mse_loss_statistics_match_autograd(target, dtype, tmp_path):
    layers = [{"type": "linear", "units": 12}, {"type": "tanh"}, {"type": "linear", "units": 7}, {"type": "sigmoid"}]
    data = None
    if target == "regression":   # float targets of width 2 from a user file
        rng = np.random.default_rng(0)
        x = rng.normal(size=(64, 5))
        np.savez(tmp_path / "reg.npz", x=x, y=np.stack([x[:, 0] * x[:, 1], np.sin(x[:, 2])], 1))
        data = {"kind": "npz", "path": "reg.npz"}
    exp = build(make_spec(layers, data=data, loss="mse"), dtype, tmp_path)
    assert exp.data.task == ("regression" if data else "classification")
    check_step_statistics(exp)


@DTYPES
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_recurrent_layer_statistics_match_autograd(cell, dtype):
    layers = [{"type": cell, "units": 6}, {"type": "tanh"}, {"type": "linear", "units": 5}, {"type": "relu"}]
    data = {"kind": "memory", "n": 48, "length": 5, "features": 2}
    snap, _, _ = check_step_statistics(build(make_spec(layers, data=data), dtype))
    assert snap.time_grad_norm.shape == (5,)


# ----------------------------------------------------------------------------- update ratio
BETA1, BETA2, EPS = 0.9, 0.999, 1e-8


def sgd_update(lr, wd=0.0):
    return lambda name, w, g: lr * (g + wd * w)


def adam_first_update(lr):
    # torch.optim.Adam's first step, written out: m = (1-b1) g, v = (1-b2) g^2, bias-corrected
    def update(name, w, g):
        m, v = (1 - BETA1) * g, (1 - BETA2) * g * g
        denom = v.sqrt() / math.sqrt(1 - BETA2) + EPS
        return (lr / (1 - BETA1)) * (m / denom)
    return update


@DTYPES
@pytest.mark.parametrize("optimizer, wd, make_update", [
    ("sgd", 0.0, lambda lr: sgd_update(lr)),
    ("sgd", 0.3, lambda lr: sgd_update(lr, 0.3)),
    ("momentum", 0.0, lambda lr: sgd_update(lr)),          # the first momentum step is a plain SGD step
    ("adam", 0.0, adam_first_update),
], ids=["sgd", "sgd_weight_decay", "momentum", "adam"])
@pytest.mark.parametrize("widths", [(8, 6), (80, 64)], ids=["small", "large"])
def test_update_ratio_equals_the_update_done_by_hand(optimizer, wd, make_update, dtype, widths):
    # large: a 64 x 80 weight (>= DOT_MIN entries) is measured by BLAS dots, the small ones beside
    # it by foreach calls, in one list
    layers = [{"type": "linear", "units": widths[0]}, {"type": "tanh"},
              {"type": "linear", "units": widths[1], "bias": False}, {"type": "relu"}]
    lr = 0.05
    exp = build(make_spec(layers, optimizer=optimizer, lr=lr, weight_decay=wd), dtype)
    snap, r64, rown = check_step_statistics(exp)   # weight decay is not part of dLoss/dW
    want = hand_update_ratio(exp, rown, make_update(lr))
    assert_rel(snap.update_ratio, want, "update_ratio")
    if optimizer == "adam":   # Adam's first step moves every weight by about lr
        sizes = [m.weight.numel() for _, m in exp.model.weight_layers]
        norms = [float(r.double().norm()) for r in [rown.params[n] for n in rown.params if n.endswith("weight")]]
        np.testing.assert_allclose(snap.update_ratio, lr * np.sqrt(sizes) / np.array(norms), rtol=1e-3)


@DTYPES
@pytest.mark.parametrize("clip", ["clip_norm", "clip_value"])
@pytest.mark.parametrize("width", [8, 72], ids=["small", "large"])
def test_statistics_are_taken_before_clipping_and_the_update_is_clipped(clip, dtype, width):
    layers = [{"type": "linear", "units": width, "init": {"scheme": "normal", "std": 3.0}}, {"type": "relu"},
              {"type": "linear", "units": width}, {"type": "sigmoid"}]
    lr, c = 0.5, 1e-3
    exp = build(make_spec(layers, lr=lr, **{clip: c}), dtype)
    snap, r64, rown = check_step_statistics(exp)   # the gradient statistics are not clipped
    total = math.sqrt(sum(float(g.double().square().sum()) for g in rown.grads.values()))
    assert total > 10 * c   # clipping is really active
    if clip == "clip_norm":  # torch's coefficient: max_norm / (total + 1e-6), never above 1
        coef = min(1.0, c / (total + 1e-6))
        want = hand_update_ratio(exp, rown, lambda n, w, g: lr * (g * coef))
    else:
        want = hand_update_ratio(exp, rown, lambda n, w, g: lr * g.clamp(-c, c))
    assert_rel(snap.update_ratio, want, "update_ratio")
    unclipped = hand_update_ratio(exp, rown, sgd_update(lr))
    assert np.all(snap.update_ratio < unclipped) and snap.update_ratio.sum() < 0.2 * unclipped.sum()


def test_weights_without_gradient_have_update_ratio_zero_not_nan():
    # every unit of the first layer is dead: no gradient reaches its weights, and the output
    # layer's input is all zeros, so only the output bias moves
    layers = [{"type": "linear", "units": 20, "init": {"scheme": "normal", "std": 0.1},
               "bias_init": {"scheme": "normal", "mean": -3.0, "std": 0.1}}, {"type": "relu"}]
    snap = Trainer(build(make_spec(layers))).train_step()
    assert list(snap.update_ratio) == [0.0, 0.0] and list(snap.weight_grad_norm) == [0.0, 0.0]
    assert snap.bias_grad_norm[1] > 0


# ----------------------------------------------------------------------------- through time
def unrolled_time_gradients(exp, module, layers_after):
    """dL/dh_t of the first recurrent layer, by unrolling its cell by hand in float64."""
    net = module.double()
    rec = net[0]
    x = torch.as_tensor(exp.data.x_train).double()
    h = x.new_zeros(len(x), rec.units)
    c = x.new_zeros(len(x), rec.units)
    hs = []
    for t in range(x.shape[1]):
        if rec.kind == "lstm":
            h, c = rec.cell(x[:, t], (h, c))
        else:
            h = rec.cell(x[:, t], h)
        h.retain_grad()
        hs.append(h)
    out = torch.stack(hs, 1) if rec.return_sequences else h
    for m in list(net)[1:]:
        out = m(out)
    F.cross_entropy(out, torch.as_tensor(exp.data.y_train)).backward()
    return np.array([float(h.grad.norm()) for h in hs])


@pytest.mark.parametrize("stack", [
    [{"type": "rnn", "units": 5}],
    [{"type": "lstm", "units": 5}],
    [{"type": "lstm", "units": 5, "forget_bias": 1.0}],
    [{"type": "gru", "units": 5}],
    [{"type": "rnn", "units": 5}, {"type": "gru", "units": 4}, {"type": "tanh"}],   # through a second layer
], ids=["rnn", "lstm", "lstm_forget_bias", "gru", "rnn_then_gru"])
def test_time_gradient_is_the_total_derivative_through_every_later_step(stack):
    exp = build(make_spec(stack, data={"kind": "memory", "n": 40, "length": 7, "features": 2}))
    want = unrolled_time_gradients(exp, copy.deepcopy(exp.model.module), stack[1:])
    assert isinstance(exp.model.module[0], Recurrent)
    snap = Trainer(exp).train_step()
    assert snap.time_grad_norm.shape == (7,)
    assert_rel(snap.time_grad_norm, want, "time_grad_norm")
    # a fused nn.RNN would report only the readout part, which is zero before the last step
    # of a layer that returns its last state only
    if len(stack) == 1:
        assert np.all(want[:-1] > 0)


# ----------------------------------------------------------------------------- precision
@pytest.mark.parametrize("mean, std", [(3.0, 0.1), (10.0, 0.01)])
def test_preact_std_stays_exact_when_the_mean_dwarfs_the_spread(mean, std):
    """E[z^2] - E[z]^2 from float32 sums loses ~(mean/std)^2 * 1e-7 relative; the probe must not."""
    layers = [{"type": "linear", "units": 16, "init": {"scheme": "normal", "std": std},
               "bias_init": {"scheme": "normal", "mean": mean, "std": std}}, {"type": "tanh"}]
    exp = build(make_spec(layers, lr=0.01, data={"kind": "gaussian", "n": 512, "dim": 5, "classes": 4}))
    seen = []
    exp.model.module[1].register_forward_hook(lambda m, i, o: seen.append(i[0].detach().double()))
    tr = Trainer(exp)
    for _ in range(3):   # step 0 and the steps that reuse the previous step's statistics
        snap = tr.train_step()
        z = seen[-1]
        assert_rel(snap.preact_mean[0], float(z.mean()), "preact_mean")
        assert_rel(snap.preact_std[0], float(z.std(correction=0)), "preact_std")


def test_a_layer_that_jumps_off_centre_is_exact_again_from_the_next_step():
    """The probe picks the shift of a layer's moments from the previous step, so after a
    sudden jump of mean/std only that one step carries float32's cancellation error."""
    layers = [{"type": "linear", "units": 16}, {"type": "sigmoid"}]
    exp = build(make_spec(layers))
    seen = []
    lin = exp.model.module[0]
    exp.model.module[1].register_forward_hook(lambda m, i, o: seen.append(i[0].detach().double()))
    tr = Trainer(exp)
    for k in range(5):
        if k == 2:
            with torch.no_grad():
                lin.weight.mul_(0.1)
                lin.bias.fill_(3.0)   # mean/std about 55
        snap = tr.train_step()
        z = seen[-1]
        assert_rel(snap.preact_mean[0], float(z.mean()), f"preact_mean at step {k}")
        assert_rel(snap.preact_std[0], float(z.std(correction=0)), f"preact_std at step {k}",
                   rtol=1e-3 if k == 2 else RTOL)


def test_unused_weights_have_nan_gradient_norms_not_zero():
    from backprop_lab.engine.build import Model
    from backprop_lab.engine.probes import Probe
    lin, unused = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    net = torch.nn.Sequential(lin)
    probe = Probe(Model(net, [("a", lin), ("b", unused)], [], None, []))
    probe.begin()
    net(torch.randn(4, 3)).sum().backward()
    wg, bg = probe.grad_norms()
    assert math.isfinite(float(wg[0])) and math.isnan(float(wg[1])) and math.isnan(float(bg[1]))


# ----------------------------------------------------------------------------- |z|-threshold saturation
@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
@pytest.mark.parametrize("dtype", [torch.float32, F64, torch.float16], ids=["float32", "float64", "float16"])
def test_saturation_by_a_threshold_on_z_is_the_derivative_definition_at_the_boundary(name, dtype):
    # every representable z within 40 steps of either root, and far values: the probe's count
    # (|z| > z*) must be the count of f'(z) < 0.01 max f' with f' exact (40 decimal digits)
    import decimal
    from backprop_lab.engine.activations import SATURATION_FRACTION, activation
    from backprop_lab.engine.probes import activation_moments, saturation_root
    act = activation({"type": name})
    x = torch.tensor(saturation_root(name, dtype), dtype=dtype)
    side = [x]
    for direction in (math.inf, -math.inf):
        y = x
        for _ in range(40):
            y = torch.nextafter(y, torch.tensor(direction, dtype=dtype))
            side.append(y)
    z = torch.stack(side)
    z = torch.cat([z, -z, torch.tensor([0.0, 1.0, -20.0, 50.0, math.inf, -math.inf, math.nan], dtype=dtype)])

    def exact_saturated(v: float) -> bool:
        if math.isnan(v):
            return False
        if math.isinf(v):
            return True
        with decimal.localcontext() as ctx:
            ctx.prec = 40
            e = (-abs(decimal.Decimal(v)) * (1 if name == "sigmoid" else 2)).exp()
            df = e / (1 + e) ** 2 if name == "sigmoid" else 4 * e / (1 + e) ** 2   # sigmoid', 1 - tanh^2
            return df < decimal.Decimal(repr(SATURATION_FRACTION)) * decimal.Decimal(repr(act.max_derivative))
    want = sum(exact_saturated(float(v)) for v in z)
    assert want == 2 * 40 + 4              # 40 above each root, and -20, 50, +-inf
    z = z.reshape(-1, 1)   # (samples, one unit)
    a = torch.sigmoid(z) if name == "sigmoid" else torch.tanh(z)
    got = activation_moments(act, z[None], a[None], {}, [0.0])[3]
    assert int(got.item()) == want


def test_saturation_counts_of_a_stack_of_layers_are_per_layer():
    from backprop_lab.engine.activations import activation
    from backprop_lab.engine.probes import activation_moments
    z = torch.tensor([[[7.0, 0.0], [-7.0, 1.0]], [[0.5, 0.5], [8.0, 9.0]]])   # [layers, samples, units]
    counts = activation_moments(activation({"type": "sigmoid"}), z, torch.sigmoid(z), {}, [0.0, 0.0])[3]
    assert counts.tolist() == [2.0, 2.0]
