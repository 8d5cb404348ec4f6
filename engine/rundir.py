"""A live run directory (Contract 2): append-only chunks of fixed-size rows, numpy only.

A writer (``Watch`` in a user's script, one per recorded rank) owns one *stream*
of the directory, two files:

    RUN_DIR/<stream>.json   the header: format, spec, every, layer and activation
                            names, units, the row layout; rewritten (atomically) only
                            at the start, when the run says why it stopped, and at close
    RUN_DIR/<stream>.rows   the steps: one fixed-size binary row per recorded step,
                            appended a chunk at a time (one write per flush)
    RUN_DIR/<stream>.hist   histograms of z (``preact_hist``, HIST_BINS bins over
                            HIST_RANGE per activation layer, the end bins holding the
                            tails) of the steps that took one (every ``hist_every``-th
                            recorded step): one row (step, [A, bins] counts) each, appended
                            with the rows at each flush; absent when no step took one

The stream of a single process, or of rank 0 recording the all-reduced gradients
of a distributed job, is ``main``; with ``ranks="all"`` each rank writes
``rank<r>``. Writing a step costs the same at step 10 and at step 1,000,000 (a
row is copied into a preallocated buffer; a flush appends the buffer). A reader
sees every complete row: a writer killed mid-write (``kill -9``) loses at most
the steps buffered since its last flush, and a torn last row is ignored. No
temporary file is left behind by a flush. Reading parses JSON and raw
little-endian numbers with a fixed set of types: it never executes code.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np

from .history import History
from .run_end import FINISHED, RunEnd
from .snapshot import HIST_BINS, HIST_RANGE, PER_ACT, PER_LAYER, SCALARS, Snapshot

FORMAT, VERSION = "backprop-lab/rundir", 1
MAIN = "main"
HEADER, ROWS, HIST = ".json", ".rows", ".hist"
_TYPES = {"<i8", "<f8", "<f4"}  # every type a row may hold
FLUSH_ROWS = 4096               # a full buffer is appended even before flush_seconds


class RunDirError(ValueError):
    pass


def row_layout(L: int, A: int, U: int, S: int) -> list:
    """[(key, type, width or None)] of one row; keys of width 0 are left out (NaN when read)."""
    out = [("step", "<i8", None)] + [(k, "<f8", None) for k in SCALARS]
    out += [(k, "<f8", L) for k in PER_LAYER] + [(k, "<f8", A) for k in PER_ACT]
    out += [("neuron_grad", "<f4", U)]
    if S:
        out.append(("time_grad_norm", "<f8", S))
    return [(k, t, w) for k, t, w in out if w != 0]


def _dtype(layout) -> np.dtype:
    fields = []
    for key, typ, width in layout:
        if typ not in _TYPES or not isinstance(key, str):
            raise RunDirError(f"row layout: type {typ!r} of {key!r} is not one a run directory holds")
        fields.append((key, typ) if width is None else (key, typ, (int(width),)))
    return np.dtype(fields)


def hist_layout(A: int) -> list:
    """[(key, type, shape)] of one histogram row: the step and [A, HIST_BINS] counts."""
    return [("step", "<i8", None), ("preact_hist", "<f4", [A, HIST_BINS])]


def _hist_dtype(layout) -> np.dtype:
    fields = []
    for key, typ, shape in layout:
        if typ not in _TYPES or not isinstance(key, str):
            raise RunDirError(f"histogram layout: type {typ!r} of {key!r} is not one a run directory holds")
        fields.append((key, typ) if shape is None else (key, typ, tuple(int(n) for n in shape)))
    return np.dtype(fields)


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")  # a dot file: never taken for a stream
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


def stream_name(rank: int | None) -> str:
    return MAIN if rank is None else f"rank{rank}"


class RunWriter:
    """Appends one stream's rows; ``add`` costs O(1) whatever the run's length."""

    def __init__(self, run_dir, spec: dict, layer_names, act_names, units, stream: str = MAIN,
                 every: int = 1, flush_seconds: float = 1.0, extra: dict | None = None):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.stream, self.spec, self.every, self.flush_seconds = stream, dict(spec), int(every), flush_seconds
        self.layer_names, self.act_names, self.units = list(layer_names), list(act_names), list(units)
        self.extra = dict(extra or {})
        self.stop_reason: str | None = None
        self.rows_written = 0          # rows a reader can see
        self.header_path, self.rows_path = self.dir / (stream + HEADER), self.dir / (stream + ROWS)
        self._file = None              # opened at the first row (its layout needs S)
        self._buf = None
        self._n = 0
        self.hist_path = self.dir / (stream + HIST)
        self.hist_dtype = _hist_dtype(hist_layout(len(self.act_names)))
        self._hist_file, self._hists = None, []   # histogram rows not yet appended
        self._last_flush = -math.inf
        self.time_steps = 0

    # ------------------------------------------------------------------ header
    def header(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "stream": self.stream, "every": self.every,
                "spec": self.spec, "layer_names": self.layer_names, "act_names": self.act_names,
                "layer_units": self.units, "time_steps": self.time_steps,
                "row_layout": [list(x) for x in self.layout], "row_bytes": self.dtype.itemsize,
                "hist_layout": [list(x) for x in hist_layout(len(self.act_names))],
                "hist_bytes": self.hist_dtype.itemsize, "hist_range": list(HIST_RANGE),
                "stop_reason": self.stop_reason, **self.extra}

    def _open(self, time_steps: int) -> None:
        self.time_steps = time_steps
        self.layout = row_layout(len(self.layer_names), len(self.act_names), int(sum(self.units)), time_steps)
        self.dtype = _dtype(self.layout)
        self._buf = np.zeros(max(1, min(FLUSH_ROWS, (1 << 22) // self.dtype.itemsize)), self.dtype)
        self._file = open(self.rows_path, "wb")   # a new run: the stream starts empty
        self.hist_path.unlink(missing_ok=True)    # (and has no histograms yet)
        _write_json(self.header_path, self.header())

    # ------------------------------------------------------------------ rows
    def add(self, s: Snapshot) -> None:
        if self._file is None:
            self._open(len(s.time_grad_norm) if s.time_grad_norm is not None else 0)
        row = self._buf[self._n]
        for key, _, width in self.layout:
            v = getattr(s, key)
            if v is None or (width is not None and np.size(v) != width):
                v = np.nan  # a batch of another length: NaN, as History does
            row[key] = v
        self._n += 1
        hist = s.preact_hist
        if hist is not None and np.shape(hist) == self.hist_dtype["preact_hist"].shape:
            h = np.zeros((), self.hist_dtype)
            h["step"], h["preact_hist"] = s.step, hist
            self._hists.append(h)
        if self._n == len(self._buf) or time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        if self._file is None or self._n == 0:
            return
        if self._hists:   # before the rows: a reader that sees a step sees its histogram
            if self._hist_file is None:
                self._hist_file = open(self.hist_path, "ab")
            self._hist_file.write(np.stack(self._hists).tobytes())
            self._hist_file.flush()
            self._hists = []
        self._file.write(self._buf[:self._n].tobytes())  # one append: whole rows only
        self._file.flush()
        self.rows_written += self._n
        self._n = 0
        self._last_flush = time.monotonic()

    def set_stop_reason(self, reason: str) -> None:
        self.stop_reason = reason
        if self._file is not None:
            self.flush()
            _write_json(self.header_path, self.header())

    def close(self, reason: str = FINISHED) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        if self._file is None:
            return
        self.flush()
        self._file.close()
        if self._hist_file is not None:
            self._hist_file.close()
        _write_json(self.header_path, self.header())


# ---------------------------------------------------------------------- reading
def is_run_dir(path) -> bool:
    return Path(path).is_dir() and bool(streams(path))


def streams(run_dir) -> list:
    """The stream names of a run directory: ``main`` first, then ranks in order."""
    names = [p.name[:-len(HEADER)] for p in Path(run_dir).glob("*" + HEADER)
             if not p.name.startswith(".") and (Path(run_dir) / (p.name[:-len(HEADER)] + ROWS)).exists()]

    def order(n):
        return (n != MAIN, int(n[4:]) if n.startswith("rank") and n[4:].isdigit() else 1 << 30, n)
    return sorted(names, key=order)


class RunReader:
    """Reads a stream incrementally: ``poll`` returns the rows appended since the last call."""

    def __init__(self, run_dir, stream: str | None = None):
        self.dir = Path(run_dir)
        names = streams(self.dir)
        if not names:
            raise RunDirError(f"{self.dir}: no run stream here yet")
        if stream is None:
            stream = names[0]
        if stream not in names:
            raise RunDirError(f"{self.dir}: no stream {stream!r} (has {', '.join(names)})")
        self.stream = stream
        self.read_header()
        self.rows_read = 0

    def read_header(self) -> dict:
        path = self.dir / (self.stream + HEADER)
        try:
            h = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise RunDirError(f"{path}: not a run header ({e})") from None
        if not isinstance(h, dict) or h.get("format") != FORMAT:
            raise RunDirError(f"{path}: not a backprop-lab run directory header")
        if h.get("version") != VERSION:
            raise RunDirError(f"{path}: run directory version {h.get('version')!r} is not one this reads ({VERSION})")
        try:
            self.dtype = _dtype([(k, t, w) for k, t, w in h["row_layout"]])
        except (KeyError, TypeError, ValueError) as e:
            raise RunDirError(f"{path}: bad row layout ({e})") from None
        if self.dtype.itemsize != h.get("row_bytes"):
            raise RunDirError(f"{path}: row layout does not add up to row_bytes")
        self.hist_dtype = None   # a stream of an older writer has no histograms
        if "hist_layout" in h:
            try:
                self.hist_dtype = _hist_dtype([(k, t, w) for k, t, w in h["hist_layout"]])
            except (TypeError, ValueError) as e:
                raise RunDirError(f"{path}: bad histogram layout ({e})") from None
            if self.hist_dtype.itemsize != h.get("hist_bytes") or "preact_hist" not in self.hist_dtype.names:
                raise RunDirError(f"{path}: histogram layout does not add up to hist_bytes")
        self.header = h
        return h

    def hists_available(self) -> int:
        """Complete histogram rows on disk now."""
        if self.hist_dtype is None:
            return 0
        try:
            return (self.dir / (self.stream + HIST)).stat().st_size // self.hist_dtype.itemsize
        except FileNotFoundError:
            return 0

    def read_hists(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Histogram rows [start, stop): fields ``step`` and ``preact_hist`` [A, bins] (a copy)."""
        if self.hist_dtype is None:
            return np.zeros(0, _hist_dtype(hist_layout(0)))
        return _read_rows(self.dir / (self.stream + HIST), self.hist_dtype, start,
                          self.hists_available() if stop is None else stop)

    def latest_hist(self, up_to_step: int | None = None):
        """The newest histogram of z ([A, bins]) of a step at or before ``up_to_step`` (None: any), or None."""
        n = self.hists_available()
        while n > 0:   # from the end: the newest first (a torn last row is not counted)
            row = self.read_hists(n - 1, n)
            if not len(row):
                return None
            if up_to_step is None or int(row["step"][0]) <= up_to_step:
                return np.asarray(row["preact_hist"][0], np.float32)
            n -= 1
        return None

    def available(self) -> int:
        """Complete rows on disk now."""
        try:
            return (self.dir / (self.stream + ROWS)).stat().st_size // self.dtype.itemsize
        except FileNotFoundError:
            return 0

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows [start, stop) as a structured array (a copy: the file may grow meanwhile)."""
        return _read_rows(self.dir / (self.stream + ROWS), self.dtype, start,
                          self.available() if stop is None else stop)

    def poll(self) -> np.ndarray:
        rows = self.read(self.rows_read)
        self.rows_read += len(rows)
        return rows

    def new_history(self, min_capacity: int = 512) -> History:
        h = self.header
        return History(h["layer_names"], h["act_names"], h["layer_units"], h.get("time_steps", 0),
                       min_capacity=min_capacity)

    def spec(self) -> dict:
        spec = dict(self.header.get("spec") or {})
        spec.setdefault("format", "backprop-lab/spec")
        spec["every"] = self.header.get("every", 1)
        spec["stream"] = self.stream
        for k in ("rank", "world_size", "grads", "deltas"):
            if k in self.header:
                spec[k] = self.header[k]
        end = RunEnd.parse(self.header.get("stop_reason"))
        if end is not None and end.early:
            spec["stopped"] = self.header["stop_reason"]
        return spec


def _read_rows(path: Path, dtype: np.dtype, start: int, stop: int) -> np.ndarray:
    """Whole rows [start, stop) of a file of fixed-size rows (a copy: the file may grow meanwhile)."""
    if stop <= start:
        return np.zeros(0, dtype)
    with open(path, "rb") as f:
        f.seek(start * dtype.itemsize)
        data = f.read((stop - start) * dtype.itemsize)
    n = len(data) // dtype.itemsize
    return np.frombuffer(data[:n * dtype.itemsize], dtype).copy()


def rows_to_snapshots(rows: np.ndarray):
    """Snapshots of structured rows (for a History that grows as a run goes)."""
    names = rows.dtype.names
    L = rows["weight_grad_norm"].shape[1] if "weight_grad_norm" in names else 0
    A = rows["preact_mean"].shape[1] if "preact_mean" in names else 0
    empty = {k: np.full(L, np.nan) for k in PER_LAYER} | {k: np.full(A, np.nan) for k in PER_ACT}
    for r in rows:
        get = {k: (r[k] if k in names else empty.get(k)) for k in (*SCALARS, *PER_LAYER, *PER_ACT)}
        yield Snapshot(int(r["step"]), *(float(get[k]) for k in SCALARS),
                       *(np.asarray(get[k]) for k in PER_LAYER), *(np.asarray(get[k]) for k in PER_ACT),
                       np.asarray(r["neuron_grad"]) if "neuron_grad" in names else np.zeros(0, np.float32),
                       np.asarray(r["time_grad_norm"]) if "time_grad_norm" in names else None)


def _pick(T: int, capacity: int) -> np.ndarray:
    """Row indices that fit a History: the newer half of the capacity complete, older rows evenly thinned."""
    if T <= capacity:
        return np.arange(T)
    recent = capacity // 2
    older = np.linspace(0, T - recent - 1, capacity - recent).round().astype(np.int64)
    return np.unique(np.concatenate([older, np.arange(T - recent, T)]))


def load(run_dir, stream: str | None = None) -> tuple[History, dict]:
    """(History, spec) of one stream, every complete row (thinned evenly where it would not fit)."""
    reader = RunReader(run_dir, stream)
    return history_of(reader, reader.available()), reader.spec()


def history_of(reader: RunReader, T: int) -> History:
    """A History of a stream's first T rows; the memory budget decides how many are kept."""
    h = reader.new_history()
    idx = _pick(T, h.capacity)
    if T:  # only the picked rows are read from disk (a memory map)
        rows = np.array(np.memmap(reader.dir / (reader.stream + ROWS), reader.dtype, "r", shape=(T,))[idx])
    else:
        rows = reader.read(0, 0)
    h.n = len(rows)
    for k in rows.dtype.names:
        if k in h.widths:
            v = h.pool_units(rows[k]) if k == "neuron_grad" else rows[k]   # wide layers: pooled
            if v is not None:
                h._data[k][:h.n] = v
    h.version += 1
    h.stop_reason = RunEnd.parse(reader.header.get("stop_reason"))
    if h.n:
        h.latest = next(rows_to_snapshots(rows[-1:]))
        h.latest_hist = reader.latest_hist(int(rows["step"][-1]))
    return h
