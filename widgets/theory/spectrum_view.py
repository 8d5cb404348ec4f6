"""Jacobian spectrum: singular values of the current stack's input-output Jacobian at initialisation.

Pooled over inputs, drawn as a histogram of log10 singular value. A spectrum
piled up at 1 (log10 = 0) passes every direction of the gradient on unchanged
(dynamical isometry: orthogonal linear nets); a wide one stretches some
directions and crushes others (Gaussian ReLU nets, more so with depth). Computed
by `backprop-lab theory spectrum` in a child process.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QPushButton, QSpinBox

from backprop_lab.engine import spec as specmod
from backprop_lab.widgets import theme
from backprop_lab.widgets.theory.background import TheoryProcess
from backprop_lab.widgets.theory.common import TheoryPanel, labelled

BINS = 60


class JacobianSpectrum(TheoryPanel):
    TITLE = "Jacobian spectrum at initialisation"
    PARAGRAPH = (
        "Nudge the input of a network in some direction and see how far the output moves: these stretch "
        "factors are the singular values of its input-output Jacobian, and the gradient travels back through "
        "the very same factors. If they all sit at one, every direction of the error signal arrives intact. "
        "That is dynamical isometry, and a deep linear network with orthogonal weights has it exactly. A "
        "ReLU network with Gaussian weights spreads them out more with every layer it has: some directions "
        "are amplified, others crushed to nothing, even when the average size is right.")

    def __init__(self, parent=None):
        super().__init__(parent)
        self.spec: dict | None = None
        self.base_dir = None
        self.result: dict | None = None
        self.inputs = QSpinBox()
        self.inputs.setRange(1, 512)
        self.inputs.setValue(32)
        self.add_control(labelled("inputs pooled", self.inputs))
        self.compute_button = QPushButton("Compute for the current stack")
        self.compute_button.clicked.connect(self.compute)
        self.add_control(self.compute_button)
        self.finish_controls()
        self.view = pg.GraphicsLayoutWidget()
        self.plot = self.view.addPlot()
        self.plot.setMenuEnabled(False)
        theme.style_plot(self.plot, bottom="log10 singular value", left="share of singular values")
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        self.plot_title(self.plot, "singular values of ∂output/∂input, pooled over inputs")
        self.plot.addLine(x=0, pen=pg.mkPen(theme.FOREGROUND, width=2, style=Qt.DashLine))
        self.hist = self.plot.plot([0, 1], [0], stepMode="center", fillLevel=0,
                                   brush=theme.HISTOGRAM_BRUSH, pen=pg.mkPen(theme.SERIES[0], width=3))
        self.add_view(self.view)
        self.readout = QLabel("Press Compute to measure the stack in the editor.")
        self.readout.setWordWrap(True)
        self.body.addWidget(self.readout)
        self.process = TheoryProcess(self)
        self.process.finished.connect(self.set_result)
        self.process.failed.connect(lambda m: self._idle(f"Failed: {m}"))
        self._tmp_path: Path | None = None   # the stack handed to the child process

    def set_spec(self, spec: dict, base_dir=None) -> None:
        self.spec, self.base_dir = spec, base_dir

    def compute(self) -> None:
        if self.spec is None:
            return
        spec = json.loads(json.dumps(self.spec))
        # relative data or model paths stay relative to the spec's own folder
        for section in (spec.get("data", {}), spec.get("model", {})):
            for key in ("path", "python"):
                if isinstance(section.get(key), str) and self.base_dir is not None:
                    section[key] = str(Path(self.base_dir) / section[key])
        self._remove_tmp()
        fd, name = tempfile.mkstemp(prefix="backprop-lab-spectrum-", suffix=".json")
        with open(fd, "w") as fh:
            fh.write(specmod.dumps(spec))
        path = self._tmp_path = Path(name)
        self.compute_button.setEnabled(False)
        self.readout.setText("Differentiating the stack in a background process…")
        self.process.start(["spectrum", str(path), "--inputs", str(self.inputs.value())])

    def _remove_tmp(self) -> None:
        if self._tmp_path is not None:
            self._tmp_path.unlink(missing_ok=True)
            self._tmp_path = None

    def _idle(self, text: str) -> None:
        self._remove_tmp()
        self.compute_button.setEnabled(True)
        self.readout.setText(text)

    def set_result(self, result: dict) -> None:
        self.result = result
        sv = np.asarray(result["singular_values"], float)
        pos = sv[sv > 1e-12 * max(sv.max(initial=0), 1e-300)]
        if pos.size == 0:
            self._idle("Every singular value is zero: no gradient reaches the input.")
            return
        logs = np.log10(pos)
        lo, hi = min(logs.min(), -0.5), max(logs.max(), 0.5)
        if hi - lo < 1e-9:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, BINS + 1)
        h, _ = np.histogram(logs, bins=edges)
        self.hist.setData(edges, h / sv.size)
        self.plot.setXRange(lo, hi, padding=0.03)
        zero = 1 - pos.size / sv.size
        self._idle(f"{sv.size} singular values ({result['inputs']} inputs): median {np.median(sv):.3g}, "
                   f"10–90 % from {np.percentile(sv, 10):.3g} to {np.percentile(sv, 90):.3g}"
                   + (f"; {100 * zero:.0f} % are zero (not drawn)" if zero > 0 else "")
                   + f". Spread of log10: {logs.std():.2f} decades.")

    def closeEvent(self, event) -> None:
        self.process.cancel()
        self._remove_tmp()
        super().closeEvent(event)
