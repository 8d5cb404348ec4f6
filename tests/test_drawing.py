"""What keeps a redraw cheap with long histories: the drawn data is thinned, the stored data is not."""
import math

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt

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


def test_compare_layer_lines_are_log10_of_every_stored_row_with_gaps(qtbot):
    """The compare view's layer lines (one LayerLines per run, grown column by column) show log10 of
    each stored value; zero, negative, infinite and NaN values are gaps, never an infinite y range."""
    from backprop_lab.widgets.compare_view import CompareView
    a, b = history(layers=3, steps=200, seed=1), history(layers=3, steps=200, seed=2)
    v = CompareView()
    qtbot.addWidget(v)
    v.set_histories(a, b)
    more = rows(3, 2, 200, 20, np.random.default_rng(9))
    for k in PER_LAYER:
        more[k] = more[k].copy()
        more[k][4, 1] = np.inf
        more[k][6, 2] = -1.0
    a.extend_packed(more)
    v.refresh()
    for h, item in zip((a, b), v._flow_curves):
        values = h.series(v.statistic).T
        with np.errstate(divide="ignore", invalid="ignore"):
            expected = np.log10(values)
        expected[~np.isfinite(expected)] = np.nan
        np.testing.assert_allclose(item.logs, expected, rtol=1e-6, equal_nan=True)
        np.testing.assert_array_equal(item.x, h.steps)
        assert np.isfinite(item.hi).all() and np.isfinite(item.lo).all()


# ----------------------------------------------------------------------------- drawing cost (issue 9, item 8)
def _naive_peaks(x, y, i0, i1, ds):
    """One (min, max) pair per block of ds steps (the last one, after the last whole block, as
    long as it is), the order alternating (max first in even blocks): computed from scratch."""
    xs, out = [], []
    for b, start in enumerate(range(i0, i1, ds)):
        block = y[:, start:min(start + ds, i1)]
        with np.errstate(invalid="ignore"):
            hi, lo = np.nanmax(block, axis=1), np.nanmin(block, axis=1)
        out += [hi, lo] if b % 2 == 0 else [lo, hi]
        xs += [x[start], x[start]]
    return np.array(xs), np.array(out).T.reshape(len(y), -1)


@pytest.mark.filterwarnings("ignore:All-NaN slice")
def test_peak_columns_kept_while_a_run_grows_equal_a_full_recomputation():
    """The blocks already reduced are reused as steps are appended (and redone where told that steps
    changed); what is drawn is, every time, the alternating (min, max) pairs of the whole data."""
    from backprop_lab.widgets.layer_lines import PeakColumns
    rng = np.random.default_rng(4)
    y = rng.standard_normal((3, 5000))
    y[1, 100:140] = np.nan                     # a gap: its blocks stay NaN
    x = np.arange(5000.0)
    peaks, n = PeakColumns(), 300
    for i in range(80):
        grow = int(rng.integers(1, 60))
        y[:, n:n + grow] = rng.standard_normal((3, grow))
        n += grow
        unchanged = n - grow
        if i == 40:                             # the History thinned: nothing before is kept
            y[:, :n] = rng.standard_normal((3, n))
            unchanged = 0
        peaks.keep(unchanged)
        ds = max(2, n // 137)
        i0 = 0 if i % 7 else 50                 # zoomed in now and then: other blocks
        xs, out = peaks.reduce(x, y, i0, n, ds)
        ex, ey = _naive_peaks(x, y, i0, n, ds)
        np.testing.assert_array_equal(xs, ex)
        np.testing.assert_array_equal(out, ey)


def test_column_image_draws_what_pyqtgraph_draws_as_the_image_grows(qtbot):
    """The heatmap's ColumnImage keeps its block means between renders; its rendered image is, pixel for
    pixel, pyqtgraph's own auto-downsampled rendering of the whole image, after appends and after a
    rebuild (a thinned History)."""
    import pyqtgraph as pg
    from backprop_lab.widgets import theme
    from backprop_lab.widgets.log_image import ColumnImage
    rng = np.random.default_rng(2)
    full = np.log10(rng.random((7, 4000)).astype(np.float32))
    full[3, 500:700] = np.nan
    views = []
    for cls in (ColumnImage, pg.ImageItem):
        w = pg.PlotWidget()
        qtbot.addWidget(w)
        w.resize(320, 200)
        item = cls(np.full((1, 1), np.nan, np.float32), levels=(-3, 0), autoDownsample=True)
        item.setColorMap(theme.sequential_map())
        w.addItem(item)
        w.show()
        views.append((w, item))
    qtbot.waitExposed(views[0][0])
    n = 0
    for step, grow in enumerate((1000, 3, 1, 250, 17, 900, 2)):
        unchanged = n
        n += grow
        if step == 4:
            full[:, :n] = np.log10(rng.random((7, n)))
            unchanged = 0
        images = []
        kept = views[0][1].qimage
        for w, item in views:
            if isinstance(item, ColumnImage):
                item.keep_columns(unchanged)
            item.setImage(np.ascontiguousarray(full[:, :n]), autoLevels=False, levels=(-3, 0))
            item.setRect(0, 0, n, 7)
            w.getPlotItem().getViewBox().setRange(xRange=(0, n), yRange=(0, 7), padding=0)
            w.getPlotItem().getViewBox().prepareForPaint()
            item.render()
            images.append(item.qimage.copy())
        assert views[0][1]._lastDownsample[0] > 1 or n < 320   # downsampled once there are many columns
        assert images[0] == images[1], f"after {n} columns"
        if grow == 1:   # no new whole block: the QImage drawn last time is drawn again, not made anew
            assert views[0][1].qimage is kept


def test_wide_pens_are_drawn_as_wide_as_pyqtgraph_asks(qtbot):
    """A curve's 2 px and 3 px pens (drawn as a 1 px line at pixel offsets, widgets.pg_speedups) cover
    2 and 3 pixels across a horizontal line and a vertical one; a dashed pen is still dashed."""
    import pyqtgraph as pg
    from backprop_lab.widgets import theme  # noqa: F401  (installs the fast wide pens)
    assert pg.PlotCurveItem._wide_pens_fast
    w = pg.PlotWidget(background="w")
    qtbot.addWidget(w)
    w.resize(300, 300)
    pi = w.getPlotItem()
    pi.hideAxis("left")
    pi.hideAxis("bottom")
    pi.setRange(xRange=(0, 10), yRange=(0, 10), padding=0)
    pi.plot([1, 9], [3, 3], pen=pg.mkPen((255, 0, 0), width=2))
    pi.plot([1, 9], [7, 7], pen=pg.mkPen((0, 0, 255), width=3))
    pi.plot([5, 5], [1, 9], pen=pg.mkPen((0, 160, 0), width=3))
    pi.plot([1, 9], [5, 5], pen=pg.mkPen((0, 0, 0), width=2, style=Qt.DashLine))
    w.show()
    qtbot.waitExposed(w)
    img = w.grab().toImage()

    def run(colour, xs=None, ys=None):
        """Longest run of pixels of ``colour`` along column x (or row y)."""
        from PySide6.QtGui import QColor
        target = QColor(*colour).rgb()
        best = cur = 0
        for p in ((xs, y) for y in range(img.height())) if ys is None else ((x, ys) for x in range(img.width())):
            cur = cur + 1 if img.pixel(*p) == target else 0
            best = max(best, cur)
        return best
    vb = pi.getViewBox()
    col = int(vb.mapViewToScene(QPointF(3, 0)).x())
    row = int(vb.mapViewToScene(QPointF(0, 2)).y())
    assert run((255, 0, 0), xs=col) == 2                  # across the 2 px horizontal line
    assert run((0, 0, 255), xs=col) == 3                  # across the 3 px one
    assert run((0, 160, 0), ys=row) == 3                  # across the 3 px vertical line
    assert 0 < run((0, 0, 0), ys=int(vb.mapViewToScene(QPointF(0, 5)).y())) < 100   # dashes, not one line
    w.close()


def _shown_flow(qtbot, layers: int, steps: int):
    """A GradientFlow panel on screen, showing a History of ``layers`` x ``steps``."""
    from backprop_lab.widgets.gradient_flow import GradientFlow
    w = GradientFlow()
    qtbot.addWidget(w)
    w.resize(900, 400)
    w.show()
    qtbot.waitExposed(w)
    h = history(layers=layers, steps=steps)
    w.set_history(h)
    return w, h


def test_a_refresh_paints_each_changed_plot_once(qtbot, monkeypatch):
    """A refresh updates the plots' ranges before they are painted (HistoryPanel.prepare_for_paint):
    pyqtgraph did it at the start of the paint, which marked every item dirty again, and Qt painted
    every changed plot twice per frame."""
    from PySide6.QtWidgets import QApplication
    from backprop_lab.widgets.layer_lines import LayerLines
    painted = []
    paint = LayerLines.paint

    def counting(self, *args):
        painted.append(self)
        return paint(self, *args)
    monkeypatch.setattr(LayerLines, "paint", counting)
    w, h = _shown_flow(qtbot, layers=5, steps=300)
    qtbot.waitUntil(lambda: bool(painted), timeout=10_000)
    for _ in range(5):
        QApplication.sendPostedEvents()
    rng = np.random.default_rng(1)
    for _ in range(3):
        before = painted.count(w.lines)
        h.extend_packed(rows(5, 2, int(h.steps[-1]) + 1, 1, rng))   # one step: the x range grows
        w.refresh()
        for _ in range(5):
            QApplication.sendPostedEvents()
        assert painted.count(w.lines) == before + 1


def test_a_readout_takes_new_figures_without_a_new_layout_and_grows_when_it_wraps(qtbot):
    """The activation panel's read-out (ReadoutLabel) changes its text every frame: a text of the same
    height asks no layout of the panel (a QLabel's asked the panel, its dock and the main window to lay
    out again every frame); a text that wraps to more lines gets the height to show all of them."""
    from PySide6.QtCore import QEvent, QObject
    from PySide6.QtWidgets import QApplication, QVBoxLayout, QWidget
    from backprop_lab.widgets.panel import ReadoutLabel
    box = QWidget()
    qtbot.addWidget(box)
    lay = QVBoxLayout(box)
    readout = ReadoutLabel("step 1: mean 0.25")
    lay.addWidget(readout)
    lay.addStretch(1)
    box.resize(220, 300)
    box.show()
    qtbot.waitExposed(box)
    for _ in range(5):                              # the layout of the first show
        QApplication.processEvents()
    one_line = readout.height()
    asked = []

    class Watch(QObject):
        def eventFilter(self, obj, ev):
            if obj is box and ev.type() == QEvent.LayoutRequest:
                asked.append(ev)
            return False
    watch = Watch()
    box.installEventFilter(watch)
    for step in range(2, 30):                       # new figures, one line each
        readout.setText(f"step {step}: mean 0.{step:02d}")
        QApplication.processEvents()
    assert asked == [] and readout.text() == "step 29: mean 0.29" and readout.height() == one_line
    long = "step 30: mean f′(z) = 0.37 (148 % of max) · saturated 39.6 % · dead units 42.5 % · z = 0.63 ± 0.16"
    readout.setText(long)
    qtbot.waitUntil(lambda: readout.height() > 2 * one_line)
    assert readout.label.heightForWidth(readout.width()) <= readout.height()
    assert readout.label.geometry() == readout.rect() and readout.label.text() == long
    box.removeEventFilter(watch)


def test_layer_lines_drawn_column_by_column_equal_lines_drawn_whole(qtbot, monkeypatch):
    """While the view moves less than a fraction of a pixel per step, LayerLines draws only the pixel
    columns from the first changed point into the image it keeps; after many steps (a selected, wide
    line among them) that image is the one a redraw of every line from scratch makes."""
    from PySide6.QtWidgets import QApplication
    from backprop_lab.widgets import layer_lines
    drawn = []
    draw_into = layer_lines.LayerLines._draw_into

    def counting(self, r, xs, ys, first):
        drawn.append(first)
        return draw_into(self, r, xs, ys, first)
    monkeypatch.setattr(layer_lines.LayerLines, "_draw_into", counting)
    w, h = _shown_flow(qtbot, layers=30, steps=3000)
    w.set_selected_layer(7)                         # a 3.5 px line: drawn at nine offsets
    qtbot.waitUntil(lambda: w.lines._paths is not None, timeout=10_000)   # painted once
    rng = np.random.default_rng(1)
    for k in range(80):
        more = rows(30, 2, 3000 + k, 1, rng)
        if k == 40:
            for key in PER_LAYER:                    # a gap in one line
                more[key] = more[key].copy()
                more[key][0, 3] = 0.0
        h.extend_packed(more)
        w.refresh()
        for _ in range(3):
            QApplication.sendPostedEvents()
    assert sum(1 for f in drawn if f > 0) > 20, drawn  # most steps drew a few columns only

    def pixels():
        img = w.view.grab().toImage().convertToFormat(w.view.grab().toImage().Format.Format_RGB32)
        return np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.width(), 4)[..., :3].copy()
    kept = pixels()
    w.lines._raster = None                           # every line drawn again, from scratch
    w.lines.update()
    whole = pixels()
    assert drawn[-1] == 0
    differ = np.any(kept != whole, axis=2)
    assert differ.sum() <= 0.001 * differ.size, differ.sum()


def test_flow_bars_keep_their_colours_and_the_selected_outline_as_steps_arrive(qtbot):
    """The bars' brushes and pens are set again only when the bars or the selection change: each new step
    keeps every bar's colour and the selected bar's outline; a bar gone undefined takes its neighbours'
    styles with it, not theirs shifted."""
    from backprop_lab.widgets import theme
    from backprop_lab.widgets.gradient_flow import GradientFlow
    w = GradientFlow()
    qtbot.addWidget(w)
    w.resize(900, 400)
    w.show()
    qtbot.waitExposed(w)
    h = history(layers=12, steps=50)
    w.set_history(h)
    w.set_selected_layer(4)
    rng = np.random.default_rng(3)

    def check(missing=()):
        x = [int(v) for v in w.bars.opts["x"]]
        v = h.series(w.statistic)[-1]
        assert x == [i for i in range(12) if np.isfinite(v[i]) and v[i] > 0]
        assert not set(missing) & set(x)
        for j, i in enumerate(x):
            assert w.bars._brushes[j].color() == pg.mkColor(theme.layer_colour(i, 12))
            assert (w.bars._pens[j].style() != Qt.PenStyle.NoPen) == (i == 4)

    import pyqtgraph as pg
    from PySide6.QtCore import Qt
    for k in range(3):
        h.extend_packed(rows(12, 2, 50 + k, 1, rng))
        w.refresh()
        check()
    more = rows(12, 2, 53, 1, rng)
    more[w.statistic] = more[w.statistic].copy()
    more[w.statistic][0, 2] = np.nan                   # layer 2 undefined at the newest step
    h.extend_packed(more)
    w.refresh()
    check(missing=(2,))
    w.set_selected_layer(-1)
    h.extend_packed(rows(12, 2, 54, 1, rng))
    w.refresh()
    assert all(p.style() == Qt.PenStyle.NoPen for p in w.bars._pens)
    w.close()


def _live_window(window, qtbot, layers=30, steps=3000):
    """The main window showing a History of ``layers`` x ``steps`` (as the bench's redraw, smaller)."""
    from PySide6.QtWidgets import QApplication
    window.resize(1500, 920)
    qtbot.waitExposed(window)
    h = history(layers=layers, steps=steps)
    window.session.show_history(h, {"name": "drawing"}, state="viewing")
    for _ in range(5):
        QApplication.processEvents()
    return h


def _frame(window, h, rng):
    """One new step, every live panel refreshed, the posted events delivered (as the event loop does)."""
    from PySide6.QtWidgets import QApplication
    layers = len(h.layer_names)
    h.extend_packed(rows(layers, 2, int(h.steps[-1]) + 1, 1, rng))
    for view in window._live_views():
        if view.isVisible():
            view.refresh()
    for _ in range(3):
        QApplication.sendPostedEvents()


def test_a_new_step_repaints_the_plots_changed_areas_only(window, qtbot):
    """A frame of a live run paints what changed: the plots' areas whose items changed, the read-out; not the
    dock title bars, tab bars, tool bar or labels around them; in the flow panel's line plot only the newest
    pixel columns; the heatmap only when a whole block of columns is new (issue 9, item 8, sixth pass)."""
    import pyqtgraph as pg
    from PySide6.QtCore import QEvent, QObject
    from PySide6.QtGui import QRegion
    from PySide6.QtWidgets import QApplication
    h = _live_window(window, qtbot)
    views = {v.viewport(): v for v in window.findChildren(pg.GraphicsView) if v.isVisible()}
    painted, regions = [], {}

    class Watch(QObject):
        def eventFilter(self, obj, ev):
            if ev.type() == QEvent.Paint:
                painted.append(obj)
                if obj in views:
                    regions.setdefault(obj, []).append(QRegion(ev.region()))
            return False
    watch = Watch()
    QApplication.instance().installEventFilter(watch)
    rng = np.random.default_rng(5)
    try:
        for _ in range(12):
            _frame(window, h, rng)
    finally:
        QApplication.instance().removeEventFilter(watch)
    readout = window.activation.stats
    others = {type(o).__name__ for o in painted if o not in views and o is not readout and o.parent() is not readout}
    assert others == set(), others                    # no chrome: every paint is a plot's or the read-out's
    flow_port = window.flow.view.viewport()
    lines_vb = window.flow.line_plot.getViewBox()
    area = window.flow.view.mapFromScene(lines_vb.sceneBoundingRect()).boundingRect()
    strips = [r.intersected(QRegion(area)) for r in regions[flow_port]]
    shares = sorted(sum(x.width() * x.height() for x in s) / (area.width() * area.height()) for s in strips)
    assert shares[len(shares) // 2] < 0.25, shares   # most frames: the newest pixel columns only
    heat_port = window.heatmap.plot.viewport()
    assert len(regions.get(heat_port, [])) <= 6          # ~3000 steps over ~700 px: a new block every ~4 steps


def test_what_a_live_run_leaves_on_screen_equals_the_plots_painted_whole(window, qtbot):
    """After many frames painted piecemeal (the flow lines' newest columns, the heatmap's picture kept while no
    whole block is new), the window on screen is, pixel for pixel, the plots painted whole again."""
    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication
    h = _live_window(window, qtbot)
    window.flow.set_selected_layer(7)                # a 3.5 px line among them: drawn at nine offsets
    rng = np.random.default_rng(6)
    kept = 0
    for _ in range(60):
        _frame(window, h, rng)
        kept += window.heatmap.image._extent is not None     # the same picture, not painted again
    assert kept >= 20

    def screen():
        img = window.screen().grabWindow(window.winId()).toImage()
        img = img.convertToFormat(img.Format.Format_RGB32)
        return np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine() // 4, 4)[..., :3].copy()
    on_screen = screen()
    for v in window.findChildren(pg.GraphicsView):
        if v.isVisible():
            v.viewport().repaint()
    QApplication.sendPostedEvents()
    whole = screen()
    differ = np.any(on_screen != whole, axis=2)
    assert on_screen.shape == whole.shape and differ.sum() == 0, np.argwhere(differ)[:10]
