"""Run `backprop-lab theory ... --json` in a child process: the window never imports torch.

Progress comes as "progress DONE/TOTAL" lines on the child's stderr; cancel
kills the child at once. Signals: ``progressed(done, total)``, ``finished(dict)``,
``failed(str)`` (not emitted after ``cancel``).
"""
from __future__ import annotations

import json
import sys

from PySide6.QtCore import QObject, QProcess, Signal


class TheoryProcess(QObject):
    progressed = Signal(int, int)
    finished = Signal(dict)
    failed = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._proc: QProcess | None = None
        self._err = b""

    @property
    def running(self) -> bool:
        return self._proc is not None

    def start(self, args: list[str]) -> None:
        self.cancel()
        p = QProcess(self)
        p.setProgram(sys.executable)
        p.setArguments(["-m", "backprop_lab.app.cli", "theory", *args, "--json"])
        p.readyReadStandardError.connect(self._on_stderr)
        p.finished.connect(self._on_finished)
        self._proc, self._err = p, b""
        p.start()

    def cancel(self) -> None:
        p, self._proc = self._proc, None
        if p is not None:
            p.finished.disconnect(self._on_finished)
            p.readyReadStandardError.disconnect(self._on_stderr)
            p.kill()
            p.waitForFinished(2000)
            p.deleteLater()

    def _on_stderr(self) -> None:
        if self._proc is None:
            return
        self._err += bytes(self._proc.readAllStandardError())
        *lines, self._err = self._err.split(b"\n")
        for line in lines:
            text = line.decode(errors="replace").strip()
            if text.startswith("progress "):
                done, _, total = text[9:].partition("/")
                try:
                    self.progressed.emit(int(done), int(total))
                except ValueError:
                    pass
            elif text:
                self._last_error = text

    def _on_finished(self, code: int, _status) -> None:
        p, self._proc = self._proc, None
        if p is None:
            return
        out = bytes(p.readAllStandardOutput()).decode(errors="replace")
        err = getattr(self, "_last_error", "") or (self._err.decode(errors="replace").strip())
        p.deleteLater()
        if code != 0:
            self.failed.emit(err or f"the theory process ended with status {code}")
            return
        try:
            self.finished.emit(json.loads(out))
        except json.JSONDecodeError:
            self.failed.emit("the theory process printed no result")
