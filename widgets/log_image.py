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
        self.levels = self.default_levels
        self._fitted = False

    def update(self, key, steps: np.ndarray, values: np.ndarray) -> np.ndarray:
        """The image for ``values`` [T, rows] recorded at ``steps`` [T]; ``key`` names the source.

        Only columns after those already seen are transformed, unless the source
        (key, row count) changed or its stored prefix moved (History decimated).
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
        self._n = T
        self._ends = (steps[0], steps[T - 1]) if T else (None, None)
        return np.ascontiguousarray(self._buf[:, :T])

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
