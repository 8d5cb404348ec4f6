"""What keeps a redraw cheap with long histories: the drawn data is thinned, the stored data is not."""
import math

import numpy as np
import pytest

from backprop_lab.engine.history import History
from backprop_lab.engine.snapshot import PER_ACT, PER_LAYER, SCALARS

pytest.importorskip("pytestqt")


def history(layers=30, steps=5000, units=2, seed=0, first=0):
    h = History([f"{2 * i + 1} linear" for i in range(layers)], [f"{2 * i + 2} tanh" for i in range(layers - 1)],
                [units] * layers, budget_bytes=2**30)
    h.extend_packed(rows(layers, units, first, steps, np.random.default_rng(seed)))
    return h


def rows(layers, units, first, n, rng):
    grads = 10.0 ** (-np.arange(layers)[None, :] * 0.2 + 0.3 * rng.standard_normal((n, layers)))
    grads[rng.random((n, layers)) < 0.01] = 0.0       # a few exact zeros
    b = {"step": np.arange(first, first + n), "neuron_grad": rng.random((n, layers * units)).astype(np.float32),
         "preact_hist": None}
    for k in SCALARS:
        b[k] = rng.random(n)
    b["test_loss"][b["step"] % 3 != 0] = math.nan
    for k in PER_LAYER:
        b[k] = grads
    for k in PER_ACT:
        b[k] = rng.random((n, layers - 1))
    return b


def test_gradient_flow_lines_are_downsampled_and_clipped_but_keep_every_stored_step(qtbot):
    from backprop_lab.widgets.gradient_flow import GradientFlow
    w = GradientFlow()
    qtbot.addWidget(w)
    w.resize(900, 400)
    w.show()
    qtbot.waitExposed(w)
    h = history()
    w.set_history(h)
    qtbot.wait(50)
    for c in w.curves:   # the modes survive PlotItem.addItem (which resets what a curve had before)
        assert c.opts["autoDownsample"] and c.opts["clipToView"] and c.opts["downsampleMethod"] == "peak"
    x, _ = w.curves[0].getOriginalDataset()
    np.testing.assert_array_equal(x, h.steps)               # nothing lost from what is stored
    shown, _ = w.curves[0].getData()
    assert len(shown) < len(h) / 2                           # ... but a few points per pixel drawn


def test_loss_markers_are_thinned_and_keep_the_newest(qtbot):
    from backprop_lab.widgets.loss_plot import MAX_MARKERS, LossPlot
    w = LossPlot()
    qtbot.addWidget(w)
    h = history(layers=3, steps=3000)
    w.set_history(h)
    x, y = w.test_loss.getData()
    evaluated = h.steps[np.isfinite(h.series("test_loss"))]
    assert len(x) == MAX_MARKERS and x[0] == evaluated[0] and x[-1] == evaluated[-1]
    assert set(x) <= set(evaluated)


def test_compare_images_grow_column_by_column_and_equal_a_full_recomputation(qtbot):
    from backprop_lab.widgets.compare_view import CompareView
    v = CompareView()
    qtbot.addWidget(v)
    a, b = history(layers=6, steps=400, seed=1), history(layers=6, steps=400, seed=2)
    v.set_histories(a, b)
    rng = np.random.default_rng(3)
    for first, n in ((400, 1), (401, 1), (402, 80)):   # steps evenly spaced: drawn column for column
        before = v._columns[0]._n
        for h in (a, b):
            h.extend_packed(rows(6, 2, first, n, rng))
        v.refresh()
        assert v._columns[0]._n == before + n                # only the new columns were transformed
    key = v.statistic
    for h, item in ((a, v.image_a), (b, v.image_b)):
        vals = h.series(key).T
        with np.errstate(divide="ignore"):
            expected = np.log10(vals)
        shown = item.image
        ok = vals > 0
        np.testing.assert_allclose(shown[ok], expected[ok], rtol=1e-6)
        assert (shown[vals == 0] < v.levels[0]).all()        # a zero: below the scale, the bottom colour
    both = np.concatenate([np.log10(h.series(key)[h.series(key) > 0]) for h in (a, b)])
    assert v.levels[0] <= np.percentile(both, 1) and v.levels[1] >= np.percentile(both, 99)


def test_gradient_flow_lines_show_log10_of_every_row_as_the_history_grows_and_thins(qtbot):
    """The panel takes log10 only of new rows (issue 9): what a line shows must stay exactly
    log10 of the stored values (gaps where <= 0 or not finite), after appends, thinning and a
    change of statistic."""
    from backprop_lab.widgets.gradient_flow import GradientFlow
    from backprop_lab.widgets.statistics import STATISTICS
    layers, units = 4, 2
    h = History([f"{2 * i + 1} linear" for i in range(layers)], [f"{2 * i + 2} tanh" for i in range(layers - 1)],
                [units] * layers, budget_bytes=1, min_capacity=64)
    rng = np.random.default_rng(3)
    w = GradientFlow()
    qtbot.addWidget(w)
    w.resize(900, 400)
    w.show()
    qtbot.waitExposed(w)

    def check():
        values = h.series(w.statistic)
        with np.errstate(divide="ignore", invalid="ignore"):
            expected = np.log10(values)
        expected[~np.isfinite(expected)] = np.nan
        for i, c in enumerate(w.curves):
            x, y = c.getData()
            np.testing.assert_array_equal(x, h.steps)
            np.testing.assert_allclose(y, expected[:, i], rtol=1e-12, equal_nan=True)
            np.testing.assert_array_equal(c.getOriginalDataset()[0], h.steps)

    h.extend_packed(rows(layers, units, 0, 40, rng))
    w.set_history(h)
    check()
    more = rows(layers, units, 40, 10, rng)
    for k in PER_LAYER:   # an overflowed and a negative value: gaps, as zeros are
        more[k] = more[k].copy()
        more[k][3, 1] = np.inf
        more[k][5, 2] = -1.0
    h.extend_packed(more)
    w.refresh()
    check()
    h.extend_packed(rows(layers, units, 50, 40, rng))   # past the capacity of 64 rows: the History thins
    assert len(h) < 90
    w.refresh()
    check()
    w.set_statistic(next(k for k, _ in STATISTICS if k != w.statistic))
    check()


def test_one_item_draws_every_layer_line_clicks_pick_the_nearest_and_the_legend_hides_one(qtbot):
    """The lines of all layers are one graphics item (issue 9 item 8): a click within a few pixels of a
    layer's drawn line selects that layer, a click far from every line selects none, and hiding a layer
    (the legend's eye) takes it out of the drawing and of the y range."""
    from PySide6.QtCore import QPointF, Qt
    from backprop_lab.widgets.gradient_flow import GradientFlow
    layers = 6
    h = History([f"{2 * i + 1} linear" for i in range(layers)], [f"{2 * i + 2} tanh" for i in range(layers - 1)],
                [2] * layers, budget_bytes=2**30)
    b = rows(layers, 2, 0, 200, np.random.default_rng(5))
    for k in PER_LAYER:   # steady lines two decades apart: layer i at 10^(-2 i)
        b[k] = np.tile(10.0 ** (-2.0 * np.arange(layers)), (200, 1))
    h.extend_packed(b)
    w = GradientFlow()
    qtbot.addWidget(w)
    w.resize(1000, 420)
    w.show()
    qtbot.waitExposed(w)
    w.set_history(h)
    qtbot.waitUntil(lambda: w.lines._paths is not None, timeout=10_000)   # painted once
    vb = w.line_plot.getViewBox()

    def click(step, log_y):
        pos = w.view.mapFromScene(vb.mapViewToScene(QPointF(step, log_y)))
        with qtbot.waitSignal(w.view.scene().sigMouseClicked, timeout=5000):
            qtbot.mouseClick(w.view.viewport(), Qt.LeftButton, pos=pos)

    _, py = vb.viewPixelSize()
    click(100, -4.0 + 3 * py)         # 3 px above layer 2's line
    assert w.selected == 2
    click(100, -5.0)                  # a decade from the nearest line: no selection change
    assert w.selected == 2
    lo = vb.viewRange()[1][0]
    w.curves[5].setVisible(False)     # the lowest layer hidden: the autorange no longer reaches it
    assert not w.curves[5].isVisible()
    vb.updateAutoRange()
    assert vb.viewRange()[1][0] > lo + 1
    x, y = w.curves[3].getData()
    np.testing.assert_allclose(y, -6.0)          # drawn in log10 coordinates
    np.testing.assert_array_equal(x, h.steps)
