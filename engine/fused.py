"""Fused statistics kernels: one read of a large CPU tensor for all the sums a probe takes of it.

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

FUSED_MIN = 1 << 12   # entries: below this the torch path's few calls cost about the same

# what the reductions may reorder: sums, no assumption about NaN or inf (those must propagate)
_FAST = {"reassoc", "contract"}
# Every sum in float64, each row of the innermost loop first (that loop vectorises; a loop over
# sub-blocks of a row is left scalar by LLVM, 5-8x slower). Not float32: on a vanishing layer a
# float32 square or a - a^2 falls into the denormal range (|x| < 1.2e-38), where each operation
# takes ~100x longer (a sigmoid layer whose a is ~1e-25: 420 us against 40 us for 256 x 256;
# torch's own dot of a 1e-21 gradient: 184 us against 6 us), and a float32 sum can overflow.


@functools.lru_cache(maxsize=1)
def _kernels():
    """The compiled kernels (compiled on first use, cached on disk by numba), or None."""
    try:
        import numba
    except Exception:   # not installed, or a broken install: the torch path
        return None
    jit = functools.partial(numba.njit, cache=True, fastmath=_FAST, nogil=True)

    @jit
    def _count(flags):
        n = 0
        for f in flags:
            n += f
        return n

    @jit
    def smooth_moments(z, a, shift, root, tanh, alive):
        """sigmoid / tanh over [outer, units, inner]: (sum z - shift, sum (z - shift)^2, sum f',
        count |z| > root); alive[j] = 1 where f'(z) != 0 for some sample (NaN counts as alive).
        f' = a - a^2, or 1 - a^2, in float64 (0 exactly where the float32 a is 0 or 1)."""
        s1, s2, sd, sat = 0.0, 0.0, 0.0, 0.0
        for o in range(z.shape[0]):
            for j in range(z.shape[1]):
                live = False
                p1, p2, pd, ps = 0.0, 0.0, 0.0, 0.0
                for k in range(z.shape[2]):
                    av = np.float64(a[o, j, k])
                    d = (1.0 - av * av) if tanh else (av - av * av)
                    c = np.float64(z[o, j, k]) - shift
                    p1 += c
                    p2 += c * c
                    pd += d
                    ps += 1.0 if abs(z[o, j, k]) > root else 0.0
                    live |= d != 0
                s1 += p1
                s2 += p2
                sd += pd
                sat += ps
                if live:
                    alive[j] = 1
        return s1, s2, sd, sat, _count(alive)

    @jit
    def smooth_moments_rows(z, a, shift, root, tanh, alive):
        """``smooth_moments`` of [outer, units] ((batch, units) layers): the unit loop innermost."""
        s1, s2, sd, sat = 0.0, 0.0, 0.0, 0.0
        for o in range(z.shape[0]):
            p1, p2, pd, ps = 0.0, 0.0, 0.0, 0.0
            for j in range(z.shape[1]):
                av = np.float64(a[o, j])
                d = (1.0 - av * av) if tanh else (av - av * av)
                c = np.float64(z[o, j]) - shift
                p1 += c
                p2 += c * c
                pd += d
                ps += 1.0 if abs(z[o, j]) > root else 0.0
                alive[j] |= np.uint8(d != 0)
            s1 += p1
            s2 += p2
            sd += pd
            sat += ps
        return s1, s2, sd, sat, _count(alive)

    @jit
    def relu_moments(z, shift, alive):
        """ReLU-like over [outer, units, inner]: (sum z - shift, sum (z - shift)^2, count z > 0);
        alive[j] = 1 where z > 0 (or NaN) for some sample."""
        s1, s2, pos = 0.0, 0.0, 0.0
        for o in range(z.shape[0]):
            for j in range(z.shape[1]):
                live = False
                p1, p2, pp = 0.0, 0.0, 0.0
                for k in range(z.shape[2]):
                    zv = z[o, j, k]
                    c = np.float64(zv) - shift
                    p1 += c
                    p2 += c * c
                    pp += 1.0 if zv > 0 else 0.0
                    live |= not (zv <= 0)
                s1 += p1
                s2 += p2
                pos += pp
                if live:
                    alive[j] = 1
        return s1, s2, pos, _count(alive)

    @jit
    def relu_moments_rows(z, shift, alive):
        """``relu_moments`` of [outer, units]."""
        s1, s2, pos = 0.0, 0.0, 0.0
        for o in range(z.shape[0]):
            p1, p2, pp = 0.0, 0.0, 0.0
            for j in range(z.shape[1]):
                zv = z[o, j]
                c = np.float64(zv) - shift
                p1 += c
                p2 += c * c
                pp += 1.0 if zv > 0 else 0.0
                alive[j] |= np.uint8(not (zv <= 0))
            s1 += p1
            s2 += p2
            pos += pp
        return s1, s2, pos, _count(alive)

    @jit
    def sum_sq(x):
        """sum x^2 of a [rows, columns] array, in float64."""
        s = 0.0
        for i in range(x.shape[0]):
            p = 0.0
            for j in range(x.shape[1]):
                v = np.float64(x[i, j])
                p += v * v
            s += p
        return s

    @jit
    def delta_sums(g, per_unit):
        """(sum g^2, per-unit sums of |g| added into per_unit) over [outer, units, inner].

        In float64: a vanishing gradient's entries (1e-20 and below) square to float32
        denormals, each one ~100x slower to compute than a normal number (and lost)."""
        s2 = 0.0
        for o in range(g.shape[0]):
            for j in range(g.shape[1]):
                p2, pu = 0.0, 0.0
                for k in range(g.shape[2]):
                    v = np.float64(g[o, j, k])
                    p2 += v * v
                    pu += abs(v)
                s2 += p2
                per_unit[j] += pu
        return s2

    @jit
    def delta_sums_rows(g, per_unit):
        """``delta_sums`` of [outer, units]."""
        s2 = 0.0
        for o in range(g.shape[0]):
            p2 = 0.0
            for j in range(g.shape[1]):
                v = np.float64(g[o, j])
                p2 += v * v
                per_unit[j] += abs(v)
            s2 += p2
        return s2

    @jit
    def diff_sq(b, a):
        """sum (b - a)^2 of two [rows, columns] arrays, in float64: the difference of two float32
        numbers is exact there, and a small update's square (1e-30) no float32 denormal."""
        s = 0.0
        for i in range(b.shape[0]):
            p = 0.0
            for j in range(b.shape[1]):
                d = np.float64(b[i, j]) - np.float64(a[i, j])
                p += d * d
            s += p
        return s

    @jit
    def diff_copy(b, a):
        """(sum (a - b)^2, sum a^2) of two [rows, columns] arrays in float64, and b := a: the
        change of a weight across a step, its norm after it, and the copy for the next step."""
        s, q = 0.0, 0.0
        for i in range(b.shape[0]):
            p, r = 0.0, 0.0
            for j in range(b.shape[1]):
                av = a[i, j]
                d = np.float64(av) - np.float64(b[i, j])
                p += d * d
                r += np.float64(av) * np.float64(av)
                b[i, j] = av
            s += p
            q += r
        return s, q

    return {"diff_copy": diff_copy, "smooth": smooth_moments, "smooth_rows": smooth_moments_rows, "relu": relu_moments,
            "relu_rows": relu_moments_rows, "delta": delta_sums, "delta_rows": delta_sums_rows,
            "diff_sq": diff_sq, "sum_sq": sum_sq}


@functools.lru_cache(maxsize=1)
def _dtypes():
    import torch
    return (torch.float32, torch.float64)


def available() -> bool:
    return _kernels() is not None


def fits(*ts) -> bool:
    """Tensors the kernels take: large, on the CPU, contiguous, float32 or float64; numba there."""
    return all(t.numel() >= FUSED_MIN and t.device.type == "cpu" and t.dtype in _dtypes()
               and t.is_contiguous() for t in ts) and available()


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
    (NaN or inf in z, or z^2 beyond float32: the torch path then says what is finite).

    ``name``: sigmoid or tanh (saturated: |z| > root), relu (a unit is dead where z <= 0 on
    every sample), leaky_relu (none is dead) or identity (counts 0)."""
    k = _kernels()
    z3 = _rows(z.detach().numpy(), unit_axis)
    units = z3.shape[1]
    alive = np.zeros(units, dtype=np.uint8)
    two = z3.ndim == 2
    if name in ("sigmoid", "tanh"):
        a3 = _rows(a.detach().numpy(), unit_axis)
        s1, s2, sd, sat, n_alive = k["smooth_rows" if two else "smooth"](
            z3, a3, shift, root, name == "tanh", alive)
        out = (s1, s2, sd, sat, float(units - n_alive))
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


def diff_square(before, after) -> float | None:
    """||before - after||^2 of two same-shape contiguous tensors, one read of each and nothing
    written; None where it is not finite (the torch path then)."""
    b = _matrix(before.detach().numpy())
    a = after.detach().numpy().reshape(b.shape)
    s = _kernels()["diff_sq"](b, a)
    return s if math.isfinite(s) else None
