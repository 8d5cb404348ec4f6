"""What the chain rule predicts for the gradient-flow panel, from the newest step's own numbers.

For a plain stack (linear, activation, linear, activation, ..., output linear),
z_l = W_l a_(l-1) and delta_l = dL/dz_l = f'(z_l) * W_(l+1)^T delta_(l+1). For
random-looking weights ||W^T v|| ~ sqrt(fan_in) rms(W) ||v|| and
||f'(z) * v|| ~ rms f'(z) ||v||, so going one layer towards the input multiplies
the gradient by

    factor_l = sqrt(fan_in of layer l+1) * rms(W_(l+1)) * rms f'(z_l)

The prediction starts from the measured value at the output layer and applies
these factors back to layer 1. rms(W) is the worker's ``weight_rms`` (weights at
the step's start); rms f'(z) is measured on the step's histogram of z where there
is one, else taken over N(mean z, std z^2) with Gauss-Hermite quadrature.
Numpy only: the window computes it.
"""
from __future__ import annotations

import numpy as np

from ..snapshot import HIST_BINS, HIST_RANGE
from .meanfield import U, WEIGHTS

_EDGES = np.linspace(*HIST_RANGE, HIST_BINS + 1)
_CENTRES = 0.5 * (_EDGES[1:] + _EDGES[:-1])


def _path(name: str) -> str:
    return name.split(" ", 1)[0]


def plain_chain(layer_names, act_names) -> list[int] | None:
    """For each layer but the last, the index of the activation right after it; None if the stack is
    not a plain linear/activation chain (residual blocks, normalisation, recurrent layers...)."""
    acts = {_path(n): i for i, n in enumerate(act_names)}
    out = []
    paths = [_path(n) for n in layer_names]
    for p in paths[:-1]:
        if not p.isdigit() or str(int(p) + 1) not in acts:
            return None
        out.append(acts[str(int(p) + 1)])
    return out if len(out) == len(acts) else None


def rms_derivative(activation, mean: float, std: float, hist=None) -> float:
    """sqrt(E[f'(z)^2]) over the measured histogram of z, or over N(mean, std^2)."""
    if hist is not None and np.sum(hist) > 0:
        p = np.asarray(hist, float) / np.sum(hist)
        return float(np.sqrt(np.dot(p, np.asarray(activation.df(_CENTRES), float) ** 2)))
    if not (np.isfinite(mean) and np.isfinite(std)):
        return float("nan")
    z = mean + max(std, 0.0) * U
    return float(np.sqrt(np.dot(WEIGHTS, np.asarray(activation.df(z), float) ** 2)))


def factors(history, activations) -> np.ndarray | None:
    """factor_l for l = 0..L-2 at the newest step, or None where the overlay does not apply."""
    if history is None or len(history) == 0 or not history.has("weight_rms"):
        return None
    order = plain_chain(history.layer_names, history.act_names)
    if order is None or len(activations) != len(history.act_names):
        return None
    rms_w = history.series("weight_rms")[-1]
    mean, std = history.series("preact_mean")[-1], history.series("preact_std")[-1]
    hist = history.latest_hist
    out = np.empty(len(order))
    for l, a in enumerate(order):
        fan_in = history.units[l]
        h = hist[a] if hist is not None and len(hist) == len(history.act_names) else None
        out[l] = np.sqrt(fan_in) * rms_w[l + 1] * rms_derivative(activations[a], mean[a], std[a], h)
    return out


def predicted(history, activations, statistic: str = "bias_grad_norm") -> np.ndarray | None:
    """The chain-rule prediction of ``statistic`` per layer, anchored at the output layer's measured value."""
    if statistic not in ("bias_grad_norm", "delta_norm"):
        return None
    f = factors(history, activations)
    if f is None:
        return None
    measured = history.series(statistic)[-1]
    out = np.empty(len(measured))
    out[-1] = measured[-1]
    for l in range(len(measured) - 2, -1, -1):
        out[l] = out[l + 1] * f[l]
    return out
