"""The window's side of the training process (engine.worker): start it, talk to it, end it.

The process is spawned, never forked (Qt's and torch's threads do not survive
a fork): a fresh interpreter runs engine.worker.main on two one-way pipes
(multiprocessing Connections on inherited file descriptors). Not through
multiprocessing's own spawn start method: that re-runs the parent's main
script in the child, and the main script may be a user's own (a demo script,
pytest, ``python -c``) that starts the window again or refuses to be re-run. Messages from it are read
when Qt's event loop sees its pipe readable (a QSocketNotifier: no polling
thread, no timer), and handed on one by one as ``received``. When the pipe
closes without a goodbye the process died: ``died`` says of what (a signal, an
exit status, a message it sent before going).
"""
from __future__ import annotations

import atexit
import logging
import os
import signal
import subprocess
import sys
import time
import weakref
from multiprocessing.connection import Connection

from PySide6.QtCore import QObject, QSocketNotifier, Signal

from backprop_lab.engine import worker as engine_worker

log = logging.getLogger(__name__)

SIGNALS = {signal.SIGSEGV: "a segmentation fault (a crash in native code)",
           signal.SIGKILL: "SIGKILL: killed, by the system when memory ran out or by another program",
           signal.SIGTERM: "SIGTERM: terminated", signal.SIGABRT: "SIGABRT: aborted (a crash in native code)",
           signal.SIGBUS: "SIGBUS: a bus error (a crash in native code)",
           signal.SIGFPE: "SIGFPE: an arithmetic fault in native code",
           signal.SIGILL: "SIGILL: an illegal instruction in native code"}


def describe_exit(code: int | None) -> str:
    """Why a process ended, in words, from its exit code (negative: the signal that ended it)."""
    if code is None:
        return "it stopped answering"
    if code < 0:
        try:
            name = SIGNALS.get(-code) or signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"it was ended by {name}"
    return f"it exited with status {code}"


_LIVE: "weakref.WeakSet[WorkerClient]" = weakref.WeakSet()


@atexit.register
def _end_every_worker() -> None:
    """A last resort at interpreter exit: no training process outlives the window's."""
    for client in list(_LIVE):
        if client.process.poll() is None:
            client.process.kill()


class WorkerClient(QObject):
    """One training process. ``send`` a message, get ``received`` (a tuple) back; ``close`` to end it."""

    received = Signal(object)
    died = Signal(str)       # the cause, in words

    def __init__(self, parent=None):
        super().__init__(parent)
        cmd_r, cmd_w = os.pipe()
        data_r, data_w = os.pipe()
        code = (f"import sys; sys.path[:0] = {[p for p in sys.path if p]!r}; "
                f"from {engine_worker.__name__} import main_fds; main_fds({cmd_r}, {data_w})")
        self.process = subprocess.Popen([sys.executable, "-c", code], pass_fds=(cmd_r, data_w), close_fds=True)
        os.close(cmd_r)   # only the child holds these ends: its death closes the pipe for us
        os.close(data_w)
        self._cmd, self._data = Connection(cmd_w, readable=False), Connection(data_r, writable=False)
        self.pid = self.process.pid
        _LIVE.add(self)
        self.ready = False
        self.fatal: str | None = None      # what the worker said before it ended itself
        self.fatal_traceback: str | None = None
        self._closed = False
        self._notifier = QSocketNotifier(self._data.fileno(), QSocketNotifier.Read, self)
        self._notifier.activated.connect(self._drain)

    @property
    def alive(self) -> bool:
        return not self._closed and self.process.poll() is None

    def send(self, msg: tuple) -> bool:
        if self._closed:
            return False
        try:
            self._cmd.send(msg)
            return True
        except (BrokenPipeError, OSError):
            return False  # it is dead; the pipe's end of file will tell why

    # ------------------------------------------------------------------ receiving
    def _read_one(self, timeout: float = 0.0) -> bool:
        """Read and hand on one message if one comes within ``timeout``; False if none (or the end)."""
        if self._closed:
            return False
        try:
            if not self._data.poll(timeout):
                return False
            msg = self._data.recv()
        except (EOFError, OSError):
            self._on_end()
            return False
        if msg[0] == "ready":
            self.ready = True
        elif msg[0] == "fatal":
            self.fatal, self.fatal_traceback = msg[1], msg[2]
        self.received.emit(msg)
        return True

    def _drain(self, *_) -> None:
        while self._read_one():
            pass

    def wait_for(self, done, timeout: float) -> bool:
        """Handle messages until ``done()`` is true (True) or ``timeout`` seconds pass (False)."""
        end = time.monotonic() + timeout
        while not done():
            left = end - time.monotonic()
            if left <= 0 or self._closed:
                return done()
            self._read_one(left)
        return True

    def _on_end(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._notifier.setEnabled(False)
        cause = self.fatal or describe_exit(self._wait(1.0))
        log.warning("training process %s ended: %s", self.pid, cause)
        self.died.emit(cause)

    # ------------------------------------------------------------------ ending
    def close(self, grace: float = 0.5) -> None:
        """Ask the process to quit; terminate it after ``grace`` seconds, kill it if it must."""
        if not self._closed:
            self._closed = True
            self._notifier.setEnabled(False)
            self.send_quit()
        p = self.process
        if self._wait(grace) is None:
            p.terminate()
            if self._wait(0.5) is None:
                p.kill()
                self._wait(1.0)
        for conn in (self._cmd, self._data):
            try:
                conn.close()
            except OSError:
                pass

    def _wait(self, timeout: float):
        """The exit code once the process has ended within ``timeout`` seconds, else None."""
        try:
            return self.process.wait(max(timeout, 0.0))
        except subprocess.TimeoutExpired:
            return None

    def send_quit(self) -> None:
        try:
            self._cmd.send(("quit",))
        except (BrokenPipeError, OSError):
            pass

    def terminate(self) -> None:
        """End a process that does not answer (a step that never returns), now."""
        self._closed = True
        self._notifier.setEnabled(False)
        self.close(grace=0.0)
