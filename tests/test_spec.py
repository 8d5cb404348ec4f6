"""The spec: defaults, round trip, and a clear message for every kind of mistake."""
import json

import numpy as np
import pytest

from engine import experiment, spec as S
from engine.spec import SpecError


def base(**over):
    s = {"format": "backprop-lab/spec", "version": 1, "name": "t", "data": {"kind": "spirals", "n": 60},
         "model": {"layers": [{"type": "linear", "units": 8}, {"type": "relu"}]}, "train": {"lr": 0.1}}
    s.update(over)
    return s


def test_defaults_are_filled_and_round_trip_is_exact():
    v = S.validate(base())
    assert v["train"]["optimizer"] == "sgd" and v["data"]["test_fraction"] == 0.2
    assert v["model"]["layers"][0]["init"] == {"scheme": "default"}
    assert S.loads(S.dumps(v)) == v


def test_save_and_load(tmp_path):
    S.save(S.validate(base()), tmp_path / "a.json")
    spec, folder = S.load(tmp_path / "a.json")
    assert folder == tmp_path and spec == S.validate(base())


@pytest.mark.parametrize("spec, message", [
    (base(model={"layers": [{"type": "linear", "units": -4}]}),
     "layer 1 (linear): units must be a positive integer, got -4"),
    (base(colour="red"), "spec: unknown key 'colour'"),
    (base(version=7), "version: unsupported version"),
    (base(format="other"), "format: must be 'backprop-lab/spec'"),
    (base(model={"layers": [{"type": "linear", "units": 3, "width": 2}]}), "layer 1 (linear): unknown key 'width'"),
    (base(model={"layers": [{"type": "conv"}]}), "layer 1: type must be one of"),
    (base(model={"layers": [{"type": "linear", "init": {"scheme": "magic"}}]}),
     "layer 1 (linear): init: scheme must be one of"),
    (base(model={"layers": [{"type": "linear", "init": {"scheme": "normal", "std": -1}}]}),
     "layer 1 (linear): init.std: must be a positive number, got -1"),
    (base(model={"layers": [{"type": "dropout", "p": 1.5}]}), "layer 1 (dropout): p must be in [0, 1)"),
    (base(model={"layers": [{"type": "residual", "layers": [{"type": "linear", "units": 0}]}]}),
     "layer 1 (residual) > layer 1 (linear): units must be a positive integer, got 0"),
    (base(train={"lr": -0.1}), "train.lr: must be a positive number, got -0.1"),
    (base(train={"optimizer": "lbfgs"}), "train.optimizer: must be one of"),
    (base(train={"batch_size": 0}), "train.batch_size"),
    (base(data={"kind": "mnist"}), "data.kind: must be one of"),
    (base(data={"kind": "spirals", "test_fraction": 1.0}), "data.test_fraction: must be in [0, 1)"),
])
def test_every_bad_spec_names_its_problem(spec, message):
    with pytest.raises(SpecError) as e:
        S.validate(spec)
    assert message in str(e.value)


def test_invalid_json_names_line_and_column():
    with pytest.raises(SpecError, match="not valid JSON: .* line 1 column"):
        S.loads('{"name": }')


def test_missing_spec_file(tmp_path):
    with pytest.raises(SpecError, match="no such file"):
        S.load(tmp_path / "nope.json")


@pytest.mark.parametrize("layers, message", [
    ([{"type": "rnn", "units": 4}], "layer 1 (rnn): rnn needs a sequence (time x features), got 2"),
    ([{"type": "residual", "layers": [{"type": "rnn", "units": 3}]}], "layer 1 (residual): layer 1.1 (rnn)"),
])
def test_shapes_that_do_not_fit_are_named(layers, message):
    with pytest.raises(SpecError) as e:
        experiment.build(base(model={"layers": layers}))
    assert message in str(e.value)


def test_batchnorm_on_a_sequence_and_a_sequence_at_the_end_are_refused():
    seq = {"kind": "memory", "n": 20, "length": 5}
    with pytest.raises(SpecError, match="batchnorm needs one feature axis"):
        experiment.build(base(data=seq, model={"layers": [{"type": "batchnorm"}, {"type": "rnn", "units": 3}]}))
    with pytest.raises(SpecError, match="ends with a sequence"):
        experiment.build(base(data=seq, model={"layers": [{"type": "linear", "units": 3}]}))


def test_npz_data_missing_file_missing_arrays_and_relative_path(tmp_path):
    with pytest.raises(SpecError, match="data.path: no such file"):
        experiment.build(base(data={"kind": "npz", "path": "nope.npz"}), tmp_path)
    np.savez(tmp_path / "bad.npz", a=np.zeros(3))
    with pytest.raises(SpecError, match="must hold arrays 'x' and 'y'"):
        experiment.build(base(data={"kind": "npz", "path": "bad.npz"}), tmp_path)
    x = np.arange(40, dtype=float).reshape(20, 2) * 100  # used as given: no normalisation
    np.savez(tmp_path / "ok.npz", x=x, y=np.arange(20) % 2)
    exp = experiment.build(base(data={"kind": "npz", "path": "ok.npz", "test_fraction": 0}), tmp_path)
    assert exp.data.x_train.max() == 3900 and exp.data.n_outputs == 2
    np.savez(tmp_path / "reg.npz", x=x, y=x[:, 0] * 0.5)
    exp = experiment.build(base(data={"kind": "npz", "path": "reg.npz"}, train={"loss": "mse"}), tmp_path)
    assert exp.data.task == "regression"


def test_csv_data_with_header(tmp_path):
    (tmp_path / "d.csv").write_text("a,b,label\n" + "\n".join(f"{i},{-i},{i % 3}" for i in range(30)))
    exp = experiment.build(base(data={"kind": "csv", "path": "d.csv"}), tmp_path)
    assert exp.data.input_shape == (2,) and exp.data.n_outputs == 3


def test_cross_entropy_on_regression_data_is_refused():
    with pytest.raises(SpecError, match="cross_entropy needs class labels"):
        experiment.build(base(data={"kind": "adding", "n": 20, "length": 4}, train={"loss": "cross_entropy"}))


def test_presets_are_valid_specs_with_descriptions():
    from tests.conftest import PRESETS
    files = sorted(PRESETS.glob("*.json"))
    assert len(files) >= 5
    for f in files:
        spec = S.validate(json.loads(f.read_text()))
        assert spec["name"] and len(spec["description"]) > 80, f.name
