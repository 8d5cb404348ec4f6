"""The initialisation map (edge of chaos), measured on real random nets. Imports torch.

Each cell (sigma_w^2, sigma_b^2) is a stack of ``depth`` hidden layers of ``width``
units, weights N(0, sigma_w^2 / fan_in) (kaiming_normal with gain sqrt(sigma_w^2)),
biases N(0, sigma_b^2), 2-D N(0, 1) inputs and cross-entropy over 3 random classes.
Its value is log10(||dL/dz_1|| / ||dL/dz_depth||) at initialisation, z_l the
pre-activation of hidden layer l, median over seeds: below 0 the gradient
vanishes towards the input, above 0 it explodes. ``spec_for_cell`` is that very
stack as a spec, so the editor can load a cell.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..build import build_stack
from . import meanfield
from .cells import BATCH, N_CLASSES, N_IN, layers_for_cell, parse_range, spec_for_cell  # noqa: F401


def measure_cell(activation: str, width: int, depth: int, sigma_w2: float, sigma_b2: float,
                 seed: int) -> float:
    """log10(||dL/dz_1|| / ||dL/dz_depth||) of one random net at initialisation (nan if undefined)."""
    model = build_stack(layers_for_cell(activation, width, depth, sigma_w2, sigma_b2), (N_IN,), N_CLASSES, seed)
    g = torch.Generator().manual_seed(10_000 + seed)
    x = torch.randn(BATCH, N_IN, generator=g)
    y = torch.randint(0, N_CLASSES, (BATCH,), generator=g)
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
            seeds: int = 3, progress=None, cancelled=None) -> dict | None:
    """Contract 4's `theory phase` object; None if ``cancelled()`` turned true on the way.

    ``progress(done, total)`` is called after each cell.
    """
    sw = np.asarray(sigma_w2 if sigma_w2 is not None else np.linspace(0.5, 4.0, 15), float)
    sb = np.asarray(sigma_b2 if sigma_b2 is not None else np.linspace(0.0, 1.0, 6), float)
    if depth < 2:
        raise ValueError("depth must be at least 2 (first and last hidden layer)")
    ratio = np.full((len(sb), len(sw)), np.nan)
    total, done = len(sb) * len(sw), 0
    for i, b in enumerate(sb):
        for j, w in enumerate(sw):
            if cancelled is not None and cancelled():
                return None
            vals = [measure_cell(activation, width, depth, float(w), float(b), s) for s in range(int(seeds))]
            vals = [v for v in vals if v == v]
            ratio[i, j] = float(np.median(vals)) if vals else np.nan
            done += 1
            if progress is not None:
                progress(done, total)
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
    }


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
