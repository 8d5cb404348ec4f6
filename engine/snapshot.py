"""One training step's statistics, numpy only: what crosses from the worker to the GUI."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCALARS = ("loss", "accuracy", "test_loss", "test_accuracy", "lr")
PER_LAYER = ("weight_grad_norm", "bias_grad_norm", "delta_norm", "update_ratio")
PER_ACT = ("preact_mean", "preact_std", "mean_derivative", "saturated_frac", "dead_frac")
ROWS = ("step", *SCALARS, *PER_LAYER, *PER_ACT, "neuron_grad")  # one row each per step in a packed batch
FINISHED, STOPPED = "finished", "stopped by the user"            # why a run ended (Trainer.run)


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


def pack(snaps: list) -> dict:
    """A batch of Snapshots as one array per field (rows in step order): cheap to send and store.

    ``time_grad_norm`` is an array [n, S] when every step has one of the same
    length, else a list of arrays (or None); ``preact_hist`` keeps the newest one
    only, which is all the live panel shows.
    """
    batch = {k: np.array([getattr(s, k) for s in snaps]) for k in ROWS}
    tg = [s.time_grad_norm for s in snaps]
    if tg and all(t is not None for t in tg) and len({len(t) for t in tg}) == 1:
        batch["time_grad_norm"] = np.stack(tg)
    elif any(t is not None for t in tg):
        batch["time_grad_norm"] = tg
    hist = [s.preact_hist for s in snaps if s.preact_hist is not None]
    batch["preact_hist"] = hist[-1] if hist else None
    return batch


def unpack_last(batch: dict) -> Snapshot:
    """The newest step of a packed batch as a Snapshot."""
    tg = batch.get("time_grad_norm")
    return Snapshot(**{k: batch[k][-1] for k in ROWS},
                    time_grad_norm=None if tg is None else tg[-1], preact_hist=batch.get("preact_hist"))
