"""The initialisation map (edge of chaos), measured on real random nets. Imports torch.

Each cell (sigma_w^2, sigma_b^2) is a stack of ``depth`` hidden layers of ``width``
units, weights N(0, sigma_w^2 / fan_in) (kaiming_normal with gain sqrt(sigma_w^2)),
biases N(0, sigma_b^2), 2-D inputs and cross-entropy over 3 random classes.
Its value is log10(||dL/dz_1|| / ||dL/dz_depth||) at initialisation, z_l the
pre-activation of hidden layer l, median over seeds: below 0 the gradient
vanishes towards the input, above 0 it explodes. ``spec_for_cell`` is that very
stack as a spec, so the editor can load a cell.

Inputs (``inputs``): mean-field's chi1 is the per-layer factor of E||dL/dz||^2
*at the fixed point q* of the length map*. With N(0, 1) inputs ("standard") the
first pre-activations have length 1 + sigma_b^2, far from q* where q* is small,
and the length map can take the whole depth to get there (at sigma_b^2 = 0 tanh's
q_l falls like 1/(2l) towards q* = 0): the early layers then contract and the
measured border moves right of chi1 = 1 (about 30 % at sigma_b^2 = 0, depth 20).
"fixed-point" (the default, as in the mean-field experiments of Poole et al.
2016 and Schoenholz et al. 2017) puts every input on the sphere
||x||^2 / n_in = (q* - sigma_b^2) / sigma_w^2, so that every sample's first
pre-activation has expected length q* and stays there. Every sample gets the
same length because the sum over the batch is dominated by its shortest samples
otherwise (short inputs stay short for many layers where the length map's slope
at q* is near 1, and there f'(z) is larger). q* is clipped to [1e-6, 1e4] (0 for
an ordered net without bias; infinite for ReLU in its chaotic phase).

At sigma_b^2 = 0, tanh is critical to first order for every sigma_w^2 >= 1
(chi1 = 1 + (4/3) sigma_w^2 q*^2 there), so the measured ratio stops falling at
sigma_w^2 = 1 and then stays near 0; which side of 0 it lands on is decided by
corrections of order 1/width (at width 128 they keep it a little below 0 up
to sigma_w^2 ~ 1.2; at width 256 it lands on 0 from sigma_w^2 = 1).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..build import build_stack
from . import meanfield
from .cells import BATCH, N_CLASSES, N_IN, layers_for_cell, parse_range, spec_for_cell  # noqa: F401


INPUTS = ("fixed-point", "standard")
Q_FLOOR, Q_CEIL = 1e-6, 1e4
MEASURED = {
    "fixed-point": ("log10 ||dL/dz_1|| / ||dL/dz_L|| at initialisation, z_l the pre-activations of hidden "
                    "layer l, median over seeds; every input on the sphere where the first pre-activations "
                    "have the length map's fixed point q* as their expected squared length (q* clipped to "
                    "[1e-6, 1e4])"),
    "standard": ("log10 ||dL/dz_1|| / ||dL/dz_L|| at initialisation, z_l the pre-activations of hidden "
                 "layer l, median over seeds; N(0, 1) inputs"),
}


def start_length(activation: str, sigma_w2: float, sigma_b2: float) -> float:
    """q* of the length map, clipped to [Q_FLOOR, Q_CEIL]: the first pre-activations' length in 'fixed-point'."""
    q = meanfield.fixed_point(sigma_w2, sigma_b2, activation)
    return float(min(max(q, Q_FLOOR), Q_CEIL))


def cell_inputs(activation: str, sigma_w2: float, sigma_b2: float, seed: int, inputs: str = "fixed-point"):
    """(x [BATCH, N_IN], y [BATCH]) the cell is measured on."""
    if inputs not in INPUTS:
        raise ValueError(f"inputs must be one of {', '.join(INPUTS)}, got {inputs!r}")
    g = torch.Generator().manual_seed(10_000 + seed)
    x = torch.randn(BATCH, N_IN, generator=g)
    y = torch.randint(0, N_CLASSES, (BATCH,), generator=g)
    if inputs == "fixed-point":
        # E[z_1^2] = sigma_w^2 ||x||^2 / n_in + sigma_b^2 = q*, the same for every sample
        mean_square = max(start_length(activation, sigma_w2, sigma_b2) - sigma_b2, Q_FLOOR) / sigma_w2
        x = x / x.norm(dim=1, keepdim=True) * math.sqrt(N_IN * mean_square)
    return x, y


def measure_cell(activation: str, width: int, depth: int, sigma_w2: float, sigma_b2: float,
                 seed: int, inputs: str = "fixed-point") -> float:
    """log10(||dL/dz_1|| / ||dL/dz_depth||) of one random net at initialisation (nan if undefined)."""
    model = build_stack(layers_for_cell(activation, width, depth, sigma_w2, sigma_b2), (N_IN,), N_CLASSES, seed)
    x, y = cell_inputs(activation, sigma_w2, sigma_b2, seed, inputs)
    zs, h = [], x
    for m in model.module:
        h = m(h)
        if isinstance(m, nn.Linear) and len(zs) < depth:
            h.retain_grad()
            zs.append(h)
    nn.functional.cross_entropy(h, y).backward()
    first, last = zs[0].grad.norm().item(), zs[-1].grad.norm().item()
    if not (first > 0 and last > 0 and math.isfinite(first) and math.isfinite(last)):
        return math.nan
    return math.log10(first / last)


def compute(activation: str = "tanh", width: int = 128, depth: int = 20, sigma_w2=None, sigma_b2=None,
            seeds: int = 3, progress=None, cancelled=None, inputs: str = "fixed-point") -> dict | None:
    """Contract 4's `theory phase` object; None if ``cancelled()`` turned true on the way.

    ``progress(done, total)`` is called after each cell.
    """
    sw = np.asarray(sigma_w2 if sigma_w2 is not None else np.linspace(0.5, 4.0, 15), float)
    sb = np.asarray(sigma_b2 if sigma_b2 is not None else np.linspace(0.0, 1.0, 6), float)
    if inputs not in INPUTS:
        raise ValueError(f"inputs must be one of {', '.join(INPUTS)}, got {inputs!r}")
    if depth < 2:
        raise ValueError("depth must be at least 2 (first and last hidden layer)")
    ratio = np.full((len(sb), len(sw)), np.nan)
    total, done = len(sb) * len(sw), 0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # these nets are small: one thread is over 10 times faster than several
    try:
        for i, b in enumerate(sb):
            for j, w in enumerate(sw):
                if cancelled is not None and cancelled():
                    return None
                vals = [measure_cell(activation, width, depth, float(w), float(b), s, inputs)
                        for s in range(int(seeds))]
                vals = [v for v in vals if v == v]
                ratio[i, j] = float(np.median(vals)) if vals else np.nan
                done += 1
                if progress is not None:
                    progress(done, total)
    finally:
        torch.set_num_threads(threads)
    chi = meanfield.chi1_grid(sw, sb, activation)
    return {
        "activation": activation, "width": int(width), "depth": int(depth), "seeds": int(seeds),
        "sigma_w2": [float(v) for v in sw], "sigma_b2": [float(v) for v in sb],
        "log10_ratio": [[None if v != v else float(v) for v in row] for row in ratio],
        "chi1": [[float(v) for v in row] for row in chi],
        "critical": meanfield.critical_line(sb, activation),
        # the same line on a finer sigma_b^2 grid, for drawing
        "critical_line": meanfield.critical_line(np.linspace(sb.min(), sb.max(), 25) if len(sb) > 1 else sb,
                                                 activation),
        "xavier": [0.0, 1.0], "he": [0.0, 2.0],
        "inputs": inputs, "measured": MEASURED[inputs],
        # the length map's fixed point of every cell (None where it is infinite)
        "q_star": [[_finite(meanfield.fixed_point(float(w), float(b), activation)) for w in sw] for b in sb],
    }


def _finite(v: float):
    return float(v) if math.isfinite(v) else None


def measured_boundary(result: dict) -> list:
    """[[sigma_b2, sigma_w2], ...] where the measured log10 ratio crosses 0 (linear interpolation)."""
    out = []
    sw = np.asarray(result["sigma_w2"])
    for b, row in zip(result["sigma_b2"], result["log10_ratio"]):
        r = np.array([np.nan if v is None else v for v in row], float)
        for j in range(len(sw) - 1):
            if r[j] < 0 <= r[j + 1]:
                t = -r[j] / (r[j + 1] - r[j])
                out.append([float(b), float(sw[j] + t * (sw[j + 1] - sw[j]))])
                break
    return out
