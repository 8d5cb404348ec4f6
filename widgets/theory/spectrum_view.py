"""Jacobian spectrum: singular values of the current stack's input-output Jacobian, at initialisation
and at the current step of a run.

Pooled over inputs, drawn as a histogram of log10 singular value. A spectrum
piled up at 1 (log10 = 0) passes every direction of the gradient on unchanged
(dynamical isometry: orthogonal linear nets); a wide one stretches some
directions and crushes others (Gaussian ReLU nets, more so with depth). At
initialisation it is computed by `backprop-lab theory spectrum` in a child
process; at the current step by the training process, which holds the weights
(``request_current(inputs) -> token``, answered by ``set_current_result``).
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QPushButton, QSpinBox

from backprop_lab.engine import spec as specmod
from backprop_lab.widgets import theme
from backprop_lab.widgets.theory.background import TheoryProcess
from backprop_lab.widgets.theory.common import TheoryPanel, labelled

BINS = 60


class JacobianSpectrum(TheoryPanel):
    TITLE = "Jacobian spectrum: at initialisation and at the current step"
    PARAGRAPH = (
        "Nudge the input of a network in some direction and see how far the output moves: these stretch "
        "factors are the singular values of its input-output Jacobian, and the gradient travels back through "
        "the very same factors. If they all sit at one, every direction of the error signal arrives intact. "
        "That is dynamical isometry, and a deep linear network with orthogonal weights has it exactly. A "
        "ReLU network with Gaussian weights spreads them out more with every layer it has: some directions "
        "are amplified, others crushed to nothing, even when the average size is right. Measure it once at "
        "initialisation and again at the current step of a run to see what training did to the spread.")

    current_requested = Signal(int)   # inputs: the window asks the training process (see request_current)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.spec: dict | None = None
        self.base_dir = None
        self.result: dict | None = None           # at initialisation (the theory command's JSON)
        self.current_result: dict | None = None   # at the current step (from the training process)
        self.request_current = None               # callable(inputs) -> token, set by the window
        self._current_token = None
        self._messages = {"init": "", "current": ""}
        self.inputs = QSpinBox()
        self.inputs.setRange(1, 512)
        self.inputs.setValue(32)
        self.add_control(labelled("inputs pooled", self.inputs))
        self.compute_button = QPushButton("At initialisation")
        self.compute_button.setToolTip("the stack in the editor with freshly drawn weights (a background process)")
        self.compute_button.clicked.connect(self.compute)
        self.add_control(self.compute_button)
        self.current_button = QPushButton("At the current step")
        self.current_button.setToolTip("the weights the run has now (computed by the training process)")
        self.current_button.clicked.connect(self.compute_current)
        self.add_control(self.current_button)
        self.finish_controls()
        self.view = pg.GraphicsLayoutWidget()
        self.plot = self.view.addPlot()
        self.plot.setMenuEnabled(False)
        theme.style_plot(self.plot, bottom="log10 singular value", left="share of singular values")
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        self.plot.getAxis("bottom").enableAutoSIPrefix(False)   # decades, never "(x0.001)"
        self.plot_title(self.plot, "singular values of ∂output/∂input, pooled over inputs")
        self.plot.addLine(x=0, pen=pg.mkPen(theme.FOREGROUND, width=2, style=Qt.DashLine))
        self.hist = self.plot.plot([0, 1], [0], stepMode="center", fillLevel=0,
                                   brush=theme.HISTOGRAM_BRUSH, pen=pg.mkPen(theme.SERIES[0], width=3))
        self.hist_current = self.plot.plot([0, 1], [0], stepMode="center",
                                           pen=pg.mkPen(theme.SERIES[1], width=4))
        self.legend = theme.legend(self.plot.vb, offset=(-10, 10))
        self.legend.addItem(self.hist, "at initialisation")
        self.legend.addItem(self.hist_current, "at the current step")
        self.add_view(self.view)
        self.readout = QLabel("Press a button to measure the stack in the editor.")
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
        self._say("init", "differentiating the stack at initialisation in a background process…")
        self.process.start(["spectrum", str(path), "--inputs", str(self.inputs.value())])

    def compute_current(self) -> None:
        """Ask the training process for the spectrum at the weights the run has now."""
        if self.request_current is None:
            self._say("current", "no training process to ask")
            return
        self.current_button.setEnabled(False)
        self._say("current", "differentiating the run's current weights in the training process…")
        self._current_token = self.request_current(self.inputs.value())
        self.current_requested.emit(self.inputs.value())

    def set_current_result(self, token, result, problem) -> None:
        """The training process's answer: a result with numpy ``singular_values`` and ``step``, or a problem."""
        if token != self._current_token:
            return   # the answer to an earlier request
        self._current_token = None
        self.current_button.setEnabled(True)
        if result is None:
            self._say("current", f"current step: {problem}")
            return
        self.current_result = result
        self._redraw()

    def _remove_tmp(self) -> None:
        if self._tmp_path is not None:
            self._tmp_path.unlink(missing_ok=True)
            self._tmp_path = None

    def _idle(self, text: str) -> None:
        self._remove_tmp()
        self.compute_button.setEnabled(True)
        self._say("init", text)

    def _say(self, which: str, text: str) -> None:
        self._messages[which] = text
        self.readout.setText("\n".join(t for t in self._messages.values() if t))

    def set_result(self, result: dict) -> None:
        """The spectrum at initialisation (the `theory spectrum` JSON object)."""
        self.result = result
        self._remove_tmp()
        self.compute_button.setEnabled(True)
        self._redraw()

    def _redraw(self) -> None:
        shown = [(k, r) for k, r in (("init", self.result), ("current", self.current_result)) if r is not None]
        logs = {}
        for k, r in shown:
            sv = np.asarray(r["singular_values"], float)
            pos = sv[sv > 1e-12 * max(sv.max(initial=0), 1e-300)]
            logs[k] = (sv, np.log10(pos))
        every = np.concatenate([lg for _, lg in logs.values()]) if logs else np.array([])
        if every.size:
            lo, hi = min(every.min(), -0.5), max(every.max(), 0.5)
            if hi - lo < 1e-9:
                lo, hi = lo - 0.5, hi + 0.5
            edges = np.linspace(lo, hi, BINS + 1)   # one set of bins: the two spectra compare bin by bin
            self.plot.setXRange(lo, hi, padding=0.03)
        for k, curve in (("init", self.hist), ("current", self.hist_current)):
            if k not in logs:
                continue
            sv, lg = logs[k]
            r = self.result if k == "init" else self.current_result
            when = "at initialisation" if k == "init" else f"after {r.get('step', '?')} steps"
            if lg.size == 0:
                curve.setData([0, 1], [0])
                self._say(k, f"{when}: every singular value is zero: no gradient reaches the input.")
                continue
            h, _ = np.histogram(lg, bins=edges)
            curve.setData(edges, h / sv.size)
            zero = 1 - lg.size / sv.size
            self._say(k, f"{when}: {sv.size} singular values ({r['inputs']} inputs), median {np.median(sv):.3g}, "
                         f"10–90 % from {np.percentile(sv, 10):.3g} to {np.percentile(sv, 90):.3g}"
                         + (f"; {100 * zero:.0f} % are zero (not drawn)" if zero > 0 else "")
                         + f"; spread of log10: {lg.std():.2f} decades.")
        if self.current_result is not None:
            self.legend.items[-1][1].setText(f"after {self.current_result.get('step', '?')} steps")

    def closeEvent(self, event) -> None:
        self.process.cancel()
        self._remove_tmp()
        super().closeEvent(event)
