"""What the diagnosis of a user's module says it could not check, its advice, and the spec
path's one-line problems for real models."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from backprop_lab.engine import diagnosis, experiment, record
from backprop_lab.engine.spec import SpecError
from backprop_lab.engine.watch import Watch
from tests.test_diagnosis import history
from tests.test_real_models import NS, SOURCE


def watched_lm(tmp_path, steps=3):
    torch.manual_seed(0)
    net = NS["RNNModel"]("LSTM", nlayers=1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x = torch.randint(0, 20, (6, 4))
    with Watch(net, tmp_path / "run", flush_seconds=0) as w:
        for _ in range(steps):
            w.begin()
            out, _ = net(x, net.init_hidden(4))
            loss = F.nll_loss(out, x.reshape(-1))
            opt.zero_grad()
            loss.backward()
            w.step(opt, loss, out, x.reshape(-1))
    return tmp_path / "run"


def test_a_model_without_activations_says_saturation_and_dead_units_were_not_checked(tmp_path):
    run = watched_lm(tmp_path)
    h, spec = record.load(run)
    assert np.isfinite(h.series("time_grad_norm")).all()      # the LSTM's gradient through time is there
    lines = diagnosis.unchecked(h)
    assert "no activation statistics: saturation and dead units not checked" in lines
    assert not any("gradient through time" in line for line in lines)
    done = subprocess.run([sys.executable, "-m", "backprop_lab.app.cli", "diagnose", str(run)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "not checked: no activation statistics: saturation and dead units not checked" in done.stdout
    done = subprocess.run([sys.executable, "-m", "backprop_lab.app.cli", "diagnose", str(run), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert isinstance(json.loads(done.stdout), list)            # Contract 3: stdout is the findings only
    assert "not checked: no activation statistics" in done.stderr


def test_a_stack_with_activations_and_a_test_split_has_nothing_unchecked():
    h = history([[0.1, 0.11, 0.09, 0.1, 0.3]] * 5, test_loss=[1.0] * 5)
    assert diagnosis.unchecked(h) == []


def test_a_users_module_gets_advice_with_the_code_to_change_not_buttons():
    h = history([[1e-7, 1e-5, 1e-3, 1e-2, 0.3]] * 30)
    stack = diagnosis.diagnose(h)[0]
    assert stack.kind == "vanishing" and stack.remedies and not stack.advice
    for spec in ({"watched": {"module": "Net"}}, {"model": {"python": "net.py", "class": "Net"}}):
        f = diagnosis.diagnose(h, spec=spec)[0]
        assert f.kind == "vanishing" and f.remedies == []
        assert len(f.advice) == len(stack.remedies)
        assert any("nn.init." in a for a in f.advice)
        j = f.to_json()
        assert j["remedies"] == [] and j["advice"] == f.advice
        assert set(j) >= {"kind", "severity", "layers", "steps", "evidence", "message", "remedies"}


def test_advice_names_the_layer_as_the_users_code_does():
    from backprop_lab.engine.advice import advice
    assert "nn.init.kaiming_normal_(self.fc1.weight" in advice("he_init", ["fc1 (Linear)"])
    assert "self.layers[0].linear1.weight" in advice("xavier_init", ["layers.0.linear1 (Linear)"])
    assert "clip_grad_norm_(model.parameters(), 1.0)" in advice("clip_norm", [])


# ----------------------------------------------------------------------------- spec path problems
def lm_spec(tmp_path, **model):
    (tmp_path / "models.py").write_text(SOURCE)
    x = np.random.default_rng(0).integers(0, 20, (5, 8))
    np.savez(tmp_path / "d.npz", x=x, y=x)
    return {"data": {"kind": "npz", "path": "d.npz", "test_fraction": 0, "time_major": True, "classes": 20},
            "model": {"python": "models.py", "class": "RNNModel", **model}, "train": {"loss": "nll"}}


@pytest.mark.parametrize("model, message", [
    ({}, "model: does not fit the data (input (5, 2) int64): TypeError: RNNModel.forward() missing 1 required"),
    ({"forward_args": [{"call": "init_hidden"}]},
     'model: the forward returns a tuple of 2; say which output is the prediction with "output": 0'),
    ({"forward_args": [{"call": "init_hidden"}], "output": 5}, "model.output: 5 is not an output"),
    ({"forward_args": [{"zeros": [2, "batch"]}]}, "model: does not fit the data"),
    ({"forward_args": [{"ones": 1}]}, "model.forward_args[0]: must be"),
    ({"forward_args": [{"zeros": [2, -1]}]}, "model.forward_args[0].zeros: must list sizes"),
    ({"output": "first"}, "model.output: must be null"),
    ({"kwargs": {"ntoken": "x"}}, "model.class: RNNModel(**kwargs) failed: TypeError:"),
])
def test_every_problem_of_a_real_model_spec_is_one_line(tmp_path, model, message):
    with pytest.raises(SpecError) as e:
        experiment.build(lm_spec(tmp_path, **model), tmp_path)
    assert str(e.value).startswith(message), str(e.value)
    assert "\n" not in str(e.value)


def test_the_data_classes_and_int_tokens(tmp_path):
    spec = lm_spec(tmp_path, forward_args=[{"call": "init_hidden"}], output=0)
    exp = experiment.build(spec, tmp_path)
    assert exp.data.n_outputs == 20 and exp.data.x_train.dtype == np.int64 and exp.data.x_train.shape == (8, 5)
    spec["data"]["classes"] = 10
    with pytest.raises(SpecError, match="data.classes: y holds class 19, more than 10 classes"):
        experiment.build(spec, tmp_path)
    spec["data"]["time_major"] = "yes"
    with pytest.raises(SpecError, match="data.time_major: must be true or false"):
        experiment.build(spec, tmp_path)


def test_time_major_is_for_a_users_module(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 20, 1), np.float32), y=np.arange(20) % 2)
    spec = {"data": {"kind": "npz", "path": "d.npz", "time_major": True},
            "model": {"layers": [{"type": "rnn", "units": 3}]}}
    with pytest.raises(SpecError, match="data.time_major: a layer stack takes samples first"):
        experiment.build(spec, tmp_path)


def test_the_panel_shows_a_users_module_advice_as_text_without_buttons(qtbot):
    from PySide6.QtWidgets import QLabel

    from backprop_lab.engine import remedies
    from backprop_lab.widgets.diagnosis_panel import DiagnosisPanel
    h = history([[1e-7, 1e-5, 1e-3, 1e-2, 0.3]] * 30)
    f = diagnosis.diagnose(h, spec={"watched": {"module": "Net"}})[0]
    p = DiagnosisPanel(remedies.REMEDIES)
    qtbot.addWidget(p)
    p.set_findings([f], 30)
    card = p.cards[0]
    texts = [w.text() for w in card.findChildren(QLabel)]
    assert card.buttons == [] and all(f"Try: {a}" in texts for a in f.advice)
    p.close()
