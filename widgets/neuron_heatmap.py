"""Neurons x steps of the selected layer: mean |∂L/∂z_j| of each unit j, log10 colour.

Inferno's bottom colour is black and an exact zero is drawn below every level,
so a unit that passes no gradient (a dead ReLU: z < 0 for every sample) is a
black row. The title counts the units that passed none over the newest stored
steps; a unit that dies during training shows as a row that turns black.
"""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout

from backprop_lab.widgets import theme
from backprop_lab.widgets.axes import StepAxis
from backprop_lab.widgets.gradient_heatmap import format_value, with_blocked
from backprop_lab.widgets.log_image import LogColumns
from backprop_lab.widgets.panel import HistoryPanel

DEFAULT_LEVELS = (-8.0, 0.0)
RECENT = 20   # a unit is reported dead when its gradient was 0 at each of this many newest stored steps


class NeuronHeatmap(HistoryPanel):
    """Units (rows, unit 0 at the bottom) x steps of one layer, log10 mean |∂L/∂z|.

    Signal: ``layer_selected(int)`` when the user picks a layer in the panel's combo.
    """

    layer_selected = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.layer = 0
        self.dead = np.zeros(0, bool)   # units with zero gradient at each of the RECENT newest steps
        self._img = np.zeros((0, 0), np.float32)
        self._cache = LogColumns(DEFAULT_LEVELS, fit=True)   # this layer's own decades
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.setSpacing(2)
        top = QHBoxLayout()
        self.title = QLabel("Select a layer to see its neurons.")
        self.title.setWordWrap(True)
        top.addWidget(self.title, 1)
        self.combo = QComboBox()
        self.combo.setToolTip("Layer whose neurons are shown")
        self.combo.currentIndexChanged.connect(self._on_combo_changed)
        top.addWidget(self.combo)
        lay.addLayout(top)
        self.step_axis = StepAxis()
        self.plot = pg.PlotWidget(axisItems={"bottom": self.step_axis})
        pi = self.plot.getPlotItem()
        theme.style_plot(pi, bottom="training step", left="neuron (unit index)", grid=False)
        pi.setMouseEnabled(x=True, y=False)
        pi.setMenuEnabled(False)
        vb = pi.getViewBox()
        vb.setDefaultPadding(0.0)
        vb.setBackgroundColor(theme.NAN_COLOUR)
        # born with a 1x1 NaN image: an ImageItem without data defers the colour bar's levels
        # and re-applies them over the first real setImage (pyqtgraph 0.14)
        self.image = pg.ImageItem(np.full((1, 1), np.nan, np.float32), levels=(0, 1), autoDownsample=True)
        pi.addItem(self.image)
        self.bar = pg.ColorBarItem(values=DEFAULT_LEVELS, colorMap=theme.neuron_map(), interactive=False, width=18)
        self.bar.setImageItem(self.image, insert_in=pi)
        self.bar.axis.setLabel("log10 mean |∂L/∂z| per unit")
        theme.style_colour_bar(self.bar)
        theme.set_bar_levels(self.bar, DEFAULT_LEVELS)
        theme.fix_axis_width(pi.getAxis("left"), "0000")
        lay.addWidget(self.plot, 1)
        self.readout = QLabel("Hover to read a unit's gradient · black rows: units that pass no gradient")
        self.readout.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.readout.setWordWrap(True)
        lay.addWidget(self.readout)
        self.plot.scene().sigMouseMoved.connect(self._on_mouse_moved)

    # ------------------------------------------------------------------ API
    def _history_set(self, history) -> None:
        self._cache.reset()
        self.image.clear()
        names = list(history.layer_names) if history is not None else []
        with_blocked(self.combo, lambda: (self.combo.clear(), self.combo.addItems(names)))
        if not 0 <= self.layer < len(names):
            self.layer = 0
        with_blocked(self.combo, lambda: self.combo.setCurrentIndex(self.layer if names else -1))
        self._reset_view()

    def set_selected_layer(self, i: int) -> None:
        """Show layer ``i``'s neurons. Does not emit layer_selected."""
        if self.history is not None and not 0 <= i < len(self.history.layer_names):
            return
        with_blocked(self.combo, lambda: self.combo.setCurrentIndex(i))
        if i != self.layer:
            self.layer = i
            self.invalidate()
            self._cache.reset()
            self._reset_view()
            self.refresh()

    def value_at(self, unit: int, column: int) -> float:
        return float(self.history.neuron_grad(self.layer)[column, unit])

    def readout_text(self, unit: int, col: int) -> str:
        h = self.history
        return (f"unit {unit} of {h.layer_names[self.layer]}, step {int(h.steps[col])}: "
                f"mean |∂L/∂z| = {format_value(self.value_at(unit, col))}")

    def levels(self) -> tuple[float, float]:
        return self._cache.levels

    def cell_at(self, scene_pos: QPointF):
        vb = self.plot.getPlotItem().getViewBox()
        if not vb.sceneBoundingRect().contains(scene_pos):
            return None
        p = vb.mapSceneToView(scene_pos)
        col, unit = int(math.floor(p.x())), int(math.floor(p.y() + 0.5))
        if 0 <= unit < self._img.shape[0] and 0 <= col < self._img.shape[1]:
            return unit, col
        return None

    def _ready(self, h) -> bool:
        return bool(h.layer_names)

    def _draw(self, h) -> None:
        name = h.layer_names[self.layer]
        values = h.neuron_grad(self.layer)
        if len(h) == 0 or values.shape[1] == 0:
            self.title.setText(f"<b>{name}</b>: no data yet")
            self.image.clear()
            self._img = np.zeros((values.shape[1], 0), np.float32)
            return
        U = values.shape[1]
        self._img = self._cache.update(self.layer, h.steps, values)
        self.image.setImage(self._img, autoLevels=False, levels=self._cache.levels)
        if self.bar.levels() != self._cache.levels:   # levels only change when they widen
            theme.set_bar_levels(self.bar, self._cache.levels)
        self.image.setRect(0, -0.5, len(h), U)   # unit j centred on y = j
        self.plot.getPlotItem().getViewBox().setLimits(xMin=0, xMax=max(len(h), 1), yMin=-0.5, yMax=U - 0.5)
        self.step_axis.set_steps(h.steps)
        recent = values[-RECENT:]
        self.dead = np.all(recent == 0, axis=0)
        n_dead = int(self.dead.sum())
        dead = (f" · <span style='color:#b3400b'><b>{n_dead} of {U}</b> pass no gradient "
                f"(black rows; zero in the last {len(recent)} stored steps)</span>") if n_dead else ""
        pooled = f" in {U} groups of units" if h.pooled(self.layer) else ""
        self.title.setText(f"<b>{name}</b>: {h.units[self.layer]} units{pooled}{dead}")

    # ------------------------------------------------------------------ internals
    def _reset_view(self) -> None:
        vb = self.plot.getPlotItem().getViewBox()
        h = self.history
        units = h.stored_units[self.layer] if h is not None and h.units else 1   # columns kept (pooled if wide)
        vb.setLimits(yMin=-0.5, yMax=units - 0.5)
        vb.setRange(yRange=(-0.5, units - 0.5), padding=0)
        vb.enableAutoRange(x=True)

    def _on_theme_changed(self) -> None:
        theme.fix_axis_width(self.plot.getPlotItem().getAxis("left"), "0000")

    def _on_combo_changed(self, i: int) -> None:
        if i >= 0:
            self.set_selected_layer(i)
            self.layer_selected.emit(i)

    def _on_mouse_moved(self, pos) -> None:
        cell = self.cell_at(pos)
        if cell is not None and self.history is not None:
            self.readout.setText(self.readout_text(*cell))
