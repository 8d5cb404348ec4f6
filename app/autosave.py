"""Nothing lost: the current stack, its settings and the last run are autosaved, and offered
back when the app starts after a crash or a kill.

The folder holds ``spec.json`` (the current spec, with where it came from), ``run.npz``
(the last run's record) and ``session.json`` (the writer's pid and whether it closed
cleanly). Every write is atomic (engine.atomic: temporary file + rename), so a kill in
the middle of one leaves the previous autosave whole. A run is saved when it ends or
pauses and, while it goes, at most every RUN_EVERY_MS if its History is small enough to
write quickly; the spec shortly after every change.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from PySide6.QtCore import QObject, QTimer

from backprop_lab.engine import record
from backprop_lab.engine import spec as specmod
from backprop_lab.engine.atomic import write_text

SPEC_DELAY_MS = 500        # after an edit: one write for a burst of edits
RUN_EVERY_MS = 20_000      # a running History, at most this often ...
RUN_MAX_BYTES = 32 * 2**20  # ... and only while it is this small (a write then takes < 0.2 s)


def folder_for(settings) -> Path:
    """The autosave folder beside the settings file (tests' throw-away settings get their own)."""
    return Path(settings.fileName()).resolve().parent / "autosave"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


class Recovery:
    """What an unclean exit left: the spec (with its base folder and file) and a run record."""

    def __init__(self, folder: Path, info: dict):
        self.folder, self.info = folder, info

    @property
    def when(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(self.info.get("saved_at", 0)))

    def spec(self):
        try:
            data = json.loads((self.folder / "spec.json").read_text(encoding="utf-8"))
            return specmod.validate(data["spec"]), data.get("base_dir"), data.get("path")
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            return None

    def run_path(self) -> Path | None:
        p = self.folder / "run.npz"
        return p if p.is_file() else None


def pending(folder: Path) -> Recovery | None:
    """The recovery an unclean exit left in ``folder``, or None (clean exit, nothing saved,
    or the app that wrote it is still running)."""
    try:
        info = json.loads((folder / "session.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("clean", True) or not (folder / "spec.json").is_file():
        return None
    pid = info.get("pid")
    if isinstance(pid, int) and pid != os.getpid() and _alive(pid):
        return None
    return Recovery(folder, info)


class Autosave(QObject):
    def __init__(self, window, folder: Path):
        super().__init__(window)
        self.w, self.folder = window, Path(folder)
        self._run_version = None
        self._spec_timer = QTimer(self)
        self._spec_timer.setSingleShot(True)
        self._spec_timer.timeout.connect(self.save_spec)
        self._run_timer = QTimer(self)
        self._run_timer.timeout.connect(self._save_running)
        s = window.session
        s.spec_changed.connect(self.schedule)
        s.state_changed.connect(self._on_state_changed)
        self.enabled = False   # until start(): a window that never claimed the folder writes nothing

    def start(self) -> None:
        """Claim the folder (after any recovery was offered) and save the current state."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            return
        self.enabled = True
        self._mark(clean=False)
        self.save_spec()
        self._run_timer.start(RUN_EVERY_MS)

    def schedule(self) -> None:
        if self.enabled:
            self._spec_timer.start(SPEC_DELAY_MS)

    def _mark(self, clean: bool) -> None:
        info = {"pid": os.getpid(), "clean": clean, "saved_at": time.time()}
        try:
            write_text(self.folder / "session.json", json.dumps(info))
        except OSError:
            pass

    def save_spec(self) -> None:
        if not self.enabled:
            return
        s = self.w.session
        data = {"spec": s.spec, "base_dir": str(s.base_dir) if s.base_dir else None,
                "path": str(s.path) if s.path else None}
        try:
            write_text(self.folder / "spec.json", json.dumps(data))
            self._mark(clean=False)
        except (OSError, TypeError, ValueError):
            pass

    def save_run(self) -> None:
        h = self.w.session.history
        if not self.enabled or h is None or len(h) == 0 or h.version == self._run_version:
            return
        try:
            record.save(self.folder / "run.npz", h, self.w.session.spec)
            self._run_version = h.version
        except (OSError, ValueError):
            pass

    def _save_running(self) -> None:
        h = self.w.session.history
        if h is not None and h.nbytes() <= RUN_MAX_BYTES:
            self.save_run()

    def _on_state_changed(self, state: str) -> None:
        if state != "running":
            self.save_run()

    def close(self, clean: bool) -> None:
        """At exit: save everything; ``clean`` (no unsaved edits) means nothing to offer next time."""
        self._spec_timer.stop()
        self._run_timer.stop()
        if not self.enabled:
            return
        self.save_spec()
        self.save_run()
        self._mark(clean=clean)
