"""One look for every plot panel: colours, colour maps, fonts, a presentation mode.

A light theme: dark ink on white reads best on a projector in a lit lecture
room (dark backgrounds wash out to grey there) and matches Qt's default light
window chrome. Heatmaps use perceptually uniform maps (viridis for gradient
sizes across layers, inferno for neurons, whose black bottom makes a dead unit
a black row); undefined values (NaN) are drawn transparent over a neutral grey
that neither map contains. Curves use the Okabe-Ito colour-blind-safe set.

Importing this module sets pyqtgraph's global options once (row-major images,
no antialiasing, the theme's colours); every panel imports it.
"""
from __future__ import annotations

import math
import weakref

import pyqtgraph as pg
import shiboken6
from PySide6.QtGui import QColor, QFont, QFontMetricsF
from PySide6.QtWidgets import QApplication

from . import pg_speedups  # noqa: F401  (lazy ViewBox menus, axis labels set when changed)

BACKGROUND = "#ffffff"
FOREGROUND = "#1f2328"       # axes, ticks, labels
MUTED = "#5f6670"            # secondary text, reference lines
GRID_ALPHA = 0.18
NAN_COLOUR = (205, 205, 210, 255)   # ViewBox background under transparent NaN cells
HIGHLIGHT = (0, 0, 0)               # outline of the selected layer
# Okabe-Ito, without its yellow (invisible on white)
SERIES = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#999999"]
TRAIN_COLOUR, TEST_COLOUR = SERIES[0], SERIES[1]
DERIVATIVE_COLOUR = "#d55e00"       # f'(z): the factor backprop multiplies by
FUNCTION_COLOUR = "#0072b2"         # f(z)
HISTOGRAM_BRUSH = (86, 180, 233, 110)
SATURATED_BRUSH = (120, 120, 130, 45)

BASE_POINT_SIZE = 10
PRESENTATION_SCALE = 1.6
_presentation = False

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False, background=BACKGROUND, foreground=FOREGROUND)


# ------------------------------------------------------------------ colour maps
def sequential_map() -> pg.ColorMap:
    """Gradient size across layers: viridis (perceptually uniform, colour-blind safe)."""
    return pg.colormap.get("viridis")


def neuron_map() -> pg.ColorMap:
    """Per-neuron gradients: inferno, whose bottom is black, so a dead unit is a black row."""
    return pg.colormap.get("inferno")


def diverging_map() -> pg.ColorMap:
    """Ratios around 1 (log10 around 0): blue below, grey at 0, red above."""
    return pg.ColorMap([0.0, 0.5, 1.0], [(59, 76, 192), (221, 221, 221), (180, 4, 38)])


def layer_colour(i: int, n: int) -> QColor:
    """Input layers dark violet, output layers yellow-green: a position along viridis.

    The bright yellow end is left out so that every layer's line reads on white.
    """
    return sequential_map().map(0.85 * (i / max(n - 1, 1)), mode="qcolor")


# ------------------------------------------------------------------ fonts
def font_size(delta: int = 0) -> int:
    """Point size of plot text (ticks, labels, legends); larger in presentation mode."""
    return int(round((BASE_POINT_SIZE + delta) * (PRESENTATION_SCALE if _presentation else 1.0)))


def font(delta: int = 0, bold: bool = False) -> QFont:
    f = QFont()
    f.setPointSize(font_size(delta))
    f.setBold(bold)
    return f


def presentation_mode() -> bool:
    return _presentation


def style_axis(ax: pg.AxisItem) -> None:
    """Tick font and label size of one axis in the current font size."""
    ax.setTickFont(font())
    ax.setStyle(maxTickLevel=1)   # major and minor ticks: a quieter grid
    ax.setPen(pg.mkPen(FOREGROUND))
    ax.setTextPen(pg.mkPen(FOREGROUND))
    if ax.labelText or ax.labelUnits:
        ax.setLabel(ax.labelText, units=ax.labelUnits or None,
                    **{**ax.labelStyle, "font-size": f"{font_size()}pt", "color": FOREGROUND})


def style_plot(plot: pg.PlotItem, bottom: str | None = None, left: str | None = None,
               bottom_units: str | None = None, left_units: str | None = None,
               right: str | None = None, right_units: str | None = None, grid: bool = True) -> None:
    """Axis labels (with units) in the current font size, and a light grid."""
    for name, label, units in (("bottom", bottom, bottom_units), ("left", left, left_units),
                               ("right", right, right_units)):
        if label:
            plot.setLabel(name, label, units=units)
        if name != "right" or label:
            style_axis(plot.getAxis(name))
    plot.showGrid(x=grid, y=grid, alpha=GRID_ALPHA)


def fix_axis_width(ax: pg.AxisItem, sample: str) -> None:
    """Pin a vertical axis to the width its widest tick text ``sample`` (and its label) needs.

    pyqtgraph grows an axis after it has drawn wider ticks, which makes the plot
    jump sideways while a run updates; a pinned width keeps the layout still.
    """
    fm = QFontMetricsF(ax.style["tickFont"] or font())
    label = fm.height() * 1.5 if ax.label.isVisible() and (ax.labelText or ax.labelUnits) else 0
    ax.setWidth(int(fm.horizontalAdvance(sample) + label + ax.style["tickTextOffset"][0] + 10))


def style_colour_bar(bar: pg.ColorBarItem) -> None:
    """A colour bar's axis in the theme's font, wide enough for its tick labels and its title.

    (pyqtgraph fixes a colour bar's axis at 45 px, which larger fonts overflow.)
    """
    style_axis(bar.axis)
    fm = QFontMetricsF(font())
    bar.axis.setWidth(int(fm.horizontalAdvance("-10.5") + fm.height() * 1.4 + 14))


def set_bar_levels(bar: pg.ColorBarItem, levels: tuple[float, float]) -> None:
    """Colour-bar levels with ticks on whole decades only (a few, however wide the range)."""
    span = max(levels[1] - levels[0], 1.0)
    step = max(1, math.ceil(span / 8))
    bar.axis.setTickSpacing(step, step)
    bar.setLevels(levels)


def legend(parent=None, **kw) -> pg.LegendItem:
    """A legend in the theme's font, on a translucent white card so curves under it stay readable."""
    opts = dict(labelTextSize=f"{font_size(-1)}pt", labelTextColor=FOREGROUND,
                brush=pg.mkBrush(255, 255, 255, 210), pen=pg.mkPen(200, 200, 205))
    opts.update(kw)
    item = pg.LegendItem(**opts)
    if parent is not None:
        item.setParentItem(parent)
    return item


def text_item(text: str = "", colour=FOREGROUND, delta: int = 0, anchor=(0, 0), bold: bool = False) -> pg.TextItem:
    """A TextItem whose font follows presentation mode."""
    item = pg.TextItem(text, color=colour, anchor=anchor)
    item.setFont(font(delta, bold))
    _texts[item] = (delta, bold)
    return item


_texts: "weakref.WeakKeyDictionary[pg.TextItem, tuple]" = weakref.WeakKeyDictionary()


def set_presentation_mode(on: bool) -> None:
    """Large fonts for a projector: the application font and every plot's text.

    Restyles every axis (ticks and label), legend and theme TextItem of every
    pyqtgraph view that exists, then calls ``_on_theme_changed()`` on each widget
    that has it (for layout that depends on text size, such as tick strides).
    """
    global _presentation
    _presentation = bool(on)
    app = QApplication.instance()
    if app is None:
        return
    f = app.font()
    f.setPointSize(font_size())
    app.setFont(f)
    for w in app.allWidgets():
        # a widget whose C++ side is being deleted (deleteLater pending) is still
        # listed; touching its scene crashes the interpreter
        if not shiboken6.isValid(w):
            continue
        if isinstance(w, pg.GraphicsView) and w.scene() is not None:
            for item in w.scene().items():
                if isinstance(item, pg.AxisItem):
                    style_axis(item)
                elif isinstance(item, pg.ColorBarItem):
                    style_colour_bar(item)
                elif isinstance(item, pg.LegendItem):
                    item.setLabelTextSize(f"{font_size(-1)}pt")
                    for _, label in item.items:   # setLabelTextSize only stores the size: redraw
                        label.setText(label.text)
                    item.updateSize()
                elif isinstance(item, pg.TextItem) and item in _texts:
                    item.setFont(font(*_texts[item]))
        hook = getattr(w, "_on_theme_changed", None)
        if callable(hook):
            hook()
