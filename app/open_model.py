"""Open a user's own nn.Module in the window: File > Open model... and ``--model my_net.py:Net``.

The file is imported and the class built first in a child process
(engine/model_check.py), never in the window's: a file that raises shows its
traceback in a dialog, one that crashes or hangs is ended, and the app keeps
running. Then the module tree with a check box per layer; the layers kept are
the spec's ``model.watch``, and the session trains the model with every view.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, QTimer, Signal
from PySide6.QtWidgets import QDialog, QMessageBox

from backprop_lab.widgets.open_model_dialog import LayerChoiceDialog, OpenModelDialog, model_spec

CHECK_TIMEOUT_MS = 120_000


class ModelOpener(QObject):
    checked = Signal(dict)     # the child's answer: {"ok": ..., "layers" | "error", "traceback"}
    opened = Signal(dict)      # the spec the session adopted

    def __init__(self, window, ask_layers: bool = True):
        super().__init__(window)
        self.w, self.ask_layers = window, ask_layers
        self.spec = self.base_dir = None
        self.proc: QProcess | None = None
        self.error_box: QMessageBox | None = None
        self.layer_dialog: LayerChoiceDialog | None = None
        self._timer = QTimer(self, singleShot=True, interval=CHECK_TIMEOUT_MS)
        self._timer.timeout.connect(self._on_timeout)

    # ------------------------------------------------------------------ start
    def ask(self) -> None:
        """File > Open model...: the form, then the check."""
        dialog = OpenModelDialog(self.w)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            self.open(dialog.spec())

    def open_path(self, target: str, kwargs: dict | None = None, data: str = "digits") -> None:
        """``my_net.py:Net`` (the class may be left out when the file defines one)."""
        path, _, cls = target.partition(":")
        if not cls:
            from backprop_lab.widgets.open_model_dialog import classes_in
            names = classes_in(path)
            cls = names[-1] if names else ""
        if not Path(path).is_file() or not cls:
            self._show_error(f"cannot open {target!r}: " + ("no such file" if not Path(path).is_file()
                                                             else "name the class: FILE.py:Class"), "")
            return
        self.open(model_spec(path, cls, kwargs or {}, data))

    def open(self, spec: dict) -> None:
        self.spec, self.base_dir = spec, str(Path(spec["model"]["python"]).parent)
        self.w.statusBar().showMessage(f"opening {spec['model']['class']} from {spec['model']['python']} "
                                       "(running its code in a separate process)…")
        self.proc = QProcess(self)
        self.proc.setProgram(sys.executable)
        self.proc.setArguments(["-m", "backprop_lab.engine.model_check", json.dumps(spec), self.base_dir])
        self.proc.finished.connect(self._on_finished)
        self.proc.start()
        self._timer.start()

    # ------------------------------------------------------------------ answer
    def _on_timeout(self) -> None:
        if self.proc is not None and self.proc.state() != QProcess.ProcessState.NotRunning:
            self.proc.kill()
            self._answer({"ok": False, "error": f"{Path(self.spec['model']['python']).name} did not import and "
                          f"build in {CHECK_TIMEOUT_MS // 1000} s (it may hang); it was stopped", "traceback": ""})

    def _on_finished(self, code, status) -> None:
        if not self._timer.isActive():
            return   # ended by the timeout, already answered
        self._timer.stop()
        out = bytes(self.proc.readAllStandardOutput()).decode(errors="replace").strip().splitlines()
        err = bytes(self.proc.readAllStandardError()).decode(errors="replace")
        try:
            answer = json.loads(out[-1])
        except (IndexError, ValueError):
            answer = {"ok": False, "error": f"the model's process ended (exit status {code}) without an answer: "
                      "the file's code may have crashed the interpreter", "traceback": err[-6000:]}
        self._answer(answer)

    def _answer(self, answer: dict) -> None:
        self.checked.emit(answer)
        if not answer.get("ok"):
            self._show_error(answer.get("error", "the model could not be opened"), answer.get("traceback", ""))
            return
        if not self.ask_layers:
            self._adopt(None)
            return
        self.layer_dialog = LayerChoiceDialog(answer["layers"], self.w,
                                              f"{self.spec['model']['class']}: layers to watch")
        self.layer_dialog.accepted.connect(lambda: self._adopt(self.layer_dialog.watched()))
        self.layer_dialog.open()

    def _adopt(self, watched) -> None:
        spec = json.loads(json.dumps(self.spec))
        if watched is not None and len(watched) < len(self.layer_dialog.items):
            if not watched:
                self._show_error("no layer left to watch: check at least one", "")
                return
            spec["model"]["watch"] = watched
        if self.w.session.set_spec(spec, self.base_dir):
            self.w.undo_stack.clear()
            self.w.statusBar().showMessage(f"opened {spec['name']}: press Run to train it", 10000)
            self.opened.emit(spec)

    def _show_error(self, message: str, tb: str) -> None:
        self.w.statusBar().showMessage(message, 15000)
        self.error_box = QMessageBox(QMessageBox.Icon.Critical, "Cannot open the model", message,
                                     QMessageBox.StandardButton.Close, self.w)
        if tb:
            self.error_box.setDetailedText(tb)
        self.error_box.open()
