"""Initialisation map (edge of chaos): measured gradient ratio over (sigma_w^2, sigma_b^2), mean-field line on top.

Each cell is log10(||dL/dz_1|| / ||dL/dz_L||) on real random nets at
initialisation (median over seeds), blue where the gradient vanishes towards the
input, red where it explodes. By default every input starts the length map at its
fixed point q* (engine.theory.phase explains why: from N(0, 1) inputs the early
layers of a net with small q* contract while the length settles, and the border
moves right); the "inputs" box switches to N(0, 1) inputs to show that effect. The black line is the mean-field edge of chaos
chi1 = 1 (engine.theory.meanfield). The nets are measured by
`backprop-lab theory phase` in a child process (progress, cancel); clicking a
cell emits ``cell_requested(spec)`` with that very stack.
"""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QLabel, QProgressBar, QPushButton, QSpinBox

from backprop_lab.engine.theory import cells
from backprop_lab.widgets import theme
from backprop_lab.widgets.theory.background import TheoryProcess
from backprop_lab.widgets.theory.common import TheoryPanel, labelled, spin

ACTIVATIONS = ("tanh", "relu", "sigmoid", "leaky_relu", "elu", "gelu", "softplus")


def _int_spin(lo, hi, value, step=1):
    s = QSpinBox()
    s.setRange(lo, hi)
    s.setSingleStep(step)
    s.setValue(value)
    return s


class PhaseMap(TheoryPanel):
    TITLE = "Initialisation map: the edge of chaos"
    PARAGRAPH = (
        "Every square is a freshly initialised deep network: across, the variance of its weights times "
        "the fan-in; up, the variance of its biases. Its colour says how much of the gradient at the last "
        "hidden layer reaches the first: blue squares lose it on the way (ordered, vanishing), red squares "
        "amplify it (chaotic, exploding). The black line is the theory's prediction of the border, the "
        "edge of chaos, where each layer passes the gradient on unchanged on average. Xavier and He "
        "initialisation are marked: for tanh Xavier sits on the edge only without bias; for ReLU, He "
        "initialisation is the only point on the edge. The inputs are scaled so that the signal enters "
        "the first layer already at the length it would settle to in a very deep net (the fixed point "
        "q* of the length map), where the theory's slope χ₁ applies; with plain N(0, 1) inputs the first "
        "layers shrink or grow the signal towards that length and bend the measured border. Click a "
        "square to load that network.")

    cell_requested = Signal(dict)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.result: dict | None = None
        self.activation = QComboBox()
        self.activation.addItems(ACTIVATIONS)
        self.activation.setSizeAdjustPolicy(QComboBox.AdjustToContents)
        self.width_spin = _int_spin(8, 1024, 256, 16)
        self.depth_spin = _int_spin(2, 100, 20)
        self.seeds = _int_spin(1, 20, 3)
        self.sw_hi = spin(0.5, 10, 4.0, 0.5, 2, "largest sigma_w^2")
        self.sw_n = _int_spin(2, 60, 15)
        self.sb_hi = spin(0.0, 5, 1.0, 0.1, 2, "largest sigma_b^2")
        self.sb_n = _int_spin(1, 40, 6)
        self.inputs = QComboBox()
        self.inputs.setSizeAdjustPolicy(QComboBox.AdjustToContents)
        self.inputs.addItem("at q*", "fixed-point")
        self.inputs.addItem("N(0, 1)", "standard")
        self.inputs.setToolTip("at q*: every input starts the length map at its fixed point (as the theory "
                               "assumes); N(0, 1): unscaled Gaussian inputs")
        for text, w in (("f", self.activation), ("width", self.width_spin), ("depth", self.depth_spin),
                        ("seeds", self.seeds), ("σw² up to", self.sw_hi), ("×", self.sw_n),
                        ("σb² up to", self.sb_hi), ("×", self.sb_n), ("inputs", self.inputs)):
            self.add_control(labelled(text, w))
        self.compute_button = QPushButton("Compute")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m cells")
        self._style_texts()
        for w in (self.compute_button, self.cancel_button, self.progress):
            self.add_control(w)
        self.finish_controls()
        self._make_plot()
        self.readout = QLabel("Press Compute: each cell builds and differentiates real random nets.")
        self.body.addWidget(self.readout)
        self.process = TheoryProcess(self)
        self.process.progressed.connect(self._on_progress)
        self.process.finished.connect(self.set_result)
        self.process.failed.connect(self._on_failed)
        self.compute_button.clicked.connect(self.compute)
        self.cancel_button.clicked.connect(self.cancel)

    def _style_texts(self) -> None:
        super()._style_texts()
        if hasattr(self, "progress"):   # wide enough for its text in the current font, on one line
            from PySide6.QtGui import QFontMetrics
            self.progress.setMinimumWidth(QFontMetrics(self.font()).horizontalAdvance("0000 / 0000 cells") + 30)

    def _make_plot(self) -> None:
        self.view = pg.GraphicsLayoutWidget()
        self.plot = self.view.addPlot()
        self.plot.setMenuEnabled(False)
        theme.style_plot(self.plot, bottom="σw² (weight variance × fan-in)", left="σb² (bias variance)", grid=False)
        self.plot_title(self.plot, "log10 ‖dL/dz‖ first hidden / last hidden, at initialisation")
        self.image = pg.ImageItem()
        self.image.setColorMap(theme.diverging_map())
        self.plot.addItem(self.image)
        self.bar = pg.ColorBarItem(values=(-3, 3), colorMap=theme.diverging_map(), interactive=False,
                                   label="log10 first / last")
        self.bar.setImageItem(self.image, insert_in=self.plot)
        theme.style_colour_bar(self.bar)
        self.critical = self.plot.plot([], [], pen=pg.mkPen(theme.FOREGROUND, width=4), symbol="o", symbolSize=8,
                                       symbolBrush=theme.FOREGROUND)
        self.points = pg.ScatterPlotItem(size=18, pen=pg.mkPen("w", width=2))
        self.plot.addItem(self.points)
        self.point_labels = [theme.text_item("Xavier", anchor=(0.5, 1.3), bold=True),
                             theme.text_item("He", anchor=(0.5, 1.3), bold=True)]
        for t in self.point_labels:
            self.plot.addItem(t)
        self.legend = theme.legend(self.plot.vb, offset=(-10, 10))
        self.legend.addItem(self.critical, "mean field: χ₁ = 1")
        self.add_view(self.view)
        self.plot.scene().sigMouseClicked.connect(self._on_clicked)
        self.plot.scene().sigMouseMoved.connect(self._on_hover)

    # ------------------------------------------------------------------ computing
    def arguments(self) -> list[str]:
        sw_lo = 0.5 if self.sw_hi.value() > 0.5 else 0.1
        return ["phase", "--activation", self.activation.currentText(), "--width", str(self.width_spin.value()),
                "--depth", str(self.depth_spin.value()), "--seeds", str(self.seeds.value()),
                "--sigma-w2", f"{sw_lo}:{self.sw_hi.value()}:{self.sw_n.value()}",
                "--sigma-b2", f"0:{self.sb_hi.value()}:{self.sb_n.value()}",
                "--inputs", self.inputs.currentData()]

    def compute(self) -> None:
        self.progress.setRange(0, self.sw_n.value() * self.sb_n.value())
        self.progress.setValue(0)
        self.compute_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.readout.setText("Measuring random nets in a background process…")
        self.process.start(self.arguments())

    def cancel(self) -> None:
        self.process.cancel()
        self._idle("Cancelled.")

    def _idle(self, text: str) -> None:
        self.compute_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.readout.setText(text)

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)

    def _on_failed(self, message: str) -> None:
        self._idle(f"Failed: {message}")

    def set_result(self, result: dict) -> None:
        """Draw a `theory phase` result (the JSON object)."""
        self.result = result
        sw, sb = np.asarray(result["sigma_w2"], float), np.asarray(result["sigma_b2"], float)
        ratio = np.array([[np.nan if v is None else v for v in row] for row in result["log10_ratio"]], np.float32)
        dx = sw[1] - sw[0] if len(sw) > 1 else 0.5
        dy = sb[1] - sb[0] if len(sb) > 1 else 0.2
        finite = ratio[np.isfinite(ratio)]
        top = float(np.clip(np.nanmax(np.abs(finite)) if finite.size else 1.0, 0.5, 6.0))
        self.image.setImage(np.ascontiguousarray(ratio), levels=(-top, top))
        self.image.setRect(pg.QtCore.QRectF(sw[0] - dx / 2, sb[0] - dy / 2, dx * len(sw), dy * len(sb)))
        theme.set_bar_levels(self.bar, (-top, top)) if top >= 1 else self.bar.setLevels((-top, top))
        crit = np.asarray(result.get("critical_line") or result["critical"], float).reshape(-1, 2)
        self.critical.setData(crit[:, 1], crit[:, 0])
        pts = [(1.0, 0.0), (2.0, 0.0)]
        self.points.setData([p[0] for p in pts], [p[1] for p in pts],
                            brush=[pg.mkBrush(theme.SERIES[2]), pg.mkBrush(theme.SERIES[4])], symbol=["s", "t"])
        for t, (x, y) in zip(self.point_labels, pts):
            t.setPos(x, y)
        self.plot.setXRange(sw[0] - dx / 2, sw[-1] + dx / 2, padding=0)
        self.plot.setYRange(sb[0] - dy / 2, sb[-1] + dy / 2, padding=0)
        start = "inputs at the fixed point q*" if result.get("inputs", "fixed-point") == "fixed-point" \
            else "N(0, 1) inputs"
        self._idle(f"{result['activation']}, {result['depth']} layers of {result['width']}, median of "
                   f"{result['seeds']} seeds, {start}. Hover for a cell's numbers; click to load it.")

    # ------------------------------------------------------------------ cells
    def cell_at(self, sw2: float, sb2: float):
        """(row, col) of the cell under a point in data coordinates, or None."""
        if self.result is None:
            return None
        sw, sb = np.asarray(self.result["sigma_w2"]), np.asarray(self.result["sigma_b2"])
        dx = sw[1] - sw[0] if len(sw) > 1 else 0.5
        dy = sb[1] - sb[0] if len(sb) > 1 else 0.2
        j, i = int(round((sw2 - sw[0]) / dx)), int(round((sb2 - sb[0]) / dy))
        if 0 <= i < len(sb) and 0 <= j < len(sw):
            return i, j
        return None

    def cell_spec(self, i: int, j: int) -> dict:
        r = self.result
        return cells.spec_for_cell(r["activation"], r["width"], r["depth"], r["sigma_w2"][j], r["sigma_b2"][i])

    def _scene_to_cell(self, pos):
        if not self.plot.sceneBoundingRect().contains(pos):
            return None
        p = self.plot.vb.mapSceneToView(pos)
        return self.cell_at(p.x(), p.y())

    def _on_hover(self, pos) -> None:
        cell = self._scene_to_cell(pos)
        if cell is None:
            return
        i, j = cell
        r = self.result
        v = r["log10_ratio"][i][j]
        chi = r["chi1"][i][j]
        depth = "∞" if chi == 1 else f"{abs(-1 / math.log(chi)):.1f}" if chi > 0 else "0"
        self.readout.setText(
            f"σw² = {r['sigma_w2'][j]:.3g}, σb² = {r['sigma_b2'][i]:.3g}: measured first / last = "
            + ("undefined" if v is None else f"10^{v:+.2f}")
            + f"; mean field χ₁ = {chi:.3f} ({'vanishing' if chi < 1 else 'exploding'}, depth scale {depth} layers)")

    def _on_clicked(self, ev) -> None:
        cell = self._scene_to_cell(ev.scenePos())
        if cell is not None and ev.button() == Qt.LeftButton:
            self.cell_requested.emit(self.cell_spec(*cell))

    def closeEvent(self, event) -> None:
        self.process.cancel()
        super().closeEvent(event)
