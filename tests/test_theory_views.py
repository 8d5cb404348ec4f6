"""Theory views: numbers on screen equal float64 autograd; background map and spectrum; export; no torch in the GUI."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt

from backprop_lab.widgets import theme
from backprop_lab.widgets.theory.chain_view import ChainExplorer
from backprop_lab.widgets.theory.paths_view import PathProducts
from backprop_lab.widgets.theory.phase_view import PhaseMap
from backprop_lab.widgets.theory.spectrum_view import JacobianSpectrum


def _autograd_db(w, b, x, y):
    w = torch.tensor(w, dtype=torch.float64)
    b = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    a = torch.tensor(x, dtype=torch.float64)
    for l in range(len(w)):
        a = torch.sigmoid(w[l] * a + b[l])
    (db,) = torch.autograd.grad(0.5 * (a - y) ** 2, b)
    return db.numpy(), (a - y).item()


def test_chain_explorer_numbers_are_autograd(qtbot):
    v = ChainExplorer()
    qtbot.addWidget(v)
    v.depth.setValue(6)
    v.all_w.setValue(0.8)
    v.all_b.setValue(0.3)
    v.x.setValue(0.4)
    v.y.setValue(0.9)
    v.layer.setValue(3)
    v.w_l.setValue(-1.7)          # one weight by its spin box
    l = v.layer_at(5 + 0.2)       # ... and one by dragging its bar to 2.5
    assert l == 5 and v.layer_at(5 - 0.2) is None
    v.drag_weight(l, 2.5)
    w = [0.8, 0.8, -1.7, 0.8, 2.5, 0.8]
    db, dC_daL = _autograd_db(w, [0.3] * 6, 0.4, 0.9)
    r = v.result
    np.testing.assert_allclose(r.w, w)
    np.testing.assert_allclose(r.dC_db, db, rtol=1e-12)
    np.testing.assert_allclose(r.running_product * dC_daL, db, rtol=1e-12)
    assert v.w_l.value() == pytest.approx(2.5) and v.layer.value() == 5
    heights = v.w_bars.opts["height"]
    np.testing.assert_allclose(heights, w)
    assert f"{r.dC_db[0]:.3g}" in v.equation.text()
    v.depth.setValue(50)
    assert len(v.result.w) == 50 and "…" in v.equation.text()


@pytest.fixture
def every_mouse_move():
    """pyqtgraph drops mouse moves closer together than 1/100 s; synthetic ones come faster."""
    import pyqtgraph as pg
    old = pg.getConfigOption("mouseRateLimit")
    pg.setConfigOption("mouseRateLimit", -1)
    yield
    pg.setConfigOption("mouseRateLimit", old)


def test_chain_explorer_weight_bar_follows_a_real_mouse_drag(qtbot, every_mouse_move):
    """Press on layer 2's weight bar, move the mouse up, release: w_2 is where the cursor went,
    and every number (bars, spin box, product, equation) is recomputed on the way."""
    from PySide6.QtCore import QPoint, QPointF
    from PySide6.QtTest import QTest
    v = ChainExplorer()
    qtbot.addWidget(v)
    v.resize(1300, 800)
    v.show()
    qtbot.waitExposed(v)
    v.set_chain("sigmoid", 4, 1.0, 0.0, 1.0, 0.0)
    port = v.view.viewport()

    def widget_pos(x, y) -> QPoint:
        return v.view.mapFromScene(v.box.mapViewToScene(QPointF(x, y)))

    changes = []
    v.changed.connect(lambda: changes.append(v.result.w[1]))
    start, end = widget_pos(2.2, 0.5), widget_pos(2.2, 0.9)   # inside the bar; then up, in view
    y0, y1 = v.box.viewRange()[1]
    QTest.mousePress(port, Qt.LeftButton, Qt.NoModifier, start)
    for k in range(1, 11):
        QTest.mouseMove(port, start + (end - start) * (k / 10))
    QTest.mouseRelease(port, Qt.LeftButton, Qt.NoModifier, end)
    assert v.box.viewRange()[1] == pytest.approx([y0, y1])   # the axis held still: the cursor's value
    px = (y1 - y0) / v.box.height()                             # one pixel, in weight units
    assert v.w[1] == pytest.approx(0.9, abs=2 * px)
    assert len(changes) >= 5 and changes[-1] == v.w[1]          # recomputed live while dragging
    w = [1.0, v.w[1], 1.0, 1.0]
    db, _ = _autograd_db(w, [0.0] * 4, 1.0, 0.0)
    np.testing.assert_allclose(v.result.dC_db, db, rtol=1e-12)
    np.testing.assert_allclose(v.w_bars.opts["height"], w)
    assert v.layer.value() == 2 and v.w_l.value() == pytest.approx(v.w[1], abs=1e-3)
    assert f"{v.result.dC_db[0]:.3g}" in v.equation.text()
    # a drag far above the view grows the axis instead of clipping the bar
    top = widget_pos(3.2, y1 - 0.02 * (y1 - y0))
    QTest.mousePress(port, Qt.LeftButton, Qt.NoModifier, widget_pos(3.2, 0.5))
    for k in range(1, 6):
        QTest.mouseMove(port, widget_pos(3.2, 0.5) + (top - widget_pos(3.2, 0.5)) * (k / 5))
    QTest.mouseRelease(port, Qt.LeftButton, Qt.NoModifier, top)
    assert v.w[2] > 0.9 * y1 and v.box.viewRange()[1][1] >= v.w[2]
    v.close()


def test_chain_lesson_buttons(qtbot):
    v = ChainExplorer()
    qtbot.addWidget(v)
    v.lessons["sigmoid_small_weights"].click()
    L = v.depth.value()
    assert abs(v.result.running_product[0]) < 0.25 ** L
    v.lessons["exploding"].click()
    assert abs(v.result.running_product[0]) > 100 * abs(v.result.running_product[-1])
    assert "explod" in v.paragraph.text()


def test_path_products_view(qtbot):
    v = PathProducts()
    qtbot.addWidget(v)
    v.distribution.setCurrentText("lognormal")
    v.mean.setValue(1.0)
    q = np.asarray(v.result["log10_abs_quantiles"])
    assert q[-1, 2] < q[0, 2] < 0.01        # the median falls below 1 with depth
    assert q[-1, 4] - q[-1, 0] > q[0, 4] - q[0, 0]
    assert "median" in v.summary.text()


def test_phase_map_background_cancel_and_cell(qtbot):
    v = PhaseMap()
    qtbot.addWidget(v)
    v.activation.setCurrentText("relu")
    v.width_spin.setValue(32)
    v.depth_spin.setValue(6)
    v.seeds.setValue(1)
    v.sw_hi.setValue(3.0)
    v.sw_n.setValue(3)
    v.sb_hi.setValue(0.5)
    v.sb_n.setValue(2)
    v.compute()
    v.cancel()
    assert not v.process.running and v.result is None and v.compute_button.isEnabled()
    with qtbot.waitSignal(v.process.finished, timeout=90000):
        v.compute()
    r = v.result
    assert r["sigma_w2"] == [0.5, 1.75, 3.0] and np.asarray(r["log10_ratio"]).shape == (2, 3)
    assert r["inputs"] == "fixed-point" and "fixed point q*" in v.readout.text()
    v.inputs.setCurrentIndex(1)
    assert v.arguments()[-2:] == ["--inputs", "standard"]
    assert v.progress.value() == 6
    assert v.cell_at(1.8, 0.45) == (1, 1)
    with qtbot.waitSignal(v.cell_requested) as sig:
        v.cell_requested.emit(v.cell_spec(1, 1))
    layers = sig.args[0]["model"]["layers"]
    assert len(layers) == 12 and layers[0]["init"]["gain"] == pytest.approx(1.75 ** 0.5)


def test_spectrum_view_orthogonal(qtbot):
    v = JacobianSpectrum()
    qtbot.addWidget(v)
    lin = {"type": "linear", "units": 4, "init": {"scheme": "orthogonal"}, "bias_init": {"scheme": "zeros"}}
    v.set_spec({"format": "backprop-lab/spec", "version": 1, "data": {"kind": "blobs", "classes": 4, "dim": 4},
                "model": {"layers": [lin] * 5}})
    v.inputs.setValue(3)
    with qtbot.waitSignal(v.process.finished, timeout=90000):
        v.compute()
    np.testing.assert_allclose(v.result["singular_values"], 1.0, atol=2e-6)
    assert "median 1" in v.readout.text()


def _delete_other_windows():
    import gc

    import shiboken6
    from PySide6.QtWidgets import QApplication
    app = QApplication.instance()
    for w in app.topLevelWidgets():
        if not shiboken6.isValid(w):   # a menu of a window an earlier test deleted
            continue
        w.close()
        w.deleteLater()
    app.sendPostedEvents(None, 0)   # 0: QEvent.DeferredDelete is among the posted events
    gc.collect()


@pytest.mark.parametrize("cls", [ChainExplorer, PathProducts, PhaseMap, JacobianSpectrum])
def test_export_and_presentation(qtbot, tmp_path, cls):
    _delete_other_windows()   # presentation mode restyles every widget: no half-deleted ones from earlier tests
    v = cls()
    qtbot.addWidget(v)
    v.resize(1000, 700)
    v.show()
    if cls is PhaseMap:
        from backprop_lab.engine.theory import phase
        v.set_result(phase.compute("tanh", 16, 3, [1.0, 2.0, 3.0], [0.0, 0.5], seeds=1))
    import pyqtgraph as pg
    from PySide6.QtWidgets import QAbstractSpinBox, QComboBox, QPushButton
    legends = [it for view in v.findChildren(pg.GraphicsView) for it in view.scene().items()
               if isinstance(it, pg.LegendItem)]
    label_heights = [label.item.boundingRect().height() for lg in legends for _, label in lg.items]
    small = v.title.font().pointSize()
    theme.set_presentation_mode(True)
    try:
        assert v.title.font().pointSize() > small and v.paragraph.text()
        # legends grow with the rest (pyqtgraph's setLabelTextSize alone does not redraw them)
        grown = [label.item.boundingRect().height() for lg in legends for _, label in lg.items]
        assert len(grown) >= 1 and all(g > 1.2 * h for g, h in zip(grown, label_heights))
        # no control is squeezed below the size its text needs: the row wraps instead
        controls = [c for kind in (QComboBox, QAbstractSpinBox, QPushButton) for c in v.findChildren(kind)]
        qtbot.waitUntil(lambda: all(c.width() >= c.sizeHint().width() - 1 for c in controls if c.isVisible()))
        for ext in ("png", "svg"):
            v.export(tmp_path / f"view.{ext}")
            assert (tmp_path / f"view.{ext}").stat().st_size > 1000
        # scatter symbols are vector paths in the SVG, not small copies of pyqtgraph's symbol atlas
        import re
        sizes = re.findall(r'<image x="[^"]*" y="[^"]*" width="(\d+)" height="(\d+)"',
                           (tmp_path / "view.svg").read_text())
        assert sizes and not [wh for wh in sizes if wh[0] == wh[1] and int(wh[0]) < 40]
    finally:
        theme.set_presentation_mode(False)
        v.close()


def test_a_theory_view_full_screen_and_back(qtbot):
    from PySide6.QtTest import QTest
    from backprop_lab.widgets.theory.theory_tab import TheoryTab
    t = TheoryTab()
    qtbot.addWidget(t)
    t.show()
    v = t.chain
    qtbot.mouseClick(v.full_button, Qt.LeftButton)
    assert v.isWindow() and v.isVisible() and t.indexOf(v) == -1 and t.count() == 4
    assert v.geometry() == t.screen().geometry()   # (the offscreen platform keeps no full-screen state)
    assert "full screen" in t.widget(0).text() and v.full_button.text() == "Back to the tab"
    v.depth.setValue(7)                       # still alive and recomputing out there
    assert len(v.result.w) == 7
    QTest.keyClick(v.depth, Qt.Key_Escape)    # Esc from any control of the view
    assert t.widget(0) is v and not v.isWindow() and t.currentIndex() == 0
    assert v.full_button.text() == "Full screen"
    t.toggle_full_screen(t.phase)
    t.phase.close()                           # closing its window brings it back, nothing cancelled
    assert t.widget(2) is t.phase and not t.phase.isWindow()
    t.toggle_full_screen(t.paths)
    t.shutdown()                              # no full-screen window outlives the tab
    assert t.widget(1) is t.paths and not t.paths.isWindow()
    t.close()


def test_theory_views_do_not_import_torch():
    code = ("import sys; import backprop_lab.widgets.theory.theory_tab, backprop_lab.engine.theory.cells; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr


def test_main_window_theory_tab_loads_a_map_cell(qtbot, qsettings):
    from backprop_lab.app.main_window import MainWindow
    from backprop_lab.engine.theory import cells
    w = MainWindow(settings=qsettings)
    qtbot.addWidget(w)
    w.show()
    try:
        w.central_tabs.setCurrentWidget(w.theory_area)
        assert w.theory.spectrum.spec == w.session.spec
        spec = cells.spec_for_cell("tanh", 32, 4, 1.76, 0.05)
        w.theory.cell_requested.emit(spec)
        assert w.session.spec["model"]["layers"] == spec["model"]["layers"]
        assert w.central_tabs.currentWidget() is w.heatmap
        assert w.theory.spectrum.spec["model"]["layers"] == spec["model"]["layers"]
        w.undo_stack.undo()
        assert w.session.spec["model"]["layers"] != spec["model"]["layers"]
    finally:
        w.shutdown()
        w.close()


def test_main_window_spectrum_at_the_current_step(qtbot, window):
    """The spectrum view's "At the current step" asks the training process for the run's weights."""
    from backprop_lab.engine.experiment import build
    from backprop_lab.engine.trainer import Trainer
    from tests.test_theory import _reference_spectrum
    v = window.theory.spectrum
    v.inputs.setValue(4)
    qtbot.mouseClick(v.current_button, Qt.LeftButton)          # no run yet: said so, nothing drawn
    qtbot.waitUntil(lambda: v.current_button.isEnabled(), timeout=10_000)
    assert v.current_result is None and "no run of this stack yet" in v.readout.text()
    window.session.step(6)                                      # six steps, then paused: mid-run
    qtbot.waitUntil(lambda: window.session.history is not None and len(window.session.history) == 6,
                    timeout=120_000)
    qtbot.mouseClick(v.current_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: v.current_result is not None, timeout=60_000)
    r = v.current_result
    assert r["step"] == 6 and "after 6 steps" in v.readout.text()
    x, y = v.hist_current.getData()
    assert len(x) == 61 and np.isclose(np.sum(y), 1.0)
    # the same six steps here: the same weights, the same singular values (autograd + numpy)
    exp = build(window.session.spec, window.session.base_dir)
    tr = Trainer(exp)
    tr.run(6)
    np.testing.assert_allclose(np.sort(r["singular_values"]),
                               np.sort(_reference_spectrum(tr.module, exp.data.x_train[:4])), rtol=1e-5)


def test_gradient_flow_draws_the_chain_rule_prediction(qtbot):
    from backprop_lab.engine.theory import overlay
    from backprop_lab.widgets.gradient_flow import GradientFlow
    from tests.conftest import load_preset, train
    exp, _, h = train(load_preset("deep_sigmoid_vanishing"), 2, hist_every=1)
    acts = [a for _, _, a in exp.model.act_layers]
    w = GradientFlow()
    qtbot.addWidget(w)
    w.theory = lambda hist, stat: overlay.predicted(hist, acts, stat)
    w.resize(900, 400)
    w.set_history(h)
    w.show()
    x, y = w.theory_curve.getData()
    pred = overlay.predicted(h, acts, "bias_grad_norm")
    np.testing.assert_allclose(y, np.log10(pred))
    meas = np.log10(h.series("bias_grad_norm")[-1])
    assert meas[-1] - meas[0] > 6 and np.max(np.abs(y - meas)) < 0.5   # 8 decades, predicted within half of one
    assert "chain rule" in w.bar_plot.titleLabel.text
    w.set_statistic("weight_grad_norm")   # no prediction for the weight gradient
    x = w.theory_curve.getData()[0]
    assert x is None or len(x) == 0
    w.close()


def test_the_windows_overlay_finds_the_chain_once_per_stack_and_predicts_as_the_engine():
    from backprop_lab.app.main_window import _predicted
    from backprop_lab.engine.history import History
    from backprop_lab.engine.theory import overlay
    from tests.conftest import load_preset, train
    exp, _, h = train(load_preset("deep_sigmoid_vanishing"), 2, hist_every=1)
    acts = [a for _, _, a in exp.model.act_layers]
    np.testing.assert_array_equal(_predicted(h, acts, "bias_grad_norm"), overlay.predicted(h, acts, "bias_grad_norm"))
    # another stack (a residual block's names: not a plain chain), then the first again: each asked anew
    other = History(["1 linear", "2.1 linear", "out linear"], ["2 relu", "2.2 relu"], [4, 4, 2])
    assert overlay.plain_chain(other.layer_names, other.act_names) is None
    assert _predicted(other, acts, "bias_grad_norm") is None
    np.testing.assert_array_equal(_predicted(h, acts, "bias_grad_norm"), overlay.predicted(h, acts, "bias_grad_norm"))
    assert _predicted(h, acts[:-1], "bias_grad_norm") is None   # activations of another stack: none drawn
    assert overlay.predicted(h, acts[:-1], "bias_grad_norm") is None
