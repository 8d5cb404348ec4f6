"""The selected activation: f(z), f'(z) and where the layer's units actually sit.

Backprop multiplies the gradient by f'(z) at every unit, so the curve f'(z)
with its maximum marked (sigmoid: 0.25, which is why deep sigmoid nets
vanish) says the best a layer can pass on. The histogram of the layer's
pre-activations z at the newest recorded step is laid over it (right axis:
share of all (sample, unit) entries per bin); the tails where
f'(z) < 1 % of its maximum are shaded: units there pass almost no gradient
(saturated, or off for ReLU).
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QGraphicsItem, QHBoxLayout, QLabel, QVBoxLayout

from backprop_lab.engine.activations import SATURATION_FRACTION, activation_for_name  # noqa: F401  (re-exported)
from backprop_lab.engine.snapshot import HIST_RANGE
from backprop_lab.widgets import theme
from backprop_lab.widgets.gradient_heatmap import with_blocked
from backprop_lab.widgets.panel import HistoryPanel, ReadoutLabel

# The probes' histogram of z (the number of bins is read from the array itself).
Z_RANGE = HIST_RANGE
CURVE_Z = np.linspace(*Z_RANGE, 801)
HIST_TOP = 0.8      # the tallest histogram bar reaches this share of the plot's height when scaled anew
# the histogram keeps its scale (and its right axis its picture) while its tallest bar stays within this
# band of the plot's height: the share per bin moves a little every step, and a new scale every step made
# the axis draw its ticks again (~1 ms a frame, issue 9 item 8)
HIST_BAND = (0.7, 0.9)
def _rgba(c) -> str:
    return f"rgba({c[0]},{c[1]},{c[2]},{c[3] / 255:.2f})"


KEY = (f"<span style='color:{theme.FUNCTION_COLOUR}'>― f(z)</span>&nbsp;&nbsp; "
       f"<span style='color:{theme.DERIVATIVE_COLOUR}'><b>━ f′(z)</b></span>&nbsp;&nbsp; "
       f"<span style='color:{_rgba((40, 140, 200, 255))}'>█ z at the newest step</span>&nbsp;&nbsp; "
       f"<span style='color:{_rgba((150, 150, 160, 255))}'>█ f′ &lt; 1 % of max: no gradient</span>")
def saturated_intervals(df_values: np.ndarray, z: np.ndarray, threshold: float) -> list[tuple[float, float]]:
    """The z intervals where f'(z) < threshold, as (start, end) pairs."""
    low = np.asarray(df_values) < threshold
    d = np.diff(np.concatenate([[0], low.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)   # ends: first index after a run
    return [(float(z[s]), float(z[min(e, len(z) - 1)])) for s, e in zip(starts, ends)]


class PercentAxis(pg.AxisItem):
    """Right axis: the histogram's share of entries per bin, in percent.

    It never narrows again for shorter labels ("2.5" after "0.25"): a width that went back and forth
    with the histogram's scale resized the plot, and every item in it was drawn anew."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.setStyle(autoReduceTextSpace=False)

    def tickStrings(self, values, scale, spacing):
        return [f"{v * scale:.3g}" for v in values]


class ActivationPanel(HistoryPanel):
    """f, f' of one activation layer with the live histogram of its z.

    Call ``set_activations`` with the engine.activations.Activation of each
    activation layer (input side first); without it the types are read from
    the History's layer names. Signal: ``activation_selected(int)`` when the
    user picks another activation layer in the panel's combo.
    """

    activation_selected = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.activations: list = []
        self._given: list = []
        self.index = 0
        self._ytop = 1.0
        self._k = None      # plot units per unit of share while the tallest bar stays in HIST_BAND
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.setSpacing(2)
        top = QHBoxLayout()
        self.title = QLabel("No activation layer.")
        self.title.setWordWrap(True)
        top.addWidget(self.title, 1)
        self.combo = QComboBox()
        self.combo.setToolTip("Activation layer shown")
        self.combo.currentIndexChanged.connect(self._on_combo_changed)
        top.addWidget(self.combo)
        lay.addLayout(top)
        self.right_axis = PercentAxis("right")
        self.plot = pg.PlotWidget(axisItems={"right": self.right_axis})
        pi = self.plot.getPlotItem()
        pi.showAxis("right")
        theme.style_plot(pi, bottom="pre-activation z", left="f(z), f′(z)", right="z entries per bin",
                         right_units="%")
        self.right_axis.setGrid(False)   # the grid follows f's axis only
        pi.setMouseEnabled(x=False, y=False)
        pi.setMenuEnabled(False)
        pi.hideButtons()
        self.hist = pg.BarGraphItem(x=[], height=[], width=0.2, brush=pg.mkBrush(*theme.HISTOGRAM_BRUSH),
                                    pen=pg.mkPen(None))
        pi.addItem(self.hist)
        self.f_curve = pi.plot(pen=pg.mkPen(theme.FUNCTION_COLOUR, width=2))
        self.df_curve = pi.plot(pen=pg.mkPen(theme.DERIVATIVE_COLOUR, width=3))
        # f and f' change only with the layer shown, the histogram under them with every step: kept as
        # pixmaps, they are not drawn again each time the histogram is
        for c in (self.f_curve, self.df_curve):
            c.curve.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self.max_line = pg.InfiniteLine(angle=0, movable=False,
                                        pen=pg.mkPen(theme.DERIVATIVE_COLOUR, width=1, style=Qt.DashLine))
        pi.addItem(self.max_line)
        self.max_label = theme.text_item("", colour=theme.DERIVATIVE_COLOUR, anchor=(0, 1), bold=True)
        pi.addItem(self.max_label)
        self.shades: list = []
        lay.addWidget(self.plot, 1)
        self.stats = ReadoutLabel("")   # new figures every frame, without a new layout of the window
        lay.addWidget(self.stats)

    # ------------------------------------------------------------------ API
    def set_activations(self, activations: list) -> None:
        """The Activation of each activation layer, input side first (engine.activations)."""
        self._given = list(activations)
        self._sync_layers()

    def _history_set(self, history) -> None:
        self._sync_layers()

    def set_selected_layer(self, a: int) -> None:
        """Show activation layer ``a`` (index into the History's act_names). Does not emit."""
        if a != self.index and 0 <= a < len(self.activations):
            self.index = a
            with_blocked(self.combo, lambda: self.combo.setCurrentIndex(a))
            self._draw_curves()
            self.invalidate()
            self.refresh()

    def histogram(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(bin centres, share of entries per bin) of the shown layer's z at the newest step."""
        h = self.history
        if h is None or h.latest_hist is None or self.index >= len(h.latest_hist):
            return None
        counts = np.asarray(h.latest_hist[self.index], dtype=np.float64)
        edges = np.linspace(*HIST_RANGE, len(counts) + 1)
        total = counts.sum()
        return 0.5 * (edges[1:] + edges[:-1]), (counts / total if total > 0 else counts)

    def stats_text(self) -> str:
        h, a = self.history, self.index
        if h is None or len(h) == 0 or a >= len(h.act_names):
            return ""
        md = float(h.series("mean_derivative")[-1, a])
        sat = float(h.series("saturated_frac")[-1, a])
        dead = float(h.series("dead_frac")[-1, a])
        mz, sz = float(h.series("preact_mean")[-1, a]), float(h.series("preact_std")[-1, a])
        peak = self.activations[a].max_derivative if a < len(self.activations) else float("nan")
        share = f" ({100 * md / peak:.0f} % of max)" if np.isfinite(md) and peak > 0 else ""
        return (f"step {int(h.steps[-1])}:  mean f′(z) = {md:.3g}{share}  ·  saturated {100 * sat:.1f} %  ·  "
                f"dead units {100 * dead:.1f} %  ·  z = {mz:.2f} ± {sz:.2f}")

    def _ready(self, h) -> bool:
        return bool(self.activations)

    def _draw(self, h) -> None:
        if len(h) == 0 or self.index >= len(h.act_names):
            self.hist.setOpts(x=[], height=[])
            self.stats.setText("")
            return
        got = self.histogram()
        if got is None:
            self.hist.setOpts(x=[], height=[])
            self.right_axis.setScale(1.0)
        else:
            centres, share = got
            top = float(share.max())
            k = self._k   # plot units per unit of share: kept while the tallest bar stays in the band
            if k is None or not HIST_BAND[0] * self._ytop <= top * k <= HIST_BAND[1] * self._ytop:
                k = self._k = HIST_TOP * self._ytop / top if top > 0 else None
            k = k or 1.0
            self.hist.setOpts(x=centres, height=share * k, width=(centres[1] - centres[0]) * 0.92)
            self.right_axis.setScale(100.0 / k)
        self.stats.setText(self.stats_text())

    # ------------------------------------------------------------------ internals
    def _sync_layers(self) -> None:
        names = list(self.history.act_names) if self.history is not None else []
        if self._given and (not names or len(self._given) == len(names)):
            self.activations = list(self._given)
        else:
            self.activations = [activation_for_name(n) for n in names]
        if not names:
            names = [a.name for a in self.activations]
        with_blocked(self.combo, lambda: (self.combo.clear(), self.combo.addItems(names)))
        self.index = min(self.index, max(len(self.activations) - 1, 0))
        with_blocked(self.combo, lambda: self.combo.setCurrentIndex(self.index if names else -1))
        self.combo.setVisible(len(names) > 1)
        self._draw_curves()
        self.invalidate()

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
        self._k = None   # the histogram scaled anew for this layer
        if not self.activations:
            self.f_curve.setData([], [])
            self.df_curve.setData([], [])
            self.hist.setOpts(x=[], height=[])
            self.max_line.setVisible(False)
            self.max_label.setVisible(False)
            self.title.setText("No activation layer in this stack.")
            self.stats.setText("")
            return
        act = self.activations[self.index]
        f, df = np.asarray(act.f(CURVE_Z), float), np.asarray(act.df(CURVE_Z), float)
        peak = act.max_derivative
        bounded = float(np.abs(f).max()) <= 1.5 * max(peak, 1.0)
        ymin = min(-0.05, float(f.min()) - 0.05) if bounded else -0.1 * max(peak, 1.0)
        ymax = max(1.35 * peak, float(f.max()) + 0.08) if bounded else 1.6 * max(peak, 1.0)
        ymin = max(ymin, -1.2 * max(peak, 1.0))
        self._ytop = ymax
        self.df_curve.setData(CURVE_Z, df)
        self.f_curve.setData(CURVE_Z, f)   # an unbounded f (ReLU) leaves the plot at the top
        self.max_line.setVisible(True)
        self.max_line.setValue(peak)
        self.max_label.setVisible(True)
        self.max_label.setText(f"max f′ = {peak:.3g}")
        self.max_label.setPos(Z_RANGE[0] + 0.2, peak)
        for lo, hi in saturated_intervals(df, CURVE_Z, SATURATION_FRACTION * peak):
            region = pg.LinearRegionItem((lo, hi), movable=False, brush=pg.mkBrush(*theme.SATURATED_BRUSH),
                                         pen=pg.mkPen(None))
            region.setZValue(-10)
            pi.addItem(region, ignoreBounds=True)
            self.shades.append(region)
        pi.setXRange(*Z_RANGE, padding=0)
        pi.setYRange(ymin, ymax, padding=0)
        self.title.setText(f"<b>{self._name()}</b>&nbsp;&nbsp; {KEY}")

    def _on_combo_changed(self, a: int) -> None:
        if a >= 0:
            self.set_selected_layer(a)
            self.activation_selected.emit(a)

    def _on_theme_changed(self) -> None:
        self.invalidate()
        self._draw_curves()
        self.refresh()
