"""Export a panel as PNG (its pixels) or SVG (vector, through Qt's SVG painter)."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QPoint, QRect, QSize
from PySide6.QtGui import QPainter


def export_widget(widget, path) -> None:
    path = Path(path)
    if path.suffix.lower() == ".svg":
        try:
            from PySide6.QtSvg import QSvgGenerator
        except ImportError:  # PySide6-Essentials ships QtSvg, but be plain if not
            raise OSError("SVG export needs Qt's QtSvg module; use PNG") from None
        gen = QSvgGenerator()
        gen.setFileName(str(path))
        gen.setSize(QSize(widget.width(), widget.height()))
        gen.setViewBox(QRect(0, 0, widget.width(), widget.height()))
        gen.setTitle(widget.windowTitle() or "Backprop Lab panel")
        painter = QPainter(gen)
        widget.render(painter, QPoint())  # PySide6 needs the offset with a painter
        painter.end()
    else:
        if not widget.grab().save(str(path)):
            raise OSError(f"cannot write {path}")
