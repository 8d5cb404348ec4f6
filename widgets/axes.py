"""Axes for plots whose columns or rows are not plain numbers.

StepAxis: images draw one column per stored History row, but old rows may be
decimated, so column i is not step i. The axis places ticks at round step
numbers (0, 500, 1000, ...) at the fractional column where that step falls,
and prints the true step.

NameAxis: one row (or bar) per layer, labelled with the layer's name; when the
names do not fit, only every k-th is written (input and output always), the
others keep a tick mark.
"""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QFontMetricsF

from backprop_lab.widgets import theme


class StepAxis(pg.AxisItem):
    """Bottom axis over column positions (column i spans [i, i+1)) labelled with true steps."""

    def __init__(self, orientation: str = "bottom"):
        super().__init__(orientation)
        self.setStyle(hideOverlappingLabels=False)   # let the first and last labels overhang a little
        self.steps = np.zeros(0, dtype=np.int64)
        self._centres = np.zeros(0)

    def set_steps(self, steps: np.ndarray) -> None:
        steps = np.asarray(steps)
        if len(steps) == len(self.steps) and (len(steps) == 0 or (steps[0] == self.steps[0]
                                                                   and steps[-1] == self.steps[-1])):
            return  # same columns: keep the cached picture
        old = self.steps
        appended = (0 < len(old) <= len(steps) and steps[0] == old[0] and steps[len(old) - 1] == old[-1])
        self.steps = steps.astype(np.float64)
        self._centres = np.arange(len(steps)) + 0.5
        if not appended:
            self.picture = None
            self.update()
        # columns appended: every tick drawn keeps its column; the axis redraws when its range has
        # moved far enough for a pixel to change (pg_speedups), ticks of the new steps with it

    def column_to_step(self, x: float) -> float:
        if len(self.steps) == 0:
            return x
        if len(self.steps) == 1:
            return float(self.steps[0]) + (x - 0.5)
        return float(np.interp(x, self._centres, self.steps, left=np.nan, right=np.nan)) \
            if 0.5 <= x <= len(self.steps) - 0.5 else self._extrapolate(x)

    def _extrapolate(self, x: float) -> float:
        # beyond the first/last column centre: continue with the spacing of the end columns
        if x < 0.5:
            d = self.steps[1] - self.steps[0]
            return float(self.steps[0] + (x - 0.5) * d)
        d = self.steps[-1] - self.steps[-2]
        return float(self.steps[-1] + (x - (len(self.steps) - 0.5)) * d)

    def step_to_column(self, s: np.ndarray) -> np.ndarray:
        return np.interp(s, self.steps, self._centres)

    def tickValues(self, minVal, maxVal, size):
        n = len(self.steps)
        if n < 2:  # no run yet (or one step): whole steps only, never "0 0 0 1 1"
            levels = [(sp, vals) for sp, vals in super().tickValues(minVal, maxVal, size) if sp >= 1]
            return levels or [(1.0, [float(v) for v in range(math.ceil(minVal), math.floor(maxVal) + 1)])]
        lo = max(self.column_to_step(minVal), self.steps[0])
        hi = min(self.column_to_step(maxVal), self.steps[-1])
        if not hi > lo:
            return []
        levels = super().tickValues(lo, hi, size)
        out = []
        for spacing, values in levels:
            v = np.asarray([x for x in values if lo <= x <= hi and float(x).is_integer()])
            if len(v):
                out.append((spacing, list(self.step_to_column(v))))
        return out

    def tickStrings(self, values, scale, spacing):
        if len(self.steps) < 2:
            return [str(int(round(self.column_to_step(v)))) for v in values]
        return [f"{int(round(float(np.interp(v, self._centres, self.steps)))):d}" for v in values]


class NameAxis(pg.AxisItem):
    """One tick per row/bar at position i + offset, labelled with names[i]; thinned to fit."""

    def __init__(self, orientation: str, offset: float = 0.5):
        super().__init__(orientation)
        self.setStyle(hideOverlappingLabels=False)   # labels are thinned here; the ends may overhang
        self.enableAutoSIPrefix(False)   # ticks are names: "(x0.001)" on an empty, tiny range means nothing
        self.names: list[str] = []
        self.offset = offset
        self.emphasised = -1   # a row whose label is always written (the selected layer)

    def set_names(self, names) -> None:
        self.names = list(names)
        self._fit()
        self.picture = None
        self.update()

    def setTickFont(self, font) -> None:
        super().setTickFont(font)
        self._fit()

    def _fit(self) -> None:
        # a vertical name axis is as wide as its longest name, fixed: the plot never jumps sideways
        if self.orientation in ("left", "right") and getattr(self, "names", None):
            theme.fix_axis_width(self, max(self.names, key=len) + " ")

    def set_emphasised(self, i: int) -> None:
        if i != self.emphasised:
            self.emphasised = i
            self.picture = None
            self.update()

    def labelled(self, size: float) -> list[int]:
        """Indices whose names are written when the axis is ``size`` pixels long."""
        n = len(self.names)
        if n == 0:
            return []
        fm = QFontMetricsF(self.style["tickFont"] or theme.font())
        if self.orientation in ("left", "right"):
            need = fm.height() * 1.1
        else:
            need = max(fm.horizontalAdvance(s) for s in self.names) + fm.horizontalAdvance("  ")
        view = self.linkedView()
        visible = float(n)
        if view is not None:
            r = view.viewRange()[1 if self.orientation in ("left", "right") else 0]
            visible = max(1.0, min(float(n), r[1] - r[0]))
        stride = max(1, math.ceil(need * visible / max(size, 1.0)))
        # greedy: the selected row, the input and output rows first, then every stride-th
        order = [self.emphasised, 0, n - 1, *range(0, n, stride)]
        keep: list[int] = []
        for i in order:
            if 0 <= i < n and i not in keep and all(abs(i - k) >= stride for k in keep):
                keep.append(i)
        return sorted(keep)

    def tickValues(self, minVal, maxVal, size):
        shown = self.labelled(size)
        self._shown = set(shown)
        rest = sorted(set(range(len(self.names))) - self._shown)
        return [(1.0, [i + self.offset for i in shown]), (1.0, [i + self.offset for i in rest])]

    def tickStrings(self, values, scale, spacing):
        out = []
        for v in values:
            i = int(round(v - self.offset))
            ok = 0 <= i < len(self.names) and i in getattr(self, "_shown", ())
            out.append(self.names[i] if ok else "")
        return out


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def decade(k: int) -> str:
    """10^k as text: '1', '10', '10⁻⁶'."""
    return {0: "1", 1: "10"}.get(k, "10" + str(k).translate(_SUPERSCRIPT))


class DecadeAxis(pg.AxisItem):
    """A log10 axis (values are log10 of the quantity) labelled 10⁻⁶, 10⁻⁴, ... throughout.

    pyqtgraph's own log labels switch between 0.01 and 1e-06 styles; a class reads
    decades more easily when every label has the same form. Minor ticks stay
    unlabelled unless fewer than two decades are in view.
    """

    def __init__(self, orientation: str = "left"):
        super().__init__(orientation)
        self.setLogMode(*((False, True) if orientation in ("left", "right") else (True, False)))
        self.enableAutoSIPrefix(False)  # the labels carry the scale; a "(x0.001)" would contradict them

    MINOR_MIN_PX = 40   # pixels a decade needs before its 2..9 minor ticks (and grid lines) are drawn

    def logTickValues(self, minVal, maxVal, size, stdTicks):
        """pyqtgraph's levels, without the minor one (2..9 x 10^k) where a decade is under MINOR_MIN_PX
        pixels: there it drew ~110 grid lines on a 10-decade flow plot, so faint (pyqtgraph scales a
        level's alpha down with its density) that they read as a grey wash, and 4 ms of every paint."""
        levels = super().logTickValues(minVal, maxVal, size, stdTicks)
        if maxVal > minVal and size / (maxVal - minVal) < self.MINOR_MIN_PX:
            levels = [lv for lv in levels if lv[0] is not None] or levels[:1]
        return levels

    def logTickStrings(self, values, scale, spacing):
        ints = [v for v in values if abs(v - round(v)) < 1e-6]
        if len(ints) == len(values) and values:
            return [decade(int(round(v))) for v in values]
        if len(ints) >= 2 or self._decades_in_view() >= 2:
            return ["" for _ in values]
        return super().logTickStrings(values, scale, spacing)

    def _decades_in_view(self) -> int:
        view = self.linkedView()
        if view is None:
            return 0
        lo, hi = view.viewRange()[1 if self.orientation in ("left", "right") else 0]
        return int(math.floor(hi) - math.ceil(lo) + 1)
