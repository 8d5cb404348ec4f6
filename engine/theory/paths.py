"""Products of L random local derivatives: why a mean of exactly 1 is not enough.

A path through a deep net multiplies one local derivative per layer,
P_L = X_1 X_2 ... X_L with X_l drawn independently. E[P_L] = E[X]^L, so with
E[X] = 1 the mean stays 1; but log|P_L| is a sum of L terms, so its spread grows
like sqrt(L), and its centre is L E[log|X|] < L log E[X] = 0 (Jensen): the median
product falls below 1 while a few huge products keep the mean up.

Distributions, each with mean ``mean`` and standard deviation ``spread``:
  lognormal  X = mean * exp(s g - s^2 / 2), s^2 = ln(1 + (spread/mean)^2), g ~ N(0, 1)
  uniform    X ~ U(mean - sqrt(3) spread, mean + sqrt(3) spread)
  normal     X ~ N(mean, spread^2)
"""
from __future__ import annotations

import math

import numpy as np

DISTRIBUTIONS = ("lognormal", "uniform", "normal")
QUANTILES = (5, 25, 50, 75, 95)


def draw(distribution: str, mean: float, spread: float, shape, rng: np.random.Generator) -> np.ndarray:
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {distribution!r} (one of {', '.join(DISTRIBUTIONS)})")
    if spread < 0:
        raise ValueError("spread must be >= 0")
    if distribution == "lognormal":
        if mean <= 0:
            raise ValueError("a log-normal distribution needs mean > 0")
        s = math.sqrt(math.log1p((spread / mean) ** 2))
        return mean * np.exp(s * rng.standard_normal(shape) - 0.5 * s * s)
    if distribution == "uniform":
        h = math.sqrt(3.0) * spread
        return rng.uniform(mean - h, mean + h, shape)
    return rng.normal(mean, spread, shape)


def sample(distribution: str, mean: float, spread: float, depths, draws: int, seed: int = 0):
    """(log10 |P_L| [draws, len(depths)], P_L [draws, len(depths)]) for each L in depths."""
    depths = [int(d) for d in depths]
    if not depths or min(depths) < 1:
        raise ValueError("depths must be positive integers")
    if draws < 1:
        raise ValueError("draws must be a positive integer")
    rng = np.random.default_rng(seed)
    x = draw(distribution, mean, spread, (int(draws), max(depths)), rng)
    with np.errstate(divide="ignore"):
        logs = np.cumsum(np.log10(np.abs(x)), axis=1)
    prods = np.cumprod(x, axis=1)
    idx = [d - 1 for d in depths]
    return logs[:, idx], prods[:, idx]


def compute(distribution: str = "lognormal", mean: float = 1.0, spread: float = 0.5,
            depths=(1, 5, 10, 20, 50), draws: int = 10000, seed: int = 0) -> dict:
    """Contract 4's `theory paths` object (lists aligned with ``depths``)."""
    logs, prods = sample(distribution, mean, spread, depths, draws, seed)
    q = np.percentile(logs, QUANTILES, axis=0).T      # [depths, 5]
    with np.errstate(over="ignore", invalid="ignore"):
        mean_product = prods.mean(axis=0)
    return {
        "distribution": distribution, "mean": float(mean), "spread": float(spread),
        "draws": int(draws), "seed": int(seed),
        "depths": [int(d) for d in depths],
        "quantile_levels": list(QUANTILES),
        "log10_abs_quantiles": [[float(v) for v in row] for row in q],
        "mean_product": [float(v) for v in mean_product],
        "expected_product": [float(mean) ** int(d) for d in depths],
        "fraction_below_1": [float(v) for v in (logs < 0).mean(axis=0)],
    }
