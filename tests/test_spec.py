"""The spec (Contract 1): defaults, round trip, and a one-line message naming every mistake."""
import json

import numpy as np
import pytest

from backprop_lab.engine import experiment, spec as S
from backprop_lab.engine.spec import SpecError


def base(**over):
    s = {"format": "backprop-lab/spec", "version": 1, "name": "t", "data": {"kind": "spirals", "n": 60},
         "model": {"layers": [{"type": "linear", "units": 8}, {"type": "relu"}]}, "train": {"lr": 0.1}}
    s.update(over)
    return s


def layers(*ls):
    return base(model={"layers": list(ls)})


def error_of(fn, *args) -> str:
    with pytest.raises(SpecError) as e:
        fn(*args)
    msg = str(e.value)
    assert "\n" not in msg and msg.strip() == msg and msg, repr(msg)
    return msg


# ----------------------------------------------------------------------------- good specs
def test_defaults_are_filled_in():
    v = S.validate(base())
    assert v["train"]["optimizer"] == "sgd" and v["train"]["batch_size"] == 64 and v["train"]["seed"] == 0
    assert v["data"]["test_fraction"] == 0.2 and v["data"]["seed"] == 0 and v["data"]["classes"] == 3
    lin = v["model"]["layers"][0]
    assert lin == {"type": "linear", "units": 8, "bias": True, "init": {"scheme": "default"},
                   "bias_init": {"scheme": "default"}}
    assert S.validate({"data": {"kind": "xor"}, "model": {"layers": []}})["format"] == "backprop-lab/spec"


def test_validate_does_not_change_its_input_and_is_idempotent():
    raw = base()
    before = json.dumps(raw, sort_keys=True)
    v = S.validate(raw)
    assert json.dumps(raw, sort_keys=True) == before
    assert S.validate(v) == v


@pytest.mark.parametrize("spec", [
    base(),
    layers({"type": "linear", "units": 5, "bias": False, "init": {"scheme": "kaiming_normal", "gain": 2.0},
            "bias_init": {"scheme": "uniform", "a": 0.1}}, {"type": "leaky_relu", "slope": 0.2},
           {"type": "residual", "layers": [{"type": "linear", "units": 5}, {"type": "elu", "alpha": 0.5}]},
           {"type": "dropout", "p": 0.1}, {"type": "layernorm"}),
    base(data={"kind": "memory", "length": 9}, model={"layers": [{"type": "lstm", "units": 4, "forget_bias": 1.0}]},
         train={"optimizer": "adam", "lr": 1e-3, "clip_norm": 1.0, "batch_size": None, "loss": "cross_entropy"}),
], ids=["simple", "every_layer_param", "recurrent"])
def test_round_trip_validate_dumps_loads_is_exact(spec):
    v = S.validate(spec)
    assert S.loads(S.dumps(v)) == v


def test_save_and_load_give_the_spec_and_its_folder(tmp_path):
    S.save(S.validate(base()), tmp_path / "a.json")
    spec, folder = S.load(tmp_path / "a.json")
    assert folder == tmp_path.resolve() and spec == S.validate(base())


def test_an_init_given_as_a_bare_scheme_name_is_accepted():
    v = S.validate(layers({"type": "linear", "units": 3, "init": "orthogonal"}))
    assert v["model"]["layers"][0]["init"] == {"scheme": "orthogonal"}


# ----------------------------------------------------------------------------- bad specs
def test_negative_units_give_exactly_the_documented_message():
    assert error_of(S.validate, layers({"type": "linear", "units": -4})) == \
        "layer 1 (linear): units must be a positive integer, got -4"


@pytest.mark.parametrize("spec, message", [
    (base(colour="red"), "spec: unknown key 'colour'"),
    (layers({"type": "linear", "units": 3, "width": 2}), "layer 1 (linear): unknown key 'width'"),
    (layers({"type": "relu"}, {"type": "conv"}), "layer 2: type must be one of linear, sigmoid"),
    (layers({"units": 3}), "layer 1: type must be one of"),
    (layers({"type": "linear", "units": 2.5}), "layer 1 (linear): units must be a positive integer, got 2.5"),
    (layers({"type": "linear", "units": True}), "layer 1 (linear): units must be a positive integer, got true"),
    (layers({"type": "linear", "bias": "yes"}), "layer 1 (linear): bias must be true or false, got \"yes\""),
    (layers({"type": "linear", "init": {"scheme": "magic"}}),
     "layer 1 (linear): init: scheme must be one of default, normal, uniform"),
    (layers({"type": "linear", "init": {"scheme": "normal", "std": -1}}),
     "layer 1 (linear): init.std: must be a positive number, got -1"),
    (layers({"type": "linear", "init": {"scheme": "xavier_normal", "std": 1}}),
     "layer 1 (linear): init: unknown key 'std'"),
    (layers({"type": "linear", "bias_init": {"scheme": "orthogonal"}}),
     "layer 1 (linear): bias_init: scheme must be one of zeros, default, normal, uniform, got \"orthogonal\""),
    (layers({"type": "leaky_relu", "slope": -1}), "layer 1 (leaky_relu): slope must be a number >= 0, got -1"),
    (layers({"type": "elu", "alpha": 0}), "layer 1 (elu): alpha must be a positive number, got 0"),
    (layers({"type": "dropout", "p": 1.5}), "layer 1 (dropout): p must be in [0, 1), got 1.5"),
    (layers({"type": "lstm", "forget_bias": "open"}), "layer 1 (lstm): forget_bias must be null"),
    (layers({"type": "residual", "layers": []}), "layer 1 (residual): a residual block needs at least one layer"),
    (layers({"type": "residual", "layers": [{"type": "linear", "units": 0}]}),
     "layer 1 (residual) > layer 1 (linear): units must be a positive integer, got 0"),
    (base(model={"layers": "linear"}), "model.layers: must be a list of layers"),
    (base(model={"python": 3, "class": "Net"}), "model.python: must be a file name"),
    (base(model={"python": "n.py"}), "model.class: must name the module class"),
    (base(train={"lr": -0.1}), "train.lr: must be a positive number, got -0.1"),
    (base(train={"lr": "fast"}), "train.lr: must be a positive number, got \"fast\""),
    (base(train={"lr": float("nan")}), "train.lr: must be a positive number"),
    (base(train={"optimizer": "lbfgs"}), "train.optimizer: must be one of sgd, momentum"),
    (base(train={"loss": "hinge"}), "train.loss: must be one of cross_entropy, mse, nll, got \"hinge\""),
    (base(train={"batch_size": 0}), "train.batch_size: must be null (full batch) or a positive integer, got 0"),
    (base(train={"steps": 0}), "train.steps: must be a positive integer, got 0"),
    (base(train={"clip_norm": -1}), "train.clip_norm: must be null or a positive number, got -1"),
    (base(train={"momentum": 1.0}), "train.momentum: must be in [0, 1), got 1.0"),
    (base(train={"device": "tpu"}), "train.device: must be one of cpu, cuda, auto, got \"tpu\""),
    (base(train={"learning_rate": 0.1}), "train: unknown key 'learning_rate'"),
    (base(data={"kind": "mnist"}), "data.kind: must be one of spirals, circles"),
    (base(data={"n": 10}), "data: must be an object with a 'kind'"),
    (base(data={"kind": "spirals", "test_fraction": 1.0}), "data.test_fraction: must be in [0, 1), got 1.0"),
    (base(data={"kind": "spirals", "classes": 1}), "data.classes: must be an integer >= 2, got 1"),
    (base(data={"kind": "spirals", "length": 5}), "data: unknown key 'length'"),
    (base(data={"kind": "npz"}), "data.path: must name a file, got null"),
    (base(version=7), "version: unsupported version (this build reads version 1), got 7"),
    (base(format="other"), "format: must be 'backprop-lab/spec', got \"other\""),
    (base(name=3), "name: must be text, got 3"),
    ({"format": "backprop-lab/spec", "data": {"kind": "xor"}}, "spec: missing key 'model'"),
])
def test_every_bad_spec_names_its_problem_in_one_line(spec, message):
    assert error_of(S.validate, spec).startswith(message)


def test_a_spec_that_is_not_an_object_is_refused():
    assert error_of(S.validate, [1, 2]) == "a spec must be a JSON object, got list"


def test_invalid_json_names_line_and_column():
    assert error_of(S.loads, '{\n  "name": }') == "not valid JSON: Expecting value at line 2 column 11"


def test_a_bad_file_names_itself_and_the_problem(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text(json.dumps(layers({"type": "linear", "units": -4})))
    assert error_of(S.load, p) == "broken.json: layer 1 (linear): units must be a positive integer, got -4"
    p.write_text("{oops")
    assert error_of(S.load, p).startswith("broken.json: not valid JSON")
    assert error_of(S.load, tmp_path / "nope.json").endswith("nope.json: no such file")


# ----------------------------------------------------------------------------- problems found when building
@pytest.mark.parametrize("spec, message", [
    (layers({"type": "rnn", "units": 4}), "layer 1 (rnn): rnn needs a sequence (time x features), got 2"),
    (layers({"type": "residual", "layers": [{"type": "rnn", "units": 3}]}),
     "layer 1 (residual): layer 1.1 (rnn): rnn needs a sequence"),
    (base(data={"kind": "memory", "n": 20, "length": 5}, model={"layers": [{"type": "batchnorm"},
                                                                            {"type": "rnn", "units": 3}]}),
     "layer 1 (batchnorm): batchnorm needs one feature axis, got 5 x 1"),
    (base(data={"kind": "memory", "n": 20, "length": 5}, model={"layers": [{"type": "linear", "units": 3}]}),
     "output layer: the stack ends with a sequence (5 x 3)"),
    (base(data={"kind": "adding", "n": 20, "length": 4}, model={"layers": [{"type": "gru", "units": 3}]},
          train={"loss": "cross_entropy"}), "train.loss: cross_entropy needs class labels"),
])
def test_shapes_and_losses_that_do_not_fit_the_data_are_named(spec, message):
    assert error_of(experiment.build, spec).startswith(message)


def test_npz_data_errors_name_the_file(tmp_path):
    msg = error_of(experiment.build, base(data={"kind": "npz", "path": "nope.npz"}), tmp_path)
    assert msg.startswith("data.path: no such file") and "nope.npz" in msg
    np.savez(tmp_path / "bad.npz", a=np.zeros(3))
    assert error_of(experiment.build, base(data={"kind": "npz", "path": "bad.npz"}), tmp_path) == \
        "data.path: bad.npz must hold arrays 'x' and 'y', has ['a']"
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    assert error_of(experiment.build, base(data={"kind": "npz", "path": "junk.npz"}), tmp_path).startswith(
        "data.path: cannot read junk.npz as .npz")
    np.savez(tmp_path / "short.npz", x=np.zeros((5, 2)), y=np.zeros(4, int))
    assert error_of(experiment.build, base(data={"kind": "npz", "path": "short.npz"}), tmp_path) == \
        "data: x has 5 samples but y has 4"


def test_presets_are_valid_specs_with_names_and_descriptions():
    from tests.conftest import PRESETS
    files = sorted(PRESETS.glob("*.json"))
    assert len(files) >= 5
    for f in files:
        spec = S.validate(json.loads(f.read_text()))
        assert spec["name"] and len(spec["description"]) > 80, f.name


def test_default_layer_has_every_parameter_and_validates():
    for kind in S.LAYER_TYPES:
        layer = S.default_layer(kind)
        if kind == "residual":
            layer["layers"] = [S.default_layer("linear")]
        assert S.validate_layers([layer])[0]["type"] == kind
