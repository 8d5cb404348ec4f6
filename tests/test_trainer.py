"""Training: determinism, stopping on a non-finite loss, and thread-safe control.

Thread tests wait on threading.Event / Thread.join with timeouts, never on sleep."""
import json
import math
import threading
import time

import numpy as np
import pytest
import torch

from backprop_lab.app import cli
from backprop_lab.engine import experiment
from backprop_lab.engine.history import History
from backprop_lab.engine.trainer import FINISHED, STOPPED, Control, Trainer
from tests.conftest import train

SMALL = {"data": {"kind": "spirals", "n": 200}, "model": {"layers": [
    {"type": "linear", "units": 16}, {"type": "tanh"}, {"type": "dropout", "p": 0.2},
    {"type": "linear", "units": 8}, {"type": "relu"}]},
    "train": {"batch_size": 32, "eval_every": 3}}

# SGD with lr 10 on an mse ReLU net: the loss grows for four steps and is inf at step 4
DIVERGING = {"data": {"kind": "gaussian", "n": 64, "dim": 4, "test_fraction": 0}, "model": {"layers": [
    {"type": "linear", "units": 16}, {"type": "relu"}, {"type": "linear", "units": 16}, {"type": "relu"}]},
    "train": {"batch_size": None, "lr": 10.0, "loss": "mse"}}

WAIT = 30  # seconds: generous bounds for a busy machine; a passing run never waits this long


def arrays(h):
    return {k: h.series(k).copy() for k in h.widths}


def assert_same_history(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)   # NaN == NaN, otherwise bit for bit


# ----------------------------------------------------------------------------- determinism
def test_same_spec_and_seed_give_the_same_history_bit_for_bit_and_another_seed_differs():
    a = arrays(train(SMALL, 20)[2])
    b = arrays(train(SMALL, 20)[2])
    assert_same_history(a, b)
    c = arrays(train(SMALL, 20, seed=9)[2])
    assert not np.array_equal(a["loss"], c["loss"]) and not np.array_equal(a["bias_grad_norm"], c["bias_grad_norm"])


def test_cli_records_of_the_same_seed_are_identical(tmp_path, capsys):
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps(SMALL))
    paths = [tmp_path / f"{k}.npz" for k in range(3)]
    for p, seed in zip(paths, (4, 4, 5)):
        assert cli.main(["run", str(spec), "--steps", "8", "--out", str(p), "--seed", str(seed)]) == 0
    a, b, c = (np.load(p, allow_pickle=False) for p in paths)
    assert a.files == b.files
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert not np.array_equal(a["loss"], c["loss"])


def test_a_run_in_a_worker_thread_equals_a_run_in_the_main_thread():
    main = arrays(train(SMALL, 12)[2])
    exp = experiment.build(SMALL)
    tr = Trainer(exp)
    h = History.for_probe(tr.probe)
    result = []
    th = threading.Thread(target=lambda: result.append(tr.run(12, on_snapshot=h.append)))
    th.start()
    th.join(WAIT)
    assert not th.is_alive() and result == [FINISHED]
    assert_same_history(main, arrays(h))


# ----------------------------------------------------------------------------- the loop
def test_run_does_the_asked_steps_and_a_second_run_continues_the_count():
    exp, tr, h = train(SMALL, 7)
    assert h.stop_reason == FINISHED and h.steps.tolist() == list(range(7)) and tr.step_index == 7
    assert tr.run(3, on_snapshot=h.append) == FINISHED
    assert h.steps.tolist() == list(range(10))


def test_test_metrics_every_eval_every_steps_and_nan_between():
    h = train(SMALL, 7)[2]
    tl, ta = h.series("test_loss"), h.series("test_accuracy")
    assert np.isfinite(tl[[0, 3, 6]]).all() and np.isnan(tl[[1, 2, 4, 5]]).all()
    assert np.all((ta[[0, 3, 6]] >= 0) & (ta[[0, 3, 6]] <= 1))


def test_evaluation_is_in_eval_mode_and_leaves_training_mode_on():
    exp = experiment.build(SMALL)
    tr = Trainer(exp)
    first = tr.evaluate()
    assert tr.evaluate() == first                 # dropout is off: the same number twice
    assert tr.module.training
    assert math.isnan(Trainer(experiment.build({**SMALL, "data": {"kind": "spirals", "n": 50,
                                                                  "test_fraction": 0}})).evaluate()[0])


def test_minibatches_cover_each_epoch_once_and_drop_the_short_tail():
    spec = {**SMALL, "data": {"kind": "gaussian", "n": 100, "dim": 2, "test_fraction": 0}}
    tr = Trainer(experiment.build({**spec, "train": {"batch_size": 30}}))
    epochs = []
    for _ in range(2):
        rows = [tuple(r.tolist()) for _ in range(3) for r in tr._next_batch()[0]]
        epochs.append(rows)
    assert all(len(set(e)) == 90 for e in epochs)          # 3 batches of 30 distinct samples, 10 left out
    assert epochs[0] != epochs[1]                          # reshuffled each epoch


def test_learning_reduces_the_loss_on_an_easy_task():
    spec = {"data": {"kind": "blobs", "n": 300, "std": 0.5}, "model": {"layers": [
        {"type": "linear", "units": 16}, {"type": "relu"}]}, "train": {"batch_size": None, "lr": 0.1}}
    loss = train(spec, 60)[2].series("loss")
    assert loss[-1] < 0.5 * loss[0]


# ----------------------------------------------------------------------------- non-finite loss
def test_a_non_finite_loss_stops_the_run_with_a_reason_and_keeps_every_earlier_step():
    exp, tr, h = train(DIVERGING, 100)
    assert h.stop_reason == "loss became inf at step 4; first non-finite: the loss (every layer's output was finite)"
    loss = h.series("loss")
    assert h.steps.tolist() == [0, 1, 2, 3, 4] and np.isfinite(loss[:4]).all() and loss[4] == np.inf
    assert np.isfinite(h.series("update_ratio")[:4]).all() and np.isnan(h.series("update_ratio")[4]).all()
    # the step that showed it made no update: the weights are still finite
    assert all(torch.isfinite(p).all() for p in exp.model.module.parameters())


def test_a_non_finite_loss_is_in_the_record_and_its_spec(tmp_path, capsys):
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps(DIVERGING))
    out = tmp_path / "r.npz"
    assert cli.main(["run", str(spec), "--steps", "100", "--out", str(out)]) == 0
    a = np.load(out, allow_pickle=False)
    assert str(a["stop_reason"]).startswith("loss became inf at step 4; first non-finite: the loss")
    assert json.loads(str(a["spec"]))["stopped"].startswith("loss became inf at step 4; first non-finite: the loss")
    assert a["step"].tolist() == [0, 1, 2, 3, 4] and np.isfinite(a["loss"][:4]).all()
    assert "loss became inf at step 4" in capsys.readouterr().out


# ----------------------------------------------------------------------------- control
class Worker:
    """Trainer.run in a thread; records snapshots and signals when a count is reached."""

    def __init__(self, spec=SMALL, steps=10_000_000):
        self.trainer = Trainer(experiment.build(spec))
        self.control = Control()
        self.snaps, self.result, self.returned_at = [], [], None
        self._want, self._reached = 0, threading.Event()
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, args=(steps,), daemon=True)

    def _run(self, steps):
        try:
            self.result.append(self.trainer.run(steps, self.control, self._on_snapshot))
        finally:
            self.returned_at = time.perf_counter()

    def _on_snapshot(self, s):
        with self._lock:
            self.snaps.append(s)
            if len(self.snaps) >= self._want:
                self._reached.set()

    def start(self):
        self.thread.start()
        return self

    def wait_for(self, n):
        with self._lock:
            self._want = n
            if len(self.snaps) >= n:
                return True
            self._reached.clear()
        return self._reached.wait(WAIT)

    def finish(self):
        self.control.stop()
        self.thread.join(WAIT)
        assert not self.thread.is_alive()
        return self.result[0]


def test_pause_blocks_the_loop_until_resumed():
    w = Worker()
    w.control.pause()
    w.start()
    w.thread.join(0.3)                     # give it a chance to (wrongly) make a step
    assert w.thread.is_alive() and w.snaps == []
    w.control.resume()
    assert w.wait_for(3)
    w.control.pause()
    assert w.finish() == STOPPED


def test_step_n_does_exactly_n_steps_then_waits():
    w = Worker()
    w.control.step(3)
    w.start()
    assert w.wait_for(3)
    w.thread.join(0.3)
    assert len(w.snaps) == 3 and w.control.paused
    w.control.step(2)
    assert w.wait_for(5)
    w.thread.join(0.3)
    assert [s.step for s in w.snaps] == [0, 1, 2, 3, 4]
    assert w.finish() == STOPPED and len(w.snaps) == 5


def test_set_lr_takes_effect_at_the_next_step():
    w = Worker()
    w.control.step(2)
    w.start()
    assert w.wait_for(2)
    lin = w.trainer.module[0]
    before = float(lin.weight.detach().norm())   # the worker is parked: reading is safe
    w.control.set_lr(0.0123)
    w.control.step(1)
    assert w.wait_for(3)
    s = w.snaps[2]
    assert [x.lr for x in w.snaps] == [0.1, 0.1, 0.0123] and w.trainer.lr == 0.0123
    # plain SGD: ||dW|| / ||W|| = lr ||dL/dW|| / ||W||, so the update used the new rate
    assert s.update_ratio[0] == pytest.approx(0.0123 * s.weight_grad_norm[0] / before, rel=1e-4)
    w.finish()


def test_set_lr_while_running_applies_from_the_following_step():
    w = Worker()
    original = w._on_snapshot

    def on_snapshot(s):
        if s.step == 4:
            w.control.set_lr(0.02)   # from inside the loop, as a GUI signal arriving mid-step would
        original(s)
    w._on_snapshot = on_snapshot
    w.start()
    assert w.wait_for(8)
    w.finish()
    lrs = [s.lr for s in w.snaps]
    assert lrs[:5] == [0.1] * 5 and set(lrs[5:]) == {0.02}


def test_stop_is_prompt_from_a_worker_thread():
    w = Worker(spec={**SMALL, "train": {"batch_size": None}}).start()
    assert w.wait_for(3)
    t0 = time.perf_counter()
    assert w.finish() == STOPPED
    latency = w.returned_at - t0
    print(f"stop latency {latency * 1000:.1f} ms")
    assert latency < 2.0, f"stop took {latency:.3f} s"   # design target 0.5 s; slack for a busy machine


def test_stop_while_paused_is_prompt():
    w = Worker()
    w.control.pause()
    w.start()
    w.thread.join(0.2)
    t0 = time.perf_counter()
    assert w.finish() == STOPPED
    latency = w.returned_at - t0
    print(f"stop latency while paused {latency * 1000:.1f} ms")
    assert latency < 2.0 and w.snaps == []


def test_control_commands_from_many_threads_do_not_lose_steps():
    w = Worker()
    w.control.pause()
    w.start()
    threads = [threading.Thread(target=w.control.step, args=(1,)) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert w.wait_for(20)
    w.thread.join(0.3)
    assert len(w.snaps) == 20
    w.finish()
