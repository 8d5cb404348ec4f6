"""A run as a CSV table and as TensorBoard event files, read back with csv and TensorBoard's own reader."""
import csv
import math

import numpy as np
import pytest

from backprop_lab.app import cli
from backprop_lab.engine import record, rundir
from backprop_lab.engine.snapshot import Snapshot


def snap(k):
    r = np.random.default_rng(k)
    return Snapshot(k, 2.0 / (k + 1), 0.25 * (k % 4), math.nan, math.nan, 0.1, r.random(2) + 0.1, r.random(2),
                    r.random(2), r.random(2), *(r.random(1) for _ in range(5)),
                    (10.0 ** -r.uniform(1, 6, 5)).astype(np.float32), r.random(3))


@pytest.fixture
def run(tmp_path):
    w = rundir.RunWriter(tmp_path / "run", {"name": "export me"}, ["fc1 (Linear)", "fc2 (Linear)"],
                         ["fc1 -> relu (functional)"], [3, 2], flush_seconds=0)
    for k in range(0, 20, 2):
        w.add(snap(k))
    w.close()
    return tmp_path / "run"


def test_csv_is_one_tidy_table_of_every_statistic(run, tmp_path, capsys):
    assert cli.main(["export", str(run), "--csv", str(tmp_path / "out.csv")]) == 0
    h, _ = record.load(run)
    with open(tmp_path / "out.csv") as f:
        rows = list(csv.DictReader(f))
    assert set(rows[0]) == {"step", "layer", "statistic", "value"}
    # 10 steps x (5 run numbers + 4 x 2 layer stats + 5 x 1 activation stats + 3 time steps)
    assert len(rows) == 10 * (5 + 8 + 5 + 3)
    got = {(int(r["step"]), r["layer"], r["statistic"]): float(r["value"]) for r in rows}
    assert got[(4, "fc2 (Linear)", "weight_grad_norm")] == h.series("weight_grad_norm")[2, 1]
    assert got[(18, "fc1 -> relu (functional)", "dead_frac")] == h.series("dead_frac")[9, 0]
    assert got[(6, "", "loss")] == pytest.approx(2.0 / 7)
    assert got[(0, "t=2", "time_grad_norm")] == h.series("time_grad_norm")[0, 2]
    assert math.isnan(got[(0, "", "test_loss")])


def test_tensorboard_events_hold_scalars_and_histograms(run, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    assert cli.main(["export", str(run), "--tensorboard", str(tmp_path / "tb")]) == 0
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    tags = acc.Tags()
    assert "train/loss" in tags["scalars"] and "weight_grad_norm/fc1_(Linear)" in tags["scalars"]
    assert "train/test_loss" not in tags["scalars"]             # NaN everywhere: nothing written
    loss = acc.Scalars("train/loss")
    assert [e.step for e in loss] == list(range(0, 20, 2))
    assert loss[3].value == pytest.approx(2.0 / 7, rel=1e-6)
    h, _ = record.load(run)
    wg = acc.Scalars("weight_grad_norm/fc2_(Linear)")
    assert [e.value for e in wg] == pytest.approx(h.series("weight_grad_norm")[:, 1].tolist(), rel=1e-6)
    hist = acc.Histograms("log10_neuron_grad/fc1_(Linear)")
    assert len(hist) == 10 and hist[0].histogram_value.num == 3
    g = np.log10(h.neuron_grad(0)[0].astype(np.float64))
    assert hist[0].histogram_value.sum == pytest.approx(g.sum(), rel=1e-6)


def test_export_of_an_npz_record_and_clear_errors(tmp_path, run):
    h, spec = record.load(run)
    record.save(tmp_path / "r.npz", h, spec)
    assert cli.main(["export", str(tmp_path / "r.npz"), "--csv", str(tmp_path / "r.csv")]) == 0
    assert cli.main(["export", str(tmp_path / "missing.npz"), "--csv", str(tmp_path / "x.csv")]) == 2
    assert cli.main(["export", str(run)]) == 2
    assert cli.main(["export", str(run), "--stream", "rank3", "--csv", str(tmp_path / "y.csv")]) == 2
