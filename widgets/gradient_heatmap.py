"""Gradient heatmap: layers (rows, input at the bottom) x recorded steps (columns).

Colour is log10 of the chosen per-layer statistic: a vanishing net is a map
that darkens, decade after decade, from the output row down to the input row.
Columns are the History's stored rows, so the time axis is labelled with
their true step numbers (old steps may be decimated). Colour levels start at
fixed decades and only ever widen, so a colour keeps its meaning while the
user watches. NaN (undefined, e.g. the bias gradient of a layer without a
bias) is transparent over grey; an exact zero is the map's bottom colour.
"""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout

from backprop_lab.widgets import theme
from backprop_lab.widgets.axes import NameAxis, StepAxis
from backprop_lab.widgets.log_image import ColumnImage, LogColumns, log10_image  # noqa: F401  (log10_image: public helper)
from backprop_lab.widgets.statistics import DEFAULT, DEFAULT_LEVELS, LABELS, SHORT, STATISTICS, UNITS
from backprop_lab.widgets.panel import HistoryPanel

HINT = "Hover: read a value · click: select a layer · wheel, drag: zoom, scroll time · grey: undefined"


def format_value(v: float) -> str:
    if not np.isfinite(v):
        return "undefined (NaN)" if np.isnan(v) else f"{v}"
    if v == 0:
        return "0 (no gradient at all)"
    return f"{v:.3g} (log10 {math.log10(abs(v)):+.2f})" if v > 0 else f"{v:.3g}"


class GradientHeatmap(HistoryPanel):
    """Layers x steps image of one per-layer statistic, log10 colour.

    Signals: ``layer_selected(int)`` when the user clicks a row;
    ``statistic_changed(str)`` when the statistic combo changes.
    """

    layer_selected = Signal(int)
    statistic_changed = Signal(str)

    def __init__(self, parent=None, title: str = "Gradient per layer and step"):
        super().__init__(parent)
        self.statistic = DEFAULT
        self._n = 0
        self._img = np.zeros((0, 0), np.float32)
        self._cache = LogColumns(DEFAULT_LEVELS[self.statistic])
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.setSpacing(2)
        top = QHBoxLayout()
        self.title = QLabel(f"<b>{title}</b>")
        top.addWidget(self.title)
        top.addStretch(1)
        top.addSpacing(8)
        top.addWidget(QLabel("colour = log10 of"))
        self.combo = statistic_combo()
        for key, label in STATISTICS:
            self.combo.addItem(label, key)
        self.combo.currentIndexChanged.connect(self._on_combo_changed)
        top.addWidget(self.combo)
        lay.addLayout(top)

        self.step_axis, self.layer_axis = StepAxis(), NameAxis("left")
        self.plot = pg.PlotWidget(axisItems={"bottom": self.step_axis, "left": self.layer_axis})
        pi = self.plot.getPlotItem()
        theme.style_plot(pi, bottom="training step", grid=False)
        pi.setMouseEnabled(x=True, y=False)   # zoom and scroll the time axis only
        pi.setMenuEnabled(False)
        vb = pi.getViewBox()
        vb.setDefaultPadding(0.0)
        vb.setBackgroundColor(theme.NAN_COLOUR)   # NaN cells are transparent: grey
        # born with a 1x1 NaN image: an ImageItem without data defers the colour bar's levels
        # and re-applies them over the first real setImage (pyqtgraph 0.14)
        self.image = ColumnImage(np.full((1, 1), np.nan, np.float32), levels=(0, 1), autoDownsample=True)
        pi.addItem(self.image)
        self.bar = pg.ColorBarItem(values=self._cache.levels, colorMap=theme.sequential_map(),
                                   interactive=False, width=18)
        self.bar.setImageItem(self.image, insert_in=pi)
        self.bar.axis.setLabel(self._bar_label())
        theme.style_colour_bar(self.bar)
        theme.set_bar_levels(self.bar, self._cache.levels)
        self.highlight = pg.LinearRegionItem(orientation="horizontal", movable=False,
                                             brush=pg.mkBrush(255, 255, 255, 45),
                                             pen=pg.mkPen(*theme.HIGHLIGHT, width=2))
        self.highlight.setZValue(10)
        self.highlight.setVisible(False)
        pi.addItem(self.highlight, ignoreBounds=True)
        lay.addWidget(self.plot, 1)
        self.readout = QLabel(HINT)
        self.readout.setWordWrap(True)
        self.readout.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.readout)
        self.plot.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.plot.scene().sigMouseClicked.connect(self._on_mouse_clicked)

    # ------------------------------------------------------------------ API
    def _history_set(self, history) -> None:
        self._n = 0
        self._cache.reset()
        names = list(history.layer_names) if history is not None else []
        self.layer_axis.set_names(names)
        self.image.clear()
        self._img = np.zeros((len(names), 0), np.float32)
        vb = self.plot.getPlotItem().getViewBox()
        vb.setLimits(yMin=0, yMax=max(len(names), 1), xMin=0)
        vb.setRange(yRange=(0, max(len(names), 1)), padding=0)
        vb.enableAutoRange(x=True)
        if not 0 <= self.selected < len(names):
            self.selected = -1
        self.set_selected_layer(self.selected)

    def set_statistic(self, key: str) -> None:
        """Colour by another statistic (a key of widgets.statistics.STATISTICS)."""
        if key == self.statistic or key not in LABELS:
            return
        self.statistic = key
        with_blocked(self.combo, lambda: self.combo.setCurrentIndex([k for k, _ in STATISTICS].index(key)))
        self._cache = LogColumns(DEFAULT_LEVELS[key])
        self.bar.axis.setLabel(self._bar_label())
        theme.style_colour_bar(self.bar)
        self.invalidate()
        self.refresh()
        self.statistic_changed.emit(key)

    def _selected_set(self, i: int) -> None:
        """Outline row ``i`` (-1: none)."""
        n = len(self.layer_axis.names)
        ok = 0 <= i < n
        self.highlight.setVisible(ok)
        self.layer_axis.set_emphasised(i if ok else -1)
        if ok:
            self.highlight.setRegion((i, i + 1))

    def zoom_to(self, first_layer: int, last_layer: int, first_step: int, last_step: int) -> None:
        """Show these layers and steps (a diagnosis finding's evidence), with a little margin."""
        if self.history is None or len(self.history) == 0:
            return
        steps = self.history.steps
        c0 = int(np.searchsorted(steps, first_step, side="left"))
        c1 = int(np.searchsorted(steps, last_step, side="right"))
        pad = max(2, (c1 - c0) // 10)
        n = len(self.layer_axis.names)
        vb = self.plot.getPlotItem().getViewBox()
        vb.setRange(xRange=(max(c0 - pad, 0), min(c1 + pad, len(steps))),
                    yRange=(max(min(first_layer, last_layer) - 0.5, 0), min(max(first_layer, last_layer) + 1.5, n)),
                    padding=0)

    def reset_zoom(self) -> None:
        vb = self.plot.getPlotItem().getViewBox()
        vb.setRange(yRange=(0, max(len(self.layer_axis.names), 1)), padding=0)
        vb.enableAutoRange(x=True)

    def levels(self) -> tuple[float, float]:
        """The colour levels (log10 decades) now in use."""
        return self._cache.levels

    def value_at(self, layer: int, column: int) -> float:
        """The raw statistic under a cell (what the read-out prints)."""
        return float(self.history.series(self.statistic)[column, layer])

    def readout_text(self, row: int, col: int) -> str:
        """'layer NAME, step S: STAT = VALUE (log10 X)' for one cell."""
        v = self.value_at(row, col)
        step = int(self.history.steps[col])
        return f"layer {self.history.layer_names[row]}, step {step}: {SHORT[self.statistic]} = {format_value(v)}"

    def cell_at(self, scene_pos: QPointF):
        """(row, column) of the image cell under a scene position, or None."""
        pi = self.plot.getPlotItem()
        vb = pi.getViewBox()
        if not vb.sceneBoundingRect().contains(scene_pos):
            return None
        p = vb.mapSceneToView(scene_pos)
        col, row = int(math.floor(p.x())), int(math.floor(p.y()))
        if 0 <= row < self._img.shape[0] and 0 <= col < self._img.shape[1]:
            return row, col
        return None

    def _draw(self, h) -> None:
        n = len(h)
        if n == 0 or not h.layer_names:
            self.image.clear()
            self._img = np.zeros((len(h.layer_names), 0), np.float32)
            self._n = 0
            return
        old_n = self._n
        # a view of the growing buffer: a copy of the whole 4 MB image each frame was 0.8 ms of it (ColumnImage
        # averages only the new blocks, from the view)
        self._img = self._cache.update(self.statistic, h.steps, h.series(self.statistic), contiguous=False)
        self.step_axis.set_steps(h.steps)
        self.image.keep_columns(self._cache.unchanged)
        self.image.setImage(self._img, autoLevels=False, levels=self._cache.levels)
        if self.bar.levels() != self._cache.levels:   # levels only change when they widen
            theme.set_bar_levels(self.bar, self._cache.levels)
        self.image.setRect(0, 0, n, self._img.shape[0])
        self._follow(old_n, n)
        self._n = n

    # ------------------------------------------------------------------ internals
    def _bar_label(self) -> str:
        unit = UNITS.get(self.statistic)
        return f"log10 {SHORT[self.statistic]}" + (f" [{unit}]" if unit else "")

    def _follow(self, old_n: int, n: int) -> None:
        """Keep a zoomed-in view that showed the newest column scrolling with new columns."""
        vb = self.plot.getPlotItem().getViewBox()
        vb.setLimits(xMax=max(n, 1))
        if vb.autoRangeEnabled()[0] or old_n == 0 or n <= old_n:
            return
        x0, x1 = vb.viewRange()[0]
        if x1 >= old_n - 0.5:
            d = n - old_n
            vb.setXRange(x0 + d, x1 + d, padding=0)

    def _on_combo_changed(self, idx: int) -> None:
        self.set_statistic(self.combo.itemData(idx))

    def _on_mouse_moved(self, pos) -> None:
        cell = self.cell_at(pos)
        if cell is None or self.history is None:
            return
        self.readout.setText(self.readout_text(*cell))

    def _on_mouse_clicked(self, ev) -> None:
        if ev.button() != Qt.LeftButton:
            return
        cell = self.cell_at(ev.scenePos())
        if cell is not None:
            self.set_selected_layer(cell[0])
            self.layer_selected.emit(cell[0])

    def _on_theme_changed(self) -> None:
        self.layer_axis.picture = None
        self.layer_axis.update()


def statistic_combo() -> QComboBox:
    """A combo that elides its long labels when the panel is narrow (the popup shows them whole)."""
    combo = QComboBox()
    combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(22)
    return combo


def with_blocked(widget, fn) -> None:
    """Run fn with the widget's signals blocked (sync a control from the model without echo)."""
    old = widget.blockSignals(True)
    try:
        fn()
    finally:
        widget.blockSignals(old)
