"""History: the recorded steps of a run, bounded in memory however long it goes.

Rows live in preallocated numpy arrays. When they are full, the newer half stays
at full resolution and the older rows are thinned to every ``stride``-th row in
append order, the stride doubling as the run grows: old steps stay evenly
spread from the first step on (never thinned again and again until only the
first is left), recent steps are always complete, and a run of any length fits
in ``budget_bytes``. Numpy only: widgets read it directly.

Per-unit rows (``neuron_grad``) keep at most ``MAX_HISTORY_UNITS`` columns per
layer: a wider layer's units are pooled into that many contiguous groups (the
mean of |dL/dz| over each group), so a row's size does not grow with the width
of a layer (3e7 units asked for 57 GiB before).
"""
from __future__ import annotations

import numpy as np

from .limits import MAX_HISTORY_UNITS
from .snapshot import OPTIONAL_ROWS, PER_ACT, PER_LAYER, ROWS, SCALARS, Snapshot, unpack_last

DEFAULT_BUDGET = 96 * 2**20  # bytes for all arrays together


class History:
    def __init__(self, layer_names, act_names, units, time_steps: int = 0,
                 budget_bytes: int = DEFAULT_BUDGET, min_capacity: int = 512):
        self.layer_names = list(layer_names)
        self.act_names = list(act_names)
        self.units = [int(u) for u in units]  # neurons of each layer, for neuron_grad
        # columns kept per layer: every unit, or MAX_HISTORY_UNITS groups of a wider layer
        self.stored_units = [min(u, MAX_HISTORY_UNITS) for u in self.units]
        self.offsets = np.concatenate([[0], np.cumsum(self.stored_units)]).astype(int)
        self._pool = _pooling(self.units, self.stored_units)
        self.time_steps = time_steps
        L, A, U = len(self.layer_names), len(self.act_names), int(sum(self.stored_units))
        # width None: one number per step; an int: a row per step (may be 0 wide)
        self.widths = {"step": None, **{k: None for k in SCALARS}, **{k: L for k in PER_LAYER},
                       **{k: A for k in PER_ACT}, "neuron_grad": U, "weight_rms": L}
        if time_steps:
            self.widths["time_grad_norm"] = time_steps
        row_bytes = sum(w or 1 for w in self.widths.values()) * 8
        self.capacity = max(min_capacity, int(budget_bytes // row_bytes))
        # allocated whole (untouched pages cost nothing), filled with NaN as rows are reached:
        # a new History is not a 96 MiB memset (it was ~10 % of the first window's start-up)
        self._arrays = {k: self._empty(k, w) for k, w in self.widths.items()}
        self._filled = 0
        # append order of each row (rows written directly, as a loaded record's, count by index)
        self._serial = np.arange(self.capacity, dtype=np.int64)
        self._stride = 1  # older rows kept by _decimate: serial % stride == 0
        self.n = 0
        self.version = 0          # bumps on every change; views redraw when it moves
        self.latest: Snapshot | None = None
        self.latest_hist: np.ndarray | None = None  # [A, bins] histogram of z, newest
        self.stop_reason = None   # an engine.run_end.RunEnd once the run ended

    def _empty(self, key: str, width: int) -> np.ndarray:
        shape = (self.capacity,) if width is None else (self.capacity, width)
        return np.empty(shape, np.int64 if key == "step" else np.float32 if key == "neuron_grad" else np.float64)

    def _fill_to(self, rows: int) -> None:
        """Rows [0, rows) hold their initial value (NaN; 0 for steps): filled ahead in doubling chunks."""
        if rows <= self._filled:
            return
        end = min(self.capacity, max(rows, 2 * self._filled, 1024))
        for arr in self._arrays.values():
            arr[self._filled:end] = np.nan if arr.dtype.kind == "f" else 0
        self._filled = end

    @property
    def _data(self) -> dict:
        """Every array, filled to the capacity (for code that writes rows directly: record, rundir)."""
        self._fill_to(self.capacity)
        return self._arrays

    @classmethod
    def for_probe(cls, probe, time_steps: int = 0, **kw) -> "History":
        return cls(probe.layer_names, probe.act_names, probe.units, time_steps, **kw)

    def __len__(self) -> int:
        return self.n

    # ------------------------------------------------------------------ writing
    def append(self, s: Snapshot) -> None:
        if self.n == self.capacity:
            self._decimate()
        i = self.n
        self._fill_to(i + 1)
        self._serial[i] = self._serial[i - 1] + 1 if i else 0
        for k in self.widths:
            v = getattr(s, k)
            if v is None:
                continue
            if k == "time_grad_norm" and len(v) != self.time_steps:
                continue  # a batch of another length: the row keeps NaN
            if k == "neuron_grad" and self._pool is not None:
                v = self.pool_units(v)
                if v is None:
                    continue
            self._arrays[k][i] = v
        self.n += 1
        self.version += 1
        self.latest = s
        if s.preact_hist is not None:
            self.latest_hist = s.preact_hist

    def pool_units(self, v: np.ndarray) -> np.ndarray | None:
        """A full per-unit row (sum of units wide; or rows [T, sum of units]) as the stored
        columns: the mean over each group of a pooled layer; None if it has another width."""
        if self._pool is None:
            return v
        starts, counts, total = self._pool
        v = np.asarray(v, np.float64)
        v = v.reshape(-1) if v.ndim < 2 else v
        if v.shape[-1] != total:
            return None
        return (np.add.reduceat(v, starts, axis=-1) / counts).astype(np.float32)

    def extend(self, snaps) -> None:
        for s in snaps:
            self.append(s)

    def extend_packed(self, batch: dict) -> None:
        """Append a packed batch (engine.snapshot.pack): the same rows as ``extend``, by slices."""
        total, done = len(batch["step"]), 0
        while done < total:
            if self.n == self.capacity:
                self._decimate()
            i, k = self.n, min(total - done, self.capacity - self.n)
            self._fill_to(i + k)
            first = self._serial[i - 1] + 1 if i else 0
            self._serial[i:i + k] = np.arange(first, first + k)
            for key in ROWS:
                rows = batch[key][done:done + k]
                if key == "neuron_grad" and self._pool is not None:
                    starts, counts, units = self._pool
                    if rows.shape[1] != units:
                        continue
                    rows = (np.add.reduceat(rows.astype(np.float64), starts, axis=1) / counts).astype(np.float32)
                self._arrays[key][i:i + k] = rows
            for key in OPTIONAL_ROWS:
                rows, width = batch.get(key), self.widths.get(key)
                if rows is None or not width:
                    continue
                if isinstance(rows, np.ndarray):
                    if rows.shape[1] == width:
                        self._arrays[key][i:i + k] = rows[done:done + k]
                    continue
                for j, v in enumerate(rows[done:done + k]):  # rows of their own lengths, or missing
                    if v is not None and len(v) == width:
                        self._arrays[key][i + j] = v
            self.n += k
            done += k
        if total:
            self.version += total
            self.latest = unpack_last(batch)
            if batch.get("preact_hist") is not None:
                self.latest_hist = batch["preact_hist"]

    def _decimate(self) -> None:
        # Thinning the older half by two at every call would halve the oldest rows
        # again and again (a 100k-step run kept step 0 and the last few thousand).
        # Instead the older rows keep one row in ``stride``, the stride doubling only
        # until they fit in a quarter of the capacity: the rest is free for new rows.
        older = self.capacity - self.capacity // 2
        serial = self._serial[:older]
        while np.count_nonzero(serial % self._stride == 0) > self.capacity // 4:
            self._stride *= 2
        keep = np.concatenate([np.flatnonzero(serial % self._stride == 0), np.arange(older, self.capacity)])
        for arr in (*self._arrays.values(), self._serial):
            arr[: len(keep)] = arr[keep]
            arr[len(keep):] = np.nan if arr.dtype.kind == "f" else 0
        self.n = len(keep)

    # ------------------------------------------------------------------ reading
    @property
    def steps(self) -> np.ndarray:
        return self._arrays["step"][: self.n]

    def series(self, key: str) -> np.ndarray:
        """[T] or [T, L] / [T, A] / [T, S] view of the stored rows (do not write to it)."""
        return self._arrays[key][: self.n]

    def has(self, key: str) -> bool:
        return key in self._arrays

    def neuron_grad(self, layer: int) -> np.ndarray:
        """[T, units] mean |dL/dz| of each unit of one layer."""
        a, b = self.offsets[layer], self.offsets[layer + 1]
        return self._arrays["neuron_grad"][: self.n, a:b]

    def pooled(self, layer: int) -> bool:
        """True when the layer's columns are groups of units, not single units."""
        return self.stored_units[layer] < self.units[layer]

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self._arrays.values())


def _pooling(units, stored):
    """(group starts in the full row, units per group, full width) or None if nothing pools."""
    if list(units) == list(stored):
        return None
    starts, base = [], 0
    for u, k in zip(units, stored):
        if k:
            starts.append(base + (np.arange(k, dtype=np.int64) * u) // k)
        base += u
    starts = np.concatenate(starts) if starts else np.zeros(0, np.int64)
    counts = np.diff(np.append(starts, base)).astype(np.float64)
    return starts, counts, base
