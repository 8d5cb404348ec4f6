"""The live run directory: append-only, readable after kill -9, never executes code."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from backprop_lab.engine import record, rundir
from backprop_lab.engine.snapshot import Snapshot


def snap(k, L=2, A=1, U=5, S=0):
    r = np.random.default_rng(k)
    return Snapshot(k, float(k), 0.5, np.nan, np.nan, 0.1, *(r.random(L) for _ in range(4)),
                    *(r.random(A) for _ in range(5)), r.random(U).astype(np.float32),
                    r.random(S) if S else None)


def write(tmp_path, n, **kw):
    w = rundir.RunWriter(tmp_path / "run", {"name": "t"}, ["a", "b"], ["t"], [3, 2], **kw)
    snaps = [snap(k, S=kw.get("extra", {}).get("S", 0)) for k in range(n)]
    for s in snaps:
        w.add(s)
    return w, snaps


def test_rows_round_trip_into_a_history_with_contract_2_keys(tmp_path):
    w, snaps = write(tmp_path, 10, flush_seconds=0)
    w.close()
    h, spec = record.load(tmp_path / "run")
    assert len(h) == 10 and h.stop_reason == "finished" and spec["name"] == "t"
    for key in ("weight_grad_norm", "delta_norm", "update_ratio", "preact_mean", "dead_frac"):
        assert np.array_equal(h.series(key), np.stack([getattr(s, key) for s in snaps]))
    assert np.array_equal(h.series("neuron_grad"), np.stack([s.neuron_grad for s in snaps]))
    assert set(os.listdir(tmp_path / "run")) == {"main.json", "main.rows"}


def test_a_reader_sees_flushed_rows_while_the_writer_runs_and_ignores_a_torn_row(tmp_path):
    w, _ = write(tmp_path, 5, flush_seconds=1e9)   # the first row flushes at once, then buffered
    reader = rundir.RunReader(tmp_path / "run")
    assert len(reader.poll()) == 1
    w.flush()
    assert list(reader.poll()["step"]) == [1, 2, 3, 4]
    with open(tmp_path / "run" / "main.rows", "ab") as f:   # half a row, as a killed write would leave
        f.write(b"\0" * (reader.dtype.itemsize // 2))
    assert len(reader.poll()) == 0 and len(record.load(tmp_path / "run")[0]) == 5
    w.close()


def test_a_header_cannot_make_the_reader_run_code_or_read_objects(tmp_path):
    w, _ = write(tmp_path, 2, flush_seconds=0)
    w.close()
    path = tmp_path / "run" / "main.json"
    h = json.loads(path.read_text())
    h["row_layout"][1][1] = "|O"                     # an object column: refused
    path.write_text(json.dumps(h))
    with pytest.raises(record.RecordError, match="type '|O'"):
        record.load(tmp_path / "run")


def test_a_long_run_loads_thinned_evenly_within_the_memory_budget(tmp_path):
    w = rundir.RunWriter(tmp_path / "run", {}, ["a"], [], [1])
    for k in range(3000):
        w.add(snap(k, L=1, A=0, U=1))
    w.close()
    h, _ = rundir.load(tmp_path / "run")
    assert len(h) == 3000
    w2 = rundir.RunReader(tmp_path / "run")
    h2 = w2.new_history()
    idx = rundir._pick(3000, 1000)
    assert len(idx) <= 1000 and idx[0] == 0 and idx[-1] == 2999 and h2.capacity > 0


CHILD = textwrap.dedent("""
    import sys, torch, torch.nn.functional as F
    from torch import nn
    from backprop_lab import Watch
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    w = Watch(model, sys.argv[1], flush_seconds=0.05)
    k = 0
    while True:
        w.begin()
        out = model(x)
        loss = F.cross_entropy(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        w.step(loss, out, y)
        k += 1
        print(k, w.writer.rows_written, flush=True)
""")


def test_a_writer_killed_with_sigkill_loses_at_most_one_flush_interval_and_leaves_no_stray_file(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    run = tmp_path / "run"
    p = subprocess.Popen([sys.executable, str(script), str(run)], stdout=subprocess.PIPE, text=True)
    flushes, last = set(), None
    try:
        for line in p.stdout:
            steps, written = map(int, line.split())
            flushes.add(written)
            last = (steps, written)
            if len(flushes) >= 4 and steps >= 300:
                break
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        rest = p.stdout.read().split("\n")   # what it printed up to its death
        p.stdout.close()
    assert p.returncode == -signal.SIGKILL
    complete = [line for line in rest[:-1] if line]
    steps, written = map(int, complete[-1].split()) if complete else last
    h, _ = record.load(run)
    # everything flushed before the kill is there; what is lost was still in the buffer
    assert written <= len(h) <= steps + 1
    assert list(h.steps) == list(range(len(h)))
    assert set(os.listdir(run)) == {"main.json", "main.rows", "main.hist"}   # (the histograms of z)
    reader = rundir.RunReader(run)
    hist_steps = list(reader.read_hists()["step"])
    assert hist_steps == list(range(0, 10 * len(hist_steps), 10)) and hist_steps[-1] >= written - 1 - 10
    assert h.stop_reason is None   # killed: no reason was written


def test_histograms_of_z_are_appended_with_the_rows_and_read_back(tmp_path):
    from backprop_lab.engine.snapshot import HIST_BINS
    w = rundir.RunWriter(tmp_path / "run", {"name": "t"}, ["a", "b"], ["t", "r"], [3, 2], flush_seconds=1e9)
    hists = {}
    for k in range(7):
        s = snap(k, A=2)
        if k % 3 == 0:
            hists[k] = np.random.default_rng(k).integers(0, 50, (2, HIST_BINS)).astype(np.float32)
            s = dataclasses.replace(s, preact_hist=hists[k])
        w.add(s)
    reader = rundir.RunReader(tmp_path / "run")
    assert list(reader.read_hists()["step"]) == [0]    # the first row flushed at once, with its histogram
    w.flush()
    got = reader.read_hists()
    assert list(got["step"]) == [0, 3, 6] and all(np.array_equal(got["preact_hist"][i], hists[k])
                                                  for i, k in enumerate((0, 3, 6)))
    assert np.array_equal(reader.latest_hist(5), hists[3]) and reader.latest_hist(-1) is None
    with open(tmp_path / "run" / "main.hist", "ab") as f:   # half a row, as a killed write would leave
        f.write(b"\0" * (reader.hist_dtype.itemsize // 2))
    assert reader.hists_available() == 3
    w.close()
    h, _ = record.load(tmp_path / "run")
    assert np.array_equal(h.latest_hist, hists[6])
    # a stream without histograms (an older writer's header): none, and no error
    header = json.loads((tmp_path / "run" / "main.json").read_text())
    for k in ("hist_layout", "hist_bytes", "hist_range"):
        del header[k]
    (tmp_path / "run" / "main.json").write_text(json.dumps(header))
    assert rundir.load(tmp_path / "run")[0].latest_hist is None
