"""The main window: docks of views wired to the Session. It only wires.

Every view reads the Session's History; every user intent (an edit, Run, a
remedy) goes to the Session. Selecting a layer anywhere selects it everywhere:
the selection is a stack path such as "3" or "4.1" ("out" for the added output
layer), and each view is told the index it has for that path.

(Over 400 lines with a reason: it is the one place where every view meets the
session and the document: the docks, the wiring, selection, editing and remedies,
and the window's state. Menus, toolbar, pacing, autosave and the worker client
live in modules of their own.)
"""
from __future__ import annotations

import copy
import importlib
import os
import time
from pathlib import Path

import shiboken6
from PySide6.QtCore import QByteArray, QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDockWidget, QLabel, QMainWindow, QScrollArea, QTabBar, QTabWidget, QWidget

from backprop_lab.app.pacing import RedrawPacer
from backprop_lab.app.session import Session
from backprop_lab.app.toolbar import RunToolBar
from backprop_lab.engine import remedies
from backprop_lab.engine import spec as specmod
from backprop_lab.engine.document import ExperimentDocument
from backprop_lab.widgets import theme
from backprop_lab.widgets.activation_panel import ActivationPanel
from backprop_lab.widgets.chrome import cache_title_icons
from backprop_lab.widgets.diagnosis_panel import DiagnosisPanel
from backprop_lab.widgets.gradient_flow import GradientFlow
from backprop_lab.widgets.gradient_heatmap import GradientHeatmap
from backprop_lab.widgets.layer_palette import LayerPalette
from backprop_lab.widgets.layer_stack import LayerStackView
from backprop_lab.widgets.loss_plot import LossPlot
from backprop_lab.widgets.property_editor import PropertyEditor
from backprop_lab.widgets.settings_panel import SettingsPanel
from backprop_lab.widgets.undo_commands import EditSettings, ReplaceStack

REFRESH_MS = 25          # one live panel redraws per tick: each of ~4 on screen ~10 times a second
                         # (slower where drawing is costly: app.pacing)
DIAGNOSE_EVERY = 3       # the diagnosis every 3rd round of the panels (~3 Hz)
MAX_RECENT = 8
# the views of docks hidden behind another dock's tab in the first frame: built when their
# dock is first shown (its tab chosen, View menu, a restored layout) or reached, or in an idle
# step after the first paint (MainWindow.build_deferred)
DEFERRED_VIEWS = {"neurons": ("backprop_lab.widgets.neuron_heatmap", "NeuronHeatmap"),
                  "time": ("backprop_lab.widgets.time_gradient", "TimeGradientPanel")}


def path_of(name: str) -> str:
    """The stack path a layer name starts with: "4.1 linear" -> "4.1"."""
    return name.split(" ", 1)[0]


class MainWindow(QMainWindow):
    def __init__(self, parent=None, settings: QSettings | None = None):
        super().__init__(parent)
        # quitting with unsaved edits asks (not after a signal from the terminal, nor in the test
        # suite, where BACKPROP_LAB_NO_CLOSE_QUESTION is set: the tests that ask set it back)
        self.ask_on_close = not os.environ.get("BACKPROP_LAB_NO_CLOSE_QUESTION")
        self._recovered_edits = False
        self.session = Session(self)
        # layout, recent files, presentation mode; tests pass a throw-away file
        self.settings = settings or QSettings("Backprop Lab", "Backprop Lab")
        self._selected_path: str | None = None
        self._refreshes = 0
        self._shown_version = -1
        self._watch = None
        self._rank_picker = None
        self._editing = False  # True while the session adopts an edit made in the stack
        self._sized = self._restored = False
        self._painted, self._after_paint, self._shut_down = False, [], False
        self._built: dict = {}   # the deferred views built so far, by dock name
        self.setWindowTitle("Backprop Lab")
        self.resize(1500, 920)
        self._make_views()
        self._make_docks()
        self.toolbar = RunToolBar(self)
        self.addToolBar(self.toolbar)
        self._make_menus()
        self._make_status_bar()
        self._connect()
        self._default_state = self.saveState()   # View > Reset layout goes back to this
        self._restore_settings()
        self._drop_stray_tab_bars()
        from backprop_lab.app.autosave import Autosave, folder_for
        self.autosave = Autosave(self, folder_for(self.settings))
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._tick)
        self._slot = self._rounds = 0
        self._pacer = RedrawPacer(min_ms=REFRESH_MS, max_ms=5 * REFRESH_MS)
        self._cpu_mark = time.thread_time()
        self._timer.start(REFRESH_MS)
        self._on_spec_changed()
        self._on_history_reset()

    # ------------------------------------------------------------------ building
    def _make_views(self) -> None:
        self.heatmap = GradientHeatmap()
        self.activation = ActivationPanel()
        self.flow = GradientFlow()
        self.loss = LossPlot()
        self.palette = LayerPalette()
        # the experiment being edited: every undo command changes this document
        self.document = ExperimentDocument()
        self.stack = LayerStackView(document=self.document.stack)
        self.undo_stack = self.stack.undo_stack
        self.properties = PropertyEditor(self.stack.model, self.undo_stack)
        self.train_settings = SettingsPanel(self.undo_stack, document=self.document)
        self.diagnosis = DiagnosisPanel(remedies.REMEDIES)
        self.central_tabs = QTabWidget()
        self.central_tabs.setDocumentMode(True)
        self.central_tabs.addTab(self.heatmap, "Gradient heatmap")
        # the theory views need ~1100 x 700 px; in a scroll area their minimum size does not
        # squeeze the docks under the heatmap (the flow, activation and loss panels).
        # The tab itself (TheoryTab) is built when it is first shown or reached (``theory``),
        # or in an idle step after the first paint (``build_deferred``): not before the first frame.
        self._theory = None
        self.theory_area = theory_area = QScrollArea()
        theory_area.setWidgetResizable(True)
        theory_area.setFrameShape(QScrollArea.NoFrame)
        self.central_tabs.addTab(theory_area, "Theory")
        self.central_tabs.currentChanged.connect(self._on_central_tab)
        self.setCentralWidget(self.central_tabs)

    @property
    def theory(self):
        """The Theory tab (chain, path products, initialisation map, Jacobian spectrum; issue 11),
        built on first use."""
        if self._theory is None:
            from backprop_lab.widgets.theory.theory_tab import TheoryTab
            self._theory = TheoryTab()
            self._theory.set_spec(self.session.spec, self.session.base_dir)
            self._theory.cell_requested.connect(self.load_theory_stack)
            self._theory.set_spectrum_source(self.session.request_spectrum, self.session.spectrum_ready)
            self.theory_area.setWidget(self._theory)
        return self._theory

    def _on_central_tab(self, _index: int) -> None:
        if self.central_tabs.currentWidget() is self.theory_area:
            self.theory  # noqa: B018 (built as it is shown)

    @property
    def neurons(self):
        """The "Neurons of the selected layer" view (built on first use)."""
        return self.build_view("neurons")

    @property
    def time_gradient(self):
        """The "Gradient through time" view (built on first use)."""
        return self.build_view("time")

    def build_view(self, name: str):
        """The view of the dock ``name``: a deferred one is built now, shown its History and selection."""
        if name not in DEFERRED_VIEWS:
            return self.docks[name].widget()
        view = self._built.get(name)
        if view is None:
            module, cls = DEFERRED_VIEWS[name]
            view = self._built[name] = getattr(importlib.import_module(module), cls)()
            placeholder = self.docks[name].widget()
            self.docks[name].setWidget(view)
            placeholder.deleteLater()
            view.set_history(self.session.history)
            if self._selected_path is not None:
                self.select_path(self._selected_path)
        return view

    def build_deferred(self) -> None:
        """Build what the first frame did not need (the Theory tab, the views of hidden docks),
        one piece per turn of the event loop, so input and painting go on in between."""
        steps = [lambda n=n: self.build_view(n) for n in DEFERRED_VIEWS if n not in self._built]
        steps.append(lambda: self.theory)

        def next_step():
            if steps and not self._shut_down:
                steps.pop(0)()
                QTimer.singleShot(0, next_step)
        QTimer.singleShot(0, next_step)

    def when_painted(self, callback) -> None:
        """Call ``callback`` once, right after the window's first paint (at once if it was painted)."""
        if self._painted:
            QTimer.singleShot(0, callback)
        else:
            self._after_paint.append(callback)

    def paintEvent(self, event) -> None:
        super().paintEvent(event)
        if not self._painted:
            self._painted = True
            for callback in self._after_paint:
                QTimer.singleShot(0, callback)   # after this paint is flushed to the screen
            self._after_paint = []

    def _dock(self, title: str, widget, area, name: str, scroll: bool = False) -> QDockWidget:
        d = QDockWidget(title, self)
        d.setObjectName(name)
        cache_title_icons(d)   # Fusion rebuilds the title's button icons on every paint (widgets/chrome.py)
        if widget is None:   # a deferred view (DEFERRED_VIEWS): a placeholder until it is seen
            widget = _Placeholder(self, name, d)
        if scroll:  # a tall form must not force its height on the docks beside it
            area_widget = QScrollArea()
            area_widget.setWidgetResizable(True)
            area_widget.setFrameShape(QScrollArea.NoFrame)
            area_widget.setWidget(widget)
            widget = area_widget
        d.setWidget(widget)
        self.addDockWidget(area, d)
        return d

    def _make_docks(self) -> None:
        L, R, B = Qt.LeftDockWidgetArea, Qt.RightDockWidgetArea, Qt.BottomDockWidgetArea
        self.docks = {
            "palette": self._dock("Layers", self.palette, L, "palette"),
            "stack": self._dock("Layer stack", self.stack, L, "stack"),
            "diagnosis": self._dock("Diagnosis", self.diagnosis, R, "diagnosis"),
            "properties": self._dock("Properties", self.properties, R, "properties", scroll=True),
            "settings": self._dock("Data and training", self.train_settings, R, "settings", scroll=True),
            "flow": self._dock("Gradient flow", self.flow, B, "flow"),
            "activation": self._dock("Activation f, f' and z", self.activation, B, "activation"),
            "neurons": self._dock("Neurons of the selected layer", None, B, "neurons"),
            "loss": self._dock("Loss and accuracy", self.loss, B, "loss"),
            "time": self._dock("Gradient through time", None, B, "time"),
        }
        self.splitDockWidget(self.docks["palette"], self.docks["stack"], Qt.Vertical)
        self.splitDockWidget(self.docks["diagnosis"], self.docks["properties"], Qt.Vertical)
        self.tabifyDockWidget(self.docks["properties"], self.docks["settings"])
        self.docks["properties"].raise_()
        self.splitDockWidget(self.docks["flow"], self.docks["activation"], Qt.Horizontal)
        self.splitDockWidget(self.docks["activation"], self.docks["loss"], Qt.Horizontal)
        self.tabifyDockWidget(self.docks["flow"], self.docks["neurons"])
        self.tabifyDockWidget(self.docks["activation"], self.docks["time"])
        self.docks["flow"].raise_()
        self.docks["activation"].raise_()
        self.setCorner(Qt.BottomLeftCorner, Qt.LeftDockWidgetArea)
        self.setCorner(Qt.BottomRightCorner, Qt.RightDockWidgetArea)

    def _drop_stray_tab_bars(self) -> None:
        """Qt (6.11) leaves copies of a dock group's tab bar behind: the second `tabifyDockWidget` in a
        window not yet shown, and every `restoreState`, make a new bar for a tab group and keep the old
        one, with its tabs, where it was (over the status bar on a first start; 8 bars for 3 groups after
        a restored layout). They are dead (a click selects nothing) but drawn with every paint of the
        window. Hide every tab bar of the dock layout; the layout shows again, at its next pass, those it
        uses (one per tab group; after a reset that follows switched tabs Qt may still lay a copy exactly
        over a used bar: not seen, and clicks reach a live bar, as tests/test_chrome.py checks)."""
        for bar in self.findChildren(QTabBar, options=Qt.FindDirectChildrenOnly):
            bar.hide()
        self.layout().invalidate()

    def default_dock_sizes(self) -> None:
        """Proportions of a fresh layout (a saved layout replaces them)."""
        w, h = max(self.width(), 1200), max(self.height(), 760)
        d = self.docks
        self.resizeDocks([d["palette"], d["diagnosis"]], [int(0.16 * w), int(0.22 * w)], Qt.Horizontal)
        self.resizeDocks([d["palette"], d["stack"]], [int(0.25 * h), int(0.75 * h)], Qt.Vertical)
        self.resizeDocks([d["diagnosis"], d["properties"]], [int(0.6 * h), int(0.4 * h)], Qt.Vertical)
        self.resizeDocks([d["flow"]], [int(0.38 * h)], Qt.Vertical)
        inner = int(0.6 * w)
        # flow is tabbed with neurons: size the tab group through both, then the rest
        self.resizeDocks([d["flow"], d["neurons"], d["activation"], d["loss"]],
                         [int(inner * 0.46), int(inner * 0.46), int(inner * 0.30), int(inner * 0.24)], Qt.Horizontal)
        self.resizeDocks([d["loss"]], [int(inner * 0.24)], Qt.Horizontal)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._sized:
            self._sized = True
            if not self._restored:
                # now, not in a later turn of the loop: the first layout pass uses these
                # sizes, so the plots are not laid out (and their axes re-ranged) twice
                self.default_dock_sizes()

    def _make_menus(self) -> None:
        from backprop_lab.app.menus import build_menus
        self.actions = build_menus(self)

    def _make_status_bar(self) -> None:
        self.status_labels = {k: QLabel() for k in ("state", "step", "loss", "acc", "speed", "data")}
        for k, lab in self.status_labels.items():
            lab.setMinimumWidth(90)
            self.statusBar().addPermanentWidget(lab)

    def _connect(self) -> None:
        s = self.session
        s.spec_changed.connect(self._on_spec_changed)
        s.history_reset.connect(self._on_history_reset)
        s.state_changed.connect(self._on_state_changed)
        s.run_ended.connect(self._on_run_ended)
        s.error.connect(self._show_error)
        self.palette.layer_requested.connect(self.stack.append_layer)
        self.stack.model.layers_changed.connect(self._on_layers_edited)
        self.stack.layer_selected.connect(lambda path: self.select_path(".".join(map(str, path))))
        self.train_settings.settings_changed.connect(self._on_settings_edited)
        self.toolbar.lr.valueChanged.connect(self._on_toolbar_lr)
        self.heatmap.layer_selected.connect(self._select_layer_index)
        self.flow.layer_selected.connect(self._select_layer_index)
        self.heatmap.statistic_changed.connect(self.flow.set_statistic)
        self.flow.statistic_changed.connect(self.heatmap.set_statistic)
        self.diagnosis.finding_activated.connect(self._show_finding)
        self.diagnosis.remedy_requested.connect(self.apply_remedy)
        self.diagnosis.remedy_compare_requested.connect(self.apply_remedy_and_compare)

    # ------------------------------------------------------------------ session -> views
    def _on_spec_changed(self) -> None:
        s = self.session
        if self._theory is not None:
            self._theory.set_spec(s.spec, s.base_dir)
        name = s.spec.get("name") or "untitled"
        self.setWindowTitle(f"Backprop Lab — {name}")
        if not self._editing:   # a new spec; an edit keeps the document's own state
            if "layers" in s.spec["model"]:
                self.stack.set_layers(s.spec["model"]["layers"])
            self.train_settings.set_spec_sections(s.spec["data"], s.spec["train"])
        self.stack.set_plan(s.infos)
        self.toolbar.set_lr(s.spec["train"]["lr"])
        self.activation.set_activations(s.layer_activations())
        acts = s.layer_activations()   # the flow panel's theory overlay: the chain rule's prediction
        self.flow.theory = lambda h, statistic: _predicted(h, acts, statistic)
        self.status_labels["data"].setText(f"data: {s.data_description}")
        if s.problem:
            self.statusBar().showMessage(s.problem)

    def _on_history_reset(self) -> None:
        h = self.session.history
        for view in self._live_views():
            view.set_history(h)
        # a recurrent net's story is told through time; the other nets' by their activations
        recurrent = h is not None and h.has("time_grad_norm")
        self.docks["time" if recurrent else "activation"].raise_()
        self._shown_version = -1
        self.diagnosis.set_findings([], 0)
        if self._selected_path is not None:
            self.select_path(self._selected_path)

    def _on_state_changed(self, state: str) -> None:
        self.toolbar.set_state(state)
        editing = state not in ("running", "paused")
        self.stack.set_locked(not editing, "Training is running. Stop it (Shift+F5) or Reset to edit the stack.")
        self.train_settings.setEnabled(editing)
        self.status_labels["state"].setText(state)

    def _on_run_ended(self, reason: str) -> None:
        hint = " (Run > Show the last error's details)" if reason.startswith("failed") else ""
        self.statusBar().showMessage(f"Run ended: {reason}{hint}", 10000)
        self._refresh(force_diagnosis=True)

    def _show_error(self, message: str) -> None:
        self.statusBar().showMessage(message, 15000)

    def _refresh(self, force_diagnosis: bool = False) -> None:
        """Redraw every panel on screen now (and the diagnosis if asked or due)."""
        h = self.session.history
        if h is None:
            return
        for view in self._live_views():
            if view.isVisible():
                view.refresh()
        self._refreshes += 1
        if force_diagnosis or self._refreshes % DIAGNOSE_EVERY == 0:
            self._show_diagnosis(h)
        self._update_status(h)

    def _tick(self) -> None:
        """The live redraw, one piece per timer tick: the next panel on screen whose History moved
        (round robin), or at the end of a round every DIAGNOSE_EVERY-th time the diagnosis. Its
        paint comes in an event-loop pass of its own, so the GUI thread never stops for longer
        than one panel takes to draw (all of them at once were 100-250 ms pauses, issue 9)."""
        h = self.session.history
        if h is None:
            return
        views = [v for v in self._live_views() if _on_screen(v)]
        for _ in range(len(views) + 1):
            k = self._slot % (len(views) + 1)
            self._slot += 1
            if k < len(views):
                if views[k].stale:
                    views[k].refresh()
                    break
                continue
            self._rounds += 1
            if h.version != self._shown_version and self._rounds % DIAGNOSE_EVERY == 0:
                self._show_diagnosis(h)
                break
        self._refreshes += 1
        self._update_status(h)
        cpu = time.thread_time()  # this thread's CPU since the last tick: the redraw, its paint, events
        if self.session.state == "running":
            self._timer.setInterval(self._pacer.next_interval(cpu - self._cpu_mark))
        elif self._timer.interval() != REFRESH_MS:
            self._timer.setInterval(REFRESH_MS)
        self._cpu_mark = cpu

    def _show_diagnosis(self, h) -> None:
        if h.version != self._shown_version:
            self._shown_version = h.version
            self.diagnosis.set_findings(_diagnose(h, self.session.spec) if len(h) else [], len(h))

    def _live_views(self) -> tuple:
        return tuple(v for v in (self.heatmap, self._built.get("neurons"), self.activation, self._built.get("time"),
                                 self.flow, self.loss) if v is not None)

    def _update_status(self, h) -> None:
        s = h.latest
        lab = self.status_labels
        if s is None:
            lab["step"].setText("step —")
            lab["loss"].setText("loss —")
            lab["acc"].setText("acc —")
            lab["speed"].setText("")
            return
        lab["step"].setText(f"step {s.step}")
        lab["loss"].setText(f"loss {s.loss:.4g}")
        lab["acc"].setText("acc —" if s.accuracy != s.accuracy else f"acc {s.accuracy:.3f}")
        running = self.session.state == "running"
        lab["speed"].setText(f"{self.session.steps_per_second:.0f} steps/s" if running else "")

    # ------------------------------------------------------------------ selection
    def select_path(self, path: str) -> None:
        """Select one layer everywhere."""
        self._selected_path = path
        h = self.session.history
        if h is None:
            return
        layers = [path_of(n) for n in h.layer_names]
        acts = [path_of(n) for n in h.act_names]
        if path in layers:
            self.heatmap.set_selected_layer(layers.index(path))
            self.flow.set_selected_layer(layers.index(path))
            if "neurons" in self._built:
                self._built["neurons"].set_selected_layer(layers.index(path))
        act = self._activation_for(path, layers, acts)
        if act is not None:
            self.activation.set_selected_layer(act)

    @staticmethod
    def _activation_for(path: str, layers: list, acts: list):
        """The activation at ``path``, or the first one after a layer at ``path``."""
        if path in acts:
            return acts.index(path)
        order = sorted(set(layers) | set(acts), key=_path_key)
        if path not in order:
            return None
        later = [p for p in order[order.index(path) + 1:] if p in acts]
        return acts.index(later[0]) if later else None

    def _select_layer_index(self, i: int) -> None:
        h = self.session.history
        if h is not None and 0 <= i < len(h.layer_names):
            path = path_of(h.layer_names[i])
            self.select_path(path)
            if path != "out":
                self.stack.select_path(tuple(int(p) for p in path.split(".")))

    def _show_finding(self, f) -> None:
        h = self.session.history
        if h is None or not f.layers:
            return
        names = list(h.layer_names)
        idx = [names.index(n) for n in f.layers if n in names]
        if idx:
            self._select_layer_index(idx[0])
            first, last = f.steps if f.steps else (int(h.steps[0]), int(h.steps[-1]))
            self.heatmap.zoom_to(min(idx), max(idx), first, last)

    # ------------------------------------------------------------------ editing
    def _on_layers_edited(self) -> None:
        if "layers" not in self.session.spec["model"]:
            return
        self._edit_session()

    def _edit_session(self) -> None:
        """Give the session the experiment as the document holds it now.

        The document is what the editor and every undo command change; the session
        follows it. A spec the session refuses (a bad value) leaves the document as
        it is (the user fixes it there), and the session's next spec_changed must
        not overwrite the document either, or later undo steps would refer to
        layers that are no longer there."""
        self._editing = True
        try:
            self.session.set_spec(self._document_spec())
        finally:
            self._editing = False

    def _document_spec(self) -> dict:
        """The experiment as the editor shows it: the session's spec with the document's
        stack and settings (which may hold an edit the session refused)."""
        spec = self.session.copy_spec()
        spec["data"], spec["train"] = self.document.settings()
        if "layers" in spec["model"]:
            spec["model"]["layers"] = self.stack.layers()
        return spec

    def _on_toolbar_lr(self, _value) -> None:
        # the session took the toolbar's learning rate (also mid-run); the document
        # holds it too, so the next edit does not set the old one back
        data, train = self.document.settings()
        lr = self.session.spec["train"].get("lr")
        if train.get("lr") != lr:
            self.document.show_settings(data, {**train, "lr": lr})

    def _on_settings_edited(self, data: dict, train: dict) -> None:
        self._edit_session()

    def load_theory_stack(self, spec: dict) -> None:
        """Load a stack from a theory view (a cell of the initialisation map) as one undoable edit."""
        self.session.stop()
        self._replace_experiment(spec, f"load {spec.get('name', 'a theory stack')}")
        self.central_tabs.setCurrentWidget(self.heatmap)
        self.statusBar().showMessage(f"Loaded: {spec.get('name', '')}. Undo with Ctrl+Z.", 8000)

    def apply_remedy(self, remedy_id: str) -> None:
        """Apply a remedy as one undoable edit of the stack and settings."""
        try:
            new_spec, description = remedies.apply(remedy_id, self._document_spec())
        except Exception as e:  # a remedy that does not apply to this stack
            self._show_error(f"cannot apply {remedy_id}: {e}")
            return
        self.session.stop()
        self._replace_experiment(new_spec, description)
        self.statusBar().showMessage(f"Applied: {description}. Undo with Ctrl+Z.", 8000)

    def _replace_experiment(self, new_spec: dict, text: str) -> None:
        """One undoable edit of the experiment document: its stack and its settings.

        The edit goes through the document like every other (the session follows
        the document's events), so the undo stack and the document never disagree
        about the paths earlier commands refer to. A user's own module has no
        stack to edit: its spec is swapped through the session."""
        old_spec = self._document_spec()
        if "layers" not in new_spec.get("model", {}) or "layers" not in old_spec.get("model", {}):
            self.stack.replace_spec(old_spec, new_spec, text, self.session.set_spec)
            return
        old = self.document.settings()
        new = (new_spec.get("data", old[0]), new_spec.get("train", old[1]))
        self.undo_stack.beginMacro(text)
        if new != old:
            self.undo_stack.push(EditSettings(self.document, old, new, text))
        self.undo_stack.push(ReplaceStack(self.document.stack, new_spec["model"]["layers"], text))
        self.undo_stack.endMacro()

    def apply_remedy_and_compare(self, remedy_id: str) -> None:
        from backprop_lab.app.compare import CompareWindow
        try:
            new_spec, description = remedies.apply(remedy_id, self.session.copy_spec())
        except Exception as e:
            self._show_error(f"cannot apply {remedy_id}: {e}")
            return
        w = CompareWindow(self.session.copy_spec(), new_spec, self.session.base_dir,
                          ("current", description), parent=self)
        w.show()
        w.start()

    # ------------------------------------------------------------------ files
    def open_spec_file(self, path) -> bool:
        ok = self.session.open_spec(path)
        if ok:
            self.undo_stack.clear()
            self._recovered_edits = False
            self.add_recent(str(Path(path).resolve()))
        return ok

    def add_recent(self, path: str) -> None:
        recent = [p for p in self.recent_files() if p != path]
        self.settings.setValue("recent", [path] + recent[: MAX_RECENT - 1])
        self.actions.rebuild_recent()

    def recent_files(self) -> list:
        v = self.settings.value("recent", [])
        return [v] if isinstance(v, str) else list(v or [])

    def model_opener(self, ask_layers: bool = True):
        """Opens a user's module file (File > Open model..., --model my_net.py:Net)."""
        from backprop_lab.app.open_model import ModelOpener
        self._opener = ModelOpener(self, ask_layers)
        return self._opener

    def watch_directory(self, run_dir: str) -> None:
        """Follow a live run directory (File > Watch run directory..., backprop-lab watch)."""
        from backprop_lab.app.watcher import RankPicker, RunDirWatcher
        if self._watch is not None:
            self._watch.stop()
            self.statusBar().removeWidget(self._rank_picker)
            self._rank_picker.deleteLater()
        self._watch = RunDirWatcher(self.session, run_dir, self)
        self._rank_picker = RankPicker(self._watch, self)
        self.statusBar().addPermanentWidget(self._rank_picker)
        self._watch.start()

    # ------------------------------------------------------------------ settings & exit
    def _restore_settings(self) -> None:
        geo = self.settings.value("geometry")
        state = self.settings.value("window_state")
        if isinstance(geo, QByteArray):
            self.restoreGeometry(geo)
        if isinstance(state, QByteArray):
            self._restored = self.restoreState(state)
        if self.settings.value("presentation", False) in (True, "true"):
            self.actions.presentation.setChecked(True)

    def reset_layout(self) -> None:
        """View > Reset layout: every dock back where a fresh start puts it, visible, docked."""
        for d in self.docks.values():
            d.setFloating(False)
        self.restoreState(self._default_state)
        self._drop_stray_tab_bars()
        for d in self.docks.values():
            d.show()
        self.docks["properties"].raise_()
        self.docks["flow"].raise_()
        self.docks["activation"].raise_()
        self.default_dock_sizes()
        self.settings.setValue("window_state", self.saveState())

    # ------------------------------------------------------------------ nothing lost
    def has_unsaved_edits(self) -> bool:
        """Edits of the stack or settings since the spec was opened, saved or recovered."""
        return self._recovered_edits or not self.undo_stack.isClean()

    def mark_saved(self) -> None:
        self._recovered_edits = False
        self.undo_stack.setClean()

    def ask_unsaved(self) -> str:
        """'save', 'discard' or 'cancel': what to do with unsaved edits at quit."""
        from PySide6.QtWidgets import QMessageBox
        box = QMessageBox(QMessageBox.Warning, "Unsaved changes",
                          f"The experiment {self.session.spec.get('name', '')!r} has changes that are not saved.",
                          QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel, self)
        box.setObjectName("unsaved_changes")
        box.setInformativeText("Save them before quitting?")
        box.setDefaultButton(QMessageBox.Save)
        answer = box.exec()
        return {QMessageBox.Save: "save", QMessageBox.Discard: "discard"}.get(answer, "cancel")

    def offer_recovery(self, ask=None) -> bool:
        """After a crash or a kill: offer the autosaved stack, settings and last run back.
        ``ask(recovery)`` answers (tests); by default a question box. True if restored."""
        from backprop_lab.app.autosave import pending
        rec = pending(self.autosave.folder)
        restored = False
        if rec is not None:
            got = rec.spec()
            if got is not None and (ask(rec) if ask else self._ask_recovery(rec)):
                restored = self._restore(rec, *got)
        self.autosave.start()
        return restored

    def _ask_recovery(self, rec) -> bool:
        from PySide6.QtWidgets import QMessageBox
        box = QMessageBox(QMessageBox.Question, "Restore the last session?",
                          f"Backprop Lab did not close normally (last saved {rec.when}).",
                          QMessageBox.Yes | QMessageBox.No, self)
        box.setObjectName("restore_session")
        box.setInformativeText("Restore the layer stack, its settings and the last run?")
        box.setDefaultButton(QMessageBox.Yes)
        return box.exec() == QMessageBox.Yes

    def _restore(self, rec, spec, base_dir, path) -> bool:
        run = rec.run_path()
        if run is not None and self.session.open_run(run):
            same = dict(self.session.spec)
            if specmod.validate({k: v for k, v in spec.items() if k != "stopped"}) == \
                    {k: v for k, v in same.items() if k != "stopped"}:
                self.session.base_dir = Path(base_dir) if base_dir else None
                self.session.path = Path(path) if path else None
                self._recovered_edits = True
                return True
        ok = self.session.set_spec(spec, base_dir, path)
        self.session.path = Path(path) if path else None
        self.undo_stack.clear()
        self._recovered_edits = ok
        return ok

    def set_presentation_mode(self, on: bool) -> None:
        theme.set_presentation_mode(on)
        self.settings.setValue("presentation", on)

    def shutdown(self) -> None:
        """Stop the worker and timers; safe to call twice."""
        self._shut_down = True
        if self._theory is not None:
            self._theory.shutdown()
        self._timer.stop()
        if self._watch is not None:
            self._watch.stop()
        for other in self.findChildren(QMainWindow):   # compare windows opened from here: their workers too
            if other is not self and hasattr(other, "shutdown"):
                other.shutdown()
        self.session.shutdown()

    def closeEvent(self, event) -> None:
        if self.ask_on_close and self.has_unsaved_edits():
            answer = self.ask_unsaved()
            if answer == "save":
                self.actions.save_spec()
            if answer == "cancel" or (answer == "save" and self.has_unsaved_edits()):
                event.ignore()
                return
            if answer == "discard":
                self._recovered_edits = False
                self.undo_stack.setClean()
        self.autosave.close(clean=not self.has_unsaved_edits())
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("window_state", self.saveState())
        self.shutdown()
        super().closeEvent(event)


class _Placeholder(QWidget):
    """Holds a deferred view's place in its dock; the view is built as soon as the user can
    see the dock (its tab chosen, the dock shown or floated, a restored layout that shows it).

    (Qt keeps the docks behind a tab shown, off screen: shown is not seen.)"""

    def __init__(self, window: MainWindow, name: str, dock: QDockWidget):
        super().__init__()
        self._window, self._name, self._dock = window, name, dock
        dock.visibilityChanged.connect(self._check_soon)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self._check_soon()

    def _check_soon(self, *_args) -> None:
        QTimer.singleShot(0, self._build_if_seen)   # once the event that showed it is done

    def _build_if_seen(self) -> None:
        if not shiboken6.isValid(self) or self._window._shut_down or self._name in self._window._built:
            return
        d = self._dock
        if d.isVisible() and (d.isFloating() or not d.visibleRegion().isEmpty()):
            self._window.build_view(self._name)


def _on_screen(view: QWidget) -> bool:
    """Whether any of ``view`` can be seen: Qt keeps the docks behind a tab shown, off screen, so
    ``isVisible`` alone would redraw them on every round of the live timer."""
    return view.isVisible() and not view.visibleRegion().isEmpty()


def _diagnose(history, spec) -> list:
    """The diagnosis panel's findings (engine.diagnosis, imported with the first steps shown)."""
    from backprop_lab.engine import diagnosis
    return diagnosis.diagnose(history, spec=spec)


_CHAIN = [None, None]   # (layer names, activation names) last asked about, and whether they are a plain chain


def _predicted(history, acts, statistic):
    """The flow panel's theory overlay (engine.theory.overlay, imported when first drawn). Whether the stack
    is a plain chain with an activation known for each activation layer (which the overlay needs) is found
    once per stack, not on every frame (~0.5 ms a frame for 100 layers)."""
    from backprop_lab.engine.theory import overlay
    if len(acts) != len(history.act_names):   # not this stack's activations (a History of another spec)
        return None
    names = (history.layer_names, history.act_names)
    if _CHAIN[0] != names:
        _CHAIN[0], _CHAIN[1] = (list(names[0]), list(names[1])), overlay.plain_chain(*names) is not None
    if not _CHAIN[1]:
        return None
    return overlay.predicted(history, acts, statistic)


def _path_key(p: str):
    return (1, ()) if p == "out" else (0, tuple(int(x) for x in p.split(".")))
