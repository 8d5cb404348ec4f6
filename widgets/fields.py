"""Form fields shared by the property editor and the settings panel, and the layer edit they make."""
from __future__ import annotations

import math

from PySide6.QtCore import QRegularExpression, Signal
from PySide6.QtGui import QColor, QPalette, QRegularExpressionValidator
from PySide6.QtWidgets import QLineEdit, QSpinBox

from backprop_lab.widgets.layer_catalog import PROBLEM_COLOUR, format_number

FLOAT_RE = QRegularExpression(r"[-+]?(\d+\.?\d*|\.\d+)?([eE][-+]?\d*)?")


class NumberEdit(QLineEdit):
    """A float field that takes 0.01, 1e-3, -2.5; empty means None when ``optional``.

    ``committed`` fires when editing ends on a text different from the one shown."""

    committed = Signal()

    def __init__(self, optional: bool = False, parent=None):
        super().__init__(parent)
        self.optional = optional
        self._shown = ""
        self.setValidator(QRegularExpressionValidator(FLOAT_RE, self))
        self.editingFinished.connect(self._on_finished)

    def set_value(self, v) -> None:
        self._shown = "" if v is None else format_number(v)
        self.setText(self._shown)

    def value(self):
        """The number typed (None when empty and optional); ValueError when it is not one."""
        t = self.text().strip()
        if not t and self.optional:
            return None
        v = float(t)
        if not math.isfinite(v):
            raise ValueError(t)
        return v

    def _on_finished(self) -> None:
        if self.text() != self._shown:
            self.committed.emit()


def _set_invalid(widget, bad: bool) -> None:
    """Mark a field whose value was refused: red text (a style sheet would restyle spin boxes)."""
    widget.setProperty("invalid", bad)
    target = widget.lineEdit() if isinstance(widget, QSpinBox) else widget
    if isinstance(target, QLineEdit):
        if bad:
            pal = QPalette(target.palette())
            pal.setColor(QPalette.Text, QColor(PROBLEM_COLOUR))
            target.setPalette(pal)
        else:
            target.setPalette(QPalette())   # nothing set: inherit again


def with_value(layer: dict, key: str, value) -> dict:
    """A copy of ``layer`` with ``key`` ("units", "init.std", "bias_init.scheme"...) set;
    None removes an optional init parameter; a new scheme starts without parameters."""
    new = {k: (dict(v) if isinstance(v, dict) else v) for k, v in layer.items()}
    if "." in key:
        obj, sub = key.split(".", 1)
        init = dict(new.get(obj) or {"scheme": "default"})
        if sub == "scheme":
            init = {"scheme": value}
        elif value is None:
            init.pop(sub, None)
        else:
            init[sub] = value
        new[obj] = init
    elif key == "name" and not value:
        new.pop("name", None)
    else:
        new[key] = value
    return new
