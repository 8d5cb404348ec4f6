"""The layer catalogue: the one record of each layer type that spec, form, builder and export read."""
from __future__ import annotations

import math

import pytest
from torch import nn

from backprop_lab.engine import catalog as C
from backprop_lab.engine import limits
from backprop_lab.engine import spec as S
from backprop_lab.engine.build import build_stack, make_activation_module


def test_every_type_validates_with_its_defaults_and_spec_views_follow():
    for kind, t in C.CATALOG.items():
        layer = C.default_layer(kind)
        if kind == "residual":
            layer["layers"] = [C.default_layer("linear")]
        assert S.validate_layers([layer])[0]["type"] == kind
        assert S.LAYER_TYPES[kind] == {"group": t.group, "params": t.defaults()}
        assert t.group in C.GROUPS


@pytest.mark.parametrize("kind,key,bad", [("linear", "units", 0), ("linear", "bias", 1),
                                          ("leaky_relu", "slope", -0.1), ("elu", "alpha", 0),
                                          ("dropout", "p", 1.0), ("lstm", "forget_bias", "x")])
def test_ranges_refuse_with_typed_errors(kind, key, bad):
    layer = {**C.default_layer(kind), key: bad}
    with pytest.raises(S.SpecError) as e:
        S.validate_layers([C.default_layer("relu"), layer])
    assert e.value.path == (2,) and e.value.key == key
    assert str(e.value) == f"layer 2 ({kind}): {e.value.detail}"
    assert e.value.detail.startswith(f"{key} must be {C.CATALOG[kind].param(key).rule}")


def test_nested_error_path_and_relocation():
    layers = [{"type": "relu"}, {"type": "residual", "layers": [{"type": "relu"}, {"type": "linear", "units": -1}]}]
    with pytest.raises(S.SpecError) as e:
        S.validate_layers(layers)
    assert e.value.path == (2, 2) and e.value.key == "units"
    assert str(e.value).startswith("layer 2 (residual) > layer 2 (linear): units must be")
    # the same layer judged on its own, named by its place in the stack
    with pytest.raises(S.SpecError) as e2:
        S.validate_layers([layers[1]["layers"][1]], S.where_of((2, 2), ["residual"]), (2,), start=2)
    assert str(e2.value) == str(e.value) and e2.value.path == (2, 2)


def test_units_have_no_cap_below_the_resource_limit():
    assert S.validate_layers([{"type": "linear", "units": 100_000}])[0]["units"] == 100_000
    assert C.CATALOG["linear"].param("units").maximum == limits.MAX_UNITS


def test_torch_class_map_round_trips_through_the_builder():
    for kind in C.ACTIVATION_TYPES:
        layer = S.validate_layers([C.default_layer(kind)])[0]
        m = make_activation_module(layer)
        if C.CATALOG[kind].from_torch:
            assert C.layer_of_module(m) == layer
            assert C.type_of_class_name(type(m).__name__.lower()) == kind
    assert C.layer_of_module(nn.LeakyReLU(0.2)) == {"type": "leaky_relu", "slope": 0.2}
    assert C.layer_of_module(nn.GELU(approximate="tanh")) is None
    assert C.layer_of_module(nn.Softplus(beta=2)) is None
    assert C.layer_of_module(nn.Identity()) is None
    assert C.type_of_class_name("Conv2d") is None


@pytest.mark.parametrize("init", [{"scheme": "default"}, {"scheme": "normal", "std": 0.3},
                                  {"scheme": "uniform", "a": 0.5}, {"scheme": "xavier_normal"},
                                  {"scheme": "xavier_uniform", "gain": 2.0}, {"scheme": "kaiming_normal"},
                                  {"scheme": "kaiming_uniform"}, {"scheme": "orthogonal"}])
def test_weight_std_matches_the_built_weights(init):
    fan_in, fan_out = 400, 300
    model = build_stack([{"type": "linear", "units": fan_out, "init": init, "bias": True,
                          "bias_init": {"scheme": "zeros"}}], (fan_in,), fan_out, seed=0)
    w = model.weight_layers[0][1].weight.detach().double()
    expected = C.weight_std(init, fan_in, fan_out)
    # 120,000 draws: the sample std is within ~1 % of the true one
    assert float(w.std()) == pytest.approx(expected, rel=0.02)


def test_param_default_gain():
    assert C.param_default("kaiming_normal", "gain") == pytest.approx(math.sqrt(2))
    assert C.param_default("xavier_normal", "gain") == 1.0


@pytest.mark.parametrize("kind", ["batchnorm", "layernorm"])
def test_affine_switch_added_through_the_catalogue(kind, tmp_path):
    """The exercise of issue 7: a parameter added in engine/catalog.py alone is validated, built,
    exported, summarised and shown in the form."""
    from backprop_lab.engine import export
    from backprop_lab.widgets.layer_catalog import layer_summary

    layers = [{"type": "linear", "units": 6}, {"type": kind, "affine": False}, {"type": "tanh"}]
    full = S.validate_layers(layers)
    assert full[1]["affine"] is False and S.validate_layers([{"type": kind}])[0]["affine"] is True
    with pytest.raises(S.SpecError, match="affine must be true or false") as e:
        S.validate_layers([{"type": kind, "affine": 1}])
    assert e.value.key == "affine"
    model = build_stack(full, (2,), 3, seed=0)
    norm = model.module[1]
    assert not list(norm.parameters()) and all(m is not norm for _, m in model.weight_layers)
    assert len(list(build_stack(S.validate_layers([{"type": "linear", "units": 6}, {"type": kind}]), (2,), 3,
                                seed=0).module[1].parameters())) == 2
    assert layer_summary(full[1]) == "no affine"
    spec = {"data": {"kind": "xor"}, "model": {"layers": layers}, "train": {"seed": 3}}
    src = export.source(spec)
    ns: dict = {}
    exec(compile(src, "model.py", "exec"), ns)
    built = ns["build_model"]()
    assert not list(built[1].parameters())
    assert {k: v.shape for k, v in built.state_dict().items()} == \
        {k: v.shape for k, v in build_stack(S.validate(spec)["model"]["layers"], (2,), 2, 3).module.state_dict().items()}
