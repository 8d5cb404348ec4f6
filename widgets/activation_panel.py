"""The selected activation: f(z), f'(z) and where the layer's units actually sit.

The histogram of the layer's pre-activations z (newest step) is laid over the
curves, scaled to the plot; the tails where f'(z) < 1 % of its maximum are
shaded: units there pass almost no gradient (saturated, or off for ReLU).
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from widgets import theme

Z_RANGE = (-8.0, 8.0)  # the probes' histogram range (engine.probes.HIST_RANGE)
SATURATION_FRACTION = 0.01
CURVE_Z = np.linspace(*Z_RANGE, 801)


def saturated_intervals(df_values: np.ndarray, z: np.ndarray, threshold: float) -> list[tuple[float, float]]:
    """The z intervals where f'(z) < threshold, as (start, end) pairs."""
    low = df_values < threshold
    out, start = [], None
    for zi, flag in zip(z, low):
        if flag and start is None:
            start = zi
        elif not flag and start is not None:
            out.append((start, zi))
            start = None
    if start is not None:
        out.append((start, z[-1]))
    return out


class ActivationPanel(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.history = None
        self.activations: list = []
        self.index = 0
        self._version = -1
        self._ytop = 1.0
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        self.title = QLabel("No activation layer.")
        self.title.setWordWrap(True)
        lay.addWidget(self.title)
        self.plot = pg.PlotWidget()
        pi = self.plot.getPlotItem()
        theme.style_plot(pi, bottom="pre-activation z")
        pi.addLegend(offset=(8, 8), labelTextSize=f"{theme.font_size()}pt")
        self.hist = pg.BarGraphItem(x=[], height=[], width=0.2, brush=pg.mkBrush(86, 180, 233, 90),
                                    pen=pg.mkPen(None), name="histogram of z (newest step)")
        pi.addItem(self.hist)
        self.f_curve = pi.plot(pen=pg.mkPen("#9fa0a6", width=2, style=pg.QtCore.Qt.DashLine), name="f(z)")
        self.df_curve = pi.plot(pen=pg.mkPen("#e69f00", width=3), name="f'(z)")
        self.max_line = pg.InfiniteLine(angle=0, movable=False, pen=pg.mkPen("#e69f00", width=1,
                                                                                style=pg.QtCore.Qt.DotLine),
                                        label="max f' = {value:.3g}",
                                        labelOpts={"position": 0.2, "color": "#e69f00"})
        pi.addItem(self.max_line)
        self.shades: list = []
        lay.addWidget(self.plot, 1)
        self.stats = QLabel("")
        self.stats.setWordWrap(True)
        lay.addWidget(self.stats)

    def set_activations(self, activations: list) -> None:
        """The engine.activations.Activation of each activation layer, input side first."""
        self.activations = list(activations)
        self.index = min(self.index, max(len(self.activations) - 1, 0))
        self._draw_curves()

    def set_history(self, history) -> None:
        self.history = history
        self._version = -1
        self._draw_curves()
        self.refresh()

    def set_selected_layer(self, a: int) -> None:
        if a != self.index and 0 <= a < len(self.activations):
            self.index = a
            self._draw_curves()
            self._version = -1
            self.refresh()

    def _name(self) -> str:
        h = self.history
        if h is not None and self.index < len(h.act_names):
            return h.act_names[self.index]
        return self.activations[self.index].name if self.activations else ""

    def _draw_curves(self) -> None:
        pi = self.plot.getPlotItem()
        for s in self.shades:
            pi.removeItem(s)
        self.shades = []
        if not self.activations:
            self.f_curve.setData([], [])
            self.df_curve.setData([], [])
            self.max_line.setVisible(False)
            self.title.setText("No activation layer in this stack.")
            return
        act = self.activations[self.index]
        f, df = act.f(CURVE_Z), act.df(CURVE_Z)
        self.df_curve.setData(CURVE_Z, df)
        self.f_curve.setData(CURVE_Z, np.clip(f, -1.5, 1.5 * max(1.0, act.max_derivative)))
        self.max_line.setVisible(True)
        self.max_line.setValue(act.max_derivative)
        for lo, hi in saturated_intervals(df, CURVE_Z, SATURATION_FRACTION * act.max_derivative):
            region = pg.LinearRegionItem((lo, hi), movable=False, brush=pg.mkBrush(213, 94, 0, 40),
                                         pen=pg.mkPen(None))
            region.setZValue(-10)
            pi.addItem(region)
            self.shades.append(region)
        ymin = min(-0.05, float(np.clip(f, -1.2, None).min()))
        ymax = max(1.3 * act.max_derivative, min(float(f.max()), 1.2))
        pi.setXRange(*Z_RANGE, padding=0.01)
        pi.setYRange(ymin, ymax, padding=0.02)
        self._ytop = ymax
        self.title.setText(f"<b>{self._name()}</b>: shaded where f'(z) < 1 % of its maximum "
                           "(no gradient passes there)")

    def refresh(self) -> None:
        h = self.history
        if h is None or h.version == self._version or not self.activations:
            return
        self._version = h.version
        if len(h) == 0 or self.index >= len(h.act_names):
            self.hist.setOpts(x=[], height=[])
            self.stats.setText("")
            return
        hist = h.latest_hist
        if hist is not None and self.index < len(hist):
            counts = hist[self.index].astype(float)
            edges = np.linspace(*Z_RANGE, len(counts) + 1)
            centres = 0.5 * (edges[1:] + edges[:-1])
            top = counts.max()
            heights = counts / top * 0.85 * self._ytop if top > 0 else counts
            self.hist.setOpts(x=centres, height=heights, width=(edges[1] - edges[0]) * 0.95)
        row = -1
        md = h.series("mean_derivative")[row, self.index]
        sat = h.series("saturated_frac")[row, self.index]
        dead = h.series("dead_frac")[row, self.index]
        mz, sz = h.series("preact_mean")[row, self.index], h.series("preact_std")[row, self.index]
        self.stats.setText(f"step {int(h.steps[row])}:  z = {mz:.2f} ± {sz:.2f}   mean f'(z) = {md:.3g}   "
                           f"saturated {100 * sat:.1f} %   dead units {100 * dead:.1f} %")
