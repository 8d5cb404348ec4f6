"""Gradient heatmap: layers (rows, input at the bottom) x recorded steps (columns).

Colour is log10 of the chosen per-layer statistic. Columns are the History's
stored rows; the time axis is labelled with their true step numbers (old
steps may be decimated). Colour levels only ever widen during a run, so a
colour keeps its meaning while the user watches.
"""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from widgets import theme
from widgets.statistics import DEFAULT, LABELS, SHORT, STATISTICS


def log10_image(values: np.ndarray) -> np.ndarray:
    """[T, L] values -> [L, T] float32 log10 image; zero, negative and NaN become NaN."""
    with np.errstate(divide="ignore", invalid="ignore"):
        img = np.log10(np.where(values > 0, values, np.nan)).T
    return np.ascontiguousarray(img, dtype=np.float32)


class StepAxis(pg.AxisItem):
    """Bottom axis over column indices that prints the true step of each column."""

    def __init__(self):
        super().__init__("bottom")
        self.steps = np.zeros(0, dtype=np.int64)

    def tickStrings(self, values, scale, spacing):
        out = []
        for v in values:
            i = int(math.floor(v))
            out.append(str(int(self.steps[i])) if 0 <= i < len(self.steps) else "")
        return out


class LayerAxis(pg.AxisItem):
    """Left axis: one tick per layer, labelled with the layer's name."""

    def __init__(self):
        super().__init__("left")
        self.names: list[str] = []

    def set_names(self, names):
        self.names = list(names)
        self.setTicks([[(i + 0.5, n) for i, n in enumerate(self.names)]])


class GradientHeatmap(QWidget):
    layer_selected = Signal(int)
    statistic_changed = Signal(str)

    def __init__(self, parent=None, title: str = "Gradient per layer and step"):
        super().__init__(parent)
        self.history = None
        self.statistic = DEFAULT
        self._version = -1
        self._levels: tuple[float, float] | None = None
        self._img = np.zeros((0, 0), np.float32)
        self.selected = -1
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        top = QHBoxLayout()
        self.title = QLabel(f"<b>{title}</b>")
        top.addWidget(self.title)
        top.addStretch(1)
        top.addWidget(QLabel("colour = log10 of"))
        self.combo = QComboBox()
        for key, label in STATISTICS:
            self.combo.addItem(label, key)
        self.combo.currentIndexChanged.connect(self._on_combo)
        top.addWidget(self.combo)
        lay.addLayout(top)
        self.step_axis, self.layer_axis = StepAxis(), LayerAxis()
        self.plot = pg.PlotWidget(axisItems={"bottom": self.step_axis, "left": self.layer_axis})
        pi = self.plot.getPlotItem()
        theme.style_plot(pi, bottom="training step")
        pi.showGrid(x=False, y=False)
        pi.setMouseEnabled(x=True, y=False)   # zoom and scroll the time axis only
        pi.getViewBox().setDefaultPadding(0.0)
        self.image = pg.ImageItem()
        self.image.setColorMap(theme.sequential_map())
        pi.addItem(self.image)
        self.bar = pg.ColorBarItem(values=(-6, 0), colorMap=theme.sequential_map(), interactive=False,
                                   label=f"log10 {SHORT[self.statistic]}")
        self.bar.setImageItem(self.image, insert_in=pi)
        self.highlight = pg.LinearRegionItem(orientation="horizontal", movable=False,
                                             brush=pg.mkBrush(255, 255, 255, 28),
                                             pen=pg.mkPen(255, 255, 255, 160))
        self.highlight.setVisible(False)
        pi.addItem(self.highlight)
        lay.addWidget(self.plot, 1)
        self.readout = QLabel("Hover over the map to read a value.")
        self.readout.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.readout)
        self.plot.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.plot.scene().sigMouseClicked.connect(self._on_mouse_clicked)

    # ------------------------------------------------------------------ API
    def set_history(self, history) -> None:
        self.history = history
        self._version = -1
        self._levels = None
        names = history.layer_names if history is not None else []
        self.layer_axis.set_names(names)
        self.image.clear()
        self._img = np.zeros((len(names), 0), np.float32)
        self.plot.getPlotItem().enableAutoRange()
        self.refresh()

    def set_statistic(self, key: str) -> None:
        if key == self.statistic or key not in LABELS:
            return
        self.statistic = key
        self.combo.blockSignals(True)
        self.combo.setCurrentIndex([k for k, _ in STATISTICS].index(key))
        self.combo.blockSignals(False)
        self.bar.getAxis("left").setLabel(f"log10 {SHORT[key]}")
        self._levels = None
        self._version = -1
        self.refresh()
        self.statistic_changed.emit(key)

    def set_selected_layer(self, i: int) -> None:
        self.selected = i
        n = len(self.layer_axis.names)
        self.highlight.setVisible(0 <= i < n)
        if 0 <= i < n:
            self.highlight.setRegion((i, i + 1))

    def zoom_to(self, first_layer: int, last_layer: int, first_step: int, last_step: int) -> None:
        """Show these layers and steps (a diagnosis finding's evidence)."""
        if self.history is None or len(self.history) == 0:
            return
        steps = self.history.steps
        c0 = int(np.searchsorted(steps, first_step, side="left"))
        c1 = int(np.searchsorted(steps, last_step, side="right"))
        pad = max(2, (c1 - c0) // 10)
        vb = self.plot.getPlotItem().getViewBox()
        vb.setXRange(max(c0 - pad, 0), min(c1 + pad, len(steps)), padding=0)
        vb.setYRange(max(first_layer - 0.5, 0), min(last_layer + 1.5, len(self.layer_axis.names)), padding=0)

    def value_at(self, layer: int, column: int) -> float:
        """The raw statistic under a cell (what the read-out prints)."""
        return float(self.history.series(self.statistic)[column, layer])

    def refresh(self) -> None:
        h = self.history
        if h is None or h.version == self._version:
            return
        self._version = h.version
        if len(h) == 0:
            self.image.clear()
            return
        self._img = log10_image(h.series(self.statistic))
        self.step_axis.steps = h.steps.copy()
        self._update_levels()
        self.image.setImage(self._img, autoLevels=False, levels=self._levels)
        self.image.setRect(0, 0, self._img.shape[1], self._img.shape[0])
        self.step_axis.picture = None
        self.step_axis.update()

    # ------------------------------------------------------------------ internals
    def _update_levels(self) -> None:
        finite = self._img[np.isfinite(self._img)]
        if finite.size == 0:
            self._levels = self._levels or (-6.0, 0.0)
        else:
            lo, hi = float(np.floor(np.percentile(finite, 1))), float(np.ceil(np.percentile(finite, 99)))
            if hi - lo < 1:
                hi = lo + 1
            if self._levels is not None:  # only widen, so colours keep their meaning
                lo, hi = min(lo, self._levels[0]), max(hi, self._levels[1])
            self._levels = (lo, hi)
        self.bar.setLevels(self._levels)

    def _on_combo(self, idx: int) -> None:
        self.set_statistic(self.combo.itemData(idx))

    def _cell_at(self, scene_pos: QPointF):
        vb = self.plot.getPlotItem().getViewBox()
        if not self.plot.getPlotItem().sceneBoundingRect().contains(scene_pos):
            return None
        p = vb.mapSceneToView(scene_pos)
        col, row = int(math.floor(p.x())), int(math.floor(p.y()))
        if 0 <= row < self._img.shape[0] and 0 <= col < self._img.shape[1]:
            return row, col
        return None

    def _on_mouse_moved(self, pos) -> None:
        cell = self._cell_at(pos)
        if cell is None or self.history is None:
            return
        row, col = cell
        self.readout.setText(self.readout_text(row, col))

    def readout_text(self, row: int, col: int) -> str:
        v = self.value_at(row, col)
        step = int(self.history.steps[col])
        value = "undefined (NaN)" if not np.isfinite(v) else f"{v:.3g}"
        return f"layer {self.history.layer_names[row]}, step {step}: {SHORT[self.statistic]} = {value}"

    def _on_mouse_clicked(self, ev) -> None:
        if ev.button() != Qt.LeftButton:
            return
        cell = self._cell_at(ev.scenePos())
        if cell is not None:
            self.set_selected_layer(cell[0])
            self.layer_selected.emit(cell[0])
