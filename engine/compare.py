"""Compare two runs: align them on the steps both recorded and take ratios.

A remedy "helps" a layer when run B's gradient statistic there is larger
(vanishing) or smaller (exploding) than run A's. ``ratio_matrix`` gives
log10(B / A) per common step and layer, for layers that both runs have (all
of them when the layer names agree; the linear layers in order when a remedy
changed the stack, since a stack's layer names are positions; by name for
custom modules; else by position).
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
    names_a, names_b = list(a.layer_names), list(b.layer_names)
    layers = []
    lin_a = [i for i, n in enumerate(names_a) if "linear" in n.lower()]
    lin_b = [i for i, n in enumerate(names_b) if "linear" in n.lower()]
    if names_a == names_b:
        layers = [(n, n, i, i) for i, n in enumerate(names_a)]
    elif lin_a and lin_b:
        # a stack's names are positions ("7 linear" is stack entry 7), so once a remedy inserts
        # layers (e.g. batchnorm) equal names are different layers: pair hidden linear layers
        # in order from the input, and output with output
        def split(idx, names):
            return [i for i in idx if not names[i].startswith("out")], [i for i in idx if names[i].startswith("out")]
        (hid_a, out_a), (hid_b, out_b) = split(lin_a, names_a), split(lin_b, names_b)
        pairs = list(zip(hid_a, hid_b)) + list(zip(out_a, out_b))
        layers = [(names_a[i], names_b[j], i, j) for i, j in pairs]
    elif set(names_a) & set(names_b):  # custom models: module names are identities
        for i, n in enumerate(names_a):
            if n in names_b:
                layers.append((n, n, i, names_b.index(n)))
    if not layers:  # fall back to position
        for i in range(min(len(names_a), len(names_b))):
            layers.append((names_a[i], names_b[i], i, i))
    return Alignment(steps, ia, ib, layers)


def ratio_matrix(a, b, key: str = "bias_grad_norm", al: Alignment | None = None, start: int = 0) -> np.ndarray:
    """log10(B / A) of a per-layer statistic: [common steps, matched layers] (NaN where undefined).

    ``start``: only the common steps from that index on (the rows new since an earlier call)."""
    al = al or align(a, b)
    va = a.series(key)[al.rows_a[start:]][:, [l[2] for l in al.layers]]
    vb = b.series(key)[al.rows_b[start:]][:, [l[3] for l in al.layers]]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.log10(vb / va)
    r[~np.isfinite(r)] = np.nan
    return r


class RatioColumns:
    """The [matched layers, common steps] float32 image of ``ratio_matrix``, grown column by column.

    Two live runs only append steps, so a refresh takes log10(B / A) of the common steps
    new since the last one; anything else (other runs, statistic or layers, or steps that
    are no longer a prefix of the new ones, as after a History thins itself) starts over.
    ``new`` is the index of the first column the last ``update`` computed."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self._key, self._steps, self.new = None, np.zeros(0, np.int64), 0
        self._buf = np.zeros((0, 0), np.float32)

    def update(self, a, b, key: str, al: Alignment) -> np.ndarray:
        ident = (id(a), id(b), key, tuple((l[2], l[3]) for l in al.layers))
        n, T = len(self._steps), len(al.steps)
        if not (ident == self._key and T >= n and np.array_equal(al.steps[:n], self._steps)):
            self._key, n = ident, 0
        rows = len(al.layers)
        if self._buf.shape[0] != rows or self._buf.shape[1] < T:
            cap = max(64, 1 << int(np.ceil(np.log2(max(T, 1)))))   # grow by doubling
            buf = np.full((rows, cap), np.nan, np.float32)
            if n:
                buf[:, :n] = self._buf[:, :n]
            self._buf = buf
        if T > n:
            self._buf[:, n:T] = ratio_matrix(a, b, key, al, start=n).T
        self._steps, self.new = np.array(al.steps), n
        return self._buf[:, :T]


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
