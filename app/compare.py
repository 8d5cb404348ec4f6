"""The compare window: two runs of the same data and seed, side by side.

Each side is a Session (its own training process and History) or a saved run
record. The window only wires: toolbar actions to the sessions, both
Histories to a CompareView, and a 10 Hz timer to the view's refresh (the
view redraws only when either History changed).
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog, QLabel, QMainWindow, QMessageBox

from backprop_lab.app.session import Session
from backprop_lab.engine import record
from backprop_lab.widgets.compare_view import CompareView

REFRESH_MS = 100
SIDES = ("A", "B")


class CompareWindow(QMainWindow):
    """Run A vs run B: ``start()`` trains both live sides; a side can be replaced by a record."""

    def __init__(self, spec_a=None, spec_b=None, base_dir=None, labels=None, parent=None):
        super().__init__(parent)
        if parent is not None:  # opened from the main window: gone for good when closed
            self.setAttribute(Qt.WA_DeleteOnClose)
        self.setWindowTitle("Backprop Lab: compare two runs")
        self.resize(1500, 900)
        self.sessions = (Session(self), Session(self))
        self.records: list[Path | None] = [None, None]   # the record a side shows, if any
        self.labels = list(labels) if labels else [
            (s or {}).get("name", side) for s, side in zip((spec_a, spec_b), SIDES)]
        self.view = CompareView(self)
        self.setCentralWidget(self.view)
        for k, s in enumerate(self.sessions):
            s.error.connect(lambda msg, k=k: self._show_error(f"{SIDES[k]}: {msg}"))
            s.history_reset.connect(self._on_history_reset)
            s.run_ended.connect(lambda reason, k=k: self._on_run_ended(k, reason))
        self._build_toolbar()
        self.state_label = QLabel()
        self.statusBar().addPermanentWidget(self.state_label, 1)
        for s, spec in zip(self.sessions, (spec_a, spec_b)):
            if spec is not None:
                s.set_spec(spec, base_dir)
                s.warm_up()  # each live side trains in a process of its own, started now
        self._on_history_reset()
        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self._tick)
        self._timer.start()

    @classmethod
    def from_records(cls, path_a, path_b, parent=None) -> "CompareWindow":
        """A window showing two saved runs (raises engine.record.RecordError for a bad file)."""
        loaded = [record.load(p) for p in (path_a, path_b)]  # fail before any window exists
        w = cls(parent=parent)
        for k, ((history, spec), path) in enumerate(zip(loaded, (path_a, path_b))):
            w._show_record(k, history, spec, path)
        return w

    # ------------------------------------------------------------------ controls
    def _build_toolbar(self) -> None:
        tb = self.addToolBar("Compare")
        tb.setObjectName("compare_toolbar")
        tb.setToolButtonStyle(Qt.ToolButtonTextOnly)
        self.run_action = QAction("Run both", self, shortcut="Ctrl+R", triggered=self.start)
        self.stop_action = QAction("Stop", self, shortcut="Ctrl+.", triggered=self.stop)
        self.load_actions = [QAction(f"Load run {side}…", self, triggered=lambda _=False, k=k: self._ask_record(k))
                             for k, side in enumerate(SIDES)]
        for a in (self.run_action, self.stop_action, *self.load_actions):
            tb.addAction(a)

    def start(self) -> None:
        """Train both live sides (a finished side starts over: same spec, same seed)."""
        for k, s in enumerate(self.sessions):
            if self.records[k] is not None or not s.can_train:
                continue
            if s.state == "finished":
                s.reset()
            s.start()
        self._update_status()

    def stop(self) -> None:
        for s in self.sessions:
            s.stop()
        self._update_status()

    def load_record(self, side: int, path) -> bool:
        """Replace one side by a saved run; False (with a message) if the file is not a record."""
        try:
            history, spec = record.load(path)
        except record.RecordError as e:
            self._show_error(f"cannot load run {SIDES[side]}: {e}", dialog=True)
            return False
        self._show_record(side, history, spec, path)
        return True

    def _show_record(self, side: int, history, spec: dict, path) -> None:
        path = Path(path)
        self.records[side] = path
        self.labels[side] = f"{path.name} ({spec.get('name', 'saved run')})"
        self.sessions[side].show_history(history, spec)  # stops that side's training first
        self.statusBar().showMessage(f"run {SIDES[side]}: showing {path}", 8000)

    def _ask_record(self, side: int) -> None:
        path, _ = QFileDialog.getOpenFileName(self, f"Load run {SIDES[side]}", "", "Run records (*.npz)")
        if path:
            self.load_record(side, path)

    # ------------------------------------------------------------------ updates
    def _on_history_reset(self) -> None:
        self.view.set_histories(self.sessions[0].history, self.sessions[1].history, tuple(self.labels))
        self._update_status()

    def _on_run_ended(self, k: int, reason: str) -> None:
        self.view.refresh()
        self._update_status()

    def _tick(self) -> None:
        self.view.refresh()
        self._update_status()

    def _update_status(self) -> None:
        self.state_label.setText("   |   ".join(self._side_status(k) for k in range(2)))

    def _side_status(self, k: int) -> str:
        s, h = self.sessions[k], self.sessions[k].history
        if h is None:
            return f"{SIDES[k]}: {s.problem or 'nothing to show'}"
        if len(h) == 0:
            return f"{SIDES[k]}: {s.state}, no steps yet"
        loss = float(h.series("loss")[-1])
        what = "saved run" if self.records[k] is not None else s.state
        if s.state != "running" and h.stop_reason not in (None, "", "finished"):
            what = f"{'saved run' if self.records[k] is not None else 'ended'} ({h.stop_reason})"
        rate = f", {s.steps_per_second:.0f} steps/s" if s.state == "running" else ""
        return f"{SIDES[k]}: {what}, step {int(h.steps[-1])}, loss {loss:.3g}{rate}"

    def _show_error(self, message: str, dialog: bool = False) -> None:
        self.statusBar().showMessage(message, 15000)
        if dialog:  # window-modal and non-blocking: never stalls the event loop (or a test)
            box = QMessageBox(QMessageBox.Warning, "Backprop Lab", message, QMessageBox.Ok, self)
            box.setAttribute(Qt.WA_DeleteOnClose)
            box.open()
            self.error_box = box

    # ------------------------------------------------------------------ closing
    def shutdown(self) -> None:
        """Stop the timer and both training threads, waiting for them; safe to call twice."""
        self._timer.stop()
        for s in self.sessions:
            s.shutdown()

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)
