"""File > Open model...: a user's .py file, its class, keyword arguments and a data set; then
the module tree with a check box per layer to watch. Qt only: the file is read with ``ast``
(never run) to list its classes; running it is the app's business, in a child process."""
from __future__ import annotations

import ast
import json
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout,
                               QLabel, QLineEdit, QPushButton, QTreeWidget, QTreeWidgetItem, QVBoxLayout)

DATA_KINDS = ("digits", "spirals", "circles", "xor", "blobs", "gaussian", "memory", "adding")
RUNS_CODE = ("Opening a model runs its file's Python code (its imports and the class's __init__) with "
             "your permissions, in a separate process first. Open only files you trust.")


def classes_in(path) -> list:
    """Names of the classes a Python file defines at its top level (read, not run)."""
    try:
        tree = ast.parse(Path(path).read_text())
    except (OSError, SyntaxError, ValueError):
        return []
    return [n.name for n in tree.body if isinstance(n, ast.ClassDef)]


class OpenModelDialog(QDialog):
    def __init__(self, parent=None, path: str = "", class_name: str = "", kwargs: dict | None = None,
                 data: str = "digits"):
        super().__init__(parent)
        self.setWindowTitle("Open model")
        form = QFormLayout()
        self.path = QLineEdit(path)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.path, 1)
        row.addWidget(browse)
        form.addRow("Python file", row)
        self.class_box = QComboBox(editable=True)
        form.addRow("Class", self.class_box)
        self.kwargs = QLineEdit(json.dumps(kwargs or {}))
        self.kwargs.setToolTip('keyword arguments of the class, as JSON: {"hidden": 64}')
        form.addRow("Keyword arguments", self.kwargs)
        self.data = QComboBox(editable=True)
        self.data.addItems(DATA_KINDS)
        self.data.setCurrentText(data)
        self.data.setToolTip("a built-in data set, or the path of an .npz file with arrays x and y")
        form.addRow("Data set", self.data)
        note = QLabel(RUNS_CODE)
        note.setWordWrap(True)
        note.setObjectName("runs_code_note")
        self.problem = QLabel("")
        self.problem.setStyleSheet("color: #c0392b")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(note)
        lay.addWidget(self.problem)
        lay.addWidget(buttons)
        self.path.textChanged.connect(self._fill_classes)
        self._fill_classes(path, class_name)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open model file", "", "Python (*.py)")
        if path:
            self.path.setText(path)

    def _fill_classes(self, path: str, prefer: str = "") -> None:
        names = classes_in(path) if path else []
        current = prefer or self.class_box.currentText()
        self.class_box.clear()
        self.class_box.addItems(names)
        if current:
            self.class_box.setCurrentText(current)

    def spec(self) -> dict:
        """The spec of the chosen model and data (ValueError with a message if the form is not valid)."""
        path = self.path.text().strip()
        if not path or not Path(path).is_file():
            raise ValueError(f"no such file: {path!r}")
        if not self.class_box.currentText().strip():
            raise ValueError("name the class to build")
        try:
            kwargs = json.loads(self.kwargs.text() or "{}")
        except json.JSONDecodeError as e:
            raise ValueError(f"keyword arguments: not JSON ({e.msg})") from None
        if not isinstance(kwargs, dict):
            raise ValueError('keyword arguments: a JSON object, e.g. {"hidden": 64}')
        return model_spec(path, self.class_box.currentText().strip(), kwargs, self.data.currentText().strip())

    def _accept(self) -> None:
        try:
            self.spec()
        except ValueError as e:
            self.problem.setText(str(e))
            return
        self.accept()


def model_spec(path, class_name: str, kwargs: dict, data: str) -> dict:
    path = str(Path(path).resolve())
    kind = {"kind": "npz", "path": str(Path(data).resolve())} if data.endswith(".npz") else {"kind": data}
    return {"format": "backprop-lab/spec", "version": 1, "name": f"{class_name} ({Path(path).name})",
            "data": kind, "model": {"python": path, "class": class_name, "kwargs": kwargs}}


class LayerChoiceDialog(QDialog):
    """The module tree; every module with parameters of its own has a check box (watched or not)."""

    def __init__(self, layers: list, parent=None, title: str = "Layers to watch"):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["module", "type", "parameters"])
        self.items = {}
        nodes = {"": self.tree.invisibleRootItem()}
        for layer in layers:
            parts = layer["path"].split(".") if layer["path"] else []
            for k in range(1, len(parts)):   # the modules above it, as plain tree nodes
                key = ".".join(parts[:k])
                if key not in nodes:
                    nodes[key] = QTreeWidgetItem(nodes[".".join(parts[:k - 1])], [parts[k - 1]])
            parent_item = nodes[".".join(parts[:-1])] if parts else nodes[""]
            item = nodes.get(layer["path"]) or QTreeWidgetItem(parent_item, [parts[-1] if parts else "(root)"])
            nodes[layer["path"]] = item
            item.setText(1, layer["type"])
            item.setText(2, f"{layer['params']:,}")
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(0, Qt.CheckState.Checked)
            self.items[layer["path"]] = item
        self.tree.expandAll()
        self.tree.resizeColumnToContents(0)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("Uncheck the layers not to watch (their parameters still train)."))
        lay.addWidget(self.tree)
        lay.addWidget(buttons)
        self.resize(520, 420)

    def watched(self) -> list:
        return [p for p, item in self.items.items() if item.checkState(0) == Qt.CheckState.Checked]
