"""One training step's statistics, numpy only: what crosses from the worker to the GUI."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCALARS = ("loss", "accuracy", "test_loss", "test_accuracy", "lr")
PER_LAYER = ("weight_grad_norm", "bias_grad_norm", "delta_norm", "update_ratio")
PER_ACT = ("preact_mean", "preact_std", "mean_derivative", "saturated_frac", "dead_frac")
ROWS = ("step", *SCALARS, *PER_LAYER, *PER_ACT, "neuron_grad")  # one row each per step in a packed batch
OPTIONAL_ROWS = ("time_grad_norm", "weight_rms")               # may be None, or of another length
# the probes' histogram of z (``preact_hist``): HIST_BINS bins over HIST_RANGE, the end bins hold the tails
HIST_BINS, HIST_RANGE = 80, (-8.0, 8.0)


@dataclass(frozen=True)
class Snapshot:
    step: int
    loss: float
    accuracy: float
    test_loss: float
    test_accuracy: float
    lr: float
    weight_grad_norm: np.ndarray   # [L]
    bias_grad_norm: np.ndarray     # [L]
    delta_norm: np.ndarray         # [L]
    update_ratio: np.ndarray       # [L]
    preact_mean: np.ndarray        # [A]
    preact_std: np.ndarray         # [A]
    mean_derivative: np.ndarray    # [A]
    saturated_frac: np.ndarray     # [A]
    dead_frac: np.ndarray          # [A]
    neuron_grad: np.ndarray        # [sum of layer widths]: mean |dL/dz| per unit
    time_grad_norm: np.ndarray | None = None  # [S] recurrent nets
    preact_hist: np.ndarray | None = None     # [A, bins] when the live view asked for it
    # [L] rms of each layer's weight entries at the step's start, ||W|| / sqrt(size): the theory
    # overlay's sqrt(fan_in) rms(W) rms f'(z) per layer (not part of the record contract)
    weight_rms: np.ndarray | None = None


def pack(snaps: list) -> dict:
    """A batch of Snapshots as one array per field (rows in step order): cheap to send and store.

    An optional field (``time_grad_norm``, ``weight_rms``) is an array [n, width]
    when every step has one of the same length, else a list of arrays or None
    (absent when no step has it); ``preact_hist`` keeps the newest one only,
    which is all the live panel shows.
    """
    batch = {k: np.array([getattr(s, k) for s in snaps]) for k in ROWS}
    for key in OPTIONAL_ROWS:
        rows = [getattr(s, key) for s in snaps]
        if rows and all(r is not None for r in rows) and len({len(r) for r in rows}) == 1:
            batch[key] = np.stack(rows)
        elif any(r is not None for r in rows):
            batch[key] = rows
    hist = [s.preact_hist for s in snaps if s.preact_hist is not None]
    batch["preact_hist"] = hist[-1] if hist else None
    return batch


def unpack_last(batch: dict) -> Snapshot:
    """The newest step of a packed batch as a Snapshot."""
    extra = {k: (None if batch.get(k) is None else batch[k][-1]) for k in OPTIONAL_ROWS}
    return Snapshot(**{k: batch[k][-1] for k in ROWS}, **extra, preact_hist=batch.get("preact_hist"))
