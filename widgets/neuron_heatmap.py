"""Neurons x steps of the selected layer: mean |dL/dz_j| of each unit, log10.

A unit that never passes a gradient (a dead ReLU) is a dark row: its value is
exactly 0 and is drawn at the bottom colour, below every live unit.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from widgets import theme
from widgets.gradient_heatmap import StepAxis

DEAD_BELOW = 3.0  # decades under the smallest live value where dead (zero) units are drawn


def neuron_image(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[T, U] -> ([U, T] log10 image with zeros pushed below every live value, dead-unit mask)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log10(values).T.astype(np.float32)
    live = logs[np.isfinite(logs)]
    floor = (float(live.min()) if live.size else -8.0) - DEAD_BELOW
    logs[np.isneginf(logs)] = floor
    dead = np.all(values == 0, axis=0) if len(values) else np.zeros(values.shape[1], bool)
    return np.ascontiguousarray(logs), dead


class NeuronHeatmap(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.history, self.layer = None, 0
        self._version = -1
        self._levels = None
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        self.title = QLabel("Select a layer to see its neurons.")
        self.title.setWordWrap(True)
        lay.addWidget(self.title)
        self.step_axis = StepAxis()
        self.plot = pg.PlotWidget(axisItems={"bottom": self.step_axis})
        pi = self.plot.getPlotItem()
        theme.style_plot(pi, bottom="training step", left="neuron")
        pi.showGrid(x=False, y=False)
        pi.setMouseEnabled(x=True, y=False)
        pi.getViewBox().setDefaultPadding(0.0)
        self.image = pg.ImageItem()
        self.image.setColorMap(pg.colormap.get("inferno"))
        pi.addItem(self.image)
        self.bar = pg.ColorBarItem(values=(-6, 0), colorMap=pg.colormap.get("inferno"), interactive=False,
                                   label="log10 mean |∂L/∂z|")
        self.bar.setImageItem(self.image, insert_in=pi)
        lay.addWidget(self.plot, 1)
        self.dead = np.zeros(0, bool)

    def set_history(self, history) -> None:
        self.history = history
        self._version = -1
        self._levels = None
        self.image.clear()
        if history is not None and not (0 <= self.layer < len(history.layer_names)):
            self.layer = 0
        self.refresh()

    def set_selected_layer(self, i: int) -> None:
        if i != self.layer:
            self.layer = i
            self._version = -1
            self._levels = None
            self.plot.getPlotItem().enableAutoRange()
            self.refresh()

    def refresh(self) -> None:
        h = self.history
        if h is None or h.version == self._version or not h.layer_names:
            return
        self._version = h.version
        name = h.layer_names[self.layer]
        values = h.neuron_grad(self.layer)
        if len(h) == 0 or values.shape[1] == 0:
            self.title.setText(f"<b>{name}</b>: no data yet")
            self.image.clear()
            return
        img, self.dead = neuron_image(values)
        finite = img[np.isfinite(img)]
        lo, hi = (float(np.floor(finite.min())), float(np.ceil(finite.max()))) if finite.size else (-6.0, 0.0)
        if self._levels is not None:
            lo, hi = min(lo, self._levels[0]), max(hi, self._levels[1])
        self._levels = (lo, max(hi, lo + 1))
        self.image.setImage(img, autoLevels=False, levels=self._levels)
        self.image.setRect(0, 0, img.shape[1], img.shape[0])
        self.bar.setLevels(self._levels)
        self.step_axis.steps = h.steps.copy()
        n_dead = int(self.dead.sum())
        dead = (f", <span style='color:#e69f00'>{n_dead} of {len(self.dead)} units passed no gradient at any "
                "stored step (dark rows)</span>") if n_dead else ""
        self.title.setText(f"<b>{name}</b>: {values.shape[1]} neurons{dead}")
