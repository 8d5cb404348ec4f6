"""The probes' small-net paths against independent float64 autograd, on steps after the first.

A plain stack the engine built is measured by the probe's own forward (no module hooks),
its small layers reduced together in one buffer (Probe._cat_sums), and its parameters and
gradients are views of two flat buffers (engine/flat_params.py). The first step measures
every layer inside its hooks; these paths run from the second step on, so every test here
compares a later step with the references of the module as it stands before that step.
"""
import math

import numpy as np
import pytest
import torch

from backprop_lab.engine.trainer import Trainer
from tests.test_probes import (ACTIVATIONS, DTYPES, F64, RTOL, assert_rel, build, check_step_statistics,
                               hand_update_ratio, make_spec, references)


def cat_path_taken(probe) -> bool:
    return any(isinstance(k, tuple) and k[0] == "cat" and v for k, v in probe._on_device.items())


def later_step(exp, warm=2, **trainer):
    """A Trainer after ``warm`` steps, then one more step checked against autograd."""
    tr = Trainer(exp, **trainer)
    for _ in range(warm):
        tr.train_step()
    snap, r64, rown = check_step_statistics(exp, tr)
    return tr, snap, r64, rown


@DTYPES
@pytest.mark.parametrize("act", ACTIVATIONS, ids=lambda a: a["type"])
def test_every_statistic_of_a_later_step_matches_autograd_for_each_activation(act, dtype):
    layers = [{"type": "linear", "units": 16, "init": {"scheme": "normal", "std": 1.5}}, dict(act),
              {"type": "linear", "units": 12, "bias": False}, dict(act),
              {"type": "linear", "units": 12}, dict(act)]
    tr, snap, _, _ = later_step(build(make_spec(layers), dtype))
    probe = tr.probe
    assert probe._taps is not None and probe._flat_params is not None and not probe._handles
    # the closed-form activations are reduced in one buffer; the others by their own group
    assert cat_path_taken(probe) == (act["type"] in ("sigmoid", "tanh", "relu", "leaky_relu", "identity"))
    assert math.isnan(snap.bias_grad_norm[1]) and not np.isnan(snap.bias_grad_norm[[0, 2, 3]]).any()


@DTYPES
def test_the_update_ratio_of_a_later_step_with_flat_parameters_is_the_update_done_by_hand(dtype):
    layers = [{"type": "linear", "units": 10}, {"type": "sigmoid"}, {"type": "linear", "units": 7, "bias": False},
              {"type": "tanh"}]
    exp = build(make_spec(layers, optimizer="momentum", momentum=0.9, lr=0.1), dtype)
    tr = Trainer(exp)
    for _ in range(3):
        tr.train_step()
    assert tr.probe._flat_params is not None
    mom = {n: tr.optimizer.state[p]["momentum_buffer"].clone() for n, p in exp.model.module.named_parameters()}
    r64, rown = references(exp)
    snap = tr.train_step()
    want = hand_update_ratio(exp, rown, lambda name, w, g: 0.1 * (0.9 * mom[name] + g))
    assert_rel(snap.update_ratio, want, "update_ratio", rtol=1e-5 if dtype == torch.float32 else 1e-12)
    sizes = [p.numel() for n, p in exp.model.module.named_parameters() if n.endswith("weight")]
    w = [p for n, p in rown.params.items() if n.endswith("weight")]
    assert_rel(snap.weight_rms, [float(x.double().norm()) / math.sqrt(n) for x, n in zip(w, sizes)], "weight_rms")


def test_flat_parameters_survive_gradients_set_to_none_and_a_parameter_replaced_between_steps():
    layers = [{"type": "linear", "units": 12}, {"type": "sigmoid"}, {"type": "linear", "units": 9}, {"type": "relu"}]
    exp = build(make_spec(layers))
    tr = Trainer(exp)
    tr.train_step()
    tr.train_step()
    assert tr.probe._flat_params is not None
    tr.optimizer.zero_grad(set_to_none=True)     # someone else's zero_grad: the views are gone
    check_step_statistics(exp, tr)
    lin = exp.model.module[2]
    with torch.no_grad():
        lin.weight.data = lin.weight.data.clone() * 1.5   # no longer a view of the flat buffer
    check_step_statistics(exp, tr)
    fp = tr.probe._flat_params
    assert fp is not None and fp.intact()   # built again: the new weight is a view of the flat buffer
    start = fp.P.data_ptr()
    assert start <= lin.weight.data_ptr() < start + fp.P.numel() * fp.P.element_size()


def test_a_step_with_the_histogram_takes_the_per_group_path_and_still_matches_autograd():
    layers = [{"type": "linear", "units": 16, "init": {"scheme": "normal", "std": 1.5}}, {"type": "tanh"},
              {"type": "linear", "units": 12}, {"type": "sigmoid"}]
    exp = build(make_spec(layers))
    tr, snap, _, _ = later_step(exp, warm=2, hist_every=2)   # step 2: a histogram step
    assert snap.preact_hist is not None and snap.preact_hist.shape[0] == 2
    snap, _, _ = check_step_statistics(exp, tr)               # step 3: none, the one-buffer path
    assert snap.preact_hist is None and cat_path_taken(tr.probe)


@pytest.mark.parametrize("what, scale", [("preactivations", 1e18), ("deltas", 1e24),
                                         ("preactivations", 1e-22), ("deltas", 1e-21)])
def test_preactivations_or_deltas_whose_float32_squares_overflow_or_are_subnormal_stay_exact(what, scale):
    # z ~1e18 (its squares overflow float32) or ~1e-22 (its squares are float32 subnormals: a sum
    # of them loses its precision), or an output weight that makes dL/dz of the tanh layer ~1e24
    # or ~1e-23; a tiny learning rate keeps the net as it is
    if what == "preactivations":
        layers = [{"type": "linear", "units": 16, "init": {"scheme": "normal", "std": scale},
                   "bias_init": {"scheme": "zeros"}}, {"type": "tanh"}]
    else:
        layers = [{"type": "linear", "units": 8}, {"type": "tanh"},
                  {"type": "linear", "units": 4, "init": {"scheme": "normal", "std": scale}}]
    exp = build(make_spec(layers, lr=1e-40))
    tr = Trainer(exp)
    tr.train_step()
    r64, rown = references(exp)
    snap = tr.train_step()
    assert cat_path_taken(tr.probe)
    z = rown.z[0].double()
    assert_rel(snap.preact_std[0], float(z.std(correction=0)), "preact_std", rtol=1e-5)
    assert_rel(snap.delta_norm, [float(d.double().norm()) for d in r64.deltas], "delta_norm", rtol=1e-5)
    assert_rel(snap.weight_grad_norm, r64.weight_grad_norm, "weight_grad_norm", rtol=1e-5)
    got = snap.preact_std[0] if what == "preactivations" else snap.delta_norm[0]
    assert got > scale * 1e-4 if scale > 1 else 0 < got < 1e-19


def test_an_in_place_module_or_a_block_keeps_the_hooks():
    from backprop_lab.engine.probes import _tap_plan
    exp = build(make_spec([{"type": "linear", "units": 8}, {"type": "relu"},
                           {"type": "residual", "layers": [{"type": "linear", "units": 8}, {"type": "relu"}]}]))
    assert _tap_plan(exp.model) is None and Trainer(exp).probe._handles
    plain = build(make_spec([{"type": "linear", "units": 8}, {"type": "relu"}]))
    plain.model.module[1].inplace = True
    assert _tap_plan(plain.model) is None
    tr = Trainer(plain)
    assert tr.probe._handles and tr.probe._flat_params is None
    snaps = [tr.train_step() for _ in range(3)]   # the hooks see the in-place ReLU (measured inside them)
    assert all(np.isfinite(s.delta_norm).all() and np.isfinite(s.preact_std).all() for s in snaps)


def test_removing_the_probe_gives_the_module_back_its_own_forward():
    exp = build(make_spec([{"type": "linear", "units": 8}, {"type": "sigmoid"}]))
    tr = Trainer(exp)
    tr.train_step()
    assert exp.model.taps is not None
    tr.probe.remove()
    assert exp.model.taps is None
    x = torch.as_tensor(exp.data.x_train)
    assert torch.equal(exp.model(x), exp.model.module(x))


def test_float64_run_keeps_rtol_of_float64():
    layers = [{"type": "linear", "units": 10}, {"type": "sigmoid"}] * 3
    tr, snap, r64, _ = later_step(build(make_spec(layers), F64), warm=3)
    assert_rel(snap.delta_norm, [float(d.norm()) for d in r64.deltas], "delta_norm", rtol=RTOL * 1e-6)


@pytest.mark.parametrize("act", ["sigmoid", "tanh"])
def test_units_with_zero_derivative_on_every_sample_are_dead_at_a_later_step(act):
    # biases of std 30 pin some units where f'(z) rounds to 0 on every sample, others saturate on
    # some samples only (as test_probes' first-step test, here in the one-buffer path)
    layers = [{"type": "linear", "units": 32, "init": {"scheme": "normal", "std": 1.0},
               "bias_init": {"scheme": "normal", "mean": 0.0, "std": 30.0}}, {"type": act}]
    exp = build(make_spec(layers, lr=1e-30))
    tr = Trainer(exp)
    tr.train_step()
    _, rown = references(exp)
    snap, stats = tr.train_step(), rown.act_stats()
    assert cat_path_taken(tr.probe)
    assert_rel(snap.mean_derivative, stats[:, 2], "mean_derivative")
    assert_rel(snap.saturated_frac, stats[:, 3], "saturated_frac", rtol=1e-12)
    assert_rel(snap.dead_frac, stats[:, 4], "dead_frac", rtol=1e-12)
    assert 0 < snap.dead_frac[0] < 1


MIXED = [["relu", "tanh", "leaky_relu", "relu"], ["identity", "sigmoid", "tanh", "identity"]]


@DTYPES
@pytest.mark.parametrize("acts", MIXED, ids=lambda a: "-".join(a))
def test_mixed_activations_reduced_together_keep_each_layer_in_its_place(acts, dtype):
    # the one buffer groups z by kind of activation (relu, relu, tanh, ...): the statistics must
    # come back to their own layers
    layers = []
    for k, act in enumerate(acts):
        layers += [{"type": "linear", "units": 6 + 3 * k, "init": {"scheme": "normal", "std": 1.2}},
                   {"type": act, "slope": 0.2} if act == "leaky_relu" else {"type": act}]
    tr, snap, _, _ = later_step(build(make_spec(layers), dtype))
    assert cat_path_taken(tr.probe) and snap.preact_mean.shape == (4,)


def test_hooks_added_to_a_layer_or_globally_between_steps_run_and_the_statistics_stay_right():
    # the probe's own forward calls a layer's forward directly only while no module hook exists
    exp = build(make_spec([{"type": "linear", "units": 10}, {"type": "tanh"}, {"type": "linear", "units": 6},
                           {"type": "sigmoid"}]))
    tr = Trainer(exp)
    tr.train_step()
    tr.train_step()
    seen = []
    h = exp.model.module[1].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    tr.train_step()
    assert seen == [(96, 10)]
    check_step_statistics(exp, tr)
    h.remove()
    g = torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: seen.append(type(m).__name__))
    try:
        n = len(seen)
        tr.train_step()
        assert seen[n:].count("Linear") == 3   # every layer of the stack (the output layer too)
    finally:
        g.remove()
    n = len(seen)
    check_step_statistics(exp, tr)
    assert len(seen) == n   # both hooks gone: the layers' own forward again
