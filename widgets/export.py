"""Export a panel as PNG (its pixels) or SVG (vector, through Qt's SVG painter)."""
from __future__ import annotations

import contextlib
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
        with _symbols_as_paths(widget):
            painter = QPainter(gen)
            widget.render(painter, QPoint())  # PySide6 needs the offset with a painter
            painter.end()
    else:
        if not widget.grab().save(str(path)):
            raise OSError(f"cannot write {path}")


@contextlib.contextmanager
def _symbols_as_paths(widget):
    """Scatter symbols drawn one by one as vector paths while exporting.

    pyqtgraph draws them as fragments of one pixmap atlas, which Qt's SVG painter
    writes as the whole atlas at every point (each marker shows every symbol in use).
    """
    import pyqtgraph as pg
    items = [it for view in widget.findChildren(pg.GraphicsView) if view.scene() is not None
             for it in view.scene().items() if isinstance(it, pg.ScatterPlotItem) and it.opts.get("useCache")]
    for it in items:
        it.opts["useCache"] = False
    try:
        yield
    finally:
        for it in items:
            it.opts["useCache"] = True
