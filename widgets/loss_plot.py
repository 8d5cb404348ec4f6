"""Loss and accuracy over training: train every step, test where it was evaluated.

The curves plot the History's own arrays (preallocated, so no copy per frame
for the train curves), with peak downsampling and clipping to the view so a
long run stays cheap to draw. Test values are NaN between evaluations: they
are drawn as markers joined by a line. Accuracy (classification only) is in
a second, smaller plot with the same time axis.

Each train curve is a one-line ``LayerLines`` (widgets.layer_lines): one (min, max) pair per
pixel column, the pairs of the steps already seen kept while a run grows, its 1.5 px pen drawn
as a 1 px line at pixel offsets. The test markers are set again only when the markers shown
change (a new evaluation), not on every step.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QGraphicsItem, QLabel, QVBoxLayout

from backprop_lab.widgets import theme
from backprop_lab.widgets.layer_lines import LayerLine, LayerLines
from backprop_lab.widgets.panel import HistoryPanel

KEY = (f"<span style='color:{theme.TRAIN_COLOUR}'><b>―</b> train (the step's batch)</span>&nbsp;&nbsp;&nbsp;"
       f"<span style='color:{theme.TEST_COLOUR}'><b>●―</b> test set (every few steps)</span>")


MAX_MARKERS = 300   # test-set markers drawn at most (each is a symbol of its own: costly by the thousand)


class LossPlot(HistoryPanel):
    """Loss (top) and accuracy (bottom, hidden for regression) against training step."""

    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.setSpacing(2)
        self.key = QLabel(KEY)   # the legend, outside the plots so it never hides a curve
        self.key.setWordWrap(True)
        lay.addWidget(self.key)
        self.view = pg.GraphicsLayoutWidget()
        self.layout_widget = self.view   # old name
        lay.addWidget(self.view, 1)
        self.loss_plot = self.view.addPlot(row=1, col=0)
        theme.style_plot(self.loss_plot, left="loss")
        self.loss_plot.getAxis("left").enableAutoSIPrefix(False)   # 0.69, not "690 (x0.001)"
        self.acc_plot = self.view.addPlot(row=2, col=0)
        theme.style_plot(self.acc_plot, bottom="training step", left="accuracy", left_units="%")
        self.acc_plot.getAxis("left").enableAutoSIPrefix(False)
        self.acc_plot.setXLink(self.loss_plot)
        self.acc_plot.setYRange(0, 100, padding=0.03)
        self.acc_plot.setMouseEnabled(x=True, y=False)
        self.acc_plot.getViewBox().setLimits(yMin=-3, yMax=103)
        self.loss_plot.setLabel("bottom", "training step")
        theme.style_axis(self.loss_plot.getAxis("bottom"))
        self._show_loss_step_axis(False)   # the accuracy plot below has the step axis
        for p in (self.loss_plot, self.acc_plot):
            p.getAxis("left").setWidth(int(4.5 * theme.font_size()))   # both left axes the same width
        layout = self.view.ci.layout
        layout.setRowStretchFactor(1, 3)
        layout.setRowStretchFactor(2, 2)
        self._drawn = (None, None)   # (history, steps drawn) the train curves' kept blocks are of
        self._marker_keys = {}       # test curve -> what its markers were set from
        self.train_loss = self._curve(self.loss_plot, theme.TRAIN_COLOUR)
        self.test_loss = self._markers(self.loss_plot, theme.TEST_COLOUR)
        self.train_acc = self._curve(self.acc_plot, theme.TRAIN_COLOUR)
        self.test_acc = self._markers(self.acc_plot, theme.TEST_COLOUR)

    @staticmethod
    def _curve(plot, colour) -> LayerLine:
        pen = pg.mkPen(colour, width=1.5)
        lines = LayerLines(pixel_padding=pen.widthF() * 0.7072)   # the padding a PlotCurveItem asks for
        plot.addItem(lines)
        lines.set_layers([pen])
        return LayerLine(lines, 0, pen)

    @staticmethod
    def _set_line(line: LayerLine, steps, y, unchanged: int) -> None:
        y = np.asarray(y, dtype=np.float64)
        finite = y[np.isfinite(y)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (np.nan, np.nan)
        line._lines.set_data(steps, y[:, None], y[None, :], [lo], [hi], unchanged=unchanged)

    @staticmethod
    def _clear_line(line: LayerLine) -> None:
        line._lines.set_layers(line._lines.pens)

    def _set_markers(self, curve, x, y) -> None:
        key = (len(x), float(np.sum(x)), float(np.nansum(y)), float(x[-1]), float(y[-1])) if len(x) else ()
        if self._marker_keys.get(curve) != key:
            self._marker_keys[curve] = key
            curve.setData(x, y)

    @staticmethod
    def _markers(plot, colour):
        # not clipped to the view: clipping made its markers anew on every change of the x range (every
        # step while the view follows a run); at most MAX_MARKERS of them, those outside are cheap to skip
        item = plot.plot(pen=pg.mkPen(colour, width=2), symbol="o", symbolSize=6, symbolBrush=colour, symbolPen=None)
        # kept as pixmaps: they change with a new evaluation (every few steps) and when the view moves more
        # than a quarter pixel (pg_speedups), not with every step the train curves take (~1.5 ms a frame)
        for part in (item.curve, item.scatter):
            part.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        return item

    def _clear(self) -> None:
        for c in (self.train_loss, self.train_acc):
            self._clear_line(c)
        for c in (self.test_loss, self.test_acc):
            c.setData([], [])
        self._marker_keys = {}
        self._drawn = (None, None)

    def _history_set(self, history) -> None:
        self._clear()
        self.loss_plot.enableAutoRange()

    def _unchanged(self, h, steps) -> int:
        """Leading steps drawn last time that are still the History's (it only appends, or thins)."""
        old_h, old = self._drawn
        self._drawn = (h, np.array(steps))
        if old_h is not h or old is None or not len(old) or len(steps) < len(old):
            return 0
        return len(old) if steps[0] == old[0] and steps[len(old) - 1] == old[-1] else 0

    def _draw(self, h) -> None:
        if len(h) == 0:
            self._clear()
            return
        steps = h.steps
        unchanged = self._unchanged(h, steps)
        self._set_line(self.train_loss, steps, h.series("loss"), unchanged)
        acc = h.series("accuracy")
        has_acc = bool(np.isfinite(acc[-1]) or np.isfinite(acc).any())
        if has_acc:
            self._set_line(self.train_acc, steps, acc * 100.0, unchanged)
        for curve, key, scale in ((self.test_loss, "test_loss", 1.0), (self.test_acc, "test_accuracy", 100.0)):
            y = h.series(key)
            idx = np.flatnonzero(np.isfinite(y))
            if len(idx) > MAX_MARKERS:  # markers are drawn one by one: evenly thinned, the newest kept
                idx = idx[np.unique(np.linspace(0, len(idx) - 1, MAX_MARKERS).astype(int))]
            self._set_markers(curve, steps[idx], y[idx] * scale)
        if self.acc_plot.isVisible() != has_acc:
            self.acc_plot.setVisible(has_acc)
            self._show_loss_step_axis(not has_acc)

    def _show_loss_step_axis(self, on: bool) -> None:
        ax = self.loss_plot.getAxis("bottom")
        ax.setStyle(showValues=on)
        ax.showLabel(on)
