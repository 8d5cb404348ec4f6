"""The command line (Contract 3): run writes Contract 2 records, bad input exits 2 with one line."""
import json
import os
import runpy
import subprocess
import sys

import numpy as np
import pytest

from backprop_lab.app import cli
from backprop_lab.engine import spec as S
from tests.conftest import PRESETS, ROOT

PRESET_FILES = sorted(PRESETS.glob("*.json"))
LAYER_KEYS = ("weight_grad_norm", "bias_grad_norm", "delta_norm", "update_ratio")
ACT_KEYS = ("preact_mean", "preact_std", "mean_derivative", "saturated_frac", "dead_frac")


def assert_contract_record(a, T):
    """Every Contract 2 key with its shape; returns (L, A)."""
    assert str(a["format"]) == "backprop-lab/run" and int(a["version"]) == 1
    json.loads(str(a["spec"]))
    assert a["step"].shape == (T,) and a["step"].dtype.kind == "i"
    L, A = len(a["layer_names"]), len(a["act_names"])
    assert a["layer_names"].dtype.kind == "U" and a["act_names"].shape == (A,)
    for k in ("loss", "accuracy", "test_loss", "test_accuracy"):
        assert a[k].shape == (T,), k
    for k in LAYER_KEYS:
        assert a[k].shape == (T, L), k
    for k in ACT_KEYS:
        assert a[k].shape == (T, A), k
    return L, A


@pytest.mark.parametrize("preset", PRESET_FILES, ids=lambda p: p.stem)
def test_run_writes_a_complete_record_for_every_preset(preset, tmp_path, capsys):
    out = tmp_path / "r.npz"
    assert cli.main(["run", str(preset), "--steps", "5", "--out", str(out), "--seed", "5"]) == 0
    a = np.load(out, allow_pickle=False)
    spec = json.loads(str(a["spec"]))
    T = len(a["step"])
    if spec.get("stopped"):                    # a preset that blows up early says so
        assert 0 < T <= 5 and str(a["stop_reason"]) == spec["stopped"]
    else:
        assert a["step"].tolist() == list(range(5)) and str(a["stop_reason"]) == "finished"
    L, A = assert_contract_record(a, T)
    assert L > 0 and np.isfinite(a["loss"][0]) and np.isfinite(a["weight_grad_norm"][0]).all()
    assert spec["train"]["seed"] == 5 and spec["name"] == S.load(preset)[0]["name"]
    layers = spec["model"]["layers"]
    if layers and layers[0]["type"] in ("rnn", "lstm", "gru"):
        assert a["time_grad_norm"].shape == (T, spec["data"]["length"])
        assert np.isfinite(a["time_grad_norm"][0]).all() and a["time_grad_norm"][0, -1] > 0
    else:
        assert "time_grad_norm" not in a.files
    out_text = capsys.readouterr().out
    assert f"{T} steps in" in out_text and "steps/s" in out_text and str(out) in out_text


def test_bad_spec_exits_2_with_one_line_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "backprop-lab/spec", "version": 1, "name": "bad",
                               "data": {"kind": "spirals"},
                               "model": {"layers": [{"type": "linear", "units": -4}]}, "train": {"lr": 0.1}}))
    exe = os.path.join(os.path.dirname(sys.executable), "backprop-lab")
    assert os.path.exists(exe), "the project is installed in the venv with its console script"
    r = subprocess.run([exe, "run", str(bad), "--steps", "2", "--out", str(tmp_path / "b.npz")],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.strip() == "backprop-lab: bad.json: layer 1 (linear): units must be a positive integer, got -4"
    assert not (tmp_path / "b.npz").exists()


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("{not json", "not valid JSON"),
    (json.dumps({"data": {"kind": "npz", "path": "missing.npz"}, "model": {"layers": []}}), "data.path: no such file"),
    (json.dumps({"data": {"kind": "memory"}, "model": {"layers": [{"type": "batchnorm"}]}}),
     "layer 1 (batchnorm): batchnorm needs one feature axis"),
])
def test_unusable_specs_exit_2_with_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "s.json"
    if content is not None:
        path.write_text(content)
    assert cli.main(["run", str(path), "--out", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and err.startswith("backprop-lab: ")
    assert not (tmp_path / "x.npz").exists()


def test_nonpositive_steps_and_a_missing_record_exit_2(tmp_path, capsys):
    assert cli.main(["run", str(PRESET_FILES[0]), "--steps", "0", "--out", str(tmp_path / "x.npz")]) == 2
    assert cli.main(["diagnose", str(tmp_path / "nope.npz")]) == 2
    err = capsys.readouterr().err
    assert "--steps must be a positive integer" in err and "no such file" in err


def test_diagnose_json_follows_the_contract(tmp_path, capsys):
    out = tmp_path / "r.npz"
    cli.main(["run", str(PRESETS / "deep_sigmoid_vanishing.json"), "--steps", "30", "--out", str(out)])
    capsys.readouterr()
    assert cli.main(["diagnose", str(out), "--json"]) == 0
    findings = json.loads(capsys.readouterr().out)
    keys = {"kind", "severity", "layers", "steps", "evidence", "message", "remedies"}
    assert findings and all(keys <= set(f) for f in findings)
    assert any(f["kind"] == "vanishing" for f in findings)


def test_export_writes_a_runnable_file_with_the_same_weights(tmp_path, capsys):
    import importlib.util
    import torch
    from backprop_lab.engine import experiment
    for name in ("deep_sigmoid_residual", "recurrent_lstm_forget_bias", "deep_relu_he"):
        path = PRESETS / f"{name}.json"
        out = tmp_path / f"{name}.py"
        assert cli.main(["export", str(path), "--torch", str(out)]) == 0
        mod_spec = importlib.util.spec_from_file_location(name, out)
        mod = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(mod)
        mine = experiment.build(S.load(path)[0]).model.module.state_dict()
        theirs = mod.build_model().state_dict()
        assert mine.keys() == theirs.keys()
        assert all(torch.equal(mine[k], theirs[k]) for k in mine), name
    capsys.readouterr()
    runpy.run_path(str(tmp_path / "deep_relu_he.py"), run_name="__main__")   # runnable as a script
    assert "output shape: (4, 3)" in capsys.readouterr().out
