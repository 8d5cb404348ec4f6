"""Follow a live run directory written by engine.watch.Watch in a user's script."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, QTimer

from backprop_lab.engine import record
from backprop_lab.engine.watch import RECORD_NAME

POLL_MS = 500


class RunDirWatcher(QObject):
    """Reloads RUN_DIR/record.npz into the session whenever the file changes."""

    def __init__(self, session, run_dir, parent=None):
        super().__init__(parent)
        self.session = session
        self.path = Path(run_dir) / RECORD_NAME
        self._mtime = None
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.poll)
        self._told_missing = False

    def start(self) -> None:
        self.poll()
        self._timer.start(POLL_MS)

    def stop(self) -> None:
        self._timer.stop()

    def poll(self) -> None:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            if not self._told_missing:
                self.session.error.emit(f"waiting for {self.path} (start your script with engine.watch.Watch)")
                self._told_missing = True
            return
        if mtime == self._mtime:
            return
        self._mtime = mtime
        try:
            history, spec = record.load(self.path)
        except record.RecordError as e:
            self.session.error.emit(str(e))
            return
        self.session.show_history(history, spec, state="watching")
