"""Chain explorer: the seeds' chain of one-neuron layers, every factor of dC/db_1 on screen.

Left: one pair of bars per layer, f'(z_l) (orange) and w_l (blue); drag a blue
bar up or down to change that weight. Right: the running product
|da_L/db_l| = |dC/db_l / dC/da_L| from the output (right) back to layer 1
(left) on a log axis, with the sigmoid bound 0.25^(L-l+1) for |w| <= 1. Under
them the equation with the current numbers. All numbers come from
engine.theory.chain, which equals autograd.
"""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QSpinBox

from backprop_lab.engine.activations import ACTIVATIONS
from backprop_lab.engine.theory import chain
from backprop_lab.widgets import theme
from backprop_lab.widgets.axes import DecadeAxis
from backprop_lab.widgets.theory.common import TheoryPanel, labelled, spin

W_OFFSET, FP_OFFSET, BAR_WIDTH = 0.2, -0.2, 0.36
EQUATION_FULL = 6   # up to this many layers the equation shows every factor


class _DragBox(pg.ViewBox):
    """A ViewBox whose left-button drags move a weight bar instead of panning."""

    def __init__(self, owner):
        super().__init__()
        self.owner = owner
        self._layer = None

    def mouseDragEvent(self, ev, axis=None):
        if ev.button() != Qt.LeftButton:
            return super().mouseDragEvent(ev, axis)
        pos = self.mapSceneToView(ev.scenePos())
        if ev.isStart():
            start = self.mapSceneToView(ev.buttonDownScenePos())
            self._layer = self.owner.layer_at(start.x())
        if self._layer is None:
            return super().mouseDragEvent(ev, axis)
        ev.accept()
        # the axis holds still while dragging (the bar follows the cursor), and fits the bars after
        self.owner.dragging = not ev.isFinish()
        self.owner.drag_weight(self._layer, pos.y())
        if ev.isFinish():
            self._layer = None


class ChainExplorer(TheoryPanel):
    TITLE = "Chain of one-neuron layers"
    PARAGRAPH = (
        "Here is the simplest deep network: one neuron per layer. Backpropagation multiplies one factor per "
        "layer, the slope f'(z) of the activation times the weight w, from the output back to the first "
        "layer. The sigmoid's slope is never more than a quarter, so with weights no larger than one every "
        "factor is below a quarter and the product shrinks at least fourfold per layer: the first layer "
        "hardly learns. Make the weights large enough that w times f'(z) exceeds one and the same product "
        "grows instead: the gradient explodes. Drag a blue bar to change a weight and watch the product.")

    changed = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.w = np.ones(chain.MAX_DEPTH)
        self.b = np.zeros(chain.MAX_DEPTH)
        self.result: chain.Chain | None = None
        self._syncing = False
        self.dragging = False   # a weight bar is being dragged: the factor axis keeps its range
        self._make_controls()
        self._make_plots()
        self.recompute()

    # ------------------------------------------------------------------ building
    def _make_controls(self) -> None:
        self.activation = QComboBox()
        for name in ACTIVATIONS:
            self.activation.addItem(name)
        self.activation.setSizeAdjustPolicy(QComboBox.AdjustToContents)
        self.depth = QSpinBox()
        self.depth.setRange(1, chain.MAX_DEPTH)
        self.depth.setValue(4)
        self.all_w = spin(-20, 20, 1.0, 0.1, tip="set every weight to this value")
        self.all_b = spin(-20, 20, 0.0, 0.1, tip="set every bias to this value")
        self.x = spin(-10, 10, 1.0, 0.1, tip="the input a_0")
        self.y = spin(-10, 10, 0.0, 0.1, tip="the target; C = (a_L - y)^2 / 2")
        self.layer = QSpinBox()
        self.layer.setRange(1, 4)
        self.w_l = spin(-20, 20, 1.0, 0.1, tip="the weight of the chosen layer")
        self.b_l = spin(-20, 20, 0.0, 0.1, tip="the bias of the chosen layer")
        for text, wdg in (("f", self.activation), ("layers L", self.depth), ("all w", self.all_w),
                          ("all b", self.all_b), ("input x", self.x), ("target y", self.y),
                          ("layer", self.layer), ("w", self.w_l), ("b", self.b_l)):
            self.add_control(labelled(text, wdg))
        self.lessons = {}
        for key, lesson in chain.LESSONS.items():
            btn = QPushButton(lesson["title"])
            btn.setToolTip(lesson["text"])
            btn.clicked.connect(lambda _=False, k=key: self.load_lesson(k))
            self.lessons[key] = btn
        self.finish_controls()
        lessons = QHBoxLayout()   # the lessons on a line of their own
        lessons.addWidget(QLabel("Lessons:"))
        for btn in self.lessons.values():
            lessons.addWidget(btn)
        lessons.addStretch(1)
        self._lay.insertLayout(2, lessons)
        self.activation.currentTextChanged.connect(self.recompute)
        self.depth.valueChanged.connect(self._on_depth_changed)
        self.all_w.valueChanged.connect(lambda v: self._set_all(self.w, v))
        self.all_b.valueChanged.connect(lambda v: self._set_all(self.b, v))
        self.x.valueChanged.connect(self.recompute)
        self.y.valueChanged.connect(self.recompute)
        self.layer.valueChanged.connect(self._sync_layer_spins)
        self.w_l.valueChanged.connect(lambda v: self._set_one(self.w, v))
        self.b_l.valueChanged.connect(lambda v: self._set_one(self.b, v))

    def _make_plots(self) -> None:
        self.view = pg.GraphicsLayoutWidget()
        self.box = _DragBox(self)
        self.factors_plot = self.view.addPlot(viewBox=self.box)
        self.factors_plot.setMenuEnabled(False)
        theme.style_plot(self.factors_plot, bottom="layer l", left="factor value")
        self.plot_title(self.factors_plot, "f'(z_l) (orange) and w_l (blue: drag it)")
        self.fp_bars = pg.BarGraphItem(x=[], height=[], width=BAR_WIDTH, brush=theme.DERIVATIVE_COLOUR)
        self.w_bars = pg.BarGraphItem(x=[], height=[], width=BAR_WIDTH, brush=theme.SERIES[0])
        self.factors_plot.addItem(self.fp_bars)
        self.factors_plot.addItem(self.w_bars)
        self.factors_plot.addLine(y=0, pen=pg.mkPen(theme.MUTED))
        self.product_plot = self.view.addPlot(axisItems={"left": DecadeAxis("left")})
        self.product_plot.setLogMode(y=True)
        self.product_plot.setMenuEnabled(False)
        theme.style_plot(self.product_plot, bottom="layer l", left="|∂a_L/∂b_l|")
        self.plot_title(self.product_plot, "running product, output → layer 1")
        self.product_curve = self.product_plot.plot([], [], pen=pg.mkPen(theme.SERIES[2], width=3), symbol="o",
                                                    symbolSize=9, symbolBrush=theme.SERIES[2])
        self.bound_curve = self.product_plot.plot([], [], pen=pg.mkPen(theme.MUTED, width=2, style=Qt.DashLine))
        self.legend = theme.legend(self.product_plot.vb, offset=(-10, -10))   # bottom right: clear of both lessons' curves
        self.legend.addItem(self.product_curve, "|∂a_L/∂b_l|")
        self.legend.addItem(self.bound_curve, "0.25^(L−l+1): sigmoid bound, |w| ≤ 1")
        self.add_view(self.view)
        self.equation = QLabel()
        self.equation.setWordWrap(True)
        self.equation.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.body.addWidget(self.equation)
        self._style_texts()

    def _style_texts(self) -> None:
        super()._style_texts()
        if hasattr(self, "equation"):
            self.equation.setFont(theme.font(3, bold=True))

    # ------------------------------------------------------------------ editing
    def _set_all(self, arr, v: float) -> None:
        if self._syncing:
            return
        arr[:] = v
        self.recompute()

    def _set_one(self, arr, v: float) -> None:
        if self._syncing:
            return
        arr[self.layer.value() - 1] = v
        self.recompute()

    def _on_depth_changed(self, L: int) -> None:
        self.layer.setMaximum(L)
        self.recompute()

    def _sync_layer_spins(self) -> None:
        self._syncing = True
        try:
            l = self.layer.value() - 1
            self.w_l.setValue(self.w[l])
            self.b_l.setValue(self.b[l])
        finally:
            self._syncing = False

    def layer_at(self, x: float):
        """The layer whose weight bar is under x (None off the bars)."""
        L = self.depth.value()
        l = int(round(x - W_OFFSET))
        if 1 <= l <= L and abs(x - (l + W_OFFSET)) <= 0.5 * BAR_WIDTH + 0.1:
            return l
        return None

    def drag_weight(self, layer: int, value: float) -> None:
        self.w[layer - 1] = float(np.clip(value, -20, 20))
        self.layer.setValue(layer)
        self._sync_layer_spins()
        self.recompute()

    def set_chain(self, activation: str, depth: int, weights, biases, x: float, y: float) -> None:
        self._syncing = True
        try:
            self.activation.setCurrentText(activation)
            self.depth.setValue(depth)
            self.layer.setMaximum(depth)
            self.w[:depth] = np.broadcast_to(np.asarray(weights, float), (depth,))
            self.b[:depth] = np.broadcast_to(np.asarray(biases, float), (depth,))
            if np.ndim(weights) == 0:
                self.all_w.setValue(float(weights))
            if np.ndim(biases) == 0:
                self.all_b.setValue(float(biases))
            self.x.setValue(x)
            self.y.setValue(y)
        finally:
            self._syncing = False
        self._sync_layer_spins()
        self.recompute()

    def load_lesson(self, key: str) -> None:
        les = chain.LESSONS[key]
        self.set_chain(les["activation"], les["depth"], les["weights"], les["biases"], les["x"], les["y"])
        self.paragraph.setText(les["text"])

    # ------------------------------------------------------------------ drawing
    def recompute(self) -> None:
        if self._syncing:
            return
        L = self.depth.value()
        r = chain.compute(self.activation.currentText(), L, self.w[:L], self.b[:L], self.x.value(), self.y.value())
        self.result = r
        ls = np.arange(1, L + 1, dtype=float)
        self.fp_bars.setOpts(x=ls + FP_OFFSET, height=r.f_prime, width=BAR_WIDTH)
        self.w_bars.setOpts(x=ls + W_OFFSET, height=r.w, width=BAR_WIDTH)
        lo = min(0.0, float(r.w.min()), float(r.f_prime.min()))
        hi = max(1.0, float(r.w.max()), float(r.f_prime.max()))
        (y0, y1) = self.factors_plot.vb.viewRange()[1]
        if not self.dragging or lo < y0 or hi > y1:   # only grows mid-drag, when a bar leaves the view
            self.factors_plot.setYRange(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo), padding=0)
        self.factors_plot.setXRange(0.4, L + 0.6, padding=0)
        mag = np.abs(r.running_product)
        ok = mag > 0
        self.product_curve.setData(ls[ok], mag[ok])
        if r.activation == "sigmoid":
            self.bound_curve.setData(ls, 0.25 ** (L - ls + 1))
        else:
            self.bound_curve.setData([], [])
        self.product_plot.setXRange(0.6, L + 0.4, padding=0)
        logs = np.log10(np.concatenate([mag[ok], [1.0]]))
        if r.activation == "sigmoid":
            logs = np.concatenate([logs, np.log10(0.25 ** (L - ls + 1))])
        lo_d, hi_d = math.floor(logs.min()), math.ceil(logs.max())
        self.product_plot.setYRange(lo_d, max(hi_d, lo_d + 1), padding=0.02)
        decade_ticks(self.product_plot.getAxis("left"), hi_d - lo_d)
        x_step = max(1, math.ceil(L / 12))
        for p in (self.factors_plot, self.product_plot):
            p.getAxis("bottom").setTickSpacing(x_step, 1)
        self.equation.setText(self.equation_text(r))
        self.changed.emit()

    @staticmethod
    def equation_text(r: chain.Chain) -> str:
        g = lambda v: f"{v:.3g}"  # noqa: E731
        L = len(r.w)
        terms = [f"f'(z₁)={g(r.f_prime[0])}"]
        idx = list(range(1, L))
        if L > EQUATION_FULL:
            idx = idx[:2] + [None] + idx[-2:]
        for l in idx:
            terms.append("…" if l is None else f"w{_sub(l + 1)}f'(z{_sub(l + 1)})={g(r.w[l])}·{g(r.f_prime[l])}")
        ratio = r.running_product[0]
        tail = (f"  ⇒  ∂C/∂b₁ = {g(ratio)} × ∂C/∂a_L = {g(ratio)} × {g(r.dC_daL)} = {g(r.dC_db[0])}")
        decades = f"  ({math.log10(abs(ratio)):+.1f} decades)" if ratio != 0 else ""
        return "∂C/∂b₁ / ∂C/∂a_L = " + " × ".join(terms) + decades + "\n" + tail


def decade_ticks(axis, span: float) -> None:
    """Labelled ticks on whole decades only (every k-th decade when many are in view)."""
    step = max(1, math.ceil(span / 8))
    axis.setTickSpacing(step, step)


def _sub(n: int) -> str:
    return str(n).translate(str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉"))
