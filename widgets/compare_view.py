"""Two runs side by side: does a remedy help, and where?

Left, three maps over (layer, step): run A and run B coloured with ONE shared
scale (log10 of the chosen statistic, levels from both runs, only widening,
so the same colour means the same size in both), and the ratio
log10(B / A) on the steps both runs recorded, with a diverging map centred on
0 (red: B's value is larger, blue: smaller, white: the same). Right, each
layer's line of both runs overlaid (one colour per run, the input layer drawn
thick), both loss curves, and a table of per-layer medians over the last
common steps with B / A. A thin view: it reads two Histories (numpy only) and
never touches torch.

(Over 400 lines with a reason: four synchronised views of two runs (two maps,
flow, loss, table) that share one colour scale and one step range.)
"""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor, QFontMetrics
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QGraphicsRectItem, QHBoxLayout, QHeaderView,
                               QLabel, QSplitter, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from backprop_lab.engine import compare
from backprop_lab.widgets import theme
from backprop_lab.widgets.axes import NameAxis
from backprop_lab.widgets.layer_lines import LayerLines
from backprop_lab.widgets.loss_plot import MAX_MARKERS
from backprop_lab.widgets.log_image import ZERO_LOG, LogColumns, log10_positive, widen  # noqa: F401  (compare's levels)
from backprop_lab.widgets.statistics import LABELS, SHORT

pg.setConfigOptions(imageAxisOrder="row-major")

COMPARE_STATISTICS = ["bias_grad_norm", "weight_grad_norm", "delta_norm", "update_ratio"]
RUN_COLOURS = (theme.SERIES[1], theme.SERIES[0])  # A vermillion, B blue (Okabe-Ito, read on white)
RATIO_NAN_BRUSH = (QColor(120, 120, 130), Qt.BDiagPattern)     # hatched: the ratio map's middle is already grey
TABLE_WINDOW = 20                     # common steps the table's medians are taken over
MAX_COLUMNS = 4096                    # columns of a map resampled onto a uniform step grid


def on_step_grid(steps: np.ndarray, img: np.ndarray):
    """Place the columns of an [rows, T] image at their true steps.

    Returns (image, x0, width): the image as given when the steps are evenly
    spaced (column k covers steps[k] ± stride/2), else resampled onto an even
    grid (each grid step shows the newest stored row at or before it), since
    an ImageItem has equal-width columns and decimated Histories do not.
    """
    n = len(steps)
    if n == 0:
        return img, 0.0, 1.0
    if n == 1:
        return img, float(steps[0]) - 0.5, 1.0
    d = np.diff(steps)
    if np.all(d == d[0]):
        return img, float(steps[0]) - d[0] / 2, float(n * d[0])
    span = int(steps[-1] - steps[0]) + 1
    stride = max(int(d.min()), math.ceil(span / MAX_COLUMNS))
    grid = np.arange(steps[0], steps[-1] + 1, stride)
    idx = np.searchsorted(steps, grid, side="right") - 1
    return np.ascontiguousarray(img[:, idx]), float(steps[0]) - stride / 2, float(len(grid) * stride)


class CompareView(QWidget):
    """Heatmaps of A and B (shared scale), log10(B / A), overlaid layer lines and losses, a table."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.a = self.b = None
        self.labels = ("A", "B")
        self.statistic = "bias_grad_norm"
        self._versions = (None, None)
        self.levels: tuple[float, float] | None = None        # shared by the A and B maps
        # log10 images of A and B, grown column by column: a refresh transforms only new rows
        self._columns = (LogColumns((-6.0, 0.0)), LogColumns((-6.0, 0.0)))
        self._column_keys = [None, None]
        self.ratio_levels: tuple[float, float] | None = None  # symmetric about 0
        self.alignment = None
        self.ratio = np.zeros((0, 0), np.float32)             # [matched layers, common steps]
        self._ratio_columns = compare.RatioColumns()          # its columns, grown as both runs go
        self.rows: list[dict] = []                            # the table's rows
        self._flow_curves: list = []                          # a LayerLines per run
        self._flow_columns = (LogColumns((-6.0, 0.0)), LogColumns((-6.0, 0.0)))   # their log10, grown

        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        top = QHBoxLayout()
        self.run_labels = (QLabel(), QLabel())
        for lab in self.run_labels:
            lab.setTextFormat(Qt.RichText)
            top.addWidget(lab)
            top.addSpacing(18)
        top.addStretch(1)
        top.addWidget(QLabel("statistic:"))
        self.combo = QComboBox()
        for key in COMPARE_STATISTICS:
            self.combo.addItem(LABELS[key], key)
        self.combo.currentIndexChanged.connect(self._on_statistic_changed)
        top.addWidget(self.combo)
        lay.addLayout(top)

        split = QSplitter(Qt.Horizontal)
        lay.addWidget(split, 1)
        self.maps = pg.GraphicsLayoutWidget()
        split.addWidget(self.maps)
        right = QSplitter(Qt.Vertical)
        split.addWidget(right)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)

        # --- the three maps, one scene, x (steps) linked; only time zooms
        self.axes = [NameAxis("left"), NameAxis("left"), NameAxis("left")]
        self.plots, self._extents = [], []
        for row, axis in enumerate(self.axes):
            p = self.maps.addPlot(row=row, col=0, axisItems={"left": axis})
            theme.style_plot(p, bottom="training step" if row == 2 else None)
            p.showGrid(x=False, y=False)
            p.setMouseEnabled(x=True, y=False)
            vb = p.getViewBox()
            vb.setDefaultPadding(0.0)
            if row < 2:  # NaN cells are transparent: grey shows through
                vb.setBackgroundColor(theme.NAN_COLOUR)
            else:
                vb.setBackgroundColor(QBrush(*RATIO_NAN_BRUSH))  # mkBrush takes a QBrush as is
            # an invisible box over the steps of both runs: every map auto-ranges to the union
            extent = QGraphicsRectItem(0, 0, 1, 1)
            extent.setPen(Qt.NoPen)
            p.addItem(extent, ignoreBounds=False)
            self._extents.append(extent)
            if row:
                p.setXLink(self.plots[0])
            self.plots.append(p)
        self.image_a, self.image_b, self.ratio_item = pg.ImageItem(), pg.ImageItem(), pg.ImageItem()
        for p, img in zip(self.plots, (self.image_a, self.image_b, self.ratio_item)):
            p.addItem(img)
        self.bar = pg.ColorBarItem(values=(-6, 0), colorMap=theme.sequential_map(), interactive=False,
                                   width=18)
        self.bar.setImageItem([self.image_a, self.image_b])
        self.maps.addItem(self.bar, row=0, col=1, rowspan=2)
        self.ratio_bar = pg.ColorBarItem(values=(-1, 1), colorMap=theme.diverging_map(), interactive=False,
                                         width=18, label="log10 B/A")
        self.ratio_bar.setImageItem(self.ratio_item)
        self.maps.addItem(self.ratio_bar, row=2, col=1)

        # --- right: layer lines, losses, table
        self.lines = pg.GraphicsLayoutWidget()
        right.addWidget(self.lines)
        self.flow_plot = self.lines.addPlot(row=0, col=0)
        theme.style_plot(self.flow_plot, bottom="training step")
        self.flow_plot.setLogMode(y=True)
        self.flow_plot.getAxis("left").enableAutoSIPrefix(False)
        self.loss_plot = self.lines.addPlot(row=1, col=0)
        theme.style_plot(self.loss_plot, bottom="training step", left="loss")
        self.loss_plot.setXLink(self.flow_plot)
        self.loss_plot.getAxis("left").enableAutoSIPrefix(False)
        self.loss_curves = []
        for colour in RUN_COLOURS:
            c = self.loss_plot.plot(pen=pg.mkPen(colour, width=2.5))
            c.setDownsampling(auto=True, method="peak")
            c.setClipToView(True)
            t = self.loss_plot.plot(pen=None, symbol="o", symbolSize=6, symbolBrush=colour,
                                    symbolPen=None)
            self.loss_curves.append((c, t))
        self.table = QTableWidget(0, 4)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.table.verticalHeader().setDefaultSectionSize(QFontMetrics(self.table.font()).height() + 6)
        table_box = QWidget()
        tl = QVBoxLayout(table_box)
        tl.setContentsMargins(0, 0, 0, 0)
        self.table_title = QLabel()
        self.table_title.setWordWrap(True)
        tl.addWidget(self.table_title)
        tl.addWidget(self.table, 1)
        right.addWidget(table_box)
        right.setStretchFactor(0, 1)
        right.setStretchFactor(1, 1)

        self.readout = QLabel("Hover over a map to read a value · grey / hatched: no value (NaN, or not run)")
        self.readout.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.readout)
        self.maps.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self._set_texts()

    # ------------------------------------------------------------------ API
    def set_histories(self, a, b, labels=("A", "B")) -> None:
        """Show these two Histories (either may be None) from scratch."""
        self.a, self.b = a, b
        self.labels = tuple(labels)
        self.levels = self.ratio_levels = None
        self._versions = (None, None)
        self._column_keys = [None, None]
        for c in self._columns:
            c.reset()
        self._ratio_columns.reset()
        self.axes[0].set_names(a.layer_names if a is not None else [])
        self.axes[1].set_names(b.layer_names if b is not None else [])
        for img in (self.image_a, self.image_b, self.ratio_item):
            img.clear()
        self._make_flow_curves()
        self._fit_axes()
        self._set_texts()
        for p in (*self.plots, self.flow_plot, self.loss_plot):
            p.enableAutoRange()
        self.refresh()

    def set_statistic(self, key: str) -> None:
        if key == self.statistic or key not in COMPARE_STATISTICS:
            return
        self.statistic = key
        self.combo.blockSignals(True)
        self.combo.setCurrentIndex(COMPARE_STATISTICS.index(key))
        self.combo.blockSignals(False)
        self.levels = self.ratio_levels = None
        self._versions = (None, None)
        self._set_texts()
        self.refresh()

    def refresh(self) -> None:
        """Redraw, only when either History has changed since the last call."""
        versions = tuple(h.version if h is not None else None for h in (self.a, self.b))
        if versions == self._versions:
            return
        self._versions = versions
        imgs, fresh = zip(*(self._log_image(k, h) for k, h in enumerate((self.a, self.b))))
        finite = [im[np.isfinite(im)] for im in fresh if im is not None]
        finite = np.concatenate(finite) if finite else np.zeros(0)
        if finite.size:  # one scale from the union of both runs; widened by the new columns only
            self.levels = widen(self.levels, np.percentile(finite, 1), np.percentile(finite, 99))
        levels = self.levels or (-6.0, 0.0)
        spans = [self._show(item, h.steps if h is not None else None, im, levels)
                 for h, im, item in ((self.a, imgs[0], self.image_a), (self.b, imgs[1], self.image_b))]
        self.bar.setLevels(levels)
        self._refresh_ratio()
        self._set_extents([s for s in spans if s is not None])
        self._refresh_lines()
        self._refresh_table()

    # ------------------------------------------------------------------ maps
    def _log_image(self, k: int, h):
        """(the [rows, T] log10 image of a side, its columns new since the last refresh)."""
        if h is None or len(h) == 0:
            return None, None
        cols, key = self._columns[k], (id(h), self.statistic)
        before, ends, steps = cols._n, cols._ends, h.steps
        img = cols.update(key, steps, h.series(self.statistic))
        same = cols._key == key and 0 < before <= len(steps) and (steps[0], steps[before - 1]) == ends
        fresh = img[:, before:] if same and key == self._column_keys[k] else img
        self._column_keys[k] = key
        return img, np.where(fresh <= ZERO_LOG, np.nan, fresh)   # a zero (drawn bottom colour) sets no level

    @staticmethod
    def _show(item, steps, img, levels):
        """Draw an [rows, T] image at its steps; returns its x span (or None when empty)."""
        if img is None or img.shape[1] == 0:
            item.clear()
            return None
        img, x0, width = on_step_grid(steps, img)
        item.setImage(img, autoLevels=False, levels=levels)
        item.setRect(x0, 0, width, img.shape[0])
        return x0, x0 + width

    def _set_extents(self, spans) -> None:
        x0, x1 = (min(s[0] for s in spans), max(s[1] for s in spans)) if spans else (0.0, 1.0)
        for extent, axis, p in zip(self._extents, self.axes, self.plots):
            rect = (x0, 0.0, x1 - x0, float(max(len(axis.names), 1)))
            if extent.rect().getRect() != rect:
                extent.setRect(*rect)
                p.getViewBox().itemBoundsChanged(extent)  # a plain rect item does not tell its ViewBox

    def _refresh_ratio(self) -> None:
        a, b = self.a, self.b
        if a is None or b is None or len(a) == 0 or len(b) == 0:
            self.alignment, self.ratio = None, np.zeros((0, 0), np.float32)
            self.ratio_item.clear()
            self.axes[2].set_names([])
            return
        al = compare.align(a, b)
        if self.alignment is None or al.layers != self.alignment.layers:
            self.axes[2].set_names([na if na == nb else f"{na} / {nb}" for na, nb, _, _ in al.layers])
            self._fit_axes()
        self.alignment = al
        self.ratio = self._ratio_columns.update(a, b, self.statistic, al)
        fresh = self.ratio[:, self._ratio_columns.new:]   # the levels only widen: the new columns set them
        finite = np.abs(fresh[np.isfinite(fresh)])
        if finite.size:
            m = max(1.0, float(np.percentile(finite, 99)))
            self.ratio_levels = widen(self.ratio_levels, -m, m)
            m = max(-self.ratio_levels[0], self.ratio_levels[1])  # centred: white is "the same"
            self.ratio_levels = (-m, m)
        levels = self.ratio_levels or (-1.0, 1.0)
        self._show(self.ratio_item, al.steps, self.ratio, levels)
        self.ratio_bar.setLevels(levels)

    # ------------------------------------------------------------------ lines, losses, table
    def _make_flow_curves(self) -> None:
        """One LayerLines item per run: every layer's line, drawn in one paint (widgets.layer_lines)."""
        for item in self._flow_curves:
            self.flow_plot.removeItem(item)
        self._flow_curves = []
        for c in self._flow_columns:
            c.reset()
        for h, colour in zip((self.a, self.b), RUN_COLOURS):
            item = LayerLines()
            if h is not None:
                # input layer thick: on a vanishing run it is the lowest line, decades below the rest
                item.set_layers([pg.mkPen(colour, width=4 if i == 0 else 1.6) for i in range(len(h.layer_names))])
            self.flow_plot.addItem(item)
            self._flow_curves.append(item)

    def _refresh_lines(self) -> None:
        for k, item in enumerate(self._flow_curves):
            h = (self.a, self.b)[k]
            if h is None or len(h) == 0:
                item.set_layers(item.pens)
                continue
            cols = self._flow_columns[k]
            logs = cols.update((id(h), self.statistic), h.steps, h.series(self.statistic))
            # zero, overflowed or undefined: a gap on the log axis (and no infinite bound for the range)
            logs = np.where(np.isfinite(logs) & (logs > ZERO_LOG), logs, np.nan)
            lo, hi = np.fmin.reduce(logs, axis=1, initial=np.inf), np.fmax.reduce(logs, axis=1, initial=-np.inf)
            none = ~np.isfinite(lo)
            item.set_data(h.steps, None, logs, np.where(none, np.nan, lo), np.where(none, np.nan, hi))
        for h, (train, test) in zip((self.a, self.b), self.loss_curves):
            if h is None or len(h) == 0:
                train.setData([], [])
                test.setData([], [])
                continue
            x = h.steps.astype(float)
            train.setData(x, np.where(np.isfinite(h.series("loss")), h.series("loss"), np.nan))
            t = h.series("test_loss")
            idx = np.flatnonzero(np.isfinite(t))
            if len(idx) > MAX_MARKERS:  # markers are drawn one by one: evenly thinned, the newest kept
                idx = idx[np.unique(np.linspace(0, len(idx) - 1, MAX_MARKERS).astype(int))]
            test.setData(x[idx], t[idx])
        self._loss_scale()

    def _loss_scale(self) -> None:
        """A log loss axis when the runs' losses span more than two decades (an exploding run)."""
        finite = [h.series("loss") for h in (self.a, self.b) if h is not None and len(h)]
        finite = np.concatenate(finite) if finite else np.zeros(0)
        finite = finite[np.isfinite(finite) & (finite > 0)]
        log = bool(finite.size and finite.max() / finite.min() > 100)
        if log != self.loss_plot.getAxis("left").logMode:
            self.loss_plot.setLogMode(y=log)
            self.loss_plot.enableAutoRange()

    def _refresh_table(self) -> None:
        rows = []
        if self.a is not None and self.b is not None and len(self.a) and len(self.b):
            rows = compare.layer_table(self.a, self.b, self.statistic, window=TABLE_WINDOW)
        self.rows = rows
        self.table.setRowCount(len(rows))
        cmap = theme.diverging_map()
        lo, hi = self.ratio_levels or (-1.0, 1.0)
        for r, row in enumerate(rows):
            name = row["layer_a"] if row["layer_a"] == row["layer_b"] else f"{row['layer_a']} / {row['layer_b']}"
            ratio = row["ratio"]
            cells = [name, _fmt(row["a"]), _fmt(row["b"]),
                     "undefined" if not np.isfinite(ratio) else f"{ratio:.3g} ×"]
            for col, text in enumerate(cells):
                item = self.table.item(r, col)
                if item is None:
                    item = QTableWidgetItem()
                    item.setTextAlignment(Qt.AlignVCenter | (Qt.AlignLeft if col == 0 else Qt.AlignRight))
                    self.table.setItem(r, col, item)
                item.setText(text)
            cell = self.table.item(r, 3)
            if np.isfinite(ratio) and ratio > 0:  # the same colour as the ratio map
                x = (math.log10(ratio) - lo) / (hi - lo)
                cell.setBackground(QBrush(cmap.map(min(max(x, 0.0), 1.0), mode="qcolor")))
                dark_cell = abs(x - 0.5) > 0.3  # deep red or blue: white text reads better
                cell.setForeground(QBrush(QColor("#ffffff" if dark_cell else "#111111")))
            else:
                cell.setBackground(QBrush())
                cell.setForeground(QBrush())

    # ------------------------------------------------------------------ texts and layout
    def _set_texts(self) -> None:
        s = SHORT[self.statistic]
        for k, (lab, colour) in enumerate(zip(self.run_labels, RUN_COLOURS)):
            lab.setText(f"<span style='color:{colour}; font-size:{theme.font_size() + 3}pt'>■</span> "
                        f"<b>{'AB'[k]}</b>: {self.labels[k] if k < len(self.labels) else ''}")
        size = f"{theme.font_size() + 1}pt"
        self.plots[0].setTitle(f"A: {self.labels[0]}  (log10 {s})", color=RUN_COLOURS[0], size=size)
        self.plots[1].setTitle(f"B: {self.labels[1]}  (same colour scale)", color=RUN_COLOURS[1], size=size)
        self.plots[2].setTitle("log10(B / A):  red = B larger,  blue = B smaller,  grey = same", size=size,
                               color=theme.FOREGROUND)
        self.bar.axis.setLabel(f"log10 {s}")
        self.flow_plot.setLabel("left", f"{s} per layer", **{"font-size": f"{theme.font_size()}pt"})
        a, b = (f"<span style='color:{c}'>{n}</span>" for c, n in zip(RUN_COLOURS, ("A", "B")))
        self.flow_plot.setTitle(f"each layer of {a} and {b} (thick: input layer)", size=size)
        self.loss_plot.setTitle(f"training loss of {a} and {b} (dots: test)", size=size)
        self.table.setHorizontalHeaderLabels(["layer", f"A {s}", f"B {s}", "B / A"])
        self.table_title.setText(f"<b>Per layer</b>: median {s} over the last {TABLE_WINDOW} common steps "
                                 "(input layer first)")

    def _on_theme_changed(self) -> None:
        """Presentation mode changed the font size (theme.set_presentation_mode calls this)."""
        self._set_texts()
        self._fit_axes()
        self.table.verticalHeader().setDefaultSectionSize(QFontMetrics(self.table.font()).height() + 6)

    def _fit_axes(self) -> None:
        """One left-axis width for the three maps, so their columns line up."""
        fm = QFontMetrics(self.axes[0].style.get("tickFont") or theme.font())
        names = [n for ax in self.axes for n in ax.names] or ["layer"]
        width = max(fm.horizontalAdvance(n) for n in names) + 24  # + tick and gap: a label must fit
        for ax in self.axes:
            ax.setWidth(width)

    def _on_statistic_changed(self, idx: int) -> None:
        self.set_statistic(self.combo.itemData(idx))

    def _on_mouse_moved(self, pos) -> None:
        for k, p in enumerate(self.plots):
            if p.sceneBoundingRect().contains(pos):
                pt = p.getViewBox().mapSceneToView(pos)
                text = self.readout_text(k, pt.x(), pt.y())
                if text:
                    self.readout.setText(text)
                return

    def readout_text(self, which: int, x: float, y: float) -> str:
        """What lies under (x = step, y = row) of map 0 (A), 1 (B) or 2 (ratio)."""
        s, row = SHORT[self.statistic], int(math.floor(y))
        if which < 2:
            h = (self.a, self.b)[which]
            if h is None or len(h) == 0 or not 0 <= row < len(h.layer_names):
                return ""
            col = int(np.clip(np.searchsorted(h.steps, x + 0.5, side="right") - 1, 0, len(h) - 1))
            v = float(h.series(self.statistic)[col, row])
            return f"{'AB'[which]}, layer {h.layer_names[row]}, step {int(h.steps[col])}: {s} = {_fmt(v)}"
        al = self.alignment
        if al is None or len(al.steps) == 0 or not 0 <= row < len(al.layers):
            return ""
        col = int(np.clip(np.searchsorted(al.steps, x + 0.5, side="right") - 1, 0, len(al.steps) - 1))
        na, nb, i, j = al.layers[row]
        va = float(self.a.series(self.statistic)[al.rows_a[col], i])
        vb = float(self.b.series(self.statistic)[al.rows_b[col], j])
        r = self.ratio[row, col]
        ratio = f"{10 ** float(r):.3g} ×" if np.isfinite(r) else "undefined"
        return f"layer {na}, step {int(al.steps[col])}: A {_fmt(va)}, B {_fmt(vb)}, B / A = {ratio}"


def _fmt(v: float) -> str:
    return "NaN" if not np.isfinite(v) else f"{v:.3g}"
