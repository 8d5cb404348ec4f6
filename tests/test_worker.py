"""The training process's engine side: the torch-free plan, packed batches, Control, the protocol."""
import math
import multiprocessing as mp
import os

import numpy as np
import pytest

from backprop_lab.engine import spec as specmod
from backprop_lab.engine.data import make_dataset
from backprop_lab.engine.history import History
from backprop_lab.engine.plan import layout, plan
from backprop_lab.engine.snapshot import pack
from backprop_lab.engine.worker import WORKER_NICE
from tests.conftest import PRESETS, load_preset, train

PRESET_NAMES = sorted(p.stem for p in PRESETS.glob("*.json"))


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_the_torch_free_layout_is_what_the_built_probe_reports(name):
    from backprop_lab.engine import experiment
    from backprop_lab.engine.trainer import Trainer
    from backprop_lab.engine.worker import layout_of
    spec = specmod.validate(load_preset(name))
    d = make_dataset(spec["data"], PRESETS)
    layers = spec["model"]["layers"]
    predicted = layout(layers, plan(layers, d.input_shape, d.n_outputs), d.x_train.shape)
    built = layout_of(Trainer(experiment.build(spec, PRESETS)))
    assert predicted.key() == built.key()
    assert predicted.act_layers == [l for l in predicted.act_layers if l["type"] in
                                    {a["type"] for a in built.act_layers}]
    assert [a["type"] for a in predicted.act_layers] == [a["type"] for a in built.act_layers]


def test_a_residual_block_with_a_projection_and_batchnorm():
    layers = specmod.validate_layers([{"type": "linear", "units": 8}, {"type": "batchnorm"},
                                      {"type": "residual", "layers": [{"type": "linear", "units": 5},
                                                                      {"type": "tanh"}]},
                                      {"type": "layernorm"}])
    lay = layout(layers, plan(layers, (3,), 2))
    assert lay.layer_names == ["1 linear", "2 batchnorm", "3.1 linear", "3 proj", "4 layernorm", "out linear"]
    assert lay.units == [8, 8, 5, 5, 5, 2] and lay.act_names == ["3.2 tanh"]


def _snaps(spec_name: str, steps: int, hist_every: int = 3):
    snaps = []
    exp, tr, h = train(load_preset(spec_name), 0, PRESETS)
    tr.hist_every = hist_every
    tr.run(steps, on_snapshot=snaps.append)
    return tr, snaps


@pytest.mark.parametrize("name", ["deep_sigmoid_vanishing", "recurrent_rnn_vanishing"])
def test_packed_batches_give_the_history_that_single_steps_give(name):
    tr, snaps = _snaps(name, 45)
    T = snaps[0].time_grad_norm.shape[0] if snaps[0].time_grad_norm is not None else 0
    one = History.for_probe(tr.probe, time_steps=T, budget_bytes=1, min_capacity=16)  # decimates
    packed = History.for_probe(tr.probe, time_steps=T, budget_bytes=1, min_capacity=16)
    one.extend(snaps)
    for a, b in ((0, 7), (7, 8), (8, 40), (40, 45)):  # batches smaller and larger than the capacity
        packed.extend_packed(pack(snaps[a:b]))
    assert len(one) == len(packed) and one.version == packed.version
    for key in one.widths:
        np.testing.assert_array_equal(one.series(key), packed.series(key), err_msg=key)
    assert packed.latest.step == 44 and packed.latest.loss == snaps[-1].loss
    hists = [s.preact_hist for s in snaps if s.preact_hist is not None]
    if hists:  # nets with activation layers
        np.testing.assert_array_equal(packed.latest_hist, hists[-1])
    assert (packed.latest_hist is None) == (not hists)


def test_step_then_resume_then_pause_runs_no_leftover_steps():
    from backprop_lab.engine.trainer import Control
    c = Control()
    c.step(5)
    assert c.wait_turn()          # one of the five
    c.resume()
    assert c.wait_turn()          # running freely
    c.pause()
    c.stop()                      # would block forever if four steps were still owed: they are not
    assert not c.wait_turn()
    c = Control()
    c.step(3)
    c.pause()                     # pause cancels what step(3) had left
    assert c._budget == 0


# ----------------------------------------------------------------------------- the protocol
def _worker():
    from backprop_lab.engine.worker import main
    ctx = mp.get_context("spawn")
    cmd_r, cmd = ctx.Pipe(duplex=False)
    out, out_w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=main, args=(cmd_r, out_w), daemon=True)
    p.start()
    cmd_r.close()
    out_w.close()
    assert out.poll(120) and out.recv()[0] == "ready"
    return p, cmd, out


def _until(out, kind, timeout=60):
    got = []
    while out.poll(timeout):
        msg = out.recv()
        got.append(msg)
        if msg[0] == kind:
            return got
    raise AssertionError(f"no {kind!r} within {timeout} s; got {[m[0] for m in got]}")


def test_the_worker_trains_every_step_in_coalesced_batches_and_obeys_its_messages():
    spec = load_preset("deep_sigmoid_vanishing")
    p, cmd, out = _worker()
    try:
        cmd.send(("start", (spec, str(PRESETS), 4), 40, False, 1, 0.05))
        got = _until(out, "ended")
        assert got[0][0] == "built" and got[0][1].layer_names[0] == "1 linear"
        batches = [m[1] for m in got if m[0] == "batch"]
        steps = np.concatenate([b["step"] for b in batches])
        np.testing.assert_array_equal(steps, np.arange(40))            # none lost, in order
        assert len(batches) <= 40 and got[-1][1] == "finished" and got[-1][3] == 40
        assert all(np.all(b["lr"] == 0.05) for b in batches)            # the lr sent with start
        # the same model goes on; paused with a budget of 3, then ping: exactly 3 steps were made
        cmd.send(("start", None, 40, True, 3, None))
        last = _until(out, "batch")[-1][1]["step"][-1]
        while last < 42:
            last = _until(out, "batch")[-1][1]["step"][-1]
        cmd.send(("ping", 1))
        assert _until(out, "pong")[-1][2] == 43        # the budget's last step was sent at once, no more made
        cmd.send(("step", 2))
        got = _until(out, "batch")
        while got[-1][1]["step"][-1] < 44:
            got = _until(out, "batch")
        cmd.send(("step", 10**6))                      # owed steps, then run freely, then pause:
        cmd.send(("resume",))
        cmd.send(("pause",))
        cmd.send(("ping", 2))
        got = _until(out, "pong")
        made = got[-1][2]
        cmd.send(("ping", 3))
        assert _until(out, "pong")[-1][2] == made      # paused: none of the owed steps runs
        mine = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, p.pid) == min(mine + WORKER_NICE, 19)   # the GUI thread goes first
        cmd.send(("threads", 1))                       # the window's share of the cores, mid-run
        cmd.send(("ping", 4))
        assert _until(out, "pong")[-1][3] == 1
        cmd.send(("lr", 0.2))
        cmd.send(("stop",))
        got = _until(out, "ended")
        assert got[-1][1] == "stopped by the user"
        cmd.send(("quit",))
        p.join(10)
        assert p.exitcode == 0
    finally:
        if p.is_alive():
            p.kill()


def test_a_custom_models_plan_and_its_failure_come_back_with_the_traceback(tmp_path):
    (tmp_path / "net.py").write_text(
        "import torch\nfrom torch import nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.a = nn.Linear(2, 8)\n"
        "        self.s = nn.Tanh()\n        self.b = nn.Linear(8, 3)\n        self.n = 0\n"
        "    def forward(self, x):\n"
        "        if self.training:\n            self.n += 1\n"
        "            if self.n == 4:\n                raise ValueError('broken on purpose')\n"
        "        return self.b(self.s(self.a(x)))\n")
    spec = {"data": {"kind": "spirals", "n": 60, "test_fraction": 0},
            "model": {"python": "net.py", "class": "Net"}, "train": {"steps": 10}}
    p, cmd, out = _worker()
    try:
        cmd.send(("plan", 7, spec, str(tmp_path)))
        _, token, infos, lay, desc, problem = _until(out, "plan")[-1]
        assert token == 7 and problem is None and "spirals" in desc
        assert lay.layer_names == ["a (Linear)", "b (Linear)"] and lay.act_names == ["s (Tanh)"]
        cmd.send(("start", (spec, str(tmp_path), 0), 10, False, 1, None))
        end = _until(out, "ended")[-1]
        assert end[1].startswith("failed at step 3: ValueError: broken on purpose")
        assert "net.py" in end[2] and "raise ValueError" in end[2]     # the user's traceback
        cmd.send(("quit",))
        p.join(10)
    finally:
        if p.is_alive():
            p.kill()


def test_lr_must_be_positive_and_finite_or_it_is_refused():
    from backprop_lab.app.session import Session
    s = Session()
    errors = []
    s.error.connect(errors.append)
    before = s.spec["train"]["lr"]
    for bad in (0.0, -0.1, math.nan, math.inf, "x"):
        assert not s.set_lr(bad)
    assert s.spec["train"]["lr"] == before and len(errors) == 5 and "positive" in errors[0]
    assert s.set_lr(0.3) and s.spec["train"]["lr"] == 0.3
