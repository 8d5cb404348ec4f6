"""Random path products: histograms of log10 |X_1 ... X_L| for growing depth L.

Each X_l is a local derivative drawn from the distribution the user picks
(engine.theory.paths). With a mean of exactly 1 the histograms still widen like
sqrt(L) and their centre (the median) moves below 0: most products are far
below 1 while a rare few are huge and hold the mean at 1.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QLabel, QPushButton, QSpinBox

from backprop_lab.engine.theory import paths
from backprop_lab.widgets import theme
from backprop_lab.widgets.theory.common import TheoryPanel, labelled, spin

DEPTHS = (1, 5, 10, 20, 50)
BINS = 120


class PathProducts(TheoryPanel):
    TITLE = "Random path products"
    PARAGRAPH = (
        "A gradient reaching the first layer is a product of one local derivative per layer. Suppose each "
        "is random with an average of exactly one. The average product is then one too, yet look at the "
        "histograms: with every extra layer they spread wider, and their middle slides below one. The "
        "typical product vanishes, while a rare few explode and keep the average up. Averages do not "
        "protect a deep network: only derivatives that stay close to one at every layer do.")

    def __init__(self, parent=None):
        super().__init__(parent)
        self.distribution = QComboBox()
        self.distribution.addItems(["lognormal", "uniform", "normal"])
        self.mean = spin(0.05, 3.0, 1.0, 0.05, 3, "the mean of each local derivative")
        self.spread = spin(0.0, 3.0, 0.5, 0.05, 3, "the standard deviation of each local derivative")
        self.draws = QSpinBox()
        self.draws.setRange(100, 200000)
        self.draws.setSingleStep(1000)
        self.draws.setValue(20000)
        for text, w in (("distribution", self.distribution), ("mean", self.mean), ("spread (std)", self.spread),
                        ("draws", self.draws)):
            self.add_control(labelled(text, w))
        for text, m in (("mean below 1", 0.9), ("mean exactly 1", 1.0), ("mean above 1", 1.1)):
            b = QPushButton(text)
            b.clicked.connect(lambda _=False, m=m: self.mean.setValue(m))
            self.add_control(b)
        self.finish_controls()
        self.view = pg.GraphicsLayoutWidget()
        self.plot = self.view.addPlot()
        self.plot.setMenuEnabled(False)
        theme.style_plot(self.plot, bottom="log10 |product|", left="share of draws per bin")
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        self.plot_title(self.plot, "log10 |X₁ X₂ … X_L| for L = 1, 5, 10, 20, 50")
        self.plot.addLine(x=0, pen=pg.mkPen(theme.FOREGROUND, width=2, style=Qt.DashLine))
        self.legend = theme.legend(self.plot.vb, offset=(-10, 10))
        self.curves = []
        for i, L in enumerate(DEPTHS):
            c = self.plot.plot([0, 1], [0], stepMode="center", pen=pg.mkPen(theme.layer_colour(i, len(DEPTHS)), width=3))
            self.curves.append(c)
        self.add_view(self.view)
        self.summary = QLabel()
        self.summary.setTextFormat(Qt.RichText)
        self.body.addWidget(self.summary)
        self.result: dict | None = None
        for w in (self.mean, self.spread, self.draws):
            w.valueChanged.connect(self.recompute)
        self.distribution.currentTextChanged.connect(self.recompute)
        self.recompute()

    def recompute(self) -> None:
        try:
            logs, _ = paths.sample(self.distribution.currentText(), self.mean.value(), self.spread.value(),
                                   DEPTHS, self.draws.value(), seed=0)
            self.result = paths.compute(self.distribution.currentText(), self.mean.value(), self.spread.value(),
                                        DEPTHS, self.draws.value(), seed=0)
        except ValueError as e:
            self.summary.setText(str(e))
            return
        finite = logs[np.isfinite(logs)]
        lo, hi = np.percentile(finite, [0.2, 99.8]) if finite.size else (-1, 1)
        lo, hi = min(lo, -1.0), max(hi, 1.0)
        edges = np.linspace(lo, hi, BINS + 1)
        self.legend.clear()
        cols = {"depth": [], "median": [], "mean": [], "below 1": []}
        for i, (L, c) in enumerate(zip(DEPTHS, self.curves)):
            h, _ = np.histogram(logs[:, i], bins=edges)
            c.setData(edges, h / max(len(logs), 1))
            med = self.result["log10_abs_quantiles"][i][2]
            self.legend.addItem(c, f"L = {L}: median 10^{med:+.2f}")
            cols["depth"].append(f"L = {L}")
            cols["median"].append(f"{10 ** med:.3g}")
            cols["mean"].append(f"{self.result['mean_product'][i]:.3g}")
            cols["below 1"].append(f"{100 * self.result['fraction_below_1'][i]:.0f} %")
        self.plot.setXRange(lo, hi, padding=0.02)
        rows = ["<td><b>" + k + "</b></td>" + "".join(f"<td align=right>{v}</td>" for v in vals)
                for k, vals in cols.items()]
        self.summary.setText("<table cellspacing=10><tr>" + "</tr><tr>".join(rows) + "</tr></table>"
                             f"<i>expected product = mean^L = {self.mean.value():.3g}^L</i>")
