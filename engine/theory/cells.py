"""One cell of the initialisation map as a layer stack and a spec (torch-free: the window loads cells).

A cell (sigma_w^2, sigma_b^2) is ``depth`` hidden layers of ``width`` units with
weights N(0, sigma_w^2 / fan_in) (kaiming_normal, gain sqrt(sigma_w^2)) and
biases N(0, sigma_b^2), on 2-D N(0, 1) inputs with 3 random classes.
"""
from __future__ import annotations

import math

import numpy as np

from ..spec import validate
from . import meanfield

BATCH, N_IN, N_CLASSES = 256, 2, 3


def parse_range(text: str) -> np.ndarray:
    """'LO:HI:N' -> N evenly spaced values from LO to HI."""
    try:
        lo, hi, n = text.split(":")
        lo, hi, n = float(lo), float(hi), int(n)
    except ValueError:
        raise ValueError(f"a range is LO:HI:N, got {text!r}") from None
    if n < 1:
        raise ValueError(f"a range needs N >= 1, got {text!r}")
    return np.linspace(lo, hi, n) if n > 1 else np.array([lo])


def layers_for_cell(activation: str, width: int, depth: int, sigma_w2: float, sigma_b2: float) -> list:
    if sigma_w2 <= 0:
        raise ValueError("sigma_w^2 must be > 0")
    bias = {"scheme": "normal", "std": math.sqrt(sigma_b2)} if sigma_b2 > 0 else {"scheme": "zeros"}
    lin = {"type": "linear", "units": int(width), "bias": True,
           "init": {"scheme": "kaiming_normal", "gain": math.sqrt(sigma_w2)}, "bias_init": bias}
    out = []
    for _ in range(int(depth)):
        out += [dict(lin, init=dict(lin["init"]), bias_init=dict(bias)), {"type": activation}]
    return out


def spec_for_cell(activation: str, width: int, depth: int, sigma_w2: float, sigma_b2: float,
                  seed: int = 0) -> dict:
    """The cell's stack as a spec (the data the map measures on: 2-D N(0, 1) inputs, 3 classes)."""
    return validate({
        "format": "backprop-lab/spec", "version": 1,
        "name": f"{activation} {depth} x {width}, sigma_w^2 = {sigma_w2:.3g}, sigma_b^2 = {sigma_b2:.3g}",
        "description": (f"A cell of the initialisation map: weights N(0, {sigma_w2:.3g} / fan_in), "
                        f"biases N(0, {sigma_b2:.3g}). Mean-field chi1 = "
                        f"{meanfield.chi1(sigma_w2, sigma_b2, activation):.3f}."),
        "data": {"kind": "gaussian", "n": 1000, "classes": N_CLASSES, "dim": N_IN, "test_fraction": 0.2,
                 "seed": 0},
        "model": {"layers": layers_for_cell(activation, width, depth, sigma_w2, sigma_b2)},
        "train": {"loss": "cross_entropy", "optimizer": "sgd", "lr": 0.01, "batch_size": BATCH,
                  "steps": 500, "seed": int(seed)},
    })


