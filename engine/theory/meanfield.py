"""Mean-field signal propagation at initialisation (Poole et al. 2016; Schoenholz et al. 2017).

For a wide net with weights N(0, sigma_w^2 / fan_in) and biases N(0, sigma_b^2):

    length map   q_l = sigma_w^2 E[f(sqrt(q_(l-1)) u)^2] + sigma_b^2,   u ~ N(0, 1)
    slope        chi1 = sigma_w^2 E[f'(sqrt(q*) u)^2]  at the fixed point q* of the length map

chi1 is the factor by which E||delta||^2 changes per layer: below 1 the gradient
vanishes (ordered phase), above 1 it explodes (chaotic phase), chi1 = 1 is the
edge of chaos. Expectations use Gauss-Hermite quadrature with an even number of
nodes (none at u = 0, where ReLU's derivative jumps: E[relu'(u)^2] is then exactly 1/2).
"""
from __future__ import annotations

import math

import numpy as np

from ..activations import ACTIVATIONS

NODES = 200
Q_MAX = 1e8   # a length beyond this has no finite fixed point (it grows without bound)

_x, _wq = np.polynomial.hermite.hermgauss(NODES)
U = math.sqrt(2.0) * _x            # nodes for u ~ N(0, 1)
WEIGHTS = _wq / math.sqrt(math.pi)  # sum to 1


def gauss(g, q: float = 1.0) -> float:
    """E[g(sqrt(q) u)] for u ~ N(0, 1)."""
    return float(np.dot(WEIGHTS, g(math.sqrt(max(q, 0.0)) * U)))


def _act(activation: str, params: dict | None = None):
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}")
    return ACTIVATIONS[activation](params or {})


def length_map(q: float, sigma_w2: float, sigma_b2: float, activation: str = "tanh", params=None) -> float:
    f = _act(activation, params).f
    return sigma_w2 * gauss(lambda z: f(z) ** 2, q) + sigma_b2


def fixed_point(sigma_w2: float, sigma_b2: float, activation: str = "tanh", params=None) -> float:
    """q*: the stable fixed point of the length map reached from q > 0 (inf where q grows without bound).

    Solved by bisection on h(q) = map(q) - q, which is >= 0 at q = 0.
    """
    f = _act(activation, params).f
    h = lambda q: sigma_w2 * gauss(lambda z: f(z) ** 2, q) + sigma_b2 - q  # noqa: E731
    lo = 1e-14
    if h(lo) <= 0:        # the map pulls every length to 0 (or it is flat there): q* = 0
        return 0.0
    hi = 1.0
    while h(hi) > 0:
        hi *= 2.0
        if hi > Q_MAX:
            return math.inf
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if h(mid) > 0:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * hi:
            break
    return 0.5 * (lo + hi)


def chi1(sigma_w2: float, sigma_b2: float, activation: str = "tanh", params=None) -> float:
    """sigma_w^2 E[f'(sqrt(q*) u)^2]; where q* is infinite, its limit at a very large length."""
    df = _act(activation, params).df
    q = fixed_point(sigma_w2, sigma_b2, activation, params)
    # at q* = 0 take the limit q -> 0+ (ReLU's f'(0) is a jump, its limit E[f'^2] = 1/2)
    return sigma_w2 * gauss(lambda z: np.asarray(df(z), float) ** 2, min(max(q, 1e-30), Q_MAX))


def critical_sigma_w2(sigma_b2: float, activation: str = "tanh", params=None,
                      lo: float = 0.05, hi: float = 20.0) -> float | None:
    """sigma_w^2 with chi1 = 1 at this sigma_b^2, or None where there is none.

    A crossing counts only where the length map has a finite fixed point there
    (ReLU with sigma_b^2 > 0 reaches chi1 = 1 only as q* runs off to infinity).
    """
    c = lambda s: chi1(s, sigma_b2, activation, params) - 1.0  # noqa: E731
    grid = np.geomspace(lo, hi, 60)
    vals = [c(s) for s in grid]
    for i in range(len(grid) - 1):
        if vals[i] < 0 <= vals[i + 1]:
            a, b = grid[i], grid[i + 1]
            for _ in range(80):
                m = 0.5 * (a + b)
                if c(m) < 0:
                    a = m
                else:
                    b = m
            # q* just below the crossing must stay put as we close in (ReLU with a bias: q* ~ 1/gap)
            near = fixed_point(a * (1 - 1e-8), sigma_b2, activation, params)
            far = fixed_point(a * (1 - 1e-4), sigma_b2, activation, params)
            if near < Q_MAX / 10 and near <= 10 * far + 1e-6:
                return 0.5 * (a + b)
            return None
    return None


def critical_line(sigma_b2s, activation: str = "tanh", params=None) -> list[list[float]]:
    """[[sigma_b2, sigma_w2], ...] where chi1 = 1 (rows with no critical point left out)."""
    out = []
    for sb in sigma_b2s:
        s = critical_sigma_w2(float(sb), activation, params)
        if s is not None:
            out.append([float(sb), float(s)])
    return out


def chi1_grid(sigma_w2s, sigma_b2s, activation: str = "tanh", params=None) -> np.ndarray:
    """chi1 [M][N]: rows sigma_b2, columns sigma_w2."""
    return np.array([[chi1(float(sw), float(sb), activation, params) for sw in sigma_w2s]
                     for sb in sigma_b2s])


def depth_scale(c: float) -> float:
    """-1 / ln chi1: the depth over which E||delta||^2 changes by a factor e (inf at chi1 = 1)."""
    return math.inf if c == 1.0 else -1.0 / math.log(c)
