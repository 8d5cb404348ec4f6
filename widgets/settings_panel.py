"""Data and training settings: the spec's "data" and "train" sections as a form.

``set_spec_sections(data, train)`` shows the session's (validated) sections
without emitting anything. A change made in the form is checked with
engine.spec.validate; if valid it becomes an EditSettings undo command (when an
undo stack was given) whose redo emits ``settings_changed(data, train)``;
if not, the message is shown in red under the form and nothing is emitted
(switching to npz data waits for a file, for instance).

(About 400 lines: the data and training form, whose rows depend on the data
kind; validation is engine.spec's.)
"""
from __future__ import annotations

import copy
from contextlib import ExitStack

from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGroupBox,
                               QHBoxLayout, QLabel, QLineEdit, QPushButton, QSpinBox, QVBoxLayout, QWidget)

from backprop_lab.engine.document import ExperimentDocument
from backprop_lab.engine.spec import (DATA_COMMON, DATA_KINDS, DATA_OPTIONAL, DEVICES, LOSSES, OPTIMIZERS,
                                      TRAIN_DEFAULTS, SpecError, validate)
from backprop_lab.widgets.fields import NumberEdit
from backprop_lab.widgets.layer_catalog import PROBLEM_COLOUR
from backprop_lab.widgets.undo_commands import EditSettings

DATA_DESCRIPTIONS = {
    "spirals": "Interleaved 2-D spirals, one arm per class: needs a deep, non-linear boundary.",
    "circles": "Two concentric rings (2-D, 2 classes).",
    "xor": "Four 2-D clusters labelled by XOR of the signs: not linearly separable.",
    "blobs": "Gaussian clusters, one per class.",
    "gaussian": "Overlapping Gaussian classes.",
    "digits": "8 × 8 images of handwritten digits (10 classes), shipped offline.",
    "memory": "Sequences whose label is the first element: the gradient must cross every time step.",
    "adding": "The adding problem: sum the two marked values of a long sequence (regression).",
    "npz": "Your arrays: x (samples first) and y (class indices, or floats for regression).",
    "csv": "Your table: one row per sample, the target in one column.",
}
INT_KEYS = {"n": (1, 10_000_000), "classes": (2, 1000), "dim": (1, 100_000), "length": (1, 100_000),
            "features": (1, 100_000), "target": (-10_000, 10_000)}
FLOAT_KEYS = ("noise", "std", "factor", "turns")
DATA_ORDER = ("n", "classes", "dim", "length", "features", "noise", "std", "factor", "turns",
              "path", "target", "task", "standardize")
LOSS_AUTO = "auto (from the data)"


def _int_spin(lo: int, hi: int) -> QSpinBox:
    s = QSpinBox()
    s.setRange(lo, hi)
    s.setKeyboardTracking(False)
    s.setAccelerated(True)
    return s


def _float_spin(lo: float, hi: float, step: float, decimals: int) -> QDoubleSpinBox:
    s = QDoubleSpinBox()
    s.setRange(lo, hi)
    s.setSingleStep(step)
    s.setDecimals(decimals)
    s.setKeyboardTracking(False)
    return s


def _form_key(kind: str, key: str) -> bool:
    """Whether the form edits this data key of this kind (a number whose default is null, such
    as npz's "classes" (null: from the labels), has no row: it is kept as the spec has it)."""
    return key in DATA_KINDS[kind] and not (DATA_KINDS[kind][key] is None and (key in INT_KEYS or key in FLOAT_KEYS))


class SettingsPanel(QWidget):
    """Data set and training hyper-parameters of the experiment."""

    settings_changed = Signal(dict, dict)   # data, train: both complete sections

    def __init__(self, undo_stack=None, parent=None, document: ExperimentDocument | None = None):
        super().__init__(parent)
        self.undo_stack = undo_stack
        # the sections live in the experiment document, which EditSettings changes
        self.doc = document if document is not None else ExperimentDocument()
        self.doc.show_settings({"kind": "spirals", **DATA_COMMON, **DATA_KINDS["spirals"]}, dict(TRAIN_DEFAULTS))
        self.doc.events.connect("settings_changed", self._on_doc_settings)
        self.fields: dict[str, QWidget] = {}
        self._rows: dict[str, QWidget] = {}

        # ---- data
        data_box = QGroupBox("Data")
        self.data_form = QFormLayout(data_box)
        self.data_form.setFieldGrowthPolicy(QFormLayout.ExpandingFieldsGrow)
        self.data_form.setLabelAlignment(Qt.AlignRight | Qt.AlignVCenter)
        kind = QComboBox()
        kind.addItems(list(DATA_KINDS))
        for i, k in enumerate(DATA_KINDS):
            kind.setItemData(i, DATA_DESCRIPTIONS.get(k, ""), Qt.ToolTipRole)
        self._add(self.data_form, "data.kind", "data set", kind)
        self.data_note = QLabel()
        self.data_note.setWordWrap(True)
        self.data_note.setObjectName("dataNote")
        self.data_note.setStyleSheet("#dataNote { color: palette(placeholder-text); }")
        self.data_form.addRow(self.data_note)
        for key in DATA_ORDER:
            if key in INT_KEYS:
                w = _int_spin(*INT_KEYS[key])
            elif key in FLOAT_KEYS:
                w = _float_spin(0.0, 100.0, 0.05, 3)
            elif key == "path":
                w = QWidget()
                h = QHBoxLayout(w)
                h.setContentsMargins(0, 0, 0, 0)
                self.path_edit = QLineEdit()
                self.path_edit.setPlaceholderText("file (relative to the spec file)")
                browse = QPushButton("Browse…")
                browse.clicked.connect(self._browse)
                self.browse_button = browse
                h.addWidget(self.path_edit, 1)
                h.addWidget(browse)
                self.path_edit.editingFinished.connect(self._on_edited)
            elif key == "task":
                w = QComboBox()
                w.addItems(["classification", "regression"])
            else:  # standardize
                w = QCheckBox("zero mean, unit variance per feature")
            self._add(self.data_form, f"data.{key}", key.replace("_", " "), w)
        self._add(self.data_form, "data.test_fraction", "test fraction", _float_spin(0.0, 0.95, 0.05, 2))
        self._add(self.data_form, "data.seed", "data seed", _int_spin(-2**31, 2**31 - 1))

        # ---- training
        train_box = QGroupBox("Training")
        tf = self.train_form = QFormLayout(train_box)
        tf.setFieldGrowthPolicy(QFormLayout.ExpandingFieldsGrow)
        tf.setLabelAlignment(Qt.AlignRight | Qt.AlignVCenter)
        loss = QComboBox()
        loss.addItems([LOSS_AUTO, *LOSSES])
        self._add(tf, "train.loss", "loss", loss, "Mean over the batch; auto: cross-entropy for "
                                                   "classes, mean squared error for regression")
        opt = QComboBox()
        opt.addItems(list(OPTIMIZERS))
        self._add(tf, "train.optimizer", "optimizer", opt)
        self._add(tf, "train.lr", "learning rate", NumberEdit(), "Step size (0.1, 1e-3...)")
        self._add(tf, "train.momentum", "momentum", _float_spin(0.0, 0.999, 0.05, 3),
                  "Used by the momentum and nesterov optimizers")
        bs = QWidget()
        h = QHBoxLayout(bs)
        h.setContentsMargins(0, 0, 0, 0)
        self.batch_spin = _int_spin(1, 10_000_000)
        self.full_batch = QCheckBox("full batch")
        h.addWidget(self.batch_spin, 1)
        h.addWidget(self.full_batch)
        self._add(tf, "train.batch_size", "batch size", bs, "Samples per step; full batch: the whole training set")
        self._add(tf, "train.weight_decay", "weight decay", NumberEdit(), "L2 penalty coefficient (≥ 0)")
        for key, tip in (("clip_norm", "Rescale the gradient when its total L2 norm exceeds this"),
                         ("clip_value", "Clamp every gradient entry to [−v, v]")):
            w = QWidget()
            h = QHBoxLayout(w)
            h.setContentsMargins(0, 0, 0, 0)
            on = QCheckBox()
            val = NumberEdit()
            val.setPlaceholderText("off")
            h.addWidget(on)
            h.addWidget(val, 1)
            setattr(self, f"{key}_on", on)
            setattr(self, f"{key}_edit", val)
            on.toggled.connect(lambda checked, k=key: self._on_clip_toggled(k, checked))
            val.committed.connect(self._on_edited)
            self._add(tf, f"train.{key}", key.replace("_", " "), w, tip)
        self._add(tf, "train.steps", "steps", _int_spin(1, 100_000_000))
        self._add(tf, "train.seed", "seed", _int_spin(-2**31, 2**31 - 1), "Seed of the weights and batches")
        self._add(tf, "train.eval_every", "evaluate every", _int_spin(1, 1_000_000),
                  "Test loss and accuracy every this many steps")
        dev = QComboBox()
        dev.addItems(list(DEVICES))
        self._add(tf, "train.device", "device", dev)

        self.error = QLabel()
        self.error.setObjectName("settingsError")
        self.error.setWordWrap(True)
        self.error.setStyleSheet(f"#settingsError {{ color: {PROBLEM_COLOUR}; background: rgba(214, 69, 65, 0.10);"
                                 f" border-left: 3px solid {PROBLEM_COLOUR}; padding: 4px 6px; }}")
        self.error.hide()

        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addWidget(data_box)
        lay.addWidget(train_box)
        lay.addWidget(self.error)
        lay.addStretch(1)

        for key, w in self.fields.items():
            if key != "data.kind":
                self._connect(w)
        kind.currentTextChanged.connect(self._on_kind_changed)
        self.batch_spin.valueChanged.connect(self._on_edited)
        self.full_batch.toggled.connect(self._on_edited)
        self._show(self._data, self._train)

    # ------------------------------------------------------------------ building helpers
    def _add(self, form, key, label, widget, tip=""):
        widget.setObjectName(key.replace(".", "_"))
        if tip:
            widget.setToolTip(tip)
        form.addRow(label, widget)
        self.fields[key] = widget
        return widget

    def _connect(self, w) -> None:
        if isinstance(w, QComboBox):
            w.currentTextChanged.connect(self._on_edited)
        elif isinstance(w, (QSpinBox, QDoubleSpinBox)):
            w.valueChanged.connect(self._on_edited)
        elif isinstance(w, QCheckBox):
            w.toggled.connect(self._on_edited)
        elif isinstance(w, NumberEdit):
            w.committed.connect(self._on_edited)

    # ------------------------------------------------------------------ public
    def settings(self) -> tuple[dict, dict]:
        """The applied (data, train) sections."""
        return copy.deepcopy(self._data), copy.deepcopy(self._train)

    @property
    def _data(self) -> dict:
        return self.doc.data

    @property
    def _train(self) -> dict:
        return self.doc.train

    def set_spec_sections(self, data: dict, train: dict) -> None:
        """Show these sections (from the session); emits nothing, pushes nothing."""
        self.doc.show_settings({**DATA_COMMON, **DATA_KINDS.get(data.get("kind"), {}), **copy.deepcopy(data)},
                               {**TRAIN_DEFAULTS, **copy.deepcopy(train)})
        self._show(self._data, self._train)
        self._show_error("")

    def apply_settings(self, data: dict, train: dict) -> None:
        """Set these sections in the document; the panel shows and announces them."""
        self.doc.set_settings(data, train)

    def _on_doc_settings(self, data: dict, train: dict) -> None:
        self._show(self._data, self._train)
        self._show_error("")
        self.settings_changed.emit(data, train)

    def candidate(self) -> tuple[dict, dict]:
        """The sections as the form shows them now (not yet checked)."""
        f = self.fields
        kind = f["data.kind"].currentText()
        base = self._data if self._data.get("kind") == kind else {}
        data = {"kind": kind}
        for key in DATA_KINDS[kind]:
            if key == "path":
                data["path"] = self.path_edit.text().strip() or None
            elif not _form_key(kind, key):   # no row for it here: kept as the spec has it
                data[key] = base.get(key, DATA_KINDS[kind][key])
            elif key in INT_KEYS or key in FLOAT_KEYS:
                data[key] = f[f"data.{key}"].value()
            elif key == "task":
                data[key] = f["data.task"].currentText()
            elif key == "standardize":
                data[key] = f["data.standardize"].isChecked()
            else:
                data[key] = base.get(key, DATA_KINDS[kind][key])
        data["test_fraction"] = round(f["data.test_fraction"].value(), 4)
        data["seed"] = f["data.seed"].value()
        for key in DATA_OPTIONAL.get(kind, ()):   # keys the form has no row for: kept when the spec has them
            if key in base:
                data[key] = base[key]
        for key in FLOAT_KEYS:   # keep the float type the spec had (a spin box gives floats)
            if key in data and isinstance(base.get(key), int) and float(base[key]) == data[key]:
                data[key] = base[key]

        train = dict(self._train)
        loss = f["train.loss"].currentText()
        train["loss"] = None if loss == LOSS_AUTO else loss
        train["optimizer"] = f["train.optimizer"].currentText()
        train["lr"] = self._number(f["train.lr"], "train.lr")
        train["momentum"] = round(f["train.momentum"].value(), 6)
        train["batch_size"] = None if self.full_batch.isChecked() else self.batch_spin.value()
        train["weight_decay"] = self._number(f["train.weight_decay"], "train.weight_decay")
        for key in ("clip_norm", "clip_value"):
            on, edit = getattr(self, f"{key}_on"), getattr(self, f"{key}_edit")
            train[key] = self._number(edit, f"train.{key}") if on.isChecked() else None
        for key in ("steps", "seed", "eval_every"):
            train[key] = f[f"train.{key}"].value()
        train["device"] = f["train.device"].currentText()
        return data, train

    def error_text(self) -> str:
        return self.error.text()

    # ------------------------------------------------------------------ form -> spec
    @staticmethod
    def _number(edit: NumberEdit, where: str):
        try:
            return edit.value()
        except ValueError:
            raise SpecError(f"{where}: must be a number, got {edit.text()!r}") from None

    def _on_edited(self, *_args) -> None:
        self._update_rows()
        try:
            data, train = self.candidate()
            checked = validate({"data": data, "model": {"layers": []}, "train": train})
        except SpecError as e:
            msg = str(e)
            if msg.startswith("data.path") and not self.path_edit.text().strip():
                msg = f"Choose a file (Browse…) to use {self.fields['data.kind'].currentText()} data."
            self._show_error(msg)
            return
        del checked
        self._show_error("")
        old = (self._data, self._train)
        if (data, train) == old:
            return
        if self.undo_stack is not None:
            self.undo_stack.push(EditSettings(self.doc, old, (data, train)))
        else:
            self.apply_settings(data, train)

    def _on_kind_changed(self, kind: str) -> None:
        # a new data set starts from its own defaults; the split and the seed stay
        with ExitStack() as stack:
            for key in DATA_ORDER:
                stack.enter_context(QSignalBlocker(self.fields[f"data.{key}"]))
            stack.enter_context(QSignalBlocker(self.path_edit))
            for key, value in DATA_KINDS[kind].items():
                if not _form_key(kind, key):
                    continue
                w = self.fields[f"data.{key}"]
                if key == "path":
                    self.path_edit.setText(value or "")
                elif key in INT_KEYS or key in FLOAT_KEYS:
                    w.setValue(value)
                elif key == "task":
                    w.setCurrentText(value)
                elif key == "standardize":
                    w.setChecked(bool(value))
        self._on_edited()

    def _on_clip_toggled(self, key: str, on: bool) -> None:
        edit = getattr(self, f"{key}_edit")
        if on and not edit.text().strip():
            edit.set_value(1.0)
        self._on_edited()

    def _browse(self) -> None:
        kind = self.fields["data.kind"].currentText()
        filt = "NumPy arrays (*.npz)" if kind == "npz" else "CSV tables (*.csv *.txt)"
        path, _ = QFileDialog.getOpenFileName(self, "Data file", self.path_edit.text(), filt + ";;All files (*)")
        if path:
            self.path_edit.setText(path)
            self._on_edited()

    def _show_error(self, msg: str) -> None:
        self.error.setText(msg)
        self.error.setVisible(bool(msg))

    # ------------------------------------------------------------------ spec -> form
    def _show(self, data: dict, train: dict) -> None:
        f = self.fields
        with ExitStack() as stack:
            for w in [*f.values(), self.path_edit, self.batch_spin, self.full_batch, self.clip_norm_on,
                      self.clip_norm_edit, self.clip_value_on, self.clip_value_edit]:
                stack.enter_context(QSignalBlocker(w))
            kind = data.get("kind", "spirals")
            f["data.kind"].setCurrentText(kind)
            defaults = {**{k: v for d in DATA_KINDS.values() for k, v in d.items()}, **DATA_KINDS[kind]}
            for key in DATA_ORDER:
                value = data.get(key, defaults.get(key))
                w = f[f"data.{key}"]
                if key == "path":
                    self.path_edit.setText(value or "")
                elif key in INT_KEYS or key in FLOAT_KEYS:
                    w.setValue(value if value is not None else 0)
                elif key == "task":
                    w.setCurrentText(value or "classification")
                elif key == "standardize":
                    w.setChecked(bool(value))
            f["data.test_fraction"].setValue(data.get("test_fraction", DATA_COMMON["test_fraction"]))
            f["data.seed"].setValue(data.get("seed", 0))
            f["train.loss"].setCurrentText(train.get("loss") or LOSS_AUTO)
            f["train.optimizer"].setCurrentText(train["optimizer"])
            f["train.lr"].set_value(train["lr"])
            f["train.momentum"].setValue(train["momentum"])
            bs = train.get("batch_size")
            self.full_batch.setChecked(bs is None)
            if bs is not None:
                self.batch_spin.setValue(bs)
            f["train.weight_decay"].set_value(train["weight_decay"])
            for key in ("clip_norm", "clip_value"):
                on, edit = getattr(self, f"{key}_on"), getattr(self, f"{key}_edit")
                on.setChecked(train.get(key) is not None)
                edit.set_value(train.get(key))
            for key in ("steps", "seed", "eval_every"):
                f[f"train.{key}"].setValue(train[key])
            f["train.device"].setCurrentText(train.get("device", "cpu"))
        self._update_rows()

    def _update_rows(self) -> None:
        kind = self.fields["data.kind"].currentText()
        for key in DATA_ORDER:
            self.data_form.setRowVisible(self.fields[f"data.{key}"], _form_key(kind, key))
        self.data_note.setText(DATA_DESCRIPTIONS.get(kind, ""))
        self.fields["train.momentum"].setEnabled(self.fields["train.optimizer"].currentText()
                                                 in ("momentum", "nesterov"))
        self.batch_spin.setEnabled(not self.full_batch.isChecked())
        for key in ("clip_norm", "clip_value"):
            getattr(self, f"{key}_edit").setEnabled(getattr(self, f"{key}_on").isChecked())
