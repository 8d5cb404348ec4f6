"""Gradient flow: one bar per layer for the newest step, and each layer's line over training.

The lines are Nielsen's "speed of learning of each hidden layer" plot: on a
log axis a vanishing net shows its layers as lines decades apart, the input
layer lowest. The bars are the same statistic at the newest step, input layer
on the left: a staircase means the gradient shrinks (or grows) layer by layer.
Input layers are drawn dark violet, output layers yellow-green (viridis).
"""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout

from backprop_lab.widgets import theme
from backprop_lab.widgets.axes import DecadeAxis, NameAxis
from backprop_lab.widgets.gradient_heatmap import statistic_combo, with_blocked
from backprop_lab.widgets.layer_lines import LayerLine, LayerLines
from backprop_lab.widgets.log_image import log10_positive
from backprop_lab.widgets.statistics import DEFAULT, LABELS, SHORT, STATISTICS
from backprop_lab.widgets.panel import HistoryPanel

LEGEND_ENTRIES = 8   # the legend names at most this many layers (first, last, evenly between, selected)
LEGEND_MIN_WIDTH = 680   # pixels of panel width below which the legend is left out
THIN_LINES_ABOVE = 24   # more layers than this: their lines are drawn 1 px wide
SIDE_BY_SIDE_MIN_WIDTH = 360   # narrower than this, the lines go below the bars instead of beside them

def short_name(name: str) -> str:
    """'13 linear' -> '13'; 'out linear' -> 'out'; custom names are kept."""
    head, _, rest = name.partition(" ")
    return head if rest in ("linear", "rnn", "lstm", "gru") else name


class GradientFlow(HistoryPanel):
    """Bars (newest step) and lines (over training) of one per-layer statistic, log scale.

    Signals: ``layer_selected(int)`` when the user clicks a bar or a line;
    ``statistic_changed(str)`` when the statistic combo changes.
    """

    layer_selected = Signal(int)
    statistic_changed = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.statistic = DEFAULT
        self.curves: list[LayerLine] = []   # one per layer, all drawn by self.lines
        self._bar_title, self._bar_style_key, self._bar_style = None, None, ([], [])
        self._bars_styled = None   # (the styles' list, the bars' x) the bars' brushes and pens were set for
        # (history, statistic, steps, positive values [n, L], their log10 [L, n], shown and running bounds,
        #  and the two buffers those views are of)
        self._log_cache = None
        self._unchanged = 0   # leading rows the last _positive_and_logs reused as they were
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.setSpacing(2)
        top = QHBoxLayout()
        self.title = QLabel("")
        self.title.setWordWrap(True)  # a long hint must not set the panel's minimum width
        top.addWidget(self.title, 1)
        self.combo = statistic_combo()
        for key, label in STATISTICS:
            self.combo.addItem(label, key)
        self.combo.currentIndexChanged.connect(self._on_combo_changed)
        top.addWidget(self.combo)
        lay.addLayout(top)
        self.view = pg.GraphicsLayoutWidget()
        lay.addWidget(self.view, 1)
        self.name_axis = NameAxis("bottom", offset=0.0)
        # bar heights are log10 values; the DecadeAxis labels them 10^k, as the line plot's axis
        self.bar_plot = self.view.addPlot(row=0, col=0, axisItems={"bottom": self.name_axis, "left": DecadeAxis()})
        bp = self.bar_plot
        theme.style_plot(bp, bottom="layer (input → output)", left=SHORT[self.statistic])
        bp.showGrid(x=False, y=True, alpha=theme.GRID_ALPHA)
        bp.setMouseEnabled(x=False, y=False)
        bp.setMenuEnabled(False)
        bp.hideButtons()
        bp.setTitle("newest step", size=f"{theme.font_size()}pt", color=theme.FOREGROUND)
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.8)
        bp.addItem(self.bars)
        # theory overlay (issue 11): the chain rule's prediction per layer, log10, drawn over the bars
        self.theory = None   # callable(history, statistic) -> values [L] or None; set by the window
        self.theory_curve = pg.PlotDataItem(pen=pg.mkPen(theme.FOREGROUND, width=2.5, style=Qt.DashLine),
                                            symbol="d", symbolSize=9, symbolBrush=theme.FOREGROUND, connect="finite")
        self.theory_curve.setZValue(20)
        bp.addItem(self.theory_curve)
        self.line_plot = self.view.addPlot(row=0, col=1, axisItems={"left": DecadeAxis()})
        lp = self.line_plot
        lp.setLogMode(y=True)
        # every layer's line in one item (clipped to the view, one (min, max) pair per pixel column):
        # it is given log10 values, the coordinates of the log axis
        self.lines = LayerLines()
        lp.addItem(self.lines)
        theme.style_plot(lp, bottom="training step", left=SHORT[self.statistic])
        lp.setTitle("over training", size=f"{theme.font_size()}pt", color=theme.FOREGROUND)
        self.legend = theme.legend(colCount=1)
        self.legend.setSizePolicy(QSizePolicy.Fixed, QSizePolicy.Fixed)   # a card, not a full-height column
        self._legend_placed = False
        self._side_by_side = True
        layout = self.view.ci.layout
        layout.setColumnStretchFactor(0, 2)
        layout.setColumnStretchFactor(1, 3)
        layout.setColumnStretchFactor(2, 0)
        self.view.scene().sigMouseClicked.connect(self._on_mouse_clicked)
        self._set_labels()

    # ------------------------------------------------------------------ API
    def _history_set(self, history) -> None:
        self._log_cache = None
        names = list(history.layer_names) if history is not None else []
        n = len(names)
        pens = [self._pen(i, n) for i in range(n)]
        self.lines.set_layers(pens)
        self.curves = [LayerLine(self.lines, i, pen) for i, pen in enumerate(pens)]
        self.name_axis.set_names([short_name(s) for s in names])
        if not 0 <= self.selected < n:
            self.selected = -1
        self.name_axis.set_emphasised(self.selected)
        self._fill_legend()
        self.bar_plot.setXRange(-0.8, max(n, 1) - 0.2, padding=0)   # room for the end labels
        self.line_plot.enableAutoRange()

    def set_statistic(self, key: str) -> None:
        if key == self.statistic or key not in LABELS:
            return
        self.statistic = key
        with_blocked(self.combo, lambda: self.combo.setCurrentIndex([k for k, _ in STATISTICS].index(key)))
        self._set_labels()
        self.invalidate()
        self.line_plot.enableAutoRange()
        self.refresh()
        self.statistic_changed.emit(key)

    def _selected_set(self, i: int) -> None:
        """Thicken layer i's line and outline its bar (-1: none)."""
        n = len(self.curves)
        self.selected = i if 0 <= i < n else -1
        for j, c in enumerate(self.curves):
            c.setPen(self._pen(j, n))
            c.setZValue(10 if j == self.selected else 0)
        self.name_axis.set_emphasised(self.selected)
        self._fill_legend()
        self.invalidate()
        self.refresh()

    def bar_heights(self) -> tuple[np.ndarray, float]:
        """log10 of the newest step's statistic per layer (NaN where undefined or <= 0),
        and the floor (a whole decade below the smallest) the bars stand on."""
        v = self.history.series(self.statistic)[-1]
        logs = log10_positive(v)
        finite = logs[np.isfinite(logs)]
        floor = math.floor(finite.min()) - 1 if finite.size else -1.0
        return logs, float(floor)

    def _draw(self, h) -> None:
        if len(h) == 0:
            self.bars.setOpts(x=[], height=[])
            self.lines.set_layers(self.lines.pens)
            return
        logs, floor = self.bar_heights()
        n = len(logs)
        ok = np.isfinite(logs)
        x = np.arange(n)[ok]
        if not x.size:   # no finite bar (pyqtgraph fails on an empty list of pens)
            self.bars.setOpts(x=[], height=[], brushes=None, pens=None)
            self._bars_styled = None
        else:
            brushes, pens = self._bar_styles(n)
            styled = (id(brushes), x.tobytes())   # the bars' brushes and pens are set again only when they change
            if styled != self._bars_styled:
                self._bars_styled = styled
                self.bars.setOpts(x=x, y0=floor, height=(logs - floor)[ok],
                                  brushes=[brushes[i] for i in x], pens=[pens[i] for i in x])
            else:
                self.bars.setOpts(x=x, y0=floor, height=(logs - floor)[ok])
        top = float(np.nanmax(logs)) if ok.any() else 0.0
        floor, top = self._draw_theory(floor, top)
        if ok.any():
            self.bar_plot.setYRange(floor, math.ceil(top + 0.05), padding=0)
        predicted = " · ◆ chain rule" if self.theory_curve.xData is not None and len(self.theory_curve.xData) else ""
        title = f"newest step ({int(h.steps[-1])}){predicted}"
        if title != self._bar_title:   # setTitle lays out HTML: only when the words change
            self._bar_title = title
            self.bar_plot.setTitle(title, size=f"{theme.font_size()}pt", color=theme.FOREGROUND)
        steps = h.steps
        positive, logs = self._positive_and_logs(h, steps)
        self.lines.set_data(steps, positive, logs, self._log_cache[5], self._log_cache[6], unchanged=self._unchanged)

    def _positive_and_logs(self, h, steps) -> tuple[np.ndarray, np.ndarray]:
        """The statistic where > 0 (NaN elsewhere: the log axis leaves a gap) [n, L] and its log10 [L, n].
        Rows already seen are reused: the History only appends, or thins (then the steps differ)."""
        c = self._log_cache
        old = 0
        if (c is not None and c[0] is h and c[1] == self.statistic and len(c[2])
                and len(steps) >= len(c[2]) and steps[0] == c[2][0] and steps[len(c[2]) - 1] == c[2][-1]):
            old = len(c[2])
        self._unchanged = old
        values = h.series(self.statistic)[old:]
        with np.errstate(invalid="ignore", divide="ignore"):
            new_pos = np.where(values > 0, values, np.nan)
            new_logs = np.log10(new_pos).T
        new_logs[~np.isfinite(new_logs)] = np.nan   # as pyqtgraph's own log mapping: inf is a gap too
        lo = np.fmin.reduce(new_logs, axis=1, initial=np.inf)    # NaN ignored; a layer with no finite
        hi = np.fmax.reduce(new_logs, axis=1, initial=-np.inf)   # value keeps +-inf (NaN bounds below)
        n = old + len(new_pos)
        if old:
            lo, hi = np.fmin(lo, c[7]), np.fmax(hi, c[8])
        pos_buf, log_buf = (c[9], c[10]) if old else (None, None)
        if pos_buf is None or pos_buf.shape[0] < n or pos_buf.shape[1] != new_pos.shape[1]:
            cap = max(64, 1 << (n - 1).bit_length())   # grown by doubling: no copy of every row per frame
            grown_pos = np.empty((cap, new_pos.shape[1]))
            grown_log = np.empty((new_pos.shape[1], cap))
            if old:
                grown_pos[:old], grown_log[:, :old] = pos_buf[:old], log_buf[:, :old]
            pos_buf, log_buf = grown_pos, grown_log
        pos_buf[old:n] = new_pos
        log_buf[:, old:n] = new_logs
        positive, logs = pos_buf[:n], log_buf[:, :n]
        none = np.isinf(lo)
        lo_shown, hi_shown = np.where(none, np.nan, lo), np.where(none, np.nan, hi)
        self._log_cache = (h, self.statistic, np.array(steps), positive, logs, lo_shown, hi_shown, lo, hi,
                           pos_buf, log_buf)
        return positive, logs

    # ------------------------------------------------------------------ internals
    def _bar_styles(self, n: int) -> tuple[list, list]:
        """The bars' brushes and pens, made once per (layers, selection, theme), not every frame."""
        key = (n, self.selected, theme.font_size())
        if self._bar_style_key != key:
            self._bar_style_key = key
            self._bar_style = ([pg.mkBrush(theme.layer_colour(i, n)) for i in range(n)],
                               [pg.mkPen(*theme.HIGHLIGHT, width=3) if i == self.selected else pg.mkPen(None)
                                for i in range(n)])
        return self._bar_style

    def _draw_theory(self, floor: float, top: float) -> tuple[float, float]:
        """Draw the predicted values (dashed, diamonds) over the bars; the y range grown to hold them."""
        pred = self.theory(self.history, self.statistic) if self.theory is not None else None
        if pred is None:
            self.theory_curve.setData([], [])
            return floor, top
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.log10(np.where(np.asarray(pred) > 0, pred, np.nan))
        finite = logs[np.isfinite(logs)]
        if not finite.size:   # nothing predicted (pyqtgraph's bounds of all-NaN points warn, then fail)
            self.theory_curve.setData([], [])
            return floor, top
        self.theory_curve.setData(np.arange(len(logs)), logs)
        if finite.size:
            floor, top = min(floor, math.floor(finite.min()) - 1), max(top, float(finite.max()))
        return float(floor), top

    def _pen(self, i: int, n: int):
        # many lines: 1 px cosmetic pens (a wide pen is rasterised segment by segment, 10x the cost)
        width = 3.5 if i == self.selected else (1.5 if n <= THIN_LINES_ABOVE else 1.0)
        return pg.mkPen(theme.layer_colour(i, n), width=width, cosmetic=True)

    def _set_labels(self) -> None:
        s = SHORT[self.statistic]
        for p in (self.bar_plot, self.line_plot):
            p.setLabel("left", s)
            theme.style_axis(p.getAxis("left"))
        self.title.setText("log scale · click a bar or a line to select its layer")

    def _fill_legend(self) -> None:
        self.legend.clear()
        n = len(self.curves)
        if not n or self.history is None:
            return
        shown = set(np.linspace(0, n - 1, min(n, LEGEND_ENTRIES)).round().astype(int).tolist())
        if self.selected >= 0:
            shown.add(self.selected)
        for i in sorted(shown, reverse=True):   # output layer on top, as in the heatmap
            self.legend.addItem(self.curves[i], self.history.layer_names[i])
        self._fit_legend()
        self._place_legend()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._arrange()
        self._place_legend()

    def _arrange(self) -> None:
        """Bars and lines side by side where the panel is wide, one above the other where it is narrow
        (two plots squeezed side by side would be cut off at the right)."""
        side = self.width() >= SIDE_BY_SIDE_MIN_WIDTH * theme.font_size() / theme.BASE_POINT_SIZE
        if side == self._side_by_side:
            return
        self.view.ci.removeItem(self.line_plot)
        row, col = (0, 1) if side else (1, 0)
        self.view.addItem(self.line_plot, row=row, col=col)
        self._side_by_side = side

    def _place_legend(self) -> None:
        """The legend only where there is room for it; narrow, the bars' colours and names are the key."""
        scale = theme.font_size() / theme.BASE_POINT_SIZE
        want = self.width() >= LEGEND_MIN_WIDTH * scale and bool(self.curves)
        if want == self._legend_placed:
            return
        if want:
            self.view.addItem(self.legend, row=0, col=2)
            self.view.ci.layout.setAlignment(self.legend, Qt.AlignTop | Qt.AlignLeft)
        else:
            self.view.ci.removeItem(self.legend)
        self.legend.setVisible(want)
        self._legend_placed = want

    def _fit_legend(self) -> None:
        # a LegendItem in a layout gets whatever width the layout leaves it: ask for its contents'
        hint = self.legend.layout.effectiveSizeHint(Qt.PreferredSize)
        self.legend.setFixedWidth(hint.width() + 8)
        self.legend.setFixedHeight(hint.height() + 6)

    def _on_theme_changed(self) -> None:
        for p in (self.bar_plot, self.line_plot):
            p.titleLabel.setText(p.titleLabel.text, size=f"{theme.font_size()}pt")
        self._arrange()
        self._fit_legend()
        self._place_legend()

    def _on_combo_changed(self, idx: int) -> None:
        self.set_statistic(self.combo.itemData(idx))

    def _on_curve_clicked(self, i: int) -> None:
        self.set_selected_layer(i)
        self.layer_selected.emit(i)

    def _on_mouse_clicked(self, ev) -> None:
        if ev.button() != Qt.LeftButton or self.history is None:
            return
        lv = self.line_plot.getViewBox()
        if lv.sceneBoundingRect().contains(ev.scenePos()):   # a click on (within 8 px of) a line
            pt = lv.mapSceneToView(ev.scenePos())
            px, py = lv.viewPixelSize()
            i = self.lines.nearest(pt.x(), pt.y(), px, py)
            if i >= 0:
                self._on_curve_clicked(i)
            return
        vb = self.bar_plot.getViewBox()
        if not vb.sceneBoundingRect().contains(ev.scenePos()):
            return
        i = int(round(vb.mapSceneToView(ev.scenePos()).x()))
        if 0 <= i < len(self.history.layer_names):
            self._on_curve_clicked(i)
