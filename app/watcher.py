"""Follow a live run directory written by Watch in a user's script (no torch here).

The directory is read incrementally (engine/rundir.py): the first poll loads
every complete row, later polls append only the rows written since (and take
the newest histogram of z up to their last step). A
directory that an older Watch wrote (one record.npz) is reloaded when it changes.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QComboBox

from backprop_lab.engine import record, rundir
from backprop_lab.engine.run_end import RunEnd

POLL_MS = 500
OLD_RECORD = "record.npz"


class RunDirWatcher(QObject):
    """Shows RUN_DIR's stream (``main``, or ``rank<r>``) in the session and follows it."""

    streams_changed = Signal(list)   # the directory's streams, when a new one appears

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
        self._streams: list = []

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
        names = self.streams()
        if names != self._streams:
            self._streams = names
            self.streams_changed.emit(names)
        if not names:
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
                self.history.stop_reason = RunEnd.parse(self.reader.header.get("stop_reason"))
            rows = self.reader.poll()
        except (OSError, rundir.RunDirError) as e:
            self.session.error.emit(str(e))
            return
        if len(rows):
            self.history.extend(rundir.rows_to_snapshots(rows))
            hist = self.reader.latest_hist(int(rows["step"][-1]))   # the activation panel's histogram of z
            if hist is not None:
                self.history.latest_hist = hist
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


class RankPicker(QComboBox):
    """Which stream of a watched run directory the window shows (a distributed job's ranks)."""

    def __init__(self, watcher: RunDirWatcher, parent=None):
        super().__init__(parent)
        self.watcher = watcher
        self.setToolTip("The rank whose statistics the window shows (main: rank 0, all-reduced gradients)")
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        watcher.streams_changed.connect(self._on_streams_changed)
        self.activated.connect(lambda i: self.watcher.set_stream(self.itemText(i)))
        self._on_streams_changed(watcher.streams())

    def _on_streams_changed(self, names: list) -> None:
        current = self.watcher.stream or (names[0] if names else None)
        self.blockSignals(True)
        self.clear()
        self.addItems(names)
        if current in names:
            self.setCurrentIndex(names.index(current))
        self.blockSignals(False)
        self.setVisible(len(names) > 1)
