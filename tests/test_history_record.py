"""History stays bounded however long a run goes; records round-trip without pickles (Contract 2)."""
import json

import numpy as np
import pytest

from backprop_lab.engine import record
from backprop_lab.engine.history import History
from backprop_lab.engine.snapshot import Snapshot
from tests.conftest import train

SCALAR_KEYS = ["loss", "accuracy", "test_loss", "test_accuracy"]
LAYER_KEYS = ["weight_grad_norm", "bias_grad_norm", "delta_norm", "update_ratio"]
ACT_KEYS = ["preact_mean", "preact_std", "mean_derivative", "saturated_frac", "dead_frac"]


def snap(k, L=2, A=1, U=4, S=None):
    v, a = np.full(L, float(k)), np.full(A, float(k))
    t = None if S is None else np.full(S, float(k))
    return Snapshot(k, float(k), 0.5, np.nan, np.nan, 0.1, v, v, v, v, a, a, a, a, a, np.full(U, k, np.float32), t)


# ----------------------------------------------------------------------------- history
def test_history_is_bounded_and_keeps_recent_steps_at_full_resolution():
    h = History(["a", "b"], ["s"], [2, 2], budget_bytes=20_000, min_capacity=64)
    cap, size = h.capacity, h.nbytes()
    assert 64 <= cap <= 20_000 // 8
    longest = 0
    for k in range(100_000):
        h.append(snap(k))
        longest = max(longest, len(h))
    assert longest <= cap and h.nbytes() == size           # never grows past its budget
    steps = h.steps
    assert steps[-1] == 99_999 and steps[0] == 0 and np.all(np.diff(steps) > 0)
    assert np.all(np.diff(steps[-(cap // 2):]) == 1)       # the newest half: every step
    gaps = np.diff(steps)
    assert np.all(np.diff(gaps) <= 0)                      # going back in time rows only get sparser
    # ... but evenly: the whole run stays represented, not just step 0 and the last few hundred
    assert gaps.max() <= 8 * 100_000 / cap, gaps[:5]
    assert np.count_nonzero(steps < 50_000) >= cap // 16
    # every stored row still belongs to its step after all the thinning
    for key in ["loss"] + LAYER_KEYS + ACT_KEYS:
        col = h.series(key)
        assert np.array_equal(col if col.ndim == 1 else col[:, 0], steps.astype(float)), key
    assert np.array_equal(h.neuron_grad(1)[:, 1], steps.astype(np.float32))


def test_history_rows_and_neuron_slices():
    h = History(["a", "b"], ["s"], [3, 2], time_steps=5)
    h.append(snap(0, U=5, S=5))
    h.append(snap(1, U=5, S=4))                             # a batch of another length
    assert len(h) == 2 and h.series("delta_norm").shape == (2, 2) and h.neuron_grad(0).shape == (2, 3)
    assert h.series("time_grad_norm")[0].tolist() == [0.0] * 5 and np.isnan(h.series("time_grad_norm")[1]).all()
    assert h.latest.step == 1 and h.version == 2


# ----------------------------------------------------------------------------- record
def small_run(steps=9):
    return train({"data": {"kind": "xor", "n": 100}, "model": {"layers": [
        {"type": "linear", "units": 6}, {"type": "relu"}, {"type": "linear", "units": 5, "bias": False},
        {"type": "sigmoid"}]}}, steps)


def test_record_holds_every_contract_key_with_its_shape(tmp_path):
    exp, tr, h = small_run()
    path = tmp_path / "r.npz"
    record.save(path, h, exp.spec)
    assert [p.name for p in tmp_path.iterdir()] == ["r.npz"]   # written then renamed, no part left
    a = np.load(path, allow_pickle=False)
    T, L, A = 9, 3, 2
    assert str(a["format"]) == "backprop-lab/run" and int(a["version"]) == 1
    assert json.loads(str(a["spec"])) == exp.spec
    assert a["step"].dtype == np.int64 and a["step"].tolist() == list(range(T))
    assert a["layer_names"].dtype.kind == "U" and a["layer_names"].tolist() == ["1 linear", "3 linear", "out linear"]
    assert a["act_names"].tolist() == ["2 relu", "4 sigmoid"]
    for k in SCALAR_KEYS:
        assert a[k].shape == (T,), k
    for k in LAYER_KEYS:
        assert a[k].shape == (T, L) and a[k].dtype.kind == "f", k
    for k in ACT_KEYS:
        assert a[k].shape == (T, A), k
    assert "time_grad_norm" not in a.files
    assert np.isnan(a["bias_grad_norm"][:, 1]).all() and np.isfinite(a["bias_grad_norm"][:, [0, 2]]).all()
    assert a["neuron_grad"].shape == (T, 6 + 5 + 2) and a["layer_units"].tolist() == [6, 5, 2]


def test_record_round_trip_gives_the_same_history_and_spec(tmp_path):
    exp, tr, h = small_run()
    h.stop_reason = "stopped by the user"
    record.save(tmp_path / "r.npz", h, exp.spec)
    h2, spec = record.load(tmp_path / "r.npz")
    for k in ["step", "lr", "neuron_grad"] + SCALAR_KEYS + LAYER_KEYS + ACT_KEYS:
        np.testing.assert_array_equal(h2.series(k), h.series(k), err_msg=k)
    assert h2.layer_names == h.layer_names and h2.act_names == h.act_names and h2.units == h.units
    assert h2.stop_reason == "stopped by the user" and spec == {**exp.spec, "stopped": "stopped by the user"}
    h2.append(snap(9, L=3, A=2, U=13))                     # a loaded record can grow (the watch view)
    assert h2.steps.tolist() == list(range(10))


def test_a_decimated_history_records_the_steps_it_kept(tmp_path):
    h = History(["a", "b"], ["s"], [2, 2], budget_bytes=1, min_capacity=16)
    for k in range(50):
        h.append(snap(k))
    record.save(tmp_path / "r.npz", h, {"name": "x"})
    a = np.load(tmp_path / "r.npz", allow_pickle=False)
    assert a["step"].tolist() == h.steps.tolist() and len(a["step"]) < 50 and a["loss"].tolist() == a["step"].tolist()


def test_recurrent_record_has_time_grad_norm_per_time_step(tmp_path):
    exp, tr, h = train({"data": {"kind": "memory", "n": 40, "length": 6}, "model": {"layers": [
        {"type": "gru", "units": 4}]}}, 3)
    record.save(tmp_path / "r.npz", h, exp.spec)
    a = np.load(tmp_path / "r.npz", allow_pickle=False)
    assert a["time_grad_norm"].shape == (3, 6) and np.isfinite(a["time_grad_norm"]).all()
    assert a["act_names"].shape == (0,) and a["preact_mean"].shape == (3, 0)
    h2, _ = record.load(tmp_path / "r.npz")
    np.testing.assert_array_equal(h2.series("time_grad_norm"), a["time_grad_norm"])


def test_loading_something_that_is_not_a_record_says_so(tmp_path):
    with pytest.raises(record.RecordError, match="no such file"):
        record.load(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(record.RecordError, match="not a run record"):
        record.load(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(2))
    with pytest.raises(record.RecordError, match="not a backprop-lab run record"):
        record.load(tmp_path / "other.npz")
