"""The window follows a live run directory: every row as it is written, per rank stream."""
import dataclasses

import numpy as np
import pytest

from backprop_lab.engine import rundir
from backprop_lab.engine.snapshot import Snapshot


def snap(k):
    r = np.random.default_rng(k)
    return Snapshot(k, 1.0 / (k + 1), 0.5, np.nan, np.nan, 0.1, *(r.random(2) for _ in range(4)),
                    *(r.random(1) for _ in range(5)), r.random(5).astype(np.float32))


def writer(path, stream="main"):
    return rundir.RunWriter(path, {"name": "watched net"}, ["fc1 (Linear)", "fc2 (Linear)"], ["act (Tanh)"],
                            [3, 2], stream=stream, flush_seconds=0)


def test_the_window_follows_new_rows_of_a_live_run(qtbot, window, tmp_path):
    w = writer(tmp_path / "run")
    for k in range(5):
        w.add(snap(k))
    window.watch_directory(str(tmp_path / "run"))
    assert len(window.session.history) == 5 and window.session.history.layer_names[0] == "fc1 (Linear)"
    for k in range(5, 12):
        w.add(snap(k))
    qtbot.waitUntil(lambda: len(window.session.history) == 12, timeout=5000)
    assert list(window.session.history.steps) == list(range(12))
    assert window.session.history.series("weight_grad_norm")[11] == pytest.approx(snap(11).weight_grad_norm)
    w.close()
    qtbot.waitUntil(lambda: window.session.history.stop_reason == "finished", timeout=5000)


def test_the_watcher_lists_rank_streams_and_switches(qtbot, window, tmp_path):
    w0, w1 = writer(tmp_path / "run", "rank0"), writer(tmp_path / "run", "rank1")
    for k in range(3):
        w0.add(snap(k))
    for k in range(7):
        w1.add(snap(k))
    w0.close(), w1.close()
    window.watch_directory(str(tmp_path / "run"))
    watcher = window._watch
    assert watcher.streams() == ["rank0", "rank1"] and len(window.session.history) == 3
    picker = window._rank_picker
    assert picker.isVisibleTo(window) and [picker.itemText(i) for i in range(picker.count())] == ["rank0", "rank1"]
    picker.setCurrentIndex(1)
    picker.activated.emit(1)          # as a user's pick does
    assert watcher.stream == "rank1" and len(window.session.history) == 7
    w2 = writer(tmp_path / "run", "rank2")    # a rank that starts late appears in the picker
    w2.add(snap(0))
    w2.close()
    qtbot.waitUntil(lambda: picker.count() == 3, timeout=5000)
    assert picker.currentText() == "rank1"


def test_a_single_stream_hides_the_picker_and_the_menu_offers_watching(qtbot, window, tmp_path):
    w = writer(tmp_path / "run")
    w.add(snap(0))
    w.close()
    window.watch_directory(str(tmp_path / "run"))
    assert not window._rank_picker.isVisibleTo(window)
    texts = [a.text() for a in window.menuBar().actions()[0].menu().actions()]
    assert "&Watch run directory…" in texts


def test_the_app_exports_the_shown_run_as_csv_and_tensorboard(qtbot, window, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog
    w = writer(tmp_path / "run")
    for k in range(4):
        w.add(snap(k))
    w.close()
    window.watch_directory(str(tmp_path / "run"))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(tmp_path / "out.csv"), ""))
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(tmp_path / "tb"))
    window.actions.export_csv()
    window.actions.export_tensorboard()
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0] == "step,layer,statistic,value" and len(lines) == 1 + 4 * (5 + 8 + 5)
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tb").iterdir())


def test_the_window_shows_the_newest_histogram_of_z_of_a_watched_run(qtbot, window, tmp_path):
    from backprop_lab.engine.snapshot import HIST_BINS
    w = writer(tmp_path / "run")
    hists = [np.random.default_rng(k).integers(0, 9, (1, HIST_BINS)).astype(np.float32) for k in range(2)]
    for k in range(4):
        w.add(dataclasses.replace(snap(k), preact_hist=hists[0] if k == 0 else None))
    window.watch_directory(str(tmp_path / "run"))
    np.testing.assert_array_equal(window.session.history.latest_hist, hists[0])
    w.add(dataclasses.replace(snap(4), preact_hist=hists[1]))
    qtbot.waitUntil(lambda: len(window.session.history) == 5, timeout=5000)
    np.testing.assert_array_equal(window.session.history.latest_hist, hists[1])
    shown = window.activation.histogram()   # what the activation panel draws: shares per bin
    assert shown is not None and np.allclose(shown[1], hists[1][0] / hists[1][0].sum())
    w.close()
