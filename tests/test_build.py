"""Building a torch module from a layer stack: shapes, names, the added output layer, initialisation."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from backprop_lab.engine.build import Recurrent, Residual, build_stack, plan
from backprop_lab.engine.spec import SpecError, validate_layers


def stack(*layers, in_shape=(4,), n_out=3, seed=0):
    return build_stack(validate_layers(list(layers)), in_shape, n_out, seed)


# ----------------------------------------------------------------------------- plan
def test_plan_gives_each_layer_its_shapes_and_adds_the_output_layer():
    infos = plan(validate_layers([{"type": "linear", "units": 8}, {"type": "tanh"},
                                  {"type": "residual", "layers": [{"type": "linear", "units": 5}]}]), (4,), 3)
    assert [(i.path, i.type, i.in_shape, i.out_shape) for i in infos] == [
        ("1", "linear", (4,), (8,)), ("2", "tanh", (8,), (8,)), ("3", "residual", (8,), (5,)),
        ("out", "linear", (5,), (3,))]
    assert infos[-1].added and not any(i.added for i in infos[:-1]) and infos[0].label == "1 linear"
    assert [(c.path, c.in_shape, c.out_shape) for c in infos[2].children] == [("3.1", (8,), (5,))]


@pytest.mark.parametrize("last_units, added", [(3, False), (4, True)])
def test_a_final_linear_layer_of_the_output_width_is_the_output_layer(last_units, added):
    m = stack({"type": "linear", "units": 6}, {"type": "relu"}, {"type": "linear", "units": last_units})
    names = [n for n, _ in m.weight_layers]
    assert (names[-1] == "out linear") == added and len(names) == 2 + added
    assert m.module(torch.zeros(5, 4)).shape == (5, 3)


def test_an_empty_stack_is_a_linear_model():
    m = stack()
    assert [n for n, _ in m.weight_layers] == ["out linear"] and m.act_layers == []


def test_layers_with_a_weight_and_activations_are_listed_input_side_first():
    m = stack({"type": "linear", "units": 6}, {"type": "batchnorm"}, {"type": "leaky_relu", "slope": 0.3},
              {"type": "dropout", "p": 0.2},
              {"type": "residual", "layers": [{"type": "linear", "units": 6}, {"type": "sigmoid"}]},
              {"type": "layernorm"}, {"type": "elu", "alpha": 2.0})
    assert [n for n, _ in m.weight_layers] == ["1 linear", "2 batchnorm", "5.1 linear", "6 layernorm", "out linear"]
    assert [n for n, _, _ in m.act_layers] == ["3 leaky_relu", "5.2 sigmoid", "7 elu"]
    acts = {n: a for n, _, a in m.act_layers}
    assert acts["3 leaky_relu"].slope == 0.3 and acts["7 elu"].max_derivative == 2.0
    assert isinstance(m.module[1], nn.BatchNorm1d) and isinstance(m.module[3], nn.Dropout)
    assert isinstance(m.module[4], Residual) and m.module[4].proj is None   # same width: identity skip
    # every module the probes watch is part of the model
    inside = {id(x) for x in m.module.modules()}
    assert all(id(x) in inside for _, x in m.weight_layers) and all(id(x) in inside for _, x, _ in m.act_layers)


def test_a_residual_block_adds_its_input():
    m = stack({"type": "residual", "layers": [{"type": "linear", "units": 4}]}, seed=1)
    block = m.module[0]
    x = torch.randn(3, 4)
    torch.testing.assert_close(block(x), block.body(x) + x)


def test_problems_name_the_layer():
    with pytest.raises(SpecError, match=r"^layer 2 \(lstm\): lstm needs a sequence \(time x features\), got 6$"):
        stack({"type": "linear", "units": 6}, {"type": "lstm", "units": 2})
    with pytest.raises(SpecError, match=r"^layer 1 \(residual\): the block maps 5 x 2 to 3; only the width may change$"):
        stack({"type": "residual", "layers": [{"type": "rnn", "units": 3}]}, in_shape=(5, 2))


# ----------------------------------------------------------------------------- recurrent layers
def test_stacked_recurrent_layers_pass_sequences_and_the_last_returns_its_state():
    m = stack({"type": "rnn", "units": 5}, {"type": "gru", "units": 4}, in_shape=(7, 2))
    first, second = m.module[0], m.module[1]
    assert isinstance(first, Recurrent) and first.return_sequences and not second.return_sequences
    assert m.recurrent is first and [n for n, _ in m.weight_layers] == ["1 rnn", "2 gru", "out linear"]
    assert m.module(torch.zeros(3, 7, 2)).shape == (3, 3)
    assert first(torch.zeros(3, 7, 2)).shape == (3, 7, 5)


@pytest.mark.parametrize("kind, cell", [("rnn", nn.RNNCell), ("lstm", nn.LSTMCell), ("gru", nn.GRUCell)])
def test_the_unrolled_layer_equals_pytorchs_fused_layer(kind, cell):
    m = stack({"type": kind, "units": 5}, in_shape=(6, 3), seed=2)
    rec = m.module[0]
    assert isinstance(rec.cell, cell)
    fused = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[kind](3, 5, batch_first=True)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(fused, f"{name}_l0").copy_(getattr(rec.cell, name))
    x = torch.randn(4, 6, 3)
    rec.return_sequences = True
    torch.testing.assert_close(rec(x), fused(x)[0])


def test_lstm_forget_bias_sets_the_forget_gates_total_bias():
    m = stack({"type": "lstm", "units": 4, "forget_bias": 1.0}, in_shape=(3, 2))
    cell = m.module[0].cell
    total = (cell.bias_ih + cell.bias_hh).detach()
    assert torch.all(total[4:8] == 1.0)                      # gate order i, f, g, o
    default = stack({"type": "lstm", "units": 4}, in_shape=(3, 2)).module[0].cell
    torch.testing.assert_close(cell.bias_ih[:4], default.bias_ih[:4])   # other gates untouched


def test_recurrent_init_applies_to_every_weight_matrix():
    m = stack({"type": "rnn", "units": 16, "init": {"scheme": "orthogonal"}}, in_shape=(3, 16))
    for w in (m.module[0].cell.weight_hh, m.module[0].cell.weight_ih):
        torch.testing.assert_close(w @ w.T, torch.eye(16), atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- initialisation
FAN_IN, FAN_OUT = 400, 300


def weight(init, bias_init=None, seed=0):
    layer = {"type": "linear", "units": FAN_OUT, "init": init}
    if bias_init:
        layer["bias_init"] = bias_init
    m = stack(layer, in_shape=(FAN_IN,), seed=seed)
    lin = m.module[0]
    return lin.weight.detach().double(), lin.bias.detach().double()


@pytest.mark.parametrize("init, std", [
    ({"scheme": "normal", "std": 0.3}, 0.3),
    ({"scheme": "uniform", "a": 0.5}, 0.5 / math.sqrt(3)),
    ({"scheme": "xavier_normal"}, math.sqrt(2 / (FAN_IN + FAN_OUT))),
    ({"scheme": "xavier_uniform", "gain": 2.0}, 2 * math.sqrt(2 / (FAN_IN + FAN_OUT))),
    ({"scheme": "kaiming_normal"}, math.sqrt(2 / FAN_IN)),              # He et al.: gain sqrt 2 for ReLU
    ({"scheme": "kaiming_uniform", "gain": 1.0}, math.sqrt(1 / FAN_IN)),
    ({"scheme": "default"}, 1 / math.sqrt(3 * FAN_IN)),                 # PyTorch's U(-1/sqrt n, 1/sqrt n)
], ids=lambda v: v["scheme"] if isinstance(v, dict) else "")
def test_init_schemes_draw_weights_of_the_documented_spread(init, std):
    w, _ = weight(init)
    assert abs(float(w.mean())) < 0.02 * std * 10
    assert float(w.std()) == pytest.approx(std, rel=0.02)


@pytest.mark.parametrize("init, bound", [
    ({"scheme": "uniform", "a": 0.5}, 0.5),
    ({"scheme": "xavier_uniform"}, math.sqrt(6 / (FAN_IN + FAN_OUT))),
    ({"scheme": "kaiming_uniform"}, math.sqrt(2) * math.sqrt(3 / FAN_IN)),
    ({"scheme": "default"}, 1 / math.sqrt(FAN_IN)),
], ids=lambda v: v["scheme"] if isinstance(v, dict) else "")
def test_uniform_schemes_stay_within_their_bound_and_reach_it(init, bound):
    w, _ = weight(init)
    assert float(w.abs().max()) <= bound * (1 + 1e-6) and float(w.abs().max()) > 0.99 * bound


def test_normal_init_with_a_mean_and_orthogonal_init():
    w, _ = weight({"scheme": "normal", "std": 0.1, "mean": 2.0})
    assert float(w.mean()) == pytest.approx(2.0, abs=0.01)
    w, _ = weight({"scheme": "orthogonal", "gain": 3.0})   # 300 x 400: orthonormal rows times the gain
    torch.testing.assert_close(w @ w.T, 9.0 * torch.eye(FAN_OUT, dtype=w.dtype), atol=1e-4, rtol=0)


@pytest.mark.parametrize("bias_init, check", [
    ({"scheme": "zeros"}, lambda b: bool(torch.all(b == 0))),
    ({"scheme": "normal", "std": 0.5}, lambda b: abs(float(b.std()) - 0.5) < 0.1),
    ({"scheme": "uniform", "a": 0.2}, lambda b: float(b.abs().max()) <= 0.2 and float(b.abs().max()) > 0.18),
    ({"scheme": "default"}, lambda b: float(b.abs().max()) <= 1 / math.sqrt(FAN_IN) and float(b.std()) > 0),
], ids=lambda v: v["scheme"] if isinstance(v, dict) else "")
def test_bias_inits(bias_init, check):
    _, b = weight({"scheme": "default"}, bias_init)
    assert check(b), b[:5]


def test_default_init_is_pytorchs_own_and_the_seed_decides_the_weights():
    m = stack({"type": "linear", "units": 7}, in_shape=(5,), seed=3)
    torch.manual_seed(3)
    ref = nn.Linear(5, 7)
    assert torch.equal(m.module[0].weight, ref.weight) and torch.equal(m.module[0].bias, ref.bias)
    again = stack({"type": "linear", "units": 7}, in_shape=(5,), seed=3)
    other = stack({"type": "linear", "units": 7}, in_shape=(5,), seed=4)
    sd, sd2, sd3 = (x.module.state_dict() for x in (m, again, other))
    assert all(torch.equal(sd[k], sd2[k]) for k in sd)
    assert not torch.equal(sd["0.weight"], sd3["0.weight"])


def test_building_leaves_the_global_random_state_alone():
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    stack({"type": "linear", "units": 50, "init": {"scheme": "kaiming_normal"}}, seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_he_init_keeps_the_second_moment_through_relu_layers():
    # He et al. 2015: std sqrt(2 / fan_in) makes E[z^2] the same in every ReLU layer
    layers = [{"type": "linear", "units": 512, "init": {"scheme": "kaiming_normal"},
               "bias_init": {"scheme": "zeros"}}, {"type": "relu"}] * 6
    m = stack(*layers, in_shape=(512,), seed=0)
    x = torch.randn(256, 512)
    zs = []
    with torch.no_grad():
        for mod in m.module:
            x = mod(x)
            if isinstance(mod, nn.Linear) and mod.out_features == 512:
                zs.append(float(x.pow(2).mean()))
    assert np.allclose(zs[1:], zs[1], rtol=0.2), zs
