"""Loss (train every step, test where evaluated) and accuracy, over training."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QVBoxLayout, QWidget

from widgets import theme


class LossPlot(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.history = None
        self._version = -1
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        self.layout_widget = pg.GraphicsLayoutWidget()
        lay.addWidget(self.layout_widget)
        self.loss_plot = self.layout_widget.addPlot(row=0, col=0)
        theme.style_plot(self.loss_plot, left="loss")
        self.loss_plot.addLegend(offset=(-8, 8), labelTextSize=f"{theme.font_size() - 1}pt")
        self.acc_plot = self.layout_widget.addPlot(row=1, col=0)
        theme.style_plot(self.acc_plot, bottom="training step", left="accuracy")
        self.acc_plot.setXLink(self.loss_plot)
        self.acc_plot.setYRange(0, 1, padding=0.02)
        self.acc_plot.getViewBox().setLimits(yMin=-0.02, yMax=1.02)
        self.layout_widget.ci.layout.setRowStretchFactor(0, 3)
        self.layout_widget.ci.layout.setRowStretchFactor(1, 2)
        blue, orange = theme.SERIES[0], theme.SERIES[1]
        self.train_loss = self._curve(self.loss_plot, blue, "train")
        self.test_loss = self.loss_plot.plot(pen=pg.mkPen(orange, width=2), symbol="o", symbolSize=5,
                                             symbolBrush=orange, symbolPen=None, name="test")
        self.train_acc = self._curve(self.acc_plot, blue, None)
        self.test_acc = self.acc_plot.plot(pen=pg.mkPen(orange, width=2), symbol="o", symbolSize=5,
                                           symbolBrush=orange, symbolPen=None)

    @staticmethod
    def _curve(plot, colour, name):
        c = plot.plot(pen=pg.mkPen(colour, width=2), name=name)
        c.setDownsampling(auto=True, method="peak")
        c.setClipToView(True)
        return c

    def set_history(self, history) -> None:
        self.history = history
        self._version = -1
        for c in (self.train_loss, self.test_loss, self.train_acc, self.test_acc):
            c.setData([], [])
        self.refresh()

    def refresh(self) -> None:
        h = self.history
        if h is None or h.version == self._version or len(h) == 0:
            return
        self._version = h.version
        steps = h.steps.astype(float)
        for curve, key in ((self.train_loss, "loss"), (self.test_loss, "test_loss"),
                           (self.train_acc, "accuracy"), (self.test_acc, "test_accuracy")):
            y = h.series(key)
            ok = np.isfinite(y)
            curve.setData(steps[ok], y[ok])
        has_acc = np.isfinite(h.series("accuracy")).any()
        self.acc_plot.setVisible(bool(has_acc))
