"""Run controls: Run / Pause / Step / Stop / Reset and the live learning rate."""
from __future__ import annotations

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QAbstractSpinBox, QDoubleSpinBox, QLabel, QStyle, QToolBar


class RunToolBar(QToolBar):
    def __init__(self, window):
        super().__init__("Run", window)
        self.setObjectName("run_toolbar")
        self.window_ = window
        session = window.session
        style = window.style()

        def act(text, icon, keys, slot, tip):
            a = QAction(style.standardIcon(icon), text, window)
            a.setShortcuts([QKeySequence(k) for k in keys])
            a.setToolTip(f"{tip} ({', '.join(keys)})")
            a.triggered.connect(slot)
            self.addAction(a)
            return a

        self.run = act("Run", QStyle.SP_MediaPlay, ["F5", "Ctrl+Return"], session.start, "Train")
        self.pause = act("Pause", QStyle.SP_MediaPause, ["F6"], session.pause, "Pause training")
        self.step = act("Step", QStyle.SP_MediaSkipForward, ["F10"], lambda: session.step(1),
                        "One training step")
        self.stop = act("Stop", QStyle.SP_MediaStop, ["Shift+F5"], session.stop, "Stop training")
        self.reset = act("Reset", QStyle.SP_BrowserReload, ["Ctrl+R"], session.reset,
                         "Stop and start over from new random weights")
        self.addSeparator()
        self.addWidget(QLabel(" learning rate "))
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(6)
        self.lr.setRange(1e-6, 10.0)
        self.lr.setStepType(QAbstractSpinBox.AdaptiveDecimalStepType)
        self.lr.setKeyboardTracking(False)
        self.lr.setToolTip("Learning rate; takes effect at once, also while training")
        self.lr.valueChanged.connect(session.set_lr)
        self.addWidget(self.lr)
        self.set_state("idle")

    def set_lr(self, lr: float) -> None:
        self.lr.blockSignals(True)
        self.lr.setValue(lr)
        self.lr.blockSignals(False)

    def set_state(self, state: str) -> None:
        busy = state in ("running", "paused")
        self.run.setEnabled(state != "running")
        self.run.setText("Resume" if state == "paused" else "Run")
        self.pause.setEnabled(state == "running")
        self.stop.setEnabled(busy)
        self.step.setEnabled(state != "running")
