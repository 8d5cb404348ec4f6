"""The main window, driven as a user would: presets, run, stop, edit, remedies, exit."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPoint, Qt
from PySide6.QtGui import QDropEvent

from tests.conftest import PRESETS, ROOT


def run_preset(qtbot, w, name, steps):
    assert w.open_spec_file(PRESETS / f"{name}.json")
    w.session.spec["train"]["steps"] = steps
    with qtbot.waitSignal(w.session.run_ended, timeout=120_000):
        w.session.start()


def test_title_names_the_spec(window):
    window.open_spec_file(PRESETS / "deep_relu_he.json")
    assert window.windowTitle().startswith("Backprop Lab") and "He init" in window.windowTitle()


def test_a_run_fills_the_heatmap_for_every_layer_and_the_diagnosis(qtbot, window):
    run_preset(qtbot, window, "deep_sigmoid_vanishing", 60)
    h = window.session.history
    assert len(h) == 60
    window._refresh(force_diagnosis=True)
    img = window.heatmap.image.image
    assert img.shape == (len(h.layer_names), 60)
    assert np.isfinite(img).all(axis=1).all()  # every layer has data at every step
    np.testing.assert_allclose(img[0, 5], np.log10(h.series("bias_grad_norm")[5, 0]), rtol=1e-6)
    assert "layer 1 linear, step 5" in window.heatmap.readout_text(0, 5)
    assert window.diagnosis.cards and window.diagnosis.cards[0].finding.kind == "vanishing"
    assert window.status_labels["step"].text() == "step 59"


def test_step_pause_and_stop_mid_run(qtbot, window):
    window.open_spec_file(PRESETS / "deep_relu_he.json")
    window.session.step(1)
    qtbot.waitUntil(lambda: window.session.history is not None and len(window.session.history) == 1, timeout=120_000)
    assert window.session.state == "paused"
    window.session.spec["train"]["steps"] = 100_000
    window.session.start()
    qtbot.waitUntil(lambda: len(window.session.history) > 5, timeout=120_000)
    t0 = time.monotonic()
    window.session.stop()
    assert time.monotonic() - t0 < 2.0 and not window.session.running


def test_closing_mid_run_stops_the_worker(qtbot, qsettings):
    from backprop_lab.app.main_window import MainWindow
    w = MainWindow(settings=qsettings)
    qtbot.addWidget(w)
    w.show()
    w.open_spec_file(PRESETS / "deep_relu_he.json")
    w.session.spec["train"]["steps"] = 100_000
    w.session.start()
    qtbot.waitUntil(lambda: len(w.session.history) > 3, timeout=120_000)
    t0 = time.monotonic()
    w.close()
    assert not w.session.running and time.monotonic() - t0 < 2.0


def test_dropping_a_layer_from_the_palette_rebuilds_the_model_and_undo_restores(qtbot, window):
    window.open_spec_file(PRESETS / "deep_relu_he.json")
    before = len(window.session.spec["model"]["layers"])
    pal = window.palette.model
    mime = pal.mimeData([pal.index_of("tanh")])
    view = window.stack.tree.viewport()
    event = QDropEvent(QPoint(10, view.height() - 5), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    window.stack.tree.dropEvent(event)
    layers = window.session.spec["model"]["layers"]
    assert len(layers) == before + 1 and [l["type"] for l in layers].count("tanh") == 1
    assert layers == window.stack.layers()
    assert any(n.endswith("tanh") for n in window.session.history.act_names)  # the model was rebuilt
    window.actions.undo.trigger()
    assert len(window.session.spec["model"]["layers"]) == before


def test_a_remedy_is_one_undoable_edit(qtbot, window):
    window.open_spec_file(PRESETS / "deep_sigmoid_vanishing.json")
    window.apply_remedy("relu_he")
    types = {l["type"] for l in window.session.spec["model"]["layers"]}
    assert "sigmoid" not in types and "relu" in types
    assert [l["type"] for l in window.stack.layers()].count("relu") == 10
    window.actions.undo.trigger()
    assert "sigmoid" in {l["type"] for l in window.session.spec["model"]["layers"]}


def test_editing_is_refused_while_training(qtbot, window):
    window.open_spec_file(PRESETS / "deep_relu_he.json")
    window.session.spec["train"]["steps"] = 100_000
    window.session.start()
    qtbot.waitUntil(lambda: len(window.session.history) > 1, timeout=120_000)
    n = len(window.session.spec["model"]["layers"])
    assert not window.stack.append_layer("relu")
    assert len(window.session.spec["model"]["layers"]) == n
    window.session.stop()


def test_selecting_a_heatmap_row_selects_the_layer_everywhere(qtbot, window):
    run_preset(qtbot, window, "deep_sigmoid_vanishing", 5)
    window._select_layer_index(2)  # "5 linear"
    assert window.stack.current_path() == (5,)
    assert window.neurons.layer == 2 and window.heatmap.selected == 2
    assert window.activation.index == 2  # "6 sigmoid", the activation after it


def test_save_and_open_a_run_record(qtbot, window, tmp_path):
    run_preset(qtbot, window, "deep_relu_he", 8)
    path = tmp_path / "run.npz"
    assert window.session.save_run(path)
    assert window.session.open_run(path)
    assert window.session.state == "viewing" and len(window.session.history) == 8


def test_a_broken_spec_file_keeps_the_current_one(qtbot, window, tmp_path):
    window.open_spec_file(PRESETS / "deep_relu_he.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "backprop-lab/spec", "version": 1, "data": {"kind": "spirals"}, '
                   '"model": {"layers": [{"type": "linear", "units": 0}]}}')
    with qtbot.waitSignal(window.session.error) as sig:
        assert not window.open_spec_file(bad)
    assert "units must be a positive integer" in sig.args[0]
    assert "He init" in window.session.spec["name"]


def test_live_updates_survive_thousands_of_frames(qtbot, window):
    """Drives the real panels through many redraws: a Qt binding with a refcount bug in
    live pyqtgraph updates (PySide6 6.12.0: bool_dealloc) aborts here."""
    run_preset(qtbot, window, "deep_sigmoid_vanishing", 40)
    h = window.session.history
    for frame in range(3000):
        h.version += 1
        window.heatmap.refresh()
        window.flow.refresh()
        window.loss.refresh()
        window.activation.refresh()
        if frame % 100 == 0:
            qtbot.wait(1)
    assert window.heatmap.image.image.shape[1] == 40


def test_the_app_exits_0_on_sigterm_mid_run(tmp_path):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path))
    p = subprocess.Popen([sys.executable, "-c", "import sys; from backprop_lab.app.cli import main; sys.exit(main())",
                          str(PRESETS / "deep_relu_he.json"), "--run"], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = ""
    while "training" not in line:  # the app says when training has started (Qt may say other things first)
        line = p.stderr.readline()
        assert line, "the app ended before training started"
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err[-2000:]
    assert time.monotonic() - t0 < 5.0


def test_redraws_slow_down_while_a_costly_run_draws_and_recover_after(qtbot, window, monkeypatch):
    import backprop_lab.app.main_window as mw
    clock = iter(range(10**6))
    monkeypatch.setattr(mw.time, "thread_time", lambda: 0.2 * next(clock))  # 200 ms of GUI CPU per tick
    window.open_spec_file(PRESETS / "deep_relu_he.json")
    window.session.spec["train"]["steps"] = 100_000
    window.session.start()
    qtbot.waitUntil(lambda: window._timer.interval() == window._pacer.max_ms, timeout=120_000)
    window.session.stop()
    qtbot.waitUntil(lambda: window.session.state != "running", timeout=10_000)
    qtbot.waitUntil(lambda: window._timer.interval() == mw.REFRESH_MS, timeout=10_000)


def test_a_recurrent_preset_shows_its_gradient_through_time(qtbot, window):
    run_preset(qtbot, window, "recurrent_rnn_vanishing", 5)
    window._refresh(force_diagnosis=True)
    assert window.time_gradient.available and not window.docks["time"].visibleRegion().isEmpty()
    x, _ = window.time_gradient.curve.getOriginalDataset()
    assert len(x) > 0
    window.open_spec_file(PRESETS / "deep_relu_he.json")
    assert not window.time_gradient.available and not window.docks["activation"].visibleRegion().isEmpty()
