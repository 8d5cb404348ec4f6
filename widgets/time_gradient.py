"""Vanishing through time: ||dL/dh_t|| of the first recurrent layer.

Left: time step t (x) against training step (y), colour log10 ||dL/dh_t||.
Right: the newest profile over t, log scale: a vanilla RNN's falls off a cliff
toward t = 0, an LSTM with an open forget gate stays level.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

FLOOR = 1e-30  # log10 of an underflowed 0 is drawn at the floor colour


class TimeGradientPanel(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.history = None
        self._version = -1
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        self.note = QLabel("Recurrent nets only: no recurrent layer in this stack.")
        lay.addWidget(self.note)
        row = QHBoxLayout()
        lay.addLayout(row, 1)
        self.map_plot = pg.PlotWidget()
        self.map_plot.setLabel("bottom", "time step t")
        self.map_plot.setLabel("left", "training step")
        self.image = pg.ImageItem()
        self.map_plot.addItem(self.image)
        cmap = pg.colormap.get("inferno")
        self.image.setColorMap(cmap)
        self.bar = pg.ColorBarItem(values=(-12, 0), colorMap=cmap, label="log10 ‖∂L/∂h_t‖", interactive=False)
        self.bar.setImageItem(self.image, insert_in=self.map_plot.getPlotItem())
        row.addWidget(self.map_plot, 3)
        self.profile_plot = pg.PlotWidget()
        self.profile_plot.setLogMode(y=True)
        self.profile_plot.setLabel("bottom", "time step t")
        self.profile_plot.setLabel("left", "‖∂L/∂h_t‖ (newest step)")
        self.profile_plot.showGrid(x=True, y=True, alpha=0.3)
        self.curve = self.profile_plot.plot(pen=pg.mkPen("#f4a261", width=2), symbol="o", symbolSize=4)
        row.addWidget(self.profile_plot, 2)

    def set_history(self, history) -> None:
        self.history = history
        self._version = -1
        has = history is not None and history.has("time_grad_norm")
        self.note.setVisible(not has)
        self.map_plot.setVisible(has)
        self.profile_plot.setVisible(has)
        if not has:
            self.image.clear()
            self.curve.setData([], [])
        self.refresh()

    def refresh(self) -> None:
        h = self.history
        if h is None or not h.has("time_grad_norm") or h.version == self._version or len(h) == 0:
            return
        self._version = h.version
        g = h.series("time_grad_norm")                 # [T, S]
        logs = np.log10(np.maximum(np.nan_to_num(g, nan=FLOOR), FLOOR)).astype(np.float32)
        finite = logs[logs > np.log10(FLOOR)]
        hi = float(np.ceil(finite.max())) if finite.size else 0.0
        lo = max(float(np.floor(finite.min())) if finite.size else -12.0, hi - 20)
        self.image.setImage(np.ascontiguousarray(logs), autoLevels=False, levels=(lo, hi))
        steps = h.steps
        self.image.setRect(0, float(steps[0]), logs.shape[1], float(max(steps[-1] - steps[0], 1)))
        self.bar.setLevels((lo, hi))
        last = g[-1]
        ok = np.isfinite(last) & (last > 0)
        t = np.arange(len(last))
        self.curve.setData(t[ok], last[ok])
        self.note.setText(f"‖∂L/∂h_t‖ at t = 0 is {last[0]:.2g}, at the last step {last[-1]:.2g} "
                          f"(ratio {last[0] / last[-1]:.2g})" if last[-1] > 0 else "")
        self.note.setVisible(True)
