"""The plots' right-click menus are built on first use (widgets/pg_speedups.py) and still work.

A right-click through Qt's real mouse path on a plot pops up pyqtgraph's ViewBox menu
(with its "View All" action and the plot's own options); a plot whose menu is disabled
never builds one; re-enabling it makes it work again; the "link axis to view" list of a
menu built late names the other views, as an eagerly built one does.
"""
import pytest
import pyqtgraph as pg
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QApplication, QMenu

import backprop_lab.widgets.theme  # noqa: F401  (installs the lazy menus, as every panel does)
from backprop_lab.widgets.pg_speedups import _KEY, _PENDING


def _plot(qtbot, name=None):
    w = pg.PlotWidget(name=name)
    qtbot.addWidget(w)
    w.resize(300, 200)
    w.plot([1, 2, 3], [3, 1, 2])
    w.show()
    qtbot.waitExposed(w)
    return w


def _open_menus():
    return [m for m in QApplication.topLevelWidgets() if isinstance(m, QMenu) and m.isVisible()]


def test_right_click_builds_and_pops_up_the_menu(qtbot):
    w = _plot(qtbot)
    vb = w.getViewBox()
    assert vb.__dict__[_KEY] is _PENDING            # not built with the plot
    centre = w.viewport().rect().center()
    qtbot.mouseClick(w.viewport(), Qt.RightButton, pos=centre)
    qtbot.waitUntil(lambda: vb.__dict__[_KEY] is not _PENDING and vb.__dict__[_KEY].isVisible())
    menu = vb.menu
    texts = [a.text() for a in menu.actions()]
    assert "View All" in texts
    assert "Plot Options" in texts                  # the PlotItem's menu, added as a parent's
    menu.viewAll.trigger()                          # its actions still drive the view
    menu.hide()
    assert vb.menu is menu                          # built once
    w.close()


def test_a_disabled_menu_is_never_built_and_can_be_enabled_again(qtbot):
    w = _plot(qtbot)
    vb = w.getViewBox()
    w.getPlotItem().setMenuEnabled(False)
    assert vb.__dict__[_KEY] is None and vb.menu is None
    qtbot.mouseClick(w.viewport(), Qt.RightButton, pos=w.viewport().rect().center())
    assert not [m for m in _open_menus() if m is vb.menu]
    w.getPlotItem().setMenuEnabled(True)
    assert vb.menu is not None and "View All" in [a.text() for a in vb.menu.actions()]
    w.close()


def test_a_late_menu_lists_the_views_it_can_link_to(qtbot):
    a, b = _plot(qtbot, "lazy-a"), _plot(qtbot, "lazy-b")
    combo = a.getViewBox().menu.ctrl[0].linkCombo   # built now, after b exists
    names = [combo.itemText(i) for i in range(combo.count())]
    assert "lazy-b" in names and "lazy-a" not in names
    a.close()
    b.close()


def test_an_axis_label_follows_its_text_units_and_si_prefix(qtbot):
    """The label's HTML is set only when it changes, but every change still shows."""
    w = _plot(qtbot)
    ax = w.getPlotItem().getAxis("left")
    w.setLabel("left", "loss")
    assert "loss" in ax.label.toPlainText()
    w.setLabel("left", "gradient", units="V")
    w.setYRange(0, 0.002, padding=0)            # milli: the prefix appears in the label
    qtbot.waitUntil(lambda: "(mV)" in ax.label.toPlainText())
    assert "gradient" in ax.label.toPlainText()
    w.setYRange(0, 2000, padding=0)
    qtbot.waitUntil(lambda: "(kV)" in ax.label.toPlainText())
    calls = []
    real = ax.label.setHtml
    ax.label.setHtml = lambda html: (calls.append(html), real(html))
    for top in (2100, 2200, 2300):              # same prefix: the same text, not set again
        w.setYRange(0, top, padding=0)
    assert calls == [] and "(kV)" in ax.label.toPlainText()
    w.close()


def test_an_axis_keeps_its_picture_for_a_sub_pixel_move_and_redraws_for_more(qtbot):
    """A view following a growing run moves its range a fraction of a pixel per step: the axis keeps
    the picture it drew (pg_speedups.AXIS_TOLERANCE_PX), and draws a new one, with the new ticks,
    once the range has moved further than that from the range it was drawn for."""
    from backprop_lab.widgets.pg_speedups import AXIS_TOLERANCE_PX
    w = _plot(qtbot)
    ax = w.getPlotItem().getAxis("bottom")
    w.setXRange(0, 10_000, padding=0)
    qtbot.waitUntil(lambda: ax.picture is not None)
    drawn = ax.picture
    px = 10_000 / ax.width()                      # range units per pixel
    for k in range(1, 4):                         # three steps of a tenth of the tolerance each
        w.setXRange(0, 10_000 + k * 0.1 * AXIS_TOLERANCE_PX * px, padding=0)
        assert ax.picture is drawn and ax.range[1] > 10_000
    w.setXRange(0, 10_000 + 2 * AXIS_TOLERANCE_PX * px, padding=0)   # beyond it: drawn anew
    assert ax.picture is None
    w.setXRange(0, 25_000, padding=0)
    qtbot.waitUntil(lambda: ax.picture is not None)
    ticks = [v for _, values in ax.tickValues(*ax.range, ax.width()) for v in values]
    assert max(ticks) > 10_000                    # the new range's ticks, not the old picture's
    w.close()


def test_bars_painted_directly_look_as_pyqtgraphs_recorded_picture(qtbot):
    """The flow panel's bars (a brush per bar, no pen but the selected bar's 3 px outline) painted straight
    onto the painter equal, pixel for pixel, pyqtgraph's own QPicture of them."""
    import numpy as np
    from PySide6.QtGui import QColor, QImage, QPainter
    from pyqtgraph.graphicsItems.BarGraphItem import BarGraphItem
    assert BarGraphItem._painted_directly
    original = BarGraphItem._render

    def recorded(item, p):   # what pyqtgraph's paint does: record a QPicture, replay it
        item.drawPicture()
        item.picture.play(p)

    n = 30
    rng = np.random.default_rng(0)
    brushes = [pg.mkBrush(QColor.fromHsv(12 * i, 200, 200)) for i in range(n)]
    for pens in ([pg.mkPen(None)] * n, [pg.mkPen("r", width=3) if i == 7 else pg.mkPen(None) for i in range(n)], None):
        images = []
        for way in ("direct", "recorded"):
            w = pg.PlotWidget(background="w")
            qtbot.addWidget(w)
            w.resize(320, 200)
            kw = dict(pens=pens) if pens is not None else dict(pen=pg.mkPen(None))
            item = BarGraphItem(x=np.arange(n), y0=-3.0, height=rng.random(n) * 3, width=0.8, brushes=brushes, **kw)
            if way == "recorded":
                item.paint = lambda p, *a, item=item: recorded(item, p)
            w.addItem(item)
            w.getPlotItem().getViewBox().setRange(xRange=(-1, n), yRange=(-3, 0.2), padding=0)
            w.show()
            qtbot.waitExposed(w)
            img = QImage(w.size(), QImage.Format.Format_ARGB32)
            img.fill(0)
            painter = QPainter(img)
            w.render(painter)
            painter.end()
            images.append(img)
            rng = np.random.default_rng(0)
        assert original is BarGraphItem._render
        assert images[0] == images[1]


def test_an_auto_range_stands_while_the_data_grow_by_less_than_a_quarter_pixel(qtbot):
    """A view following a growing run keeps its range (and so every item's transform) while the range
    the auto range would set is within AXIS_TOLERANCE_PX of it; further, it is set exactly again; the data
    always stay inside the view; a range set by hand is exact."""
    import numpy as np
    from backprop_lab.widgets.pg_speedups import AXIS_TOLERANCE_PX
    w = _plot(qtbot)
    w.resize(400, 300)
    vb = w.getPlotItem().getViewBox()
    curve = w.plot(np.arange(10_000.0), np.sin(np.arange(10_000.0) / 300))
    w.show()
    qtbot.waitExposed(w)
    vb.prepareForPaint()
    x0 = list(vb.viewRange()[0])
    px = (x0[1] - x0[0]) / vb.width()               # steps per pixel
    n = 10_000
    moved = 0
    for _ in range(40):                              # one step each: ~1/40 px
        n += 1
        curve.setData(np.arange(float(n)), np.sin(np.arange(float(n)) / 300))
        vb.prepareForPaint()
        x = vb.viewRange()[0]
        assert x[0] <= 0 and x[1] >= n - 1           # every point in view
        exact = vb.childrenBounds()[0]
        pad = (exact[1] - exact[0]) * vb.suggestPadding(0)
        assert abs(x[1] - (exact[1] + pad)) / px < AXIS_TOLERANCE_PX + 1e-9   # within the tolerance of exact
        if x != x0:
            moved += 1
            x0 = list(x)
    assert 1 <= moved < 20                          # ~1.4 px in all: a few moves, not one per step
    w.setXRange(0, n + 0.01 * px, padding=0)          # by hand: exact, however small the change
    assert vb.viewRange()[0][1] == pytest.approx(n + 0.01 * px)
    w.close()


def test_new_data_ask_for_a_pixel_of_paint_and_a_range_that_moves_repaints_the_plot(qtbot):
    """An item's new bounds (informViewBoundsChanged) mark the auto range for the next paint and ask for a
    paint of one pixel of the box, not of the whole plot; when the range then moves, the whole box is
    repainted as before; a paint comes, so the auto range is always brought up to date."""
    import numpy as np
    from PySide6.QtCore import QEvent, QObject
    w = pg.PlotWidget()
    qtbot.addWidget(w)
    w.resize(400, 300)
    w.plot([1, 2, 3], [3, 1, 2])
    vb = w.getPlotItem().getViewBox()
    bars = pg.BarGraphItem(x=[0.0], height=[1.0], width=0.5)   # an item whose own paint area is small
    vb.addItem(bars)
    w.show()
    qtbot.waitExposed(w)
    for _ in range(5):
        QApplication.processEvents()
    areas = []

    class Watch(QObject):
        def eventFilter(self, obj, ev):
            if ev.type() == QEvent.Paint:
                areas.append(sum(r.width() * r.height() for r in ev.region()))
            return False
    watch = Watch()
    w.viewport().installEventFilter(watch)
    whole = w.viewport().width() * w.viewport().height()
    vb.disableAutoRange()
    vb.enableAutoRange(x=False, y=True)
    for _ in range(5):
        QApplication.processEvents()
    areas.clear()
    vb.itemBoundsChanged(bars)                      # bounds "changed", the range stands (the same data)
    qtbot.waitUntil(lambda: bool(areas) and not vb._autoRangeNeedsUpdate)   # a paint came and ranged the view
    assert max(areas) < 0.01 * whole, areas
    areas.clear()
    bars.setOpts(x=[0.0], height=[5.0])             # a range that moves: the plot painted whole
    qtbot.waitUntil(lambda: bool(areas) and max(areas) > 0.5 * whole)
    assert vb.viewRange()[1][1] >= 5.0 and max(areas) > 0.5 * whole, areas
    w.viewport().removeEventFilter(watch)
    assert np.isfinite(vb.viewRange()[1]).all()
    w.close()


def test_the_plots_paint_on_the_gui_thread_alone():
    """Qt's raster engine's pool of fill threads is switched off before any paint (QT_NO_GUI_THREADPOOL)."""
    import os
    assert os.environ.get("QT_NO_GUI_THREADPOOL")
