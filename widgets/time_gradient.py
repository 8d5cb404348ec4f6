"""Vanishing through time: ||dL/dh_t|| of the first recurrent layer, for every time step t.

Backprop through time multiplies one Jacobian dh_{t+1}/dh_t per step, so the
gradient that reaches an early time step is a product of many factors: in a
vanilla RNN it falls off a cliff toward t = 0, while an LSTM with an open
forget gate carries it through its cell state.

Left: the profile over t at the newest step (solid) and at the first recorded
step (dashed), log scale. Right: the same for every recorded training step as
a map, time step t across, training step up, colour log10 ||dL/dh_t||.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout

from backprop_lab.widgets import theme
from backprop_lab.widgets.axes import DecadeAxis
from backprop_lab.widgets.log_image import LogColumns
from backprop_lab.widgets.panel import HistoryPanel

DEFAULT_LEVELS = (-8.0, 0.0)
MAP_MIN_WIDTH = 520   # narrower than this, only the profile is shown (widen or undock for the map)
NO_RECURRENT = "Recurrent nets only: this stack has no RNN, LSTM or GRU layer."


def profile_text(profile: np.ndarray) -> str:
    """One short sentence on how much of the last time step's gradient reaches t = 0."""
    first, last = float(profile[0]), float(profile[-1])
    t_last = len(profile) - 1
    if not (np.isfinite(first) and np.isfinite(last)) or last <= 0:
        return f"‖∂L/∂h_t‖ is undefined at t = {t_last}."
    if first == 0:
        return f"t = 0 gets no gradient at all (it underflows to 0); t = {t_last} gets {last:.2g}."
    return f"t = 0 gets {first / last:.2g} × the gradient of t = {t_last} ({first:.2g} vs {last:.2g})."


class TimeGradientPanel(HistoryPanel):
    """Profile and map of ||dL/dh_t|| over time steps t, from History's ``time_grad_norm``."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._cache = LogColumns(DEFAULT_LEVELS, fit=True)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.setSpacing(2)
        self.note = QLabel(NO_RECURRENT)
        self.note.setWordWrap(True)
        self.note.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.note)
        self.view = pg.GraphicsLayoutWidget()
        lay.addWidget(self.view, 1)

        self.profile_plot = self.view.addPlot(row=0, col=0, axisItems={"left": DecadeAxis()})
        pp = self.profile_plot
        pp.setLogMode(y=True)
        theme.style_plot(pp, bottom="time step t", left="‖∂L/∂h_t‖")
        pp.setMenuEnabled(False)
        pp.hideButtons()
        self.first_curve = pp.plot(pen=pg.mkPen(theme.MUTED, width=2, style=Qt.DashLine))
        self.curve = pp.plot(pen=pg.mkPen(theme.DERIVATIVE_COLOUR, width=3))

        self.map_plot = self.view.addPlot(row=0, col=1)
        mp = self.map_plot
        theme.style_plot(mp, bottom="time step t", left="training step", grid=False)
        mp.setMouseEnabled(x=False, y=True)
        mp.setMenuEnabled(False)
        mp.hideButtons()
        mp.getViewBox().setBackgroundColor(theme.NAN_COLOUR)
        mp.getViewBox().setDefaultPadding(0.0)
        self.image = pg.ImageItem(np.full((1, 1), np.nan, np.float32), levels=(0, 1))
        mp.addItem(self.image)
        self.bar = pg.ColorBarItem(values=DEFAULT_LEVELS, colorMap=theme.sequential_map(), interactive=False, width=18)
        self.bar.setImageItem(self.image, insert_in=mp)
        self.bar.axis.setLabel("log10 ‖∂L/∂h_t‖")
        theme.style_colour_bar(self.bar)
        theme.set_bar_levels(self.bar, DEFAULT_LEVELS)
        self.view.ci.layout.setColumnStretchFactor(0, 1)
        self.view.ci.layout.setColumnStretchFactor(1, 1)
        self._map_shown = True
        self.view.setVisible(False)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._arrange()

    def _arrange(self) -> None:
        show = self.width() >= MAP_MIN_WIDTH * theme.font_size() / theme.BASE_POINT_SIZE
        if show == self._map_shown:
            return
        if show:
            self.view.addItem(self.map_plot, row=0, col=1)
        else:
            self.view.ci.removeItem(self.map_plot)
        self.map_plot.setVisible(show)
        self._map_shown = show

    def _on_theme_changed(self) -> None:
        self._arrange()

    # ------------------------------------------------------------------ API
    @property
    def available(self) -> bool:
        """True when the History records gradients through time (a recurrent net)."""
        return self.history is not None and self.history.has("time_grad_norm")

    def _history_set(self, history) -> None:
        self._cache.reset()
        self.view.setVisible(self.available)
        self.note.setText(NO_RECURRENT if not self.available else "No step recorded yet.")
        self.curve.setData([], [])
        self.first_curve.setData([], [])

    def _ready(self, h) -> bool:
        return self.available and len(h) > 0

    def _draw(self, h) -> None:
        g = h.series("time_grad_norm")                      # [rows, T]
        steps = h.steps
        img = self._cache.update("time_grad_norm", steps, g).T   # rows are training steps
        self.image.setImage(np.ascontiguousarray(img), autoLevels=False, levels=self._cache.levels)
        theme.set_bar_levels(self.bar, self._cache.levels)
        # training steps up: row k spans [steps[k], steps[k] + spacing); decimated rows stretch
        span = float(max(steps[-1] - steps[0], 0)) + 1.0
        self.image.setRect(0.0, float(steps[0]), float(g.shape[1]), span)
        t = np.arange(g.shape[1])
        for curve, row in ((self.curve, g[-1]), (self.first_curve, g[0])):
            ok = np.isfinite(row) & (row > 0)   # log axis: an underflowed 0 has no place on it
            curve.setData(t[ok], row[ok])
        self.first_curve.setVisible(len(h) > 1)
        key = "solid: this step, dashed: the first" + ("" if self._map_shown else "; widen for the map")
        self.note.setText(f"Step {int(steps[-1])}: {profile_text(g[-1])} ({key})")
