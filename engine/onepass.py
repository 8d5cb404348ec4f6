"""One-pass statistics kernels: one read of a large CPU tensor for all the sums a probe takes of it.

On a large layer every pass over a tensor costs the same 20-40 us (256 x 256 float32),
however cheap its arithmetic: the torch path of ``engine/probes.py`` makes 7 passes over
an activation layer's z and a (sum z, z.z, |z|, |z| > z*, its sum, f', its sum), 2 over
a delta (g.g, |g| and its per-unit sum) and 2 over a weight's change (W - W', its dot).
The kernels here are loops compiled by numba that read each entry once and keep every
sum in float64 registers: no temporary tensor, no float32 overflow, the same counts.

The tensors are seen as [outer, units, inner]: (batch, units) is [batch, units, 1],
(batch, time, units) [batch * time, units, 1], an image batch (batch, channels, h, w)
[batch, channels, h * w]: the unit axis of ``probes._unit_axis``.

Numba is optional: ``available()`` is False where it is not installed (or fails to
compile), and the probes keep their torch path; CUDA tensors, non-contiguous ones and
dtypes other than float32 / float64 always take the torch path.
"""
from __future__ import annotations

import functools
import math

import numpy as np

MIN_ENTRIES = 1 << 12   # entries: below this the torch path's few calls cost about the same

# Every sum in float64, each row of the innermost loop first (that loop vectorises; a loop over
# sub-blocks of a row is left scalar by LLVM, 5-8x slower). Not float32: on a vanishing layer a
# float32 square or a - a^2 falls into the denormal range (|x| < 1.2e-38), where each operation
# takes ~100x longer (a sigmoid layer whose a is ~1e-25: 420 us against 40 us for 256 x 256;
# torch's own dot of a 1e-21 gradient: 184 us against 6 us), and a float32 sum can overflow.


@functools.lru_cache(maxsize=1)
def _kernels():
    """The compiled kernels (engine/onepass_loops.py: compiled on first use, cached on disk by
    numba), or None where numba is missing or broken."""
    try:
        from . import onepass_loops as k
    except Exception:   # not installed, or a broken install: the torch path
        return None
    return {"diff_copy": k.diff_copy, "smooth": k.smooth_moments, "smooth_rows": k.smooth_moments_rows,
            "smooth_alive": k.smooth_alive,
            "relu": k.relu_moments, "relu_rows": k.relu_moments_rows, "delta": k.delta_sums,
            "delta_rows": k.delta_sums_rows, "diff_sq": k.diff_sq, "sum_sq": k.sum_sq,
            "segment_sq": k.segment_sq, "segment_diff_sq": k.segment_diff_sq, "sgd": k.sgd_sums,
            "segment_sgd": k.segment_sgd}


@functools.lru_cache(maxsize=1)
def _dtypes():
    import torch
    return (torch.float32, torch.float64)


def warm() -> None:
    """Load (or compile) the kernels for float32 tensors now, not on a run's first large step:
    numba takes ~0.5-1 s to load its cached machine code and ~5 s to compile it the first time.
    (The worker calls this once it is ready, while the window waits for the user.)"""
    k = _kernels()
    if k is None:
        return
    z = np.zeros((2, 2), dtype=np.float32)
    z3, alive = z.reshape(2, 2, 1), np.zeros(2, dtype=np.uint8)
    k["smooth_rows"](z, z, 0.0, np.float32(1), False)
    k["smooth"](z3, z3, 0.0, np.float32(1), False)
    k["smooth_alive"](z3, False, alive)
    k["relu_rows"](z, 0.0, alive)
    k["relu"](z3, 0.0, alive)
    sums = np.zeros(2)
    k["delta_rows"](z, sums)
    k["delta"](z3, sums)
    k["diff_sq"](z, z)
    k["sum_sq"](z)
    k["diff_copy"](z.copy(), z)
    starts, out = np.zeros(1, dtype=np.intp), np.zeros(1)
    k["segment_sq"](z.reshape(-1), starts, out)
    k["segment_diff_sq"](z.reshape(-1), z.reshape(-1), starts, out)
    flat, zero = z.reshape(-1).copy(), np.float32(0)
    k["sgd"](flat, flat, zero, zero)
    k["segment_sgd"](flat, flat, starts, zero, zero, out, out.copy(), out.copy())


def available() -> bool:
    return _kernels() is not None


def fits(*ts) -> bool:
    """Tensors the kernels take: large, on the CPU, contiguous, float32 or float64; numba there."""
    return all(t.is_cpu and t.numel() >= MIN_ENTRIES and t.dtype in _dtypes() and t.is_contiguous()
               for t in ts) and available()


def _rows(x: np.ndarray, unit_axis: int) -> np.ndarray:
    """One layer's array as [outer, units, inner] (no copy: x is contiguous), or [outer, units]
    where inner is 1 (the kernels' ``_rows`` form, whose unit loop is innermost)."""
    shape = x.shape
    if x.ndim <= 1:   # one unit: the whole tensor
        return x.reshape(1, 1, -1)
    units = shape[unit_axis]
    outer = math.prod(shape[:unit_axis])
    inner = x.size // (outer * units) if outer * units else 0
    return x.reshape(outer, units) if inner == 1 else x.reshape(outer, units, inner)


def activation_sums(name: str, z, a, shift: float, root: float, unit_axis: int) -> tuple:
    """One layer's five raw moments as ``probes.activation_moments`` defines them, in one pass:
    (sum (z - shift), sum (z - shift)^2, sum f' (ReLU-like: count z > 0), count saturated
    (ReLU-like: count z > 0), count dead units) as floats; None where a sum is not finite
    (NaN or inf in z or a: the torch path then says which statistics still are).

    ``name``: sigmoid or tanh (saturated: |z| > root), relu (a unit is dead where z <= 0 on
    every sample), leaky_relu (none is dead) or identity (counts 0)."""
    k = _kernels()
    z3 = _rows(z.detach().numpy(), unit_axis)
    units = z3.shape[1]
    alive = np.zeros(units, dtype=np.uint8)
    two = z3.ndim == 2
    if name in ("sigmoid", "tanh"):
        a3 = _rows(a.detach().numpy(), unit_axis)
        tanh = name == "tanh"
        s1, s2, sd, sat = k["smooth_rows" if two else "smooth"](z3, a3, shift, z3.dtype.type(root), tanh)
        dead = 0.0
        # f' = 0 (a is 0 or 1) is saturated: a dead unit has every one of its samples saturated, so
        # none is dead while fewer entries than one unit's samples are (the per-unit pass is skipped)
        if sat >= z3.size // max(units, 1):
            dead = float(units - k["smooth_alive"](a3 if not two else a3.reshape(*a3.shape, 1), tanh, alive))
        out = (s1, s2, sd, float(sat), dead)
    else:
        s1, s2, pos, n_alive = k["relu_rows" if two else "relu"](z3, shift, alive)
        if name == "identity":
            out = (s1, s2, 0.0, 0.0, 0.0)
        else:
            out = (s1, s2, pos, pos, float(units - n_alive) if name == "relu" else 0.0)
    return out if math.isfinite(s1) and math.isfinite(s2) and math.isfinite(out[2]) else None


def delta_sums(g, unit_axis: int) -> tuple | None:
    """(||g||^2, the per-unit sums of |g| as a float64 array) of one layer's dL/dz, in one pass;
    None where a sum is not finite (the torch path then)."""
    k = _kernels()
    g3 = _rows(g.detach().numpy(), unit_axis)
    sums = np.zeros(g3.shape[1], dtype=np.float64)
    s2 = k["delta_rows" if g3.ndim == 2 else "delta"](g3, sums)
    return (s2, sums) if math.isfinite(s2) else None


def _matrix(x: np.ndarray) -> np.ndarray:
    return x.reshape(-1, x.shape[-1]) if x.ndim > 1 else x.reshape(1, -1)


def sum_square(t) -> float:
    """||t||^2 of a contiguous tensor in float64 (finite for any finite float32 tensor)."""
    return _kernels()["sum_sq"](_matrix(t.detach().numpy()))


def diff_copy(before, after) -> tuple:
    """(||after - before||^2, ||after||^2) in float64 in one read of each, and before := after."""
    b = _matrix(before.detach().numpy())
    return _kernels()["diff_copy"](b, after.detach().numpy().reshape(b.shape))


def segment_squares(x: np.ndarray, starts: np.ndarray, out: np.ndarray) -> np.ndarray | None:
    """out[k] = the sum of x^2 over segment k of a flat float32/float64 array (segment k from
    starts[k] to starts[k + 1], the last to the end), in float64, in one pass; None without numba."""
    k = _kernels()
    if k is None:
        return None
    k["segment_sq"](x, starts, out)
    return out


def segment_diff_squares(b: np.ndarray, a: np.ndarray, starts: np.ndarray, out: np.ndarray) -> np.ndarray | None:
    """out[k] = the sum of (b - a)^2 over segment k (as ``segment_squares``), writing nothing else."""
    k = _kernels()
    if k is None:
        return None
    k["segment_diff_sq"](b, a, starts, out)
    return out


def diff_square(before, after) -> float | None:
    """||before - after||^2 of two same-shape contiguous tensors, one read of each and nothing
    written; None where it is not finite (the torch path then)."""
    b = _matrix(before.detach().numpy())
    a = after.detach().numpy().reshape(b.shape)
    s = _kernels()["diff_sq"](b, a)
    return s if math.isfinite(s) else None


def sgd_step(w, g, lr: float, weight_decay: float) -> tuple:
    """One plain SGD step of a parameter in place, bit for bit as torch.optim.SGD makes it
    (w := w - lr (g + weight_decay w)), with (||g||^2, ||w' - w||^2, ||w||^2 before the step)
    as float64 floats taken in the same pass: one read of w and g and one write of w, where the
    torch path reads g once more for its norm and w three times more for the copy before the
    step and the change (``diff_copy``). w and g: contiguous CPU tensors of one float dtype."""
    wn, gn = w.detach().numpy().reshape(-1), g.detach().numpy().reshape(-1)
    t = wn.dtype.type   # lr and weight_decay in w's precision, as torch's scalar alpha
    out = _kernels()["sgd"](wn, gn, t(-lr), t(weight_decay))
    bump_version(w)
    return out


def segment_sgd_step(w: np.ndarray, g: np.ndarray, starts: np.ndarray, lr: float, weight_decay: float) -> tuple:
    """``sgd_step`` of every segment of a flat buffer (as ``segment_squares``) in one call: float64
    arrays (||g||^2, ||w' - w||^2, ||w||^2 before) per segment."""
    n = len(starts)
    gsq, dsq, wsq = np.empty(n), np.empty(n), np.empty(n)
    t = w.dtype.type
    _kernels()["segment_sgd"](w, g, starts, t(-lr), t(weight_decay), gsq, dsq, wsq)
    return gsq, dsq, wsq


def bump_version(t) -> None:
    """Tell autograd that a tensor was written in place behind its back (as torch's add_ does)."""
    from torch.autograd.graph import increment_version
    increment_version(t)
