"""A run (a record or a run directory's stream) as a CSV table or as TensorBoard event files.

No torch: the window exports from the GUI process.

CSV: one tidy table, a row per (step, layer, statistic): columns ``step``,
``layer`` (empty for the run's own numbers: loss, accuracy, test_loss,
test_accuracy, lr; a layer or activation layer's name; ``t=<k>`` for the
gradient through time), ``statistic`` (a Contract 2 key) and ``value`` (``nan``
where undefined). Per-unit neuron gradients are not in the table.

TensorBoard: scalars ``<statistic>/<layer>`` (``train/loss``, ...), and per layer
a histogram ``neuron_grad/<layer>`` of the units' mean |dL/dz| (log10), precomputed
from the record (at most MAX_HISTOGRAMS steps, evenly spread), so TensorBoard
users can put Backprop Lab's numbers beside their own.
"""
from __future__ import annotations

import csv
import math
import re
import time
from pathlib import Path

import numpy as np

from .history import History
from .snapshot import PER_ACT, PER_LAYER

RUN_SCALARS = ("loss", "accuracy", "test_loss", "test_accuracy", "lr")
MAX_HISTOGRAMS = 500
HIST_EDGES = np.linspace(-12.0, 4.0, 65)   # log10 |dL/dz| from 1e-12 to 1e4


def _columns(h: History):
    """(layer, statistic, [T] values) of every number the record holds per step."""
    for k in RUN_SCALARS:
        yield "", k, h.series(k)
    for k in PER_LAYER:
        data = h.series(k)
        for j, name in enumerate(h.layer_names):
            yield name, k, data[:, j]
    for k in PER_ACT:
        data = h.series(k)
        for j, name in enumerate(h.act_names):
            yield name, k, data[:, j]
    if h.has("time_grad_norm"):
        data = h.series("time_grad_norm")
        for t in range(data.shape[1]):
            yield f"t={t}", "time_grad_norm", data[:, t]


def write_csv(h: History, path) -> int:
    """Write the tidy table; returns the number of data rows."""
    steps = h.steps
    n = 0
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["step", "layer", "statistic", "value"])
        for layer, stat, values in _columns(h):
            out.writerows((int(s), layer, stat, repr(float(v))) for s, v in zip(steps, values))
            n += len(steps)
    return n


def _tag(stat: str, layer: str) -> str:
    clean = re.sub(r"\s+", "_", layer.strip())   # "fc1 (Linear)" -> "fc1_(Linear)"
    return f"train/{stat}" if not layer else f"{stat}/{clean}"


def write_tensorboard(h: History, log_dir) -> Path:
    """Event files under log_dir (one file, TensorBoard's own format); returns the file's path."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import HistogramProto, Summary
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    writer = EventFileWriter(str(log_dir), filename_suffix=".backprop-lab")
    steps, now = h.steps, time.time()
    columns = [(_tag(stat, layer), values) for layer, stat, values in _columns(h)]
    hist_rows = set(np.unique(np.linspace(0, len(steps) - 1, min(len(steps), MAX_HISTOGRAMS)).round().astype(int))
                    .tolist()) if len(steps) else set()
    for i, step in enumerate(steps):
        values = [Summary.Value(tag=tag, simple_value=float(v[i])) for tag, v in columns if math.isfinite(v[i])]
        if i in hist_rows:
            for j, name in enumerate(h.layer_names):
                g = h.neuron_grad(j)[i].astype(np.float64)
                g = np.log10(g[np.isfinite(g) & (g > 0)])
                if g.size:
                    counts, _ = np.histogram(np.clip(g, HIST_EDGES[0], HIST_EDGES[-1]), HIST_EDGES)
                    proto = HistogramProto(min=float(g.min()), max=float(g.max()), num=float(g.size),
                                           sum=float(g.sum()), sum_squares=float((g * g).sum()),
                                           bucket_limit=HIST_EDGES[1:].tolist(), bucket=counts.tolist())
                    values.append(Summary.Value(tag=_tag("log10_neuron_grad", name), histo=proto))
        writer.add_event(Event(wall_time=now, step=int(step), summary=Summary(value=values)))
    writer.flush()
    writer.close()
    return Path(writer.get_logdir())

