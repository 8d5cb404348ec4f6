"""Diagnosis on histories built with known numbers, and the remedies it offers."""
import json

import numpy as np
import pytest

from backprop_lab.engine import remedies
from backprop_lab.engine.diagnosis import diagnose
from backprop_lab.engine.history import History
from backprop_lab.engine.snapshot import Snapshot
from backprop_lab.engine.spec import validate
from tests.conftest import load_preset

LAYERS = ["1 linear", "3 linear", "5 linear", "7 linear", "out linear"]


def history(rows, acts=("2 sigmoid", "4 sigmoid", "6 sigmoid", "8 sigmoid"), **columns):
    """A History whose per-layer statistic comes from `bias` rows; other columns by keyword."""
    h = History(LAYERS, list(acts), [4] * len(LAYERS))
    for k, bias in enumerate(rows):
        bias = np.asarray(bias, float)
        A = len(acts)
        col = lambda key, default: np.asarray(columns.get(key, [default] * len(rows))[k], float)  # noqa: E731
        h.append(Snapshot(k, float(col("loss", 1.0 - 0.001 * k)), 0.5, float(col("test_loss", np.nan)), np.nan,
                          0.1, bias, bias, bias, np.full(len(bias), 1e-3),
                          np.zeros(A), np.ones(A), np.full(A, 0.2), col("saturated", np.zeros(A)) * np.ones(A),
                          col("dead", np.zeros(A)) * np.ones(A), np.ones(4 * len(LAYERS), np.float32)))
    return h


def kinds(h):
    return [f.kind for f in diagnose(h)]


def test_healthy_history_gives_no_finding():
    assert diagnose(history([[0.1, 0.11, 0.09, 0.1, 0.3]] * 50)) == []


def test_vanishing_is_found_with_its_evidence_and_remedies():
    f = diagnose(history([[1e-7, 1e-5, 1e-3, 1e-2, 0.3]] * 30))[0]
    assert f.kind == "vanishing" and f.severity == "error"
    assert f.layers == LAYERS[:4] and f.evidence["ratio"] == pytest.approx(1e-5)
    assert "relu_he" in f.remedies and all(r in remedies.REMEDIES for r in f.remedies)
    assert "1e+05" in f.message or "100000" in f.message
    json.dumps(f.to_json())  # JSON-safe


def test_exploding_across_depth_and_in_time():
    assert "exploding" in kinds(history([[1e3, 10, 1, 0.1, 0.1]] * 10))
    growing = [[0.1 * 10 ** (k / 3)] * 5 for k in range(20)]
    f = [f for f in diagnose(history(growing)) if f.kind == "exploding"][0]
    assert f.evidence["growth_factor"] > 1e3


def test_nan_names_the_first_step_and_layer():
    rows = [[0.1] * 5] * 5 + [[np.inf, 0.1, 0.1, 0.1, 0.1]]
    loss = [1.0] * 5 + [np.nan]
    f = diagnose(history(rows, loss=loss))[0]
    assert f.kind == "non_finite" and f.steps[0] == 5 and f.layers == ["1 linear"]
    assert f.to_json()["evidence"]["loss"] is None  # NaN becomes null in JSON


def test_saturation_and_dead_units():
    sat = diagnose(history([[0.1] * 5] * 30, saturated=[0.9] * 30))
    assert [f.kind for f in sat] == ["saturation"] and len(sat[0].layers) == 4
    dead = diagnose(history([[0.1] * 5] * 30, acts=("2 relu", "4 relu", "6 relu", "8 relu"), dead=[0.6] * 30))
    assert [f.kind for f in dead] == ["dead_units"] and dead[0].severity == "error"
    # a unit silent on one batch only is not dead
    flicker = [0.6 if k == 29 else 0.0 for k in range(30)]
    assert diagnose(history([[0.1] * 5] * 30, acts=("2 relu",) * 4, dead=flicker)) == []


def test_plateau_and_overfitting():
    flat = history([[0.1] * 5] * 300, loss=[1.0986] * 300)
    assert "plateau" in kinds(flat)
    test_loss = [np.nan if k % 10 else 1.0 - k / 200 if k < 100 else 0.5 + (k - 100) / 100 for k in range(200)]
    over = history([[0.1] * 5] * 200, loss=[1.0 - k / 250 for k in range(200)], test_loss=test_loss)
    assert "overfitting" in kinds(over)


@pytest.mark.parametrize("rid", sorted(remedies.REMEDIES))
def test_every_remedy_gives_a_valid_spec_that_differs(rid):
    preset = "recurrent_rnn_vanishing" if rid == "lstm" else "deep_sigmoid_vanishing"
    spec = validate(load_preset(preset))
    new, text = remedies.apply(rid, spec)
    assert new != spec and text and validate(new) == new


def test_relu_he_remedy_swaps_activations_and_sets_he_init():
    new, _ = remedies.apply("relu_he", load_preset("deep_sigmoid_vanishing"))
    layers = new["model"]["layers"]
    assert {l["type"] for l in layers} == {"linear", "relu"}
    assert all(l["init"]["scheme"] == "kaiming_normal" for l in layers if l["type"] == "linear")


def test_remedies_fix_what_they_promise():
    from tests.conftest import train
    from backprop_lab.engine import compare
    spec = load_preset("deep_sigmoid_vanishing")
    for rid in ("relu_he", "residual"):
        new, _ = remedies.apply(rid, spec)
        assert compare.first_last_ratio(train(new, 2)[2]) > 1e-2, rid
