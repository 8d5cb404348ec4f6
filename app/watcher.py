"""Follow a live run directory written by Watch in a user's script (no torch here).

The directory is read incrementally (engine/rundir.py): the first poll loads
every complete row, later polls append only the rows written since. A
directory that an older Watch wrote (one record.npz) is reloaded when it changes.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, QTimer

from backprop_lab.engine import record, rundir

POLL_MS = 500
OLD_RECORD = "record.npz"


class RunDirWatcher(QObject):
    """Shows RUN_DIR's stream (``main``, or ``rank<r>``) in the session and follows it."""

    def __init__(self, session, run_dir, parent=None, stream: str | None = None):
        super().__init__(parent)
        self.session = session
        self.dir = Path(run_dir)
        self.stream = stream
        self.reader: rundir.RunReader | None = None
        self.history = None
        self._header_mtime = None
        self._old_mtime = None
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.poll)
        self._told_missing = False

    def streams(self) -> list:
        return rundir.streams(self.dir) if self.dir.is_dir() else []

    def set_stream(self, stream: str) -> None:
        """Follow another rank's stream of the same directory."""
        self.stream, self.reader = stream, None
        self.poll()

    def start(self) -> None:
        self.poll()
        self._timer.start(POLL_MS)

    def stop(self) -> None:
        self._timer.stop()

    def poll(self) -> None:
        if not self.streams():
            self._poll_old_record()
            return
        try:
            header = self.dir / ((self.stream or self.streams()[0]) + rundir.HEADER)
            mtime = header.stat().st_mtime_ns
            if self.reader is None or mtime != self._header_mtime:
                self._header_mtime = mtime
                if self.reader is None or self.reader.available() < self.reader.rows_read:
                    return self._reload()        # a new run in the same directory
                self.reader.read_header()
                self.history.stop_reason = self.reader.header.get("stop_reason")
            rows = self.reader.poll()
        except (OSError, rundir.RunDirError) as e:
            self.session.error.emit(str(e))
            return
        if len(rows):
            self.history.extend(rundir.rows_to_snapshots(rows))
            self.session.history_updated.emit()

    def _reload(self) -> None:
        self.reader = rundir.RunReader(self.dir, self.stream)
        self.stream = self.reader.stream
        T = self.reader.available()
        self.history = rundir.history_of(self.reader, T)
        self.reader.rows_read = T
        self.session.show_history(self.history, self.reader.spec(), state="watching")

    def _poll_old_record(self) -> None:
        path = self.dir / OLD_RECORD
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            if not self._told_missing:
                self.session.error.emit(f"waiting for {self.dir} (start your script with "
                                        "backprop_lab.Watch(model, run_dir))")
                self._told_missing = True
            return
        if mtime == self._old_mtime:
            return
        self._old_mtime = mtime
        try:
            history, spec = record.load(path)
        except record.RecordError as e:
            self.session.error.emit(str(e))
            return
        self.session.show_history(history, spec, state="watching")
