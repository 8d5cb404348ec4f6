"""The menu bar: File, Edit, Run, View, Presets, Help."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QFileDialog, QMessageBox

from backprop_lab.app.presets import presets
from backprop_lab.engine import spec as specmod

SPEC_FILTER = "Backprop Lab spec (*.json)"
RUN_FILTER = "Backprop Lab run record (*.npz)"
ABOUT = """<h3>Backprop Lab</h3>
<p>Backprop multiplies one factor per layer, w · f'(z). Sigmoid's slope is at most 0.25,
so products of many factors vanish; factors above 1 explode. Watch it happen, layer by
layer, and try the remedies: ReLU with He init, BatchNorm, residual connections, gradient
clipping, Adam.</p>
<p>Heatmap rows are layers (input at the bottom), columns training steps, colour log10 of
the chosen gradient statistic. The default, the bias gradient ‖∂L/∂b‖, is Nielsen's
"speed of learning" of a layer.</p>"""


class Menus:
    def __init__(self, w):
        self.w = w
        mb = w.menuBar()
        s = w.session
        f = mb.addMenu("&File")
        self._add(f, "&New", "Ctrl+N", self.new_spec)
        self._add(f, "&Open spec…", "Ctrl+O", self.open_spec)
        self._add(f, "Open &model…", "Ctrl+M", self.open_model)
        self.recent_menu = f.addMenu("Open &recent")
        self._add(f, "&Save spec", "Ctrl+S", self.save_spec)
        self._add(f, "Save spec &as…", "Ctrl+Shift+S", self.save_spec_as)
        f.addSeparator()
        self._add(f, "Open r&un record…", "Ctrl+Shift+O", self.open_run)
        self._add(f, "Save run &record…", "Ctrl+Shift+R", self.save_run)
        self._add(f, "&Watch run directory…", None, self.watch_run_dir)
        self._add(f, "&Compare two saved runs…", None, self.compare_runs)
        self._add(f, "Export &PyTorch file…", None, self.export_torch)
        self._add(f, "Export run as &CSV…", None, self.export_csv)
        self._add(f, "Export run as &TensorBoard events…", None, self.export_tensorboard)
        self.export_menu = f.addMenu("Export &panel as PNG/SVG")
        for key, dock in w.docks.items():
            self.export_menu.addAction(dock.windowTitle(), lambda k=key: self.export_panel(k))
        self.export_menu.addAction("Gradient heatmap", lambda: self.export_panel(None))
        f.addSeparator()
        self._add(f, "&Quit", "Ctrl+Q", w.close)

        e = mb.addMenu("&Edit")
        # Undo and redo are refused while training runs (the stack is locked then)
        self.undo = self._add(e, "&Undo", "Ctrl+Z", lambda: self._undo_redo(w.undo_stack.undo))
        self.redo = self._add(e, "&Redo", "Ctrl+Shift+Z", lambda: self._undo_redo(w.undo_stack.redo))
        self.redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        w.undo_stack.undoTextChanged.connect(lambda t: self.undo.setText(f"&Undo {t}".strip()))
        w.undo_stack.redoTextChanged.connect(lambda t: self.redo.setText(f"&Redo {t}".strip()))

        r = mb.addMenu("&Run")
        tb = w.toolbar
        for a in (tb.run, tb.pause, tb.step, tb.stop, tb.reset):
            r.addAction(a)
        r.addSeparator()
        self.error_details = self._add(r, "Show the last &error's details…", None, self.show_error_details)

        v = mb.addMenu("&View")
        for dock in w.docks.values():
            v.addAction(dock.toggleViewAction())
        v.addSeparator()
        self.reset_layout = self._add(v, "&Reset layout", None, w.reset_layout)
        self.presentation = QAction("&Presentation mode (large fonts)", w, checkable=True)
        self.presentation.setShortcut(QKeySequence("F11"))
        self.presentation.toggled.connect(w.set_presentation_mode)
        v.addAction(self.presentation)

        p = mb.addMenu("&Presets")
        for pre in presets():
            a = p.addAction(pre.name, lambda path=pre.path: self.open_preset(path))
            a.setToolTip(pre.description)
            a.setStatusTip(pre.description[:160])
        p.setToolTipsVisible(True)

        h = mb.addMenu("&Help")
        h.addAction("&About Backprop Lab", lambda: QMessageBox.about(w, "Backprop Lab", ABOUT))
        h.addAction("About the current &experiment", self.about_experiment)
        self.rebuild_recent()

    def _undo_redo(self, do) -> None:
        if self.w.stack.is_locked():
            self.w.statusBar().showMessage("Training is running: stop it (Shift+F5) to undo or redo edits.", 6000)
            return
        do()

    def _add(self, menu, text, keys, slot):
        a = QAction(text, self.w)
        if keys:
            a.setShortcut(QKeySequence(keys))
        a.triggered.connect(slot)
        menu.addAction(a)
        return a

    # ------------------------------------------------------------------ actions
    def rebuild_recent(self) -> None:
        self.recent_menu.clear()
        files = self.w.recent_files()
        for path in files:
            self.recent_menu.addAction(path, lambda p=path: self.w.open_spec_file(p))
        self.recent_menu.setEnabled(bool(files))

    def new_spec(self) -> None:
        self.w.session.set_spec(specmod.new_spec(), None)
        self.w.session.path = None
        self.w.undo_stack.clear()
        self.w._recovered_edits = False

    def open_spec(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.w, "Open spec", "", SPEC_FILTER)
        if path:
            self.w.open_spec_file(path)

    def open_model(self) -> None:
        self.w.model_opener().ask()

    def open_preset(self, path: Path) -> None:
        if self.w.open_spec_file(path):
            self.w.session.path = None  # saving a preset asks for a new name
            desc = self.w.session.spec.get("description", "")
            if desc:
                self.w.statusBar().showMessage(desc, 20000)

    def save_spec(self) -> None:
        if self.w.session.path is None:
            self.save_spec_as()
        elif self.w.session.save_spec(self.w.session.path):
            self.w.mark_saved()
            self.w.statusBar().showMessage(f"saved {self.w.session.path}", 5000)

    def save_spec_as(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self.w, "Save spec", "untitled.json", SPEC_FILTER)
        if path and self.w.session.save_spec(path):
            self.w.mark_saved()
            self.w.add_recent(str(Path(path).resolve()))
            self.w.statusBar().showMessage(f"saved {path}", 5000)

    def open_run(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.w, "Open run record", "", RUN_FILTER)
        if path:
            self.w.session.open_run(path)

    def watch_run_dir(self) -> None:
        path = QFileDialog.getExistingDirectory(self.w, "Watch run directory (written by backprop_lab.Watch)")
        if path:
            self.w.watch_directory(path)

    def save_run(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self.w, "Save run record", "run.npz", RUN_FILTER)
        if path and self.w.session.save_run(path):
            self.w.statusBar().showMessage(f"run saved to {path}", 5000)

    def compare_runs(self) -> None:
        from backprop_lab.app.compare import CompareWindow
        from backprop_lab.engine.record import RecordError
        a, _ = QFileDialog.getOpenFileName(self.w, "Run A (before)", "", RUN_FILTER)
        if not a:
            return
        b, _ = QFileDialog.getOpenFileName(self.w, "Run B (after)", "", RUN_FILTER)
        if not b:
            return
        try:
            win = CompareWindow.from_records(a, b, parent=self.w)
        except RecordError as e:
            self.w._show_error(str(e))
            return
        win.show()

    def export_torch(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self.w, "Export PyTorch file", "model.py", "Python (*.py)")
        if not path:
            return
        try:
            from backprop_lab.engine import export as export_mod   # when first used: not at start-up
            export_mod.write(self.w.session.spec, self.w.session.base_dir, path)
        except (specmod.SpecError, OSError) as e:
            self.w._show_error(str(e))
            return
        self.w.statusBar().showMessage(f"wrote {path}", 5000)

    def _run_to_export(self):
        h = self.w.session.history
        if h is None or len(h) == 0:
            self.w._show_error("no run to export yet: train, open a run record or watch a run directory")
        return h if h is not None and len(h) else None

    def export_csv(self) -> None:
        from backprop_lab.engine import run_export
        h = self._run_to_export()
        path = h is not None and QFileDialog.getSaveFileName(self.w, "Export run as CSV", "run.csv", "CSV (*.csv)")[0]
        if path:
            try:
                n = run_export.write_csv(h, path)
            except OSError as e:
                self.w._show_error(f"cannot write {path}: {e}")
                return
            self.w.statusBar().showMessage(f"wrote {path} ({n} rows: step, layer, statistic, value)", 8000)

    def export_tensorboard(self) -> None:
        from backprop_lab.engine import run_export
        h = self._run_to_export()
        path = h is not None and QFileDialog.getExistingDirectory(self.w, "Export run as TensorBoard events (a log folder)")
        if path:
            try:
                run_export.write_tensorboard(h, path)
            except (OSError, ImportError) as e:
                self.w._show_error(f"cannot write TensorBoard events to {path}: {e}")
                return
            self.w.statusBar().showMessage(f"wrote TensorBoard events to {path} (tensorboard --logdir {path})", 8000)

    def export_panel(self, key) -> None:
        widget = self.w.heatmap if key is None else self.w.build_view(key)
        path, _ = QFileDialog.getSaveFileName(self.w, "Export panel", "panel.png", "PNG (*.png);;SVG (*.svg)")
        if path:
            from backprop_lab.widgets.export import export_widget
            try:
                export_widget(widget, path)
            except OSError as e:
                self.w._show_error(str(e))

    def show_error_details(self) -> None:
        """The traceback of the last failure in the training process (a user's model, most often)."""
        tb = self.w.session.last_traceback
        box = QMessageBox(QMessageBox.Information, "Backprop Lab: last error",
                          "The last run failed in the training process; its traceback:" if tb else
                          "No run has failed in the training process.", QMessageBox.Ok, self.w)
        if tb:
            box.setDetailedText(tb)
        box.open()   # window-modal, non-blocking
        self.w.error_box = box

    def about_experiment(self) -> None:
        s = self.w.session.spec
        QMessageBox.information(self.w, s.get("name", "Experiment"), s.get("description") or "No description.")


def build_menus(window) -> Menus:
    return Menus(window)
