"""pyqtgraph costs the first frame (and every live redraw) paid for nothing.

1. Each ViewBox's right-click menu is built when it is first asked for, not with the plot.

pyqtgraph makes a ViewBoxMenu (three sub-menus of axis controls, ~4 ms) in every
ViewBox's constructor; most of our plots turn it off right after, and the others are
rarely right-clicked. Profiled on the path to the first painted frame, these menus were
~30 ms of the ~100 ms the first frame's seven plots took (docs/performance.md,
"Start-up"). Importing this module (theme does) makes ``ViewBox.menu`` a property: the
constructor stores a placeholder, and the first read (a right-click, ``getMenu``,
``getContextMenus``, any code that reads ``vb.menu``) builds the real menu and fills its
list of views to link, as ``setMenuEnabled(True)`` does. A disabled menu is never built.

2. An axis sets its label's HTML only when the text changes. pyqtgraph's
``AxisItem._updateLabel`` runs on every ``setRange`` (through the SI-prefix update), so
every pan, zoom and auto-range re-parsed the same HTML into the label's QTextDocument:
422 ``setHtml`` calls, ~21 ms, before the first frame. The size, the tick picture and
the repaint are still updated on every call, as before.

3. A curve with a wide pen is drawn as a 1 px line at a few pixel offsets. Qt strokes a
pen wider than 1 px through its general stroker (an outline polygon, then filled), ~20x
the time of its 1 px cosmetic line: the loss curves (1.5 px), the activation curves (2 and
3 px) and the test-set line (2 px) were most of their panels' paint (issue 9, item 8).
``PlotCurveItem.paint`` now draws an opaque, solid, cosmetic, not antialiased pen wider
than 1.25 px as its 1 px line at the offsets of ``pixel_offsets`` (the layer lines do the
same); anything else (a fill, a shadow pen, a dash, antialiasing, an export) is drawn as
pyqtgraph draws it.

4. An axis keeps its picture (ticks, labels, grid) while its range moves by less than
``AXIS_TOLERANCE_PX`` of a pixel from the range the picture was drawn for. A view that
follows a growing run moves its x range by a fraction of a pixel per step, and every axis
regenerated its ticks and grid on every step (~0.5-1.5 ms each, a dozen axes); the
picture drawn now differs from the exact one by less than that fraction of a pixel.

5. An axis is kept as a pixmap of what it drew (Qt's ``DeviceCoordinateCache``). Every
change in a plot repainted each axis over it (its grid lies over the whole plot), and a
picture's text is laid out again on every replay (~0.4 ms an axis); the pixmap is drawn
again only when the axis changes. Qt's pixmap cache is given room for them (64 MiB).

6. A bar chart with a colour per bar is painted straight onto the painter. pyqtgraph recorded
its bars into a QPicture on the first paint after every ``setOpts`` and replayed it: the
flow panel's bars change every step, so each frame paid for the recording and the replay
(and a pen and a brush set per bar): ~1 ms for 100 layers. A bar without a pen is a
``fillRect`` (pyqtgraph's own way when no bar has a pen), in the bars' order as before.

7. An auto range keeps the view's range while the range it would set is within
``AXIS_TOLERANCE_PX`` of a pixel of it at both ends. A view that follows a growing run asked
for a new range on every step (~0.01-0.07 px at 10,000 steps): every transform changed, so
every item of the plot was drawn anew; kept, the axes, the lines' kept image and the items
cached as pixmaps stay as they are until the range has moved a quarter of a pixel. The
padding an auto range leaves around the data (a few pixels) holds that quarter pixel. A range
set by hand, ``autoRange()`` and a linked view are exact as before.

8. An item whose bounds change asks its view for one pixel's paint, not the whole plot's.
``ViewBox.queueUpdateAutoRange`` (every ``informViewBoundsChanged``: a curve, bars or an image
given new data, every step of a run) marked the whole ViewBox dirty so that a paint would come
and update the auto range first; that repainted the whole plot area (background, every item,
the axes' grids) each frame even where one pixel column of it had changed. The auto range is
still marked to be updated at the next paint, and a paint still comes (of the box's top-left
pixel); a range that then moves repaints the whole box, as before; the items that changed
ask for their own areas (issue 9, item 8, sixth pass).

9. The plots paint on the GUI thread alone. Qt's raster engine hands every fill and image draw
of 96 rows or more (a plot's background, a shaded region, an axis's cached pixmap, the layer
lines' kept image) to a pool of threads, in slices of 64 rows, and waits for them: profiled on
the 2-core machine, with training in its own process, the hand-off and the wait were ~40 % of
the plots' paint, the fills themselves a few percent. ``QT_NO_GUI_THREADPOOL`` (Qt's own switch,
read at the first such fill) is set here unless the environment sets it already.
"""
from __future__ import annotations

import os
import sys
from math import isfinite

from pyqtgraph.graphicsItems.AxisItem import AxisItem
from pyqtgraph.graphicsItems.BarGraphItem import BarGraphItem
from pyqtgraph.graphicsItems.PlotCurveItem import PlotCurveItem
from pyqtgraph.graphicsItems.ViewBox import ViewBox
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QPen, QPixmapCache, QTransform
from PySide6.QtWidgets import QGraphicsItem

os.environ.setdefault("QT_NO_GUI_THREADPOOL", "1")   # item 9: before any paint of the process

_module = sys.modules[ViewBox.__module__]
_PENDING = object()          # "enabled, not built yet"
_KEY = "_lazy_menu"
_HTML = "_label_html"        # the HTML an axis's label holds
_DRAWN = "_picture_range"    # the range an axis's picture was drawn for
AXIS_TOLERANCE_PX = 0.25


def _fits() -> bool:
    """Whether this pyqtgraph has the internals both patches replace (0.13.7 and 0.14 do); another
    version keeps its own behaviour, only slower to build."""
    return (all(hasattr(AxisItem, n) for n in ("_updateLabel", "labelString", "_adjustSize"))
            and all(hasattr(ViewBox, n) for n in ("updateViewLists", "_applyMenuEnabled"))
            and hasattr(_module, "ViewBoxMenu"))


def pixel_offsets(width: float) -> tuple:
    """Pixel offsets at which a 1 px line is drawn to look ``width`` px wide."""
    if width <= 1.25:
        return ((0, 0),)
    if width <= 2.5:
        return ((0, 0), (1, 0), (0, 1))
    return ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1))


def draw_wide(p, path, pen) -> None:
    """Draw ``path`` (in the painter's coordinates) with ``pen``'s colour as a 1 px cosmetic line at
    ``pixel_offsets(pen.widthF())``, each offset a shift in device pixels."""
    thin = QPen(pen.color())
    thin.setWidth(1)
    thin.setCosmetic(True)
    p.setPen(thin)
    t = p.transform()
    for ox, oy in pixel_offsets(pen.widthF()):
        p.setTransform(t * QTransform.fromTranslate(ox, oy))
        p.drawPath(path)
    p.setTransform(t)


def _wide_fast(curve, pen) -> bool:
    """Whether ``curve``'s ``pen`` may be drawn by ``draw_wide``: wider than 1.25 px, solid, opaque,
    cosmetic, not antialiased, no fill, no shadow, no composition mode, not an export."""
    o = curve.opts
    return (pen is not None and pen.widthF() > 1.25 and pen.style() == Qt.PenStyle.SolidLine and pen.isSolid()
            and pen.isCosmetic() and pen.color().alpha() == 255 and not o.get("antialias")
            and o.get("fillLevel") is None and o.get("compositionMode") is None
            and getattr(curve, "_exportOpts", False) is False
            and not o.get("stepMode") and (o.get("shadowPen") is None
                                           or o["shadowPen"].style() == Qt.PenStyle.NoPen))


def _install_wide_pens() -> None:
    if getattr(PlotCurveItem, "_wide_pens_fast", False):
        return
    paint = PlotCurveItem.paint

    gl = getattr(getattr(sys.modules[PlotCurveItem.__module__], "OpenGLHelpers", None), "GraphicsViewGLWidget", ())

    def wide_paint(self, p, opt, widget):
        pen = self.opts.get("pen")
        if (self.xData is None or len(self.xData) == 0 or isinstance(widget, gl)
                or not _wide_fast(self, pen)):
            return paint(self, p, opt, widget)
        p.setRenderHint(p.RenderHint.Antialiasing, False)
        draw_wide(p, self.getPath(), pen)

    PlotCurveItem.paint = wide_paint
    PlotCurveItem._wide_pens_fast = True


def _install_axis_labels() -> None:
    if getattr(AxisItem, "_label_is_cached", False):
        return

    def update_label(self):
        html = self.labelString()
        if self.__dict__.get(_HTML) != html:
            self.label.setHtml(html)
            self.__dict__[_HTML] = html
        self._adjustSize()
        self.picture = None
        self.update()

    AxisItem._updateLabel = update_label
    AxisItem._label_is_cached = True


def _si_scale(axis) -> float:
    """The SI-prefix scale ``updateAutoSIPrefix`` would choose for the axis's range now."""
    if not (axis.autoSIPrefix and axis.label.isVisible()):
        return axis.autoSIPrefixScale
    r = [10 ** v for v in axis.range] if axis.logMode else axis.range
    value = max(abs(r[0]), abs(r[1])) * axis.scale
    if any(low <= value <= high for low, high in axis.getSIPrefixEnableRanges()):
        return _module_fn.siScale(value, power=axis.unitPower)[0]
    return 1.0


def _install_axis_tolerance() -> None:
    if getattr(AxisItem, "_range_tolerant", False):
        return
    set_range, paint = AxisItem.setRange, AxisItem.paint

    def tolerant_set_range(self, mn, mx):
        drawn = self.__dict__.get(_DRAWN)
        if self.picture is not None and drawn is not None and isfinite(mn) and isfinite(mx):
            length = self.width() if self.orientation in ("top", "bottom") else self.height()
            span = drawn[1] - drawn[0]
            if span and length > 0 and max(abs(mn - drawn[0]), abs(mx - drawn[1])) * length / abs(span) < AXIS_TOLERANCE_PX:
                old = self.range
                self.range = [mn, mx]
                if _si_scale(self) == self.autoSIPrefixScale:
                    return                   # the picture stands: it is this close to exact
                self.range = old
        set_range(self, mn, mx)

    def remembering_paint(self, p, opt, widget):
        if self.picture is None:
            self.__dict__[_DRAWN] = tuple(self.range)
        return paint(self, p, opt, widget)

    AxisItem.setRange = tolerant_set_range
    AxisItem.paint = remembering_paint
    AxisItem._range_tolerant = True


PIXMAP_CACHE_KIB = 64 * 1024


def _install_axis_cache() -> None:
    if getattr(AxisItem, "_cached_as_pixmap", False):
        return
    init = AxisItem.__init__

    def cached_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)

    AxisItem.__init__ = cached_init
    AxisItem._cached_as_pixmap = True
    QPixmapCache.setCacheLimit(max(QPixmapCache.cacheLimit(), PIXMAP_CACHE_KIB))


def _within_tolerance(vb, ax: int, r) -> bool:
    """Whether range ``r`` of view ``vb``'s axis ``ax`` (0: x) is within AXIS_TOLERANCE_PX of a pixel
    of its range now at both ends."""
    cur = vb.state["viewRange"][ax]
    length = vb.width() if ax == 0 else vb.height()
    span = cur[1] - cur[0]
    if not (span > 0 and length > 0 and isfinite(r[0]) and isfinite(r[1]) and r[1] > r[0]):
        return False
    return max(abs(r[0] - cur[0]), abs(r[1] - cur[1])) * length / span < AXIS_TOLERANCE_PX


def _install_steady_auto_range() -> None:
    if getattr(ViewBox, "_auto_range_steady", False):
        return
    update_auto_range, set_range = ViewBox.updateAutoRange, ViewBox.setRange

    def steady_update_auto_range(self):
        self.__dict__["_auto_ranging"] = True
        try:
            return update_auto_range(self)
        finally:
            self.__dict__["_auto_ranging"] = False

    def steady_set_range(self, rect=None, xRange=None, yRange=None, padding=None, update=True, disableAutoRange=True):
        if self.__dict__.get("_auto_ranging") and rect is None:
            if xRange is not None and _within_tolerance(self, 0, xRange):
                xRange = None
            if yRange is not None and _within_tolerance(self, 1, yRange):
                yRange = None
            if xRange is None and yRange is None:
                return None     # the view stands: it is this close to exact
        return set_range(self, rect, xRange, yRange, padding, update, disableAutoRange)

    ViewBox.updateAutoRange = steady_update_auto_range
    ViewBox.setRange = steady_set_range
    ViewBox._auto_range_steady = True


def _install_quiet_auto_range_queue() -> None:
    if getattr(ViewBox, "_auto_range_queue_quiet", False):
        return

    def queue_update_auto_range(self):
        self._autoRangeNeedsUpdate = True
        self.update(QRectF(0.0, 0.0, 1.0, 1.0))   # a paint comes (its prepareForPaint ranges the view)

    ViewBox.queueUpdateAutoRange = queue_update_auto_range
    ViewBox._auto_range_queue_quiet = True


def _install_direct_bars() -> None:
    if getattr(BarGraphItem, "_painted_directly", False):
        return
    paint = BarGraphItem.paint
    no_pen = Qt.PenStyle.NoPen

    def direct_paint(self, p, *args):
        brushes, pens = self._brushes, self._pens
        if self._singleColor or brushes is None:
            return paint(self, p, *args)
        rects = self._rectarray.instances()
        if pens is None:
            if self._sharedPen.style() == no_pen:
                for rect, brush in zip(rects, brushes):
                    p.fillRect(rect, brush)
                return
            p.setPen(self._sharedPen)
            for rect, brush in zip(rects, brushes):
                p.setBrush(brush)
                p.drawRect(rect)
            return
        flags = self.__dict__.get("_no_pens")
        if flags is None or flags[0] is not pens:   # which bars have no pen: found once per list of pens
            flags = self.__dict__["_no_pens"] = (pens, [pen.style() == no_pen for pen in pens])
        for rect, brush, pen, bare in zip(rects, brushes, pens, flags[1]):
            if bare:
                p.fillRect(rect, brush)
            else:
                p.setPen(pen)
                p.setBrush(brush)
                p.drawRect(rect)

    BarGraphItem.paint = direct_paint
    BarGraphItem._painted_directly = True


def _install() -> None:
    if getattr(ViewBox, "_menu_is_lazy", False):
        return
    real_menu = _module.ViewBoxMenu
    update_view_lists = ViewBox.updateViewLists
    apply_menu_enabled = ViewBox._applyMenuEnabled

    def get_menu(self):
        menu = self.__dict__.get(_KEY)
        if menu is _PENDING:
            menu = self.__dict__[_KEY] = real_menu(self)
            update_view_lists(self)          # the "link axis to view" lists
        return menu

    def set_menu(self, menu):
        self.__dict__[_KEY] = menu

    def pending_factory(_vb):
        return _PENDING

    def lazy_update_view_lists(self):
        if self.__dict__.get(_KEY) is not _PENDING:
            return update_view_lists(self)
        self.__dict__[_KEY] = None           # the menu's list is filled when it is built
        try:
            return update_view_lists(self)
        finally:
            self.__dict__[_KEY] = _PENDING

    def lazy_apply_menu_enabled(self):
        if self.__dict__.get(_KEY) is _PENDING:
            if not self.state.get("enableMenu", True):
                self.__dict__[_KEY] = None   # turned off before it was ever built
            return
        return apply_menu_enabled(self)

    _module.ViewBoxMenu = pending_factory    # what ViewBox.__init__ calls
    ViewBox.menu = property(get_menu, set_menu)
    ViewBox.updateViewLists = lazy_update_view_lists
    ViewBox._applyMenuEnabled = lazy_apply_menu_enabled
    ViewBox._menu_is_lazy = True


_module_fn = getattr(sys.modules[AxisItem.__module__], "fn", None)

if _fits():
    _install()
    _install_axis_labels()
if _module_fn is not None and all(hasattr(AxisItem, n) for n in ("setRange", "paint", "getSIPrefixEnableRanges")):
    _install_axis_tolerance()
_install_axis_cache()
if all(hasattr(ViewBox, n) for n in ("updateAutoRange", "setRange")):
    _install_steady_auto_range()
if hasattr(ViewBox, "queueUpdateAutoRange") and "_autoRangeNeedsUpdate" in ViewBox.__init__.__code__.co_names:
    _install_quiet_auto_range_queue()
if all(hasattr(BarGraphItem, n) for n in ("paint", "_render", "_updateColors")):
    _install_direct_bars()
if all(hasattr(PlotCurveItem, n) for n in ("paint", "getPath", "_shouldUseDrawLineSegments")):
    _install_wide_pens()
