"""Compare two runs: align them on the steps both recorded and take ratios.

A remedy "helps" a layer when run B's gradient statistic there is larger
(vanishing) or smaller (exploding) than run A's. ``ratio_matrix`` gives
log10(B / A) per common step and layer, for layers that both runs have (by
name, or by position when the stacks differ, e.g. after an activation swap).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Alignment:
    steps: np.ndarray        # common steps
    rows_a: np.ndarray       # row index of each common step in A
    rows_b: np.ndarray
    layers: list             # (name in A, name in B, index in A, index in B)


def align(a, b) -> Alignment:
    """Common steps and matching layers of two Histories."""
    steps, ia, ib = np.intersect1d(a.steps, b.steps, assume_unique=True, return_indices=True)
    names_b = list(b.layer_names)
    layers = []
    if set(a.layer_names) & set(names_b):
        for i, n in enumerate(a.layer_names):
            if n in names_b:
                layers.append((n, n, i, names_b.index(n)))
    else:  # different names (e.g. a remedy inserted layers): pair the linear layers in order
        lin_a = [i for i, n in enumerate(a.layer_names) if "linear" in n.lower()]
        lin_b = [i for i, n in enumerate(names_b) if "linear" in n.lower()]
        for i, j in zip(lin_a, lin_b):
            layers.append((a.layer_names[i], names_b[j], i, j))
    if not layers:  # fall back to position
        for i in range(min(len(a.layer_names), len(names_b))):
            layers.append((a.layer_names[i], names_b[i], i, i))
    return Alignment(steps, ia, ib, layers)


def ratio_matrix(a, b, key: str = "bias_grad_norm", al: Alignment | None = None) -> np.ndarray:
    """log10(B / A) of a per-layer statistic: [common steps, matched layers] (NaN where undefined)."""
    al = al or align(a, b)
    va = a.series(key)[al.rows_a][:, [l[2] for l in al.layers]]
    vb = b.series(key)[al.rows_b][:, [l[3] for l in al.layers]]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.log10(vb / va)
    r[~np.isfinite(r)] = np.nan
    return r


def layer_table(a, b, key: str = "bias_grad_norm", window: int = 20) -> list[dict]:
    """Per matched layer: A and B's median statistic over the last ``window`` common steps and B/A."""
    al = align(a, b)
    rows = []
    if len(al.steps) == 0:
        return rows
    sel_a, sel_b = al.rows_a[-window:], al.rows_b[-window:]
    for na, nb, i, j in al.layers:
        va = np.nanmedian(a.series(key)[sel_a, i]) if len(sel_a) else np.nan
        vb = np.nanmedian(b.series(key)[sel_b, j]) if len(sel_b) else np.nan
        rows.append({"layer_a": na, "layer_b": nb, "a": float(va), "b": float(vb),
                     "ratio": float(vb / va) if va and np.isfinite(va) and va > 0 else float("nan")})
    return rows


def first_last_ratio(history, key: str = "bias_grad_norm", row: int = -1) -> float:
    """The statistic of the first layer over the last hidden one (the output layer excluded)."""
    v = history.series(key)[row]
    names = history.layer_names
    hidden = [i for i, n in enumerate(names) if not n.startswith("out") and np.isfinite(v[i]) and v[i] > 0]
    if len(hidden) < 2:
        return float("nan")
    return float(v[hidden[0]] / v[hidden[-1]])
