"""The seeds' chain of one-neuron layers, with every derivative in closed form.

    z_l = w_l a_(l-1) + b_l,   a_l = f(z_l),   a_0 = x,   C = (a_L - y)^2 / 2

Backward (the chain rule, one factor per layer):

    dC/da_L = a_L - y
    dC/db_l = f'(z_l) * prod_(k=l+1..L) w_k f'(z_k) * dC/da_L
    dC/dw_l = dC/db_l * a_(l-1)

so dC/db_1 = f'(z_1) w_2 f'(z_2) ... w_L f'(z_L) dC/da_L: with sigmoid (f' <= 1/4)
and |w| <= 1 every factor is at most 1/4 and |dC/db_1| <= 0.25^L |dC/da_L|.
``factors[l]`` is w_l f'(z_l) (f'(z_1) for l = 1), ``running_product[l]`` is
da_L/db_l = dC/db_l / dC/da_L: the product read from the output back to layer l.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..activations import ACTIVATIONS

MAX_DEPTH = 50


@dataclass
class Chain:
    activation: str
    x: float
    y: float
    z: np.ndarray
    a: np.ndarray
    f_prime: np.ndarray
    w: np.ndarray
    b: np.ndarray
    dC_daL: float
    dC_db: np.ndarray
    dC_dw: np.ndarray
    factors: np.ndarray
    running_product: np.ndarray

    @property
    def cost(self) -> float:
        return 0.5 * float(self.a[-1] - self.y) ** 2

    def to_json(self) -> dict:
        out = {"activation": self.activation, "input": self.x, "target": self.y, "cost": self.cost,
               "dC_daL": float(self.dC_daL)}
        for k in ("z", "a", "f_prime", "w", "b", "dC_db", "dC_dw", "factors", "running_product"):
            out[k] = [float(v) for v in getattr(self, k)]
        return out

    def equation(self, digits: int = 3) -> str:
        """dC/db_1 = f'(z_1) w_2 f'(z_2) ... dC/da_L with the numbers filled in."""
        g = lambda v: f"{v:.{digits}g}"  # noqa: E731
        parts = [f"{g(self.f_prime[0])}"]
        for l in range(1, len(self.w)):
            parts.append(f"{g(self.w[l])}·{g(self.f_prime[l])}")
        return f"∂C/∂b₁ = {' · '.join(parts)} · {g(self.dC_daL)} = {g(self.dC_db[0])}"


def _broadcast(v, depth: int, name: str) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(v, dtype=np.float64))
    if arr.size == 1:
        return np.full(depth, float(arr[0]))
    if arr.size != depth:
        raise ValueError(f"{name}: {arr.size} values for a chain of {depth} layers")
    return arr.copy()


def compute(activation: str = "sigmoid", depth: int = 4, weights=1.0, biases=0.0,
            x: float = 1.0, y: float = 0.0, activation_params: dict | None = None) -> Chain:
    """Forward and backward pass of the chain, in float64."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r} (one of {', '.join(ACTIVATIONS)})")
    if not 1 <= int(depth) <= MAX_DEPTH:
        raise ValueError(f"depth must be 1 to {MAX_DEPTH}, got {depth}")
    depth = int(depth)
    act = ACTIVATIONS[activation](activation_params or {})
    w, b = _broadcast(weights, depth, "weights"), _broadcast(biases, depth, "biases")
    z, a = np.empty(depth), np.empty(depth)
    prev = float(x)
    for l in range(depth):
        z[l] = w[l] * prev + b[l]
        a[l] = float(act.f(np.asarray(z[l])))
        prev = a[l]
    fp = np.asarray(act.df(z), dtype=np.float64).reshape(depth)
    dC_daL = float(a[-1] - y)
    # running[l] = da_L/db_l = f'(z_l) prod_(k>l) w_k f'(z_k), built from the output back
    running = np.empty(depth)
    acc = 1.0
    for l in range(depth - 1, -1, -1):
        running[l] = fp[l] * acc
        acc = running[l] * w[l]
    dC_db = running * dC_daL
    a_prev = np.concatenate([[float(x)], a[:-1]])
    factors = w * fp
    factors[0] = fp[0]
    return Chain(activation, float(x), float(y), z, a, fp, w, b, dC_daL, dC_db, dC_db * a_prev,
                 factors, running)


LESSONS = {
    "sigmoid_small_weights": {
        "title": "Sigmoid, |w| ≤ 1: the product is below 0.25^L",
        "activation": "sigmoid", "depth": 10, "weights": 1.0, "biases": 0.0, "x": 1.0, "y": 0.0,
        "text": ("Every factor w·σ'(z) is at most 0.25 when |w| ≤ 1, because the sigmoid's slope never "
                 "exceeds a quarter. Ten layers multiply ten such factors: the first layer's gradient is "
                 "below 0.25^10, about one millionth of the output's. That is the vanishing gradient."),
    },
    "exploding": {
        "title": "|w f'(z)| > 1: the product explodes",
        "activation": "sigmoid", "depth": 10, "weights": 8.0, "biases": -4.0, "x": 0.5, "y": 0.0,
        "text": ("Make the weights large and keep z near the sigmoid's centre with a bias of -w/2: each "
                 "factor w·σ'(z) is exactly 8 × 0.25 = 2. Between the last layer and the first lie nine such "
                 "factors: the first layer's gradient is 2^9 = 512 times the last layer's. Add layers and it "
                 "doubles with each one. That is the exploding gradient."),
    },
}
