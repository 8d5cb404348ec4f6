"""History stays bounded; records round-trip with allow_pickle=False and hold Contract 2."""
import json

import numpy as np
import pytest

from engine import record
from engine.history import History
from engine.snapshot import Snapshot
from tests.conftest import train

CONTRACT_T = ["loss", "accuracy", "test_loss", "test_accuracy"]
CONTRACT_TL = ["weight_grad_norm", "bias_grad_norm", "delta_norm", "update_ratio"]
CONTRACT_TA = ["preact_mean", "preact_std", "mean_derivative", "saturated_frac", "dead_frac"]


def snap(k, L=2, A=1, U=4):
    v = np.full(L, float(k))
    a = np.full(A, float(k))
    return Snapshot(k, float(k), 0.5, np.nan, np.nan, 0.1, v, v, v, v, a, a, a, a, a, np.full(U, k, np.float32))


def test_history_is_bounded_and_keeps_recent_steps_at_full_resolution():
    h = History(["a", "b"], ["s"], [2, 2], budget_bytes=20_000, min_capacity=64)
    cap = h.capacity
    for k in range(100_000):
        h.append(snap(k))
        assert len(h) <= cap
    steps = h.steps
    assert steps[-1] == 99_999 and np.all(np.diff(steps) > 0)
    recent = steps[-cap // 4:]
    assert np.all(np.diff(recent) == 1)          # the newest rows are every step
    assert steps[0] < 1000                       # the oldest steps are still represented
    assert h.series("loss")[-1] == 99_999 and h.series("bias_grad_norm")[-1, 1] == 99_999


def test_record_round_trip_has_every_contract_key(tmp_path):
    exp, tr, h = train({"data": {"kind": "xor", "n": 100}, "model": {"layers": [
        {"type": "linear", "units": 6}, {"type": "relu"}, {"type": "linear", "units": 5, "bias": False},
        {"type": "sigmoid"}]}}, 9)
    path = tmp_path / "r.npz"
    record.save(path, h, exp.spec)
    a = np.load(path, allow_pickle=False)
    T, L, A = 9, 3, 2
    assert str(a["format"]) == "backprop-lab/run" and int(a["version"]) == 1
    assert json.loads(str(a["spec"]))["data"]["kind"] == "xor"
    assert a["step"].shape == (T,) and list(a["layer_names"]) == ["1 linear", "3 linear", "out linear"]
    assert list(a["act_names"]) == ["2 relu", "4 sigmoid"]
    for k in CONTRACT_T:
        assert a[k].shape == (T,), k
    for k in CONTRACT_TL:
        assert a[k].shape == (T, L), k
    for k in CONTRACT_TA:
        assert a[k].shape == (T, A), k
    assert np.isnan(a["bias_grad_norm"][:, 1]).all()   # "3 linear" has no bias
    h2, spec = record.load(path)
    for k in CONTRACT_T + CONTRACT_TL + CONTRACT_TA + ["neuron_grad"]:
        np.testing.assert_array_equal(h2.series(k), h.series(k), err_msg=k)
    assert spec == exp.spec


def test_loading_something_that_is_not_a_record_says_so(tmp_path):
    with pytest.raises(record.RecordError, match="no such file"):
        record.load(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(record.RecordError, match="not a run record"):
        record.load(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(2))
    with pytest.raises(record.RecordError, match="not a backprop-lab run record"):
        record.load(tmp_path / "other.npz")


def test_recurrent_record_has_time_grad_norm(tmp_path):
    exp, tr, h = train({"data": {"kind": "memory", "n": 40, "length": 6}, "model": {"layers": [
        {"type": "gru", "units": 4}]}}, 3)
    record.save(tmp_path / "r.npz", h, exp.spec)
    a = np.load(tmp_path / "r.npz", allow_pickle=False)
    assert a["time_grad_norm"].shape == (3, 6) and np.isfinite(a["time_grad_norm"]).all()
