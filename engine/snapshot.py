"""One training step's statistics, numpy only: what crosses from the worker to the GUI."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCALARS = ("loss", "accuracy", "test_loss", "test_accuracy", "lr")
PER_LAYER = ("weight_grad_norm", "bias_grad_norm", "delta_norm", "update_ratio")
PER_ACT = ("preact_mean", "preact_std", "mean_derivative", "saturated_frac", "dead_frac")
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
