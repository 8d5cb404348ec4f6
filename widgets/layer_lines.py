"""Every layer's line over training in one graphics item (the gradient-flow panel's line plot).

One pyqtgraph PlotDataItem per layer cost ~0.25 ms of Python per frame each in
``setData`` (clip, downsample, bounds, signals) and a paint each: 100 layers
were ~30 ms a frame before anything was drawn. ``LayerLines`` holds the panel's
[layers, steps] log10 array and, when the data or the view changed, clips it
to the visible steps and peak-downsamples every layer at once (one (min, max)
pair per pixel column, numpy over the whole array), makes one path per layer
and paints them all in one ``paint``, each with its layer's pen; the selected
layer last (on top).

``LayerLine`` is one layer as the rest of the program sees it (``curves[i]``):
its original data (every stored step), what is drawn of it, its pen,
visibility (the legend's eye) and the pyqtgraph-like ``opts`` the legend reads.

Drawing cost (issue 9, item 8): a dense line is one vertical run per pixel column, so its
pixels are most of the cost. The (min, max) pairs alternate their order from column to
column (max, min, min, max, ...): the line joins neighbouring columns at their low or their
high ends instead of running the full height of the next column again, which halves the
pixels drawn and fills the same band. While a run grows (``set_data``'s ``unchanged``),
the (min, max) of the blocks already made are kept: only new blocks are reduced. The lines
are kept as an image of the plot's area: while the view moves less than a quarter of a pixel
from the transform that image was drawn with (a run's view moves a fraction of a pixel per
step), a paint draws again only the pixel columns from the first changed point on (cleared,
every line drawn there in z order, clipped to them) and then the image.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRect, QRectF, Qt
from PySide6.QtGui import QImage, QPainter, QPen, QPolygonF

from backprop_lab.widgets.pg_speedups import pixel_offsets as brush   # noqa: F401  (the old name)


RASTER_TOLERANCE_PX = 0.25   # how far the view may move before the kept image of the lines is drawn anew


class _Raster:
    """The lines drawn into an image of the plot's area (device pixels ``rect``) with transform ``key``."""

    def __init__(self, rect, key):
        self.rect, self.key = rect, key
        self.image = QImage(max(rect.width(), 1), max(rect.height(), 1), QImage.Format.Format_ARGB32_Premultiplied)
        self.xs = self.ys = None


def _first_change(old_x, old_y, x, y):
    """The first index at which (x, y [rows, points]) differ from what was drawn, or None: the same."""
    if old_x is None or old_y.shape[0] != y.shape[0]:
        return 0
    m = min(len(old_x), len(x))
    differ = old_x[:m] != x[:m]
    a, b = old_y[:, :m], y[:, :m]
    differ |= ((a != b) & ~(np.isnan(a) & np.isnan(b))).any(axis=0)
    at = np.flatnonzero(differ)
    if at.size:
        return int(at[0])
    return None if len(old_x) == len(x) else m


def _shapes(x: np.ndarray, y: np.ndarray, visible) -> list:
    """What draws each line through (x, y [rows, points]) in device pixels (None: not drawn): a polyline
    where every point is finite (no path to build), else a path broken at the gaps."""
    if not len(x):
        return [None] * len(y)
    finite = np.isfinite(y).all(axis=1) & bool(np.isfinite(x).all())
    polygon, path = pg.functions.arrayToQPolygonF, pg.arrayToQPath
    return [None if not visible[i] else polygon(x, y[i]) if finite[i] else path(x, y[i], connect="finite")
            for i in range(len(y))]


class _Polylines:
    """One QPolygonF per line, kept with a numpy view of its points and filled anew for each drawing of the
    image's newest columns (a few points a line): making 100 polygons each frame was half of it."""

    def __init__(self):
        self._rows = []   # per line (QPolygonF, [points, 2] view of its memory)

    def shapes(self, x: np.ndarray, y: np.ndarray, visible) -> list:
        """As ``_shapes``; the polygons are reused by the next call (draw them before it)."""
        if not len(x):
            return [None] * len(y)
        finite = np.isfinite(y).all(axis=1) & bool(np.isfinite(x).all())
        n, fn = len(x), pg.functions
        while len(self._rows) < len(y):
            self._rows.append(None)
        out = []
        for i in range(len(y)):
            if not visible[i]:
                out.append(None)
            elif not finite[i]:
                out.append(pg.arrayToQPath(x, y[i], connect="finite"))
            else:
                row = self._rows[i]
                if row is None or len(row[1]) != n:
                    poly = fn.create_qpolygonf(n)
                    row = self._rows[i] = (poly, fn.ndarray_from_qpolygonf(poly))
                row[1][:, 0] = x
                row[1][:, 1] = y[i]
                out.append(row[0])
        return out


class PeakColumns:
    """One (min, max) pair per block of ``ds`` steps of every row of a [rows, steps] array, the pairs'
    order alternating from block to block, the blocks already reduced kept while the array only grows."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self._key = None                 # (ds, i0, rows) the blocks below are for
        self._k = 0                      # blocks reduced
        self._y = np.zeros((0, 0))       # [rows, 2 * capacity] the alternating pairs

    def keep(self, unchanged: int) -> None:
        """The first ``unchanged`` steps are as before: blocks within them stay, later ones are redone."""
        if self._key is not None:
            ds, i0, _ = self._key
            self._k = min(self._k, max((unchanged - i0) // ds, 0))

    def reduce(self, x: np.ndarray, y: np.ndarray, i0: int, i1: int, ds: int) -> tuple[np.ndarray, np.ndarray]:
        """(x, y [rows, points]) of steps i0:i1: blocks of ``ds`` steps as alternating (max, min) /
        (min, max) pairs at each block's first step, the steps after the last whole block as one more
        such pair (the newest steps lie within a pixel column: drawn as they were, every one of them was
        drawn again with each new step, ~80 points a line at 10,000 steps, most of a frame's lines)."""
        rows, m = len(y), i1 - i0
        k = m // ds
        if self._key != (ds, i0, rows):
            self._key, self._k = (ds, i0, rows), 0
        if self._y.shape[0] != rows or self._y.shape[1] < 2 * k:
            grown = np.empty((rows, 2 * max(k + k // 2, 64)))
            if self._y.shape[0] == rows:
                grown[:, :2 * self._k] = self._y[:, :2 * self._k]
            else:
                self._k = 0
            self._y = grown
        done = min(self._k, k)
        if done < k:
            body = y[:, i0 + done * ds:i0 + k * ds].reshape(rows, k - done, ds)
            hi = np.fmax.reduce(body, axis=2)     # NaN-ignoring; an all-NaN block stays a gap
            lo = np.fmin.reduce(body, axis=2)
            first = (np.arange(done, k) % 2 == 0)[None, :]   # even blocks: max first, odd: min first
            self._y[:, 2 * done:2 * k:2] = np.where(first, hi, lo)
            self._y[:, 2 * done + 1:2 * k:2] = np.where(first, lo, hi)
        self._k = k
        tail = m - k * ds                                # the newest steps, a block not yet whole
        out = np.empty((rows, 2 * k + (2 if tail else 0)))
        out[:, :2 * k] = self._y[:, :2 * k]
        if tail:   # reduced as a block too: one pair, not up to ds points drawn again with every new step
            part = y[:, i0 + k * ds:i1]
            hi, lo = np.fmax.reduce(part, axis=1), np.fmin.reduce(part, axis=1)
            out[:, 2 * k], out[:, 2 * k + 1] = (hi, lo) if k % 2 == 0 else (lo, hi)
        xs = np.repeat(x[i0:i1:ds], 2)
        return xs, out


class LayerLines(pg.GraphicsObject):
    """Lines of log10 values [layers, steps] against steps, in view coordinates of a log-y plot."""

    def __init__(self, pixel_padding: float = 2.0):
        super().__init__()
        self.pixel_padding = pixel_padding   # what the auto range leaves around the lines, in pixels
        self.x = np.zeros(0)
        self.values = np.zeros((0, 0))   # [steps, layers] the statistic where > 0 (NaN elsewhere)
        self.logs = np.zeros((0, 0))     # [layers, steps] its log10
        self.lo = self.hi = np.zeros(0)  # per layer finite min / max of logs (NaN: none)
        self.pens: list = []
        self.visible: list[bool] = []
        self.z = np.zeros(0)
        self._paths = None               # per layer QPainterPath of what is drawn, or None: to make
        self._shown = None               # (x drawn, y drawn [layers, points]) behind the paths
        self._bounds = None              # (x0, x1, y0, y1) of the visible layers' data, or None
        self._peaks = PeakColumns()
        self._raster = None              # the lines kept as an image (_Raster), or None: draw them all
        self._thin = None                # per layer (1 px pen of its colour, pixel offsets), or None: to make
        self._polylines = _Polylines()   # the polygons the image's newest columns are drawn with
        self._brect = None               # the bounding rect, or None: to find
        # paint is told the area exposed (a new step exposes a few pixel columns: only those are drawn)
        self.setFlag(self.GraphicsItemFlag.ItemUsesExtendedStyleOption)

    # ------------------------------------------------------------------ data
    def set_layers(self, pens: list) -> None:
        n = len(pens)
        self._raster = self._thin = None
        self.pens, self.visible, self.z = list(pens), [True] * n, np.zeros(n)
        self.set_data(np.zeros(0), np.zeros((0, n)), np.zeros((n, 0)), np.full(n, np.nan), np.full(n, np.nan))

    def set_data(self, x, values, logs, lo, hi, unchanged: int = 0) -> None:
        """``unchanged``: how many leading steps (x and logs) are the same as in the previous call."""
        self._peaks.keep(unchanged)
        self.x, self.values, self.logs = np.asarray(x, dtype=np.float64), values, logs
        self.lo, self.hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
        self._changed()

    def set_pen(self, i: int, pen) -> None:
        self.pens[i] = pen
        self._raster = self._thin = None
        self.update()

    def set_z(self, i: int, z: float) -> None:
        self.z[i] = z
        self._raster = None
        self.update()

    def set_visible(self, i: int, on: bool) -> None:
        if self.visible[i] != bool(on):
            self.visible[i] = bool(on)
            self._raster = None
            self._changed()

    def _changed(self) -> None:
        self._paths = self._shown = None
        bounds = self._data_bounds()
        if bounds != self._bounds:
            if self.getViewBox() is None or (bounds is None) != (self._bounds is None):
                self.prepareGeometryChange()   # in a view the bounding rect is the view's (unless nothing is drawn)
            self._brect = None
            self._bounds = bounds
            self.informViewBoundsChanged()
        area = self._changed_area()
        if area is None:
            self.update()
        elif not area.isEmpty():
            self.update(area)

    def _changed_area(self):
        """What a paint now would change, in item coordinates: the pixel columns of the kept image from
        the first changed point on (a run's new step: a few columns), an empty rect (nothing), or None
        (all of it: no image kept, or the view moved too far from the one it was drawn with)."""
        r, vb = self._raster, self.getViewBox()
        if r is None or vb is None or r.xs is None:
            return None
        t = self.deviceTransform_()   # pyqtgraph's: item -> the view's device pixels (None: not shown)
        if t is None or t.m12() or t.m21():
            return None
        key = (t.m11(), t.m22(), t.m31(), t.m32())
        xs, ys = self.shown()
        rect = t.mapRect(vb.viewRect()).toAlignedRect().adjusted(-4, -4, 4, 4)
        if not (r.rect.contains(rect) and self._near(r.key, key, xs)):
            return None
        first = _first_change(r.xs, r.ys, xs, ys)
        if first is None:
            return QRectF()
        if first == 0:
            return None
        # as _draw_into clears: from a few pixels before the point ahead of the first change to the right edge
        left = r.rect.left() + int(np.floor(xs[first - 1] * r.key[0] + r.key[2] - r.rect.left())) - 5
        device = QRectF(left, r.rect.top(), r.rect.right() + 1 - left, r.rect.height())
        inverse, ok = t.inverted()
        return inverse.mapRect(device) if ok else None

    def _data_bounds(self):
        on = np.asarray(self.visible, dtype=bool)
        if not len(self.x) or not on.any() or not np.isfinite(self.lo[on]).any():
            return None
        return (float(self.x[0]), float(self.x[-1]), float(np.nanmin(self.lo[on])), float(np.nanmax(self.hi[on])))

    # ------------------------------------------------------------------ what pyqtgraph asks
    def dataBounds(self, ax, frac=1.0, orthoRange=None):
        b = self._bounds
        if b is None:
            return None, None
        return b[0:2] if ax == 0 else b[2:4]

    def pixelPadding(self) -> float:
        return self.pixel_padding

    def boundingRect(self) -> QRectF:
        """In a view: the view's rect and a few pixels (the kept image's area), so that a new step changes
        no geometry (a change of it repaints the whole item); else the data's bounds."""
        b = self._bounds
        if b is None:
            return QRectF()
        if self._brect is None:
            vb = self.getViewBox()
            px, py = (vb.viewPixelSize() if vb is not None else (0.0, 0.0))
            px, py = abs(px), abs(py)
            r = vb.viewRect() if vb is not None else QRectF(QPointF(b[0], b[2]), QPointF(b[1], b[3]))
            self._brect = r.normalized().adjusted(-8 * px, -8 * py, 8 * px, 8 * py)   # the selected 3.5 px pen too
        return QRectF(self._brect)

    def viewRangeChanged(self) -> None:
        self._view_moved()

    def viewTransformChanged(self) -> None:
        self._view_moved()

    def _view_moved(self) -> None:
        self._paths = self._shown = None
        self.prepareGeometryChange()
        self._brect = None
        self.update()

    # ------------------------------------------------------------------ drawing
    def shown(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, y [layers, points]) drawn: the visible steps, one (min, max) pair per pixel column."""
        if self._shown is None:
            self._shown = self._clip_and_downsample()
        return self._shown

    def _clip_and_downsample(self):
        x, logs = self.x, self.logs
        n = len(x)
        if n == 0:
            return x, logs
        i0, i1, pixels = 0, n, 1000.0
        vb = self.getViewBox()
        if vb is not None:
            pixels = max(vb.boundingRect().width(), 1.0)
            if not vb.autoRangeEnabled()[0]:   # zoomed or panned by hand (auto range shows every step)
                (v0, v1), _ = vb.viewRange()
                i0 = max(int(np.searchsorted(x, v0, side="left")) - 1, 0)     # one step beyond each edge:
                i1 = min(int(np.searchsorted(x, v1, side="right")) + 1, n)    # the line runs off the plot
            # the pixel columns the drawn steps span (the auto range leaves up to a tenth of the plot
            # empty on each side): one block per column, not two sharing one, each drawn in full
            (v0, v1), _ = vb.viewRange()
            if v1 > v0 and i1 - i0 > 1:
                span = (x[i1 - 1] - x[i0]) / (v1 - v0) * pixels
                pixels = min(max(span, 1.0), pixels)
        ds = int((i1 - i0) // pixels)
        if ds < 2:
            return x[i0:i1], logs[:, i0:i1]
        return self._peaks.reduce(x, logs, i0, i1, ds)

    def paint(self, p, *args) -> None:
        t = p.transform()
        if t.m12() or t.m21():   # pragma: no cover  (a ViewBox only scales and shifts)
            return
        key = (t.m11(), t.m22(), t.m31(), t.m32())
        vb, device = self.getViewBox(), p.device()
        if vb is None or device is None or device.devicePixelRatioF() != 1.0:
            self._paint_direct(p, key)
            return
        # the lines are kept as an image of the plot's area: while the view moves less than
        # RASTER_TOLERANCE_PX (a run's view moves a fraction of a pixel per step), only the pixel
        # columns from the first changed point on are drawn again
        rect = t.mapRect(vb.viewRect()).toAlignedRect().adjusted(-4, -4, 4, 4)   # a pixel more or less as it moves
        xs, ys = self.shown()
        r = self._raster
        if r is not None and r.rect.contains(rect) and self._near(r.key, key, xs):
            first = _first_change(r.xs, r.ys, xs, ys)
            if first is not None:
                self._draw_into(r, xs, ys, first)
        else:
            r = self._raster = _Raster(rect.adjusted(-2, -2, 2, 2), key)
            self._draw_into(r, xs, ys, 0)
        r.xs, r.ys = xs, ys
        self._paths = (r.key, None)
        part = r.rect
        if args and hasattr(args[0], "exposedRect"):   # only what is exposed (a new step: a few columns)
            part = r.rect.intersected(t.mapRect(args[0].exposedRect).toAlignedRect().adjusted(-2, -2, 2, 2))
            if part.isEmpty():
                return
        p.save()
        p.resetTransform()
        p.drawImage(part.topLeft(), r.image, part.translated(-r.rect.left(), -r.rect.top()))
        p.restore()

    def _near(self, drawn, key, xs) -> bool:
        """Whether every drawn point would move less than RASTER_TOLERANCE_PX from transform ``drawn`` to ``key``."""
        if drawn == key:
            return True
        b = self._bounds
        if b is None or not len(xs):
            return False
        ends_x = (float(xs[0]), float(xs[-1]))
        return (max(abs(x * (key[0] - drawn[0]) + key[2] - drawn[2]) for x in ends_x) < RASTER_TOLERANCE_PX
                and max(abs(y * (key[1] - drawn[1]) + key[3] - drawn[3]) for y in b[2:4]) < RASTER_TOLERANCE_PX)

    def _draw_into(self, r, xs, ys, first: int) -> None:
        """Draw the lines into ``r.image`` with ``r.key``: all of them (``first`` 0), or the pixel columns
        from the point ``first`` on (cleared first, every line drawn again there, clipped to them)."""
        key, left, top = r.key, r.rect.left(), r.rect.top()
        dx, dy = xs * key[0] + key[2] - left, ys * key[1] + key[3] - top
        painter = QPainter(r.image)
        j0 = 0
        if first == 0:
            r.image.fill(0)
        else:
            # the segment into the first changed point starts at point first - 1; wide lines reach a pixel further
            x_clear = int(np.floor(dx[first - 1])) - 2
            j0 = max(int(np.searchsorted(dx, x_clear - 2, side="right")) - 2, 0)
            clip = QRect(x_clear, 0, r.image.width() - x_clear, r.image.height())
            painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_Source)
            painter.fillRect(clip, Qt.GlobalColor.transparent)
            painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_SourceOver)
            painter.setClipRect(clip)
        shapes = _shapes if first == 0 else self._polylines.shapes
        self._stroke(painter, shapes(dx[j0:], dy[:, j0:], self.visible))
        painter.end()

    def _paint_direct(self, p, key) -> None:
        if self._paths is None or self._paths[0] != key or self._paths[1] is None:
            xs, ys = self.shown()
            # in device pixels: drawn with the painter's transform reset, 1 px cosmetic pens are Qt's
            # fast path (a pen of 1.5 px or more went through the general stroker: ~20x the time)
            self._paths = (key, _shapes(xs * key[0] + key[2], ys * key[1] + key[3], self.visible))
        p.save()
        p.resetTransform()
        self._stroke(p, self._paths[1])
        p.restore()

    def _stroke(self, p, paths) -> None:
        """Each layer's polyline or path with its pen's colour, 1 px wide at the pen's pixel offsets, in z order."""
        if self._thin is None or len(self._thin) != len(self.pens):
            self._thin = []
            for pen in self.pens:
                thin = QPen(pen.color())
                thin.setWidth(1)
                thin.setCosmetic(True)
                self._thin.append((thin, brush(pen.widthF())))
        for i in np.argsort(self.z, kind="stable"):
            path = paths[i] if i < len(paths) else None
            if path is None:
                continue
            thin, offsets = self._thin[i]
            p.setPen(thin)
            draw = p.drawPolyline if isinstance(path, QPolygonF) else p.drawPath
            if len(offsets) == 1:
                draw(path)
                continue
            for ox, oy in offsets:   # a wider line: the 1 px line drawn at a few offsets
                p.translate(ox, oy)
                draw(path)
                p.translate(-ox, -oy)

    def nearest(self, x: float, y: float, px: float, py: float, within: float = 8.0) -> int:
        """The visible layer whose drawn line passes within ``within`` pixels of view point (x, y)
        (``px``, ``py``: view units per pixel), or -1."""
        xs, ys = self.shown()
        if len(xs) == 0:
            return -1
        j0 = max(int(np.searchsorted(xs, x - within * px)) - 1, 0)
        j1 = min(int(np.searchsorted(xs, x + within * px, side="right")) + 1, len(xs))
        sx, sy = (xs[j0:j1] - x) / px, (ys[:, j0:j1] - y) / py        # in pixels, the click at 0
        if sx.size == 1:
            d = np.hypot(sx[0], sy[:, 0])
        else:
            ax, bx = sx[:-1], sx[1:]
            ay, by = sy[:, :-1], sy[:, 1:]
            dx, dy = bx - ax, by - ay
            with np.errstate(invalid="ignore", divide="ignore"):
                t = np.clip(-(ax * dx + ay * dy) / (dx * dx + dy * dy), 0.0, 1.0)
            t = np.where(np.isfinite(t), t, 0.0)
            d = np.hypot(ax + t * dx, ay + t * dy)
            d = np.where(np.isfinite(d), d, np.inf).min(axis=1)
        d = np.where(np.isfinite(d) & np.asarray(self.visible, dtype=bool), d, np.inf)
        i = int(np.argmin(d)) if d.size else -1
        return i if i >= 0 and d[i] <= within else -1


class LayerLine:
    """Layer ``i`` of a LayerLines, with the parts of a PlotDataItem's API the panel, the legend and
    the tests use."""

    def __init__(self, lines: LayerLines, i: int, pen):
        self._lines, self.i = lines, i
        # what a legend sample reads; the modes say what LayerLines does with every line
        self.opts = {"pen": pen, "symbol": None, "antialias": False,
                     "autoDownsample": True, "downsampleMethod": "peak", "clipToView": True}

    def getOriginalDataset(self):
        """(steps, the statistic where > 0, NaN elsewhere): every stored step."""
        ln = self._lines
        if not len(ln.x):
            return None, None
        return ln.x, ln.values[:, self.i]

    def getData(self):
        """(x, log10 y) as drawn: clipped to the view and downsampled."""
        xs, ys = self._lines.shown()
        return xs, ys[self.i] if len(ys) else ys

    def setPen(self, pen) -> None:
        self.opts["pen"] = pen
        self._lines.set_pen(self.i, pen)

    def setZValue(self, z: float) -> None:
        self._lines.set_z(self.i, z)

    def isVisible(self) -> bool:
        return self._lines.visible[self.i]

    def setVisible(self, on: bool) -> None:
        self._lines.set_visible(self.i, on)
