"""Gradient flow: one bar per layer for the newest step, and each layer's line over training.

The lines are Nielsen's "speed of learning of each hidden layer" plot: on a
log axis a vanishing net shows its layers as parallel lines decades apart.
Input layers are drawn in cool colours, output layers in warm ones.
"""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from widgets import theme
from widgets.statistics import DEFAULT, LABELS, SHORT, STATISTICS


class GradientFlow(QWidget):
    layer_selected = Signal(int)
    statistic_changed = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.history = None
        self.statistic = DEFAULT
        self.selected = -1
        self._version = -1
        self._curves: list = []
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        top = QHBoxLayout()
        self.title = QLabel("")
        self.title.setWordWrap(True)
        top.addWidget(self.title, 1)
        self.combo = QComboBox()
        for key, label in STATISTICS:
            self.combo.addItem(label, key)
        self.combo.currentIndexChanged.connect(lambda i: self.set_statistic(self.combo.itemData(i)))
        top.addWidget(self.combo)
        lay.addLayout(top)
        row = QHBoxLayout()
        lay.addLayout(row, 1)
        self.bar_plot = pg.PlotWidget()
        bp = self.bar_plot.getPlotItem()
        theme.style_plot(bp, bottom="layer (input → output)")
        bp.setMouseEnabled(x=False, y=False)
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.8)
        bp.addItem(self.bars)
        row.addWidget(self.bar_plot, 2)
        self.line_plot = pg.PlotWidget()
        lp = self.line_plot.getPlotItem()
        theme.style_plot(lp, bottom="training step")
        lp.setLogMode(y=True)
        self.legend = lp.addLegend(offset=(-8, 8), labelTextSize=f"{theme.font_size() - 1}pt")
        row.addWidget(self.line_plot, 3)
        self.bar_plot.scene().sigMouseClicked.connect(self._on_bar_clicked)
        self._set_labels()

    def _set_labels(self) -> None:
        self.bar_plot.getPlotItem().setLabel("left", f"log10 {SHORT[self.statistic]}, newest step")
        self.line_plot.getPlotItem().setLabel("left", SHORT[self.statistic])
        self.title.setText("newest step · over training")

    def set_history(self, history) -> None:
        self.history = history
        self._version = -1
        lp = self.line_plot.getPlotItem()
        for c in self._curves:
            lp.removeItem(c)
        self.legend.clear()
        self._curves = []
        names = history.layer_names if history is not None else []
        n = len(names)
        # a legend for a few layers only: the first, the last and every few between
        shown = set(np.unique(np.linspace(0, n - 1, min(n, 6)).round().astype(int))) if n else set()
        for i, name in enumerate(names):
            c = pg.PlotDataItem(pen=pg.mkPen(theme.layer_colour(i, n), width=2),
                                name=name if i in shown else None)
            c.setDownsampling(auto=True, method="peak")
            c.setClipToView(True)
            lp.addItem(c)
            self._curves.append(c)
        every = max(1, int(np.ceil(n / 8)))  # at most ~8 labels under the bars
        self.bar_plot.getPlotItem().getAxis("bottom").setTicks(
            [[(i, n_.split(" ", 1)[0]) for i, n_ in enumerate(names) if i % every == 0 or i == n - 1]])
        self.refresh()

    def set_statistic(self, key: str) -> None:
        if key == self.statistic or key not in LABELS:
            return
        self.statistic = key
        self.combo.blockSignals(True)
        self.combo.setCurrentIndex([k for k, _ in STATISTICS].index(key))
        self.combo.blockSignals(False)
        self._set_labels()
        self._version = -1
        self.refresh()
        self.statistic_changed.emit(key)

    def set_selected_layer(self, i: int) -> None:
        self.selected = i
        for j, c in enumerate(self._curves):
            pen = c.opts["pen"]
            pen = pg.mkPen(pen.color(), width=4 if j == i else 2)
            c.setPen(pen)
        self._version = -1
        self.refresh()

    def bar_heights(self) -> tuple[np.ndarray, float]:
        """log10 of the newest step's statistic per layer, and the floor the bars stand on."""
        v = self.history.series(self.statistic)[-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.log10(np.where(v > 0, v, np.nan))
        finite = logs[np.isfinite(logs)]
        floor = math.floor(finite.min()) - 1 if finite.size else -1.0
        return logs, float(floor)

    def refresh(self) -> None:
        h = self.history
        if h is None or h.version == self._version:
            return
        self._version = h.version
        if len(h) == 0:
            self.bars.setOpts(x=[], height=[])
            for c in self._curves:
                c.setData([], [])
            return
        logs, floor = self.bar_heights()
        n = len(logs)
        ok = np.isfinite(logs)
        brushes = [pg.mkBrush(theme.layer_colour(i, n)) for i in range(n)]
        pens = [pg.mkPen("w", width=2) if i == self.selected else pg.mkPen(None) for i in range(n)]
        x = np.arange(n)
        self.bars.setOpts(x=x[ok], y0=floor, height=(logs - floor)[ok],
                          brushes=[b for b, k in zip(brushes, ok) if k], pens=[p for p, k in zip(pens, ok) if k])
        bp = self.bar_plot.getPlotItem()
        if ok.any():
            bp.setYRange(floor, float(np.nanmax(logs)) + 0.3, padding=0)
        bp.setXRange(-0.6, n - 0.4, padding=0)
        steps = h.steps.astype(float)
        values = h.series(self.statistic)
        for i, c in enumerate(self._curves):
            y = values[:, i]
            good = np.isfinite(y) & (y > 0)
            c.setData(steps[good], y[good])

    def _on_bar_clicked(self, ev) -> None:
        if ev.button() != Qt.LeftButton or self.history is None:
            return
        vb = self.bar_plot.getPlotItem().getViewBox()
        if not self.bar_plot.getPlotItem().sceneBoundingRect().contains(ev.scenePos()):
            return
        i = int(round(vb.mapSceneToView(ev.scenePos()).x()))
        if 0 <= i < len(self.history.layer_names):
            self.set_selected_layer(i)
            self.layer_selected.emit(i)
