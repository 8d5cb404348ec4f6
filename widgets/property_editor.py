"""Properties of the selected layer: a form built from the layer type's parameters.

The editor follows the model's current path (set by the stack view). A value
is applied only if engine.spec.validate_layers accepts the candidate layer;
otherwise the SpecError message is shown under the form in red and the model
is left as it was. Every applied change is an EditLayer undo command (edits of
one field merge). Syncing from the model blocks the widgets' signals
(QSignalBlocker), so showing a value never writes it back.
"""
from __future__ import annotations

import math
from contextlib import ExitStack

from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtGui import QUndoStack
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QFrame, QLabel, QLineEdit, QSpinBox,
                               QVBoxLayout, QWidget)

from backprop_lab.engine.activations import ACTIVATIONS
from backprop_lab.engine.catalog import (BIAS_SCHEMES, CATALOG, INIT_PARAMS, INIT_SCHEMES, SCHEMES, form_params,
                                         param_default, weight_std)
from backprop_lab.engine.spec import SpecError, validate_layers, where_of
from backprop_lab.widgets.fields import NumberEdit, _set_invalid, with_value  # noqa: F401  (re-exported)
from backprop_lab.widgets.layer_catalog import (GROUP_COLOURS, PROBLEM_COLOUR, description, format_shape, group_of,
                                                info_get, path_text)
from backprop_lab.widgets.stack_model import LayerStackModel
from backprop_lab.widgets.undo_commands import EditLayer

INT_MAX = 2**31 - 1   # a QSpinBox's largest value: the form's bound where the catalogue sets none
class PropertyEditor(QWidget):
    """Form for the layer at the model's current path."""

    error_changed = Signal(str)   # the message of a refused value ("" when cleared)

    def __init__(self, model: LayerStackModel, undo_stack: QUndoStack | None = None, parent=None):
        super().__init__(parent)
        self.model = model
        self.undo_stack = undo_stack if undo_stack is not None else model.undo_stack
        self._path = None
        self._kind = None
        self.fields: dict[str, QWidget] = {}

        self.title = QLabel()
        self.title.setTextFormat(Qt.RichText)
        f = self.title.font()
        f.setPointSizeF(f.pointSizeF() * 1.25)
        self.title.setFont(f)
        self.subtitle = QLabel()
        self.subtitle.setObjectName("propSubtitle")
        self.subtitle.setStyleSheet("#propSubtitle { color: palette(placeholder-text); }")
        self.problem = QLabel()
        self.problem.setWordWrap(True)
        self.problem.setStyleSheet(f"color: {PROBLEM_COLOUR};")
        self.description = QLabel()
        self.description.setWordWrap(True)
        self.description.setObjectName("propDescription")
        self.description.setStyleSheet("#propDescription { color: palette(placeholder-text); }")

        self.form_widget = QWidget()
        self.form = QFormLayout(self.form_widget)
        self.form.setContentsMargins(0, 4, 0, 0)
        self.form.setFieldGrowthPolicy(QFormLayout.ExpandingFieldsGrow)
        self.form.setLabelAlignment(Qt.AlignRight | Qt.AlignVCenter)
        self._build_fields()

        self.error = QLabel()
        self.error.setObjectName("propError")
        self.error.setWordWrap(True)
        self.error.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.error.setStyleSheet(f"#propError {{ color: {PROBLEM_COLOUR}; background: rgba(214, 69, 65, 0.10);"
                                 f" border-left: 3px solid {PROBLEM_COLOUR}; padding: 4px 6px; }}")
        self.error.hide()
        self.lock = QLabel()
        self.lock.setObjectName("propLock")
        self.lock.setWordWrap(True)
        self.lock.setStyleSheet("#propLock { background: rgba(227, 163, 59, 0.18); border-left: 3px solid #e3a33b;"
                                " padding: 4px 6px; }")
        self.lock.hide()
        self.placeholder = QLabel("Select a layer in the stack to see and edit its parameters.")
        self.placeholder.setWordWrap(True)
        self.placeholder.setObjectName("propPlaceholder")
        self.placeholder.setStyleSheet("#propPlaceholder { color: palette(placeholder-text); }")

        line = QFrame()
        line.setFrameShape(QFrame.HLine)
        line.setFrameShadow(QFrame.Sunken)
        self._line = line
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 8, 8, 8)
        lay.setSpacing(4)
        for w in (self.placeholder, self.title, self.subtitle, self.problem, self.description, line,
                  self.form_widget, self.error, self.lock):
            lay.addWidget(w)
        lay.addStretch(1)

        model.current_changed.connect(self.set_path)
        model.layers_changed.connect(self._sync)
        model.plan_changed.connect(self._sync)
        model.dataChanged.connect(self._sync)
        model.modelReset.connect(self._sync)
        model.locked_changed.connect(self._on_locked_changed)
        self.set_path(model.current_path)

    # ------------------------------------------------------------------ building
    def _build_fields(self) -> None:
        """One row per parameter name of the catalogue (engine.catalog.form_params); _fill shows
        the rows of the selected layer's type."""
        def add(key, label, widget, tip=""):
            widget.setToolTip(tip)
            widget.setObjectName(key)
            self.form.addRow(label, widget)
            self.fields[key] = widget
            return widget

        self._params = {p.name: p for p in form_params() if p.kind != "layers"}
        for p in self._params.values():
            if p.kind == "int":
                spin = add(p.name, p.label, QSpinBox(), f"{p.tip}: {p.rule}")
                spin.setRange(int(p.minimum), int(p.maximum) if p.maximum is not None else INT_MAX)
                spin.setKeyboardTracking(False)   # apply on Enter / focus out / arrows, not per digit
                spin.setAccelerated(True)
                spin.valueChanged.connect(lambda v, k=p.name: self.set_value(k, v))
                spin.lineEdit().textEdited.connect(lambda t, k=p.name: self._on_int_typed(k, t))
            elif p.kind == "bool":
                box = add(p.name, p.label, QCheckBox(p.check_text), p.tip)
                box.toggled.connect(lambda on, k=p.name: self.set_value(k, on))
            elif p.kind in ("init", "bias_init"):
                self._add_init_rows(add, p)
            else:
                e = add(p.name, p.label, NumberEdit(optional=p.optional), p.tip)
                e.committed.connect(lambda k=p.name: self._commit_number(k))
        name = add("name", "label", QLineEdit(), "An optional name for the layer (kept in the spec)")
        name.setPlaceholderText("optional")
        name.editingFinished.connect(self._commit_name)

    def _add_init_rows(self, add, p) -> None:
        obj = p.name
        combo = add(f"{obj}.scheme", p.label, QComboBox(), p.tip)
        for i, s in enumerate(INIT_SCHEMES if p.kind == "init" else BIAS_SCHEMES):
            combo.addItem(s)
            combo.setItemData(i, SCHEMES[s].tip, Qt.ToolTipRole)
        combo.currentTextChanged.connect(lambda s, o=obj: self.set_value(f"{o}.scheme", s))
        for name, (_, tip) in INIT_PARAMS.items():
            e = add(f"{obj}.{name}", f"    {name}", NumberEdit(optional=True), tip + "; empty: the default")
            e.committed.connect(lambda k=f"{obj}.{name}": self._commit_number(k))
        if p.kind == "init":
            self.init_note = QLabel()
            self.init_note.setObjectName("initNote")
            self.init_note.setWordWrap(True)
            self.init_note.setStyleSheet("#initNote { color: palette(placeholder-text); }")
            self.init_note.setToolTip("For inputs of unit variance, a linear layer's outputs have standard "
                                      "deviation √fan_in · std(W): above 1 the signal grows layer after "
                                      "layer, below 1 it shrinks")
            self.form.addRow("", self.init_note)

    # ------------------------------------------------------------------ public
    def path(self):
        return self._path

    def set_path(self, path) -> None:
        """Show the layer at ``path`` (None: nothing selected)."""
        self._path = tuple(path) if path is not None else None
        self._show_error("")
        self._sync()

    def error_text(self) -> str:
        return self.error.text() if self.error.isVisible() or self.error.text() else ""

    def set_value(self, key: str, value) -> bool:
        """Apply one parameter ("units", "bias", "init.scheme", "init.std", "slope"...) to the
        current layer as an undoable edit. Invalid values are refused: the message is shown
        and the model does not change. Returns whether the value is now in the model."""
        path = self._path
        if path is None or path == ("out",) or not self.model.has_path(path):
            return False
        if self.model.locked:
            self._show_error(self.model.lock_reason)
            self._sync()
            return False
        old = self.model.layer(path)
        new = with_value(old, key, value)
        msg = self.check(new)
        widget = self.fields.get(key)
        if msg:
            self._show_error(msg)
            if widget is not None:
                _set_invalid(widget, True)
            return False
        self._show_error("")
        if new != old:
            self.undo_stack.push(EditLayer(self.model.doc, path, new))
        return True

    def check(self, candidate: dict) -> str | None:
        """validate_layers' message if ``candidate`` cannot replace the current layer, else None."""
        path = self._path
        layers = self.model.layers()
        holder = layers
        for p in path[:-1]:
            holder = holder[p - 1]["layers"]
        holder[path[-1] - 1] = candidate
        try:
            validate_layers(layers)
            return None
        except SpecError as e:
            if e.path == path:
                return str(e)
        # another layer is invalid: judge this one on its own, named by its place in the stack
        kinds = [self.model.layer(path[:i])["type"] for i in range(1, len(path))]
        try:
            validate_layers([candidate], where_of(path, kinds), path[:-1], start=path[-1])
            return None
        except SpecError as e:
            return str(e)

    # ------------------------------------------------------------------ edits from widgets
    def _commit_number(self, key: str) -> None:
        w = self.fields[key]
        try:
            v = w.value()
        except ValueError:
            where = f"layer {path_text(self._path)} ({self._kind})" if self._path else "layer"
            self._show_error(f"{where}: {key} must be a number, got {w.text()!r}")
            _set_invalid(w, True)
            return
        self.set_value(key, v)

    def _commit_name(self) -> None:
        if self._path is None or self._path == ("out",) or not self.model.has_path(self._path):
            return
        text = self.fields["name"].text().strip()
        if text != self.model.layer(self._path).get("name", ""):
            self.set_value("name", text)

    def _on_int_typed(self, key: str, text: str) -> None:
        # the spin box cannot hold a value out of its range: say why the typed one will not be taken
        try:
            v = int(text)
        except ValueError:
            return
        if self._path is None or not self.model.has_path(self._path):
            return
        msg = self.check(with_value(self.model.layer(self._path), key, v))
        spin = self.fields[key]
        if msg is None and not spin.minimum() <= v <= spin.maximum():
            msg = f"{key} must be between {spin.minimum()} and {spin.maximum()}, got {v}"
        self._show_error(msg or "")
        _set_invalid(spin, bool(msg))

    def _show_error(self, msg: str) -> None:
        if msg == self.error.text() and self.error.isVisibleTo(self) == bool(msg):
            return
        self.error.setText(msg)
        self.error.setVisible(bool(msg))
        if not msg:
            for w in self.fields.values():
                if w.property("invalid"):
                    _set_invalid(w, False)
        self.error_changed.emit(msg)

    def _on_locked_changed(self, locked: bool, reason: str) -> None:
        self.lock.setText(f"Locked. {reason}")
        self.lock.setVisible(locked and self._path is not None)
        self.form_widget.setEnabled(not locked)

    # ------------------------------------------------------------------ model -> form
    def _sync(self, *_args) -> None:
        path = self._path
        valid = path is not None and self.model.has_path(path)
        self.placeholder.setVisible(not valid)
        for w in (self.title, self.subtitle, self.description, self._line):
            w.setVisible(valid)
        self.form_widget.setVisible(valid and path != ("out",))
        self.lock.setVisible(valid and self.model.locked)
        self.form_widget.setEnabled(not self.model.locked)
        if not valid:
            self.problem.hide()
            self._kind = None
            return
        layer = self.model.layer(path)
        kind = self._kind = layer["type"]
        group = group_of(kind)
        colour = GROUP_COLOURS.get(group, "#888")
        added = path == ("out",)
        self.title.setText(f"<span style='color:{colour}'>■</span> <span style='color:gray'>"
                           f"{path_text(path)}</span>&nbsp; <b>{kind}</b>")
        info = self.model.info(path)
        shapes = ""
        if info is not None:
            i, o = info_get(info, "in_shape"), info_get(info, "out_shape")
            shapes = f"in {format_shape(i)} → out {format_shape(o)}"
        self.subtitle.setText(" · ".join(x for x in ("added output layer" if added else group, shapes) if x))
        problem = self.model.problem(path)
        self.problem.setText(f"⚠ {problem}" if problem else "")
        self.problem.setVisible(bool(problem))
        self.description.setText(self._describe(layer, added))
        if added:
            return
        self._fill(layer)

    def _describe(self, layer: dict, added: bool) -> str:
        kind = layer["type"]
        if added:
            return ("The builder adds this linear layer (PyTorch's default init) because the stack does "
                    "not end with a linear layer of the output size. End the stack with one to choose "
                    "its init yourself.")
        text = description(kind)
        if kind in ACTIVATIONS:
            text += f" Largest slope: max f′ = {ACTIVATIONS[kind](layer).max_derivative:g}."
        if kind == "residual":
            n = len(layer.get("layers", []))
            text += f" Its body has {n} layer{'s' if n != 1 else ''}: edit them in the stack."
        return text

    def _fill(self, layer: dict) -> None:
        kind = layer["type"]
        t = CATALOG[kind]
        f = self.fields
        with ExitStack() as stack:
            for w in f.values():
                stack.enter_context(QSignalBlocker(w))
            for p in self._params.values():
                v = layer.get(p.name, p.default)
                if p.kind == "int":
                    f[p.name].setValue(int(v) if isinstance(v, int) else int(p.minimum))
                elif p.kind == "bool":
                    f[p.name].setChecked(bool(v))
                elif p.kind in ("init", "bias_init"):
                    init = {"scheme": v} if isinstance(v, str) else (v or {"scheme": "default"})
                    scheme = init.get("scheme", "default")
                    f[f"{p.name}.scheme"].setCurrentText(scheme)
                    for name in INIT_PARAMS:
                        e = f[f"{p.name}.{name}"]
                        e.set_value(init.get(name))
                        e.setPlaceholderText(f"{param_default(scheme, name):.4g} (default)")
                else:
                    f[p.name].set_value(v)
                    if p.empty_text:
                        f[p.name].setPlaceholderText(p.empty_text)
            f["name"].setText(layer.get("name", ""))
        # which rows apply: the type's parameters (an init's own parameters by its scheme)
        show = {k: False for k in f}
        show["name"] = True
        for p in t.params:
            applies = p.needs is None or bool(layer.get(p.needs, True))
            if p.kind in ("init", "bias_init"):
                show[f"{p.name}.scheme"] = applies
                if applies:
                    scheme = (layer.get(p.name) or {}).get("scheme", "default")
                    for name in SCHEMES[scheme].params if scheme in SCHEMES else ():
                        show[f"{p.name}.{name}"] = True
            elif p.name in show:
                show[p.name] = applies
        for key, w in f.items():
            self.form.setRowVisible(w, show[key])
        note = self._init_note(layer) if t.role == "dense" else ""
        self.init_note.setText(note)
        self.form.setRowVisible(self.init_note, bool(note))

    def _init_note(self, layer: dict) -> str:
        """std(W) of the layer's init (engine.catalog.weight_std) and the gain √fan_in · std(W) it
        gives (needs the plan's fan_in)."""
        info = self.model.info(self._path)
        shape = info_get(info, "in_shape") if info is not None else None
        if not shape:
            return ""
        fan_in = int(shape[-1])
        std = weight_std(layer.get("init") or {"scheme": "default"}, fan_in, int(layer.get("units", 1)))
        if std is None:
            return ""
        g = std * math.sqrt(fan_in)
        verdict = "grows" if g > 1.5 else ("shrinks" if g < 0.67 else "keeps its size")
        return f"std(W) = {std:.3g}, so √fan_in · std(W) = {g:.3g} (fan_in {fan_in}): the signal {verdict}."
