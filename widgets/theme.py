"""One look for every panel: colours, colour maps, fonts, a presentation mode.

The heatmaps use perceptually uniform maps (viridis for gradient sizes,
a diverging map for ratios); curves use a colour-blind-safe qualitative set.
"""
from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QApplication

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False, background="#1e1f24", foreground="#d8dadf")

BACKGROUND = "#1e1f24"
FOREGROUND = "#d8dadf"
GRID_ALPHA = 0.25
NAN_COLOUR = (70, 70, 78, 255)
# Okabe-Ito, colour-blind safe
SERIES = ["#56b4e9", "#e69f00", "#009e73", "#f0e442", "#0072b2", "#d55e00", "#cc79a7", "#9fa0a6"]
BASE_POINT_SIZE = 10
_presentation = False


def sequential_map() -> pg.ColorMap:
    return pg.colormap.get("viridis")


def diverging_map() -> pg.ColorMap:
    return pg.ColorMap([0.0, 0.5, 1.0], [(59, 76, 192), (235, 235, 235), (180, 4, 38)])


def layer_colour(i: int, n: int) -> tuple:
    """Input layers cool, output layers warm: a position along the viridis map."""
    c = sequential_map().map(0.1 + 0.85 * (i / max(n - 1, 1)), mode="qcolor")
    return c


def font_size() -> int:
    return int(BASE_POINT_SIZE * (1.6 if _presentation else 1.0))


def style_plot(plot: pg.PlotItem, bottom: str | None = None, left: str | None = None,
               bottom_units: str | None = None, left_units: str | None = None) -> None:
    """Axis labels (with units) and a light grid, in the current font size."""
    size = f"{font_size()}pt"
    for name, label, units in (("bottom", bottom, bottom_units), ("left", left, left_units)):
        ax = plot.getAxis(name)
        f = QFont()
        f.setPointSize(font_size())
        ax.setTickFont(f)
        if label:
            plot.setLabel(name, label, units=units, **{"font-size": size})
    plot.showGrid(x=True, y=True, alpha=GRID_ALPHA)


def set_presentation_mode(on: bool) -> None:
    """Large fonts for a projector: the application font and every plot axis."""
    global _presentation
    _presentation = bool(on)
    app = QApplication.instance()
    if app is None:
        return
    f = app.font()
    f.setPointSize(font_size())
    app.setFont(f)
    for w in app.allWidgets():
        if isinstance(w, pg.PlotWidget):
            pi = w.getPlotItem()
            for name in ("bottom", "left", "right"):
                ax = pi.getAxis(name)
                tf = QFont()
                tf.setPointSize(font_size())
                ax.setTickFont(tf)
                if ax.labelText:
                    ax.setLabel(ax.labelText, units=ax.labelUnits, **{"font-size": f"{font_size()}pt"})
