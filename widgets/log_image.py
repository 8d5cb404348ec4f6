"""log10 images of History series, kept up to date column by column.

A heatmap redraws ~10 times a second while a run grows to thousands of
columns, so the log10 of a stored column is computed once: a refresh only
transforms the rows appended since the last one. When History thins its old
rows (decimation) or the source changes, the image is rebuilt from scratch.

Colour levels start at fixed, sensible decades and only ever widen (to whole
decades that take in new data), so a colour keeps its meaning while the user
watches and levels are never recomputed over the whole image.
"""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF

ZERO_LOG = -45.0      # where log10(0) is drawn: below every level, so the map's bottom colour
LEVEL_LIMITS = (-30.0, 30.0)
MIN_SPAN = 2.0        # decades a fitted colour scale spans at least  # levels never widen past these decades; beyond them colours clip


def log10_positive(values: np.ndarray) -> np.ndarray:
    """log10 of the positive entries; zero, negative and NaN become NaN (no warnings)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log10(np.where(values > 0, values, np.nan))


def widen(levels, lo: float, hi: float):
    """Whole-decade levels that contain [lo, hi] and the previous ``levels`` (None: none yet), at
    least one decade wide: a colour keeps its meaning while data arrive."""
    lo, hi = math.floor(lo), math.ceil(hi)
    if hi - lo < 1:
        hi = lo + 1
    if levels is not None:
        lo, hi = min(lo, levels[0]), max(hi, levels[1])
    return float(lo), float(hi)


def log10_image(values: np.ndarray) -> np.ndarray:
    """[T, R] values -> [R, T] C-contiguous float32 log10 image.

    NaN and negative values stay NaN (drawn transparent: undefined); exact zeros
    become ZERO_LOG (the bottom colour: "no gradient at all").
    """
    v = np.asarray(values, dtype=np.float64).T
    with np.errstate(divide="ignore", invalid="ignore"):
        img = np.log10(np.where(v >= 0, v, np.nan))
    img[img == -np.inf] = ZERO_LOG
    return np.ascontiguousarray(img, dtype=np.float32)


class LogColumns:
    """[rows, columns] float32 log10 image of a [T, rows] source, grown incrementally."""

    def __init__(self, default_levels: tuple[float, float], fit: bool = False):
        """``fit``: the first data sets the levels to its own decades (at least MIN_SPAN wide)
        instead of widening ``default_levels``; later data still only widens them."""
        self.default_levels = (float(default_levels[0]), float(default_levels[1]))
        self.fit = fit
        self.reset()

    def reset(self) -> None:
        self._buf = np.zeros((0, 0), np.float32)
        self._n = 0
        self._ends = (None, None)   # steps of the first and last column already transformed
        self._key = None
        self.unchanged = 0
        self.levels = self.default_levels
        self._fitted = False

    def update(self, key, steps: np.ndarray, values: np.ndarray, contiguous: bool = True) -> np.ndarray:
        """The image for ``values`` [T, rows] recorded at ``steps`` [T]; ``key`` names the source.

        Only columns after those already seen are transformed, unless the source
        (key, row count) changed or its stored prefix moved (History decimated).
        ``contiguous``: a C-contiguous copy; else a view of the buffer the columns grow in (no copy of
        the whole image per call; later calls write the new columns beyond it, and rewrite it when the
        source changes).
        """
        T, rows = values.shape
        same = (key == self._key and self._buf.shape[0] == rows and T >= self._n
                and (self._n == 0 or (steps[0], steps[self._n - 1]) == self._ends))
        if not same:
            if key != self._key or self._buf.shape[0] != rows:
                self.levels, self._fitted = self.default_levels, False
            self._key, self._n = key, 0
        if self._buf.shape[1] < T or self._buf.shape[0] != rows:
            cap = max(64, 1 << math.ceil(math.log2(max(T, 1))))    # grow by doubling
            buf = np.full((rows, cap), np.nan, np.float32)
            if same and self._n:
                buf[:, : self._n] = self._buf[:, : self._n]
            self._buf = buf
        if T > self._n:
            new = log10_image(values[self._n:])
            self._buf[:, self._n:T] = new
            self._widen(new)
        self.unchanged = min(self._n, T) if same else 0   # leading columns as in the previous image
        self._n = T
        self._ends = (steps[0], steps[T - 1]) if T else (None, None)
        return np.ascontiguousarray(self._buf[:, :T]) if contiguous else self._buf[:, :T]

    def _widen(self, new: np.ndarray) -> None:
        ok = np.isfinite(new) & (new > ZERO_LOG)
        if not ok.any():
            return
        vals = new[ok]
        lo = max(math.floor(float(vals.min())), LEVEL_LIMITS[0])
        hi = min(math.ceil(float(vals.max())), LEVEL_LIMITS[1])
        if self.fit and not self._fitted:
            self._fitted = True
            self.levels = (float(lo), float(max(hi, lo + MIN_SPAN)))
            return
        self.levels = (float(min(self.levels[0], lo)), float(max(self.levels[1], hi)))


class ColumnImage(pg.ImageItem):
    """An ImageItem for an image that grows by columns (a heatmap over training steps).

    Auto-downsampled, pyqtgraph averages every block of columns of the whole image on every
    render (~3 ms for 100 layers x 10,000 steps). This item keeps the block means already made
    and averages only the new blocks: call ``keep_columns(n)`` before ``setImage`` with how
    many leading columns are the same as before (0: none). What it draws is pyqtgraph's own
    downsampled image (the means of whole blocks, the incomplete last block left out).

    While no whole block is new (a run adds a step, the image has ~14 per pixel column at 10,000
    steps), the downsampled image is the one drawn last time: its QImage is kept, not made again
    (~0.8 ms for 100 layers, issue 9 item 8).

    Nor is it painted again: a ``setImage`` that only appends columns within the last block, with the
    same levels and the same downsampling, draws the same picture, so the item keeps its extent (its
    bounding rect, where it draws the picture, what the auto range follows) and asks for no paint.
    pyqtgraph grew the item by a column and repainted the whole image with every step (~1.5 ms a
    frame for 100 layers x 10,000 steps); the picture is now drawn over the columns it had when it
    was last made, and the view moves on with the next whole block (within a pixel column of the
    newest step, which the downsampled picture never showed).
    """

    def __init__(self, *args, **kwargs):
        self._blocks = None      # (ds, rows) the means below are for
        self._done = 0           # whole blocks averaged
        self._means = np.zeros((0, 0), np.float32)
        self._made = 0           # counts the times blocks were averaged (the means changed)
        self._rendered = None    # (what the QImage below was made from, the QImage)
        self._kept = 0           # leading columns the next setImage keeps as they are (keep_columns)
        self._quiet = False      # within a setImage that draws the same picture: no geometry change, no paint
        self._extent = None      # columns the item spans while it draws the same picture (None: the image's)
        super().__init__(*args, **kwargs)

    # ------------------------------------------------------------------ the same picture, not painted again
    def setImage(self, image=None, autoLevels=None, **kwargs):
        quiet = self._same_picture(image, autoLevels, kwargs)
        if quiet and self._extent is None:
            self._extent = self.width()
        elif not quiet and self._extent is not None:
            self.prepareGeometryChange()   # from the kept extent back to the image's
            self._extent = None
        self._quiet = quiet
        try:
            return super().setImage(image, autoLevels, **kwargs)
        finally:
            self._quiet, self._kept = False, 0

    def _same_picture(self, image, auto_levels, kwargs) -> bool:
        """Whether ``setImage(image, **kwargs)`` would draw what was drawn last time: more columns of the
        same rows, none of the whole blocks drawn changed (``keep_columns``), no new whole block, the
        same downsampling, levels and lookup table."""
        old, r = self.image, self._rendered
        if (r is None or image is None or old is None or auto_levels or set(kwargs) - {"levels"}
                or not self.autoDownsample or self.axisOrder != "row-major" or self.paintMode is not None
                or self.border is not None or image.ndim != 2 or old.ndim != 2 or image.shape[0] != old.shape[0]
                or image.shape[1] < old.shape[1] or not hasattr(self, "_computeDownsampleFactors")):
            return False
        if "levels" in kwargs and tuple(np.asarray(kwargs["levels"], float).ravel()) != r[0][5]:
            return False
        xds, yds = self._computeDownsampleFactors()
        key = r[0]
        if xds is None or xds <= 1 or (xds, yds) != key[:2] or id(self.lut) != key[6]:
            return False
        k = image.shape[1] // xds
        return key[2] == (image.shape[0], k) and self._kept >= k * xds

    def prepareGeometryChange(self):
        if not self._quiet:
            super().prepareGeometryChange()

    def informViewBoundsChanged(self):
        if not self._quiet:
            super().informViewBoundsChanged()

    def update(self, *args):
        if not self._quiet:
            super().update(*args)

    def boundingRect(self):
        if self._extent is None or self.image is None:
            return super().boundingRect()
        return QRectF(0.0, 0.0, float(self._extent), float(self.image.shape[0]))

    def paint(self, painter, *args):
        if self._extent is None or self.image is None:
            return super().paint(painter, *args)
        if self._renderRequired:
            self.render()
            if self._unrenderable:
                return None
        painter.drawImage(self.boundingRect(), self.qimage)   # where it was drawn when it was made
        return None

    def keep_columns(self, n: int) -> None:
        self._kept = max(n, 0)
        if self._blocks is not None:
            self._done = min(self._done, max(n, 0) // self._blocks[0])

    def column_means(self, ds: int) -> np.ndarray:
        """[rows, columns // ds] means of whole blocks of ``ds`` columns of the image."""
        img = self.image
        rows, k = img.shape[0], img.shape[1] // ds
        if self._blocks != (ds, rows):
            self._blocks, self._done = (ds, rows), 0
        if self._means.shape[0] != rows or self._means.shape[1] < k:
            grown = np.empty((rows, max(k + k // 2, 64)), np.float32)
            if self._means.shape[0] == rows:
                grown[:, :self._done] = self._means[:, :self._done]
            else:
                self._done = 0
            self._means = grown
        done = min(self._done, k)
        if done < k:
            body = np.ascontiguousarray(img[:, done * ds:k * ds]).reshape(rows, k - done, ds)
            self._means[:, done:k] = body.mean(axis=2)
            self._made += 1
        elif k < self._done:
            self._made += 1      # fewer blocks than last time
        self._done = k
        return self._means[:, :k]

    def render(self):
        img = self.image
        if (not self.autoDownsample or img is None or img.ndim != 2 or img.size == 0 or self.axisOrder != "row-major"
                or getattr(self, "_nanPolicy", "propagate") != "propagate"
                or not hasattr(self, "_computeDownsampleFactors")):
            return super().render()
        xds, yds = self._computeDownsampleFactors()
        if xds is None or xds <= 1:
            return super().render()
        means = self.column_means(xds)
        lut = self.lut
        key = (xds, yds, means.shape, self._made, id(self._means), tuple(np.asarray(self.levels, float).ravel()),
               id(lut), None if lut is None or callable(lut) else (lut.shape, float(np.asarray(lut).sum())))
        if self._rendered is not None and self._rendered[0] == key:
            self.qimage = self._rendered[1]      # the same downsampled image as drawn last time
            self._renderRequired = self._unrenderable = False
            self._lastDownsample = (xds, yds)
            return None
        small = np.ascontiguousarray(pg.functions.downsample(means, yds, axis=0))
        if small.size == 0:
            self._unrenderable = True
            return None
        self.image, self.autoDownsample = small, False
        self._imageHasNans = self._imageNanLocations = None     # found for the drawn image
        try:
            super().render()
        finally:
            self.image, self.autoDownsample = img, True
            self._imageHasNans = None
            self._lastDownsample = (xds, yds)
        self._rendered = (key, self.qimage) if not self._unrenderable and self.qimage is not None else None
        return None
