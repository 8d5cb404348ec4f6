"""The command line (Contract 3)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from app import cli
from tests.conftest import PRESETS, ROOT

PRESET_FILES = sorted(PRESETS.glob("*.json"))


@pytest.mark.parametrize("preset", PRESET_FILES, ids=lambda p: p.stem)
def test_run_writes_a_complete_record_for_every_preset(preset, tmp_path, capsys):
    out = tmp_path / "r.npz"
    assert cli.main(["run", str(preset), "--steps", "4", "--out", str(out), "--seed", "5"]) == 0
    a = np.load(out, allow_pickle=False)
    T, L, A = len(a["step"]), len(a["layer_names"]), len(a["act_names"])
    assert 0 < T <= 4 and L > 0
    for k in ("weight_grad_norm", "bias_grad_norm", "delta_norm", "update_ratio"):
        assert a[k].shape == (T, L)
    for k in ("preact_mean", "preact_std", "mean_derivative", "saturated_frac", "dead_frac"):
        assert a[k].shape == (T, A)
    assert json.loads(str(a["spec"]))["train"]["seed"] == 5
    assert "steps/s" in capsys.readouterr().out


def test_same_seed_gives_identical_record_files(tmp_path):
    spec = str(PRESETS / "deep_relu_he.json")
    for k in range(2):
        assert cli.main(["run", spec, "--steps", "6", "--out", str(tmp_path / f"{k}.npz")]) == 0
    a, b = np.load(tmp_path / "0.npz"), np.load(tmp_path / "1.npz")
    for k in a.files:
        assert np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f"), k


def test_bad_spec_exits_2_with_one_line_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "backprop-lab/spec", "version": 1, "name": "bad",
                               "data": {"kind": "spirals"},
                               "model": {"layers": [{"type": "linear", "units": -4}]}, "train": {"lr": 0.1}}))
    exe = os.path.join(os.path.dirname(sys.executable), "backprop-lab")
    cmd = [exe] if os.path.exists(exe) else [sys.executable, "-m", "app.cli"]
    r = subprocess.run(cmd + ["run", str(bad), "--steps", "2", "--out", str(tmp_path / "b.npz")],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    msg = (r.stderr + r.stdout).strip()
    assert r.returncode == 2
    assert "Traceback" not in msg and len(msg.splitlines()) == 1
    assert "layer 1 (linear): units must be a positive integer, got -4" in msg


def test_missing_spec_and_missing_record_exit_2(tmp_path, capsys):
    assert cli.main(["run", str(tmp_path / "nope.json"), "--out", str(tmp_path / "x.npz")]) == 2
    assert cli.main(["diagnose", str(tmp_path / "nope.npz")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_diagnose_json_follows_the_contract(tmp_path, capsys):
    out = tmp_path / "r.npz"
    cli.main(["run", str(PRESETS / "deep_sigmoid_vanishing.json"), "--steps", "30", "--out", str(out)])
    capsys.readouterr()
    assert cli.main(["diagnose", str(out), "--json"]) == 0
    findings = json.loads(capsys.readouterr().out)
    assert findings and {"kind", "severity", "layers", "steps", "evidence", "message", "remedies"} <= set(findings[0])
    vanishing = [f for f in findings if f["kind"] == "vanishing"]
    assert vanishing and vanishing[0]["evidence"]["ratio"] < 1e-4


def test_export_writes_a_runnable_file_with_the_same_weights(tmp_path, capsys):
    import importlib.util
    import torch
    from engine import experiment, spec as S
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
    r = subprocess.run([sys.executable, str(tmp_path / "deep_relu_he.py")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "output shape: (4, 3)" in r.stdout
