"""The compiled loops of engine/onepass.py (numba, imported only where numba is installed).

Module-level functions, so that numba caches their machine code on disk (a function defined
inside another is compiled again in every process). See engine/onepass.py for what they compute
and why every sum is float64.
"""
from .numba_target import numba
import numpy as np
from numba import types
from numba.extending import intrinsic

# what the reductions may reorder: sums, no assumption about NaN or inf (those must propagate)
jit = numba.njit(cache=True, fastmath={"reassoc", "contract"}, nogil=True)


@jit
def count(flags):
    """How many flags are set."""
    n = 0
    for f in flags:
        n += f
    return n


@jit
def smooth_moments(z, a, shift, root, tanh):
    """sigmoid / tanh over [outer, units, inner]: (sum z - shift, sum (z - shift)^2, sum f',
    count |z| > root), f' = a - a^2, or 1 - a^2, in float64 (0 exactly where the float32 a is 0
    or 1). ``root`` in z's dtype (the comparison then needs no conversion)."""
    s1, s2, sd, sat = 0.0, 0.0, 0.0, 0
    for o in range(z.shape[0]):
        for j in range(z.shape[1]):
            p1, p2, pd, ps = 0.0, 0.0, 0.0, 0
            for k in range(z.shape[2]):
                zv = z[o, j, k]
                av = np.float64(a[o, j, k])
                c = np.float64(zv) - shift
                p1 += c
                p2 += c * c
                pd += (1.0 - av * av) if tanh else (av - av * av)
                ps += np.int64(abs(zv) > root)
            s1 += p1
            s2 += p2
            sd += pd
            sat += ps
    return s1, s2, sd, sat


@jit
def smooth_moments_rows(z, a, shift, root, tanh):
    """``smooth_moments`` of [outer, units] ((batch, units) layers): the unit loop innermost."""
    s1, s2, sd, sat = 0.0, 0.0, 0.0, 0
    for o in range(z.shape[0]):
        p1, p2, pd, ps = 0.0, 0.0, 0.0, 0
        for j in range(z.shape[1]):
            zv = z[o, j]
            av = np.float64(a[o, j])
            c = np.float64(zv) - shift
            p1 += c
            p2 += c * c
            pd += (1.0 - av * av) if tanh else (av - av * av)
            ps += np.int64(abs(zv) > root)
        s1 += p1
        s2 += p2
        sd += pd
        sat += ps
    return s1, s2, sd, sat


@jit
def smooth_alive(a, tanh, alive):
    """alive[j] = 1 where f' != 0 (a is not 0 or 1; tanh: |a| is not 1) for some entry of unit j of
    [outer, units, inner]; NaN counts as alive. Returns how many units are alive."""
    top = a.dtype.type(1)
    for o in range(a.shape[0]):
        for j in range(a.shape[1]):
            for k in range(a.shape[2]):
                v = abs(a[o, j, k]) if tanh else a[o, j, k]
                if not (v == 0 or v == top):
                    alive[j] = 1
                    break
    return count(alive)


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
    return s1, s2, pos, count(alive)


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
    return s1, s2, pos, count(alive)


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
    """(sum g^2, per-unit sums of |g| into per_unit) over [outer, units, inner].

    In float64: a vanishing gradient's entries (1e-20 and below) square to float32
    denormals, each one ~100x slower to compute than a normal number (and lost)."""
    per_unit[:] = 0.0
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
    per_unit[:] = 0.0
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


@jit
def segment_sq(x, starts, out):
    """out[k] = sum of x^2 over x[starts[k]:starts[k + 1]] (the last segment to x's end), float64."""
    n = starts.shape[0]
    for k in range(n):
        end = starts[k + 1] if k + 1 < n else x.shape[0]
        xs = x[starts[k]:end]   # (indexing from 0: a loop from starts[k] does not vectorise)
        s = 0.0
        for i in range(xs.shape[0]):
            v = np.float64(xs[i])
            s += v * v
        out[k] = s


@jit
def segment_diff_sq(b, a, starts, out):
    """out[k] = sum of (b - a)^2 over segment k (as ``segment_sq``), the difference in float64."""
    n = starts.shape[0]
    for k in range(n):
        end = starts[k + 1] if k + 1 < n else b.shape[0]
        bs, as_ = b[starts[k]:end], a[starts[k]:end]
        s = 0.0
        for i in range(bs.shape[0]):
            d = np.float64(bs[i]) - np.float64(as_[i])
            s += d * d
        out[k] = s


@jit
def sgd_sums(w, g, alpha, wd):
    """One plain SGD step of a flat array in place, w := w + alpha (g + wd w) in w's own precision,
    each product and sum one fused multiply-add as torch.optim.SGD's ``grad.add(param, alpha=wd)``
    and ``param.add_(grad, alpha=-lr)`` compute it (the same bits); returns (sum g^2,
    sum (w' - w)^2, sum w^2 before the step) in float64 from the same read of w and g."""
    gg, dd, ww = 0.0, 0.0, 0.0
    if wd == 0:   # (two loops: neither has a branch inside)
        for i in range(w.shape[0]):
            wv, gv = w[i], g[i]
            nv = wv + alpha * gv
            w[i] = nv
            d = np.float64(nv) - np.float64(wv)
            gg += np.float64(gv) * np.float64(gv)
            dd += d * d
            ww += np.float64(wv) * np.float64(wv)
    else:
        for i in range(w.shape[0]):
            wv, gv = w[i], g[i]
            nv = wv + alpha * (gv + wd * wv)
            w[i] = nv
            d = np.float64(nv) - np.float64(wv)
            gg += np.float64(gv) * np.float64(gv)
            dd += d * d
            ww += np.float64(wv) * np.float64(wv)
    return gg, dd, ww


@jit
def segment_sgd(w, g, starts, alpha, wd, gsq, dsq, wsq):
    """``sgd_sums`` of each segment of two flat arrays (as ``segment_sq``): its sums into
    gsq[k], dsq[k] and wsq[k]."""
    n = starts.shape[0]
    for k in range(n):
        end = starts[k + 1] if k + 1 < n else w.shape[0]
        gsq[k], dsq[k], wsq[k] = sgd_sums(w[starts[k]:end], g[starts[k]:end], alpha, wd)


@intrinsic
def _pointer(typingctx, address, like):
    """A pointer to ``like``'s type at an address (an intp): ``numba.carray`` makes an array of it."""
    sig = types.CPointer(like)(types.intp, like)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(signature.return_type))
    return sig, codegen


@jit
def sgd_many(w_at, g_at, sizes, alpha, wd, out):
    """``sgd_sums`` of many parameters in one call: parameter t is ``sizes[t]`` entries of w's dtype
    at address w_at[t], its gradient the same at g_at[t] (both contiguous); out[t] = its three
    sums. ``alpha`` and ``wd`` are scalars of the parameters' dtype."""
    for t in range(w_at.shape[0]):
        n = sizes[t]
        w = numba.carray(_pointer(w_at[t], alpha), (n,))
        g = numba.carray(_pointer(g_at[t], alpha), (n,))
        out[t, 0], out[t, 1], out[t, 2] = sgd_sums(w, g, alpha, wd)


@jit
def smooth_at(z_at, a_at, rows, cols, shift, root, tanh):
    """``smooth_moments_rows`` of a layer at an address: z and a are [rows, cols] of ``root``'s dtype at
    z_at and a_at (contiguous). Returns the five raw moments (sum z - shift, sum (z - shift)^2, sum f',
    count saturated, count dead units), the last -1 where a sum is not finite. A unit is dead where
    f' is 0 on every sample, which only a layer with at least ``rows`` saturated entries can have."""
    z = numba.carray(_pointer(z_at, root), (rows, cols))
    a = numba.carray(_pointer(a_at, root), (rows, cols))
    s1, s2, sd, sat = smooth_moments_rows(z, a, shift, root, tanh)
    if not np.isfinite(s1 + s2 + sd):
        return s1, s2, sd, np.float64(sat), -1.0
    dead = 0
    if sat >= rows:
        alive = np.zeros(cols, dtype=np.uint8)
        dead = cols - smooth_alive(a.reshape(rows, cols, 1), tanh, alive)
    return s1, s2, sd, np.float64(sat), np.float64(dead)


@jit
def relu_at(z_at, rows, cols, shift, like, kind):
    """``relu_moments_rows`` of a layer at an address (as ``smooth_at``; ``like`` a scalar of z's dtype):
    the five raw moments of a ReLU (kind 0: count z > 0 twice, dead units), a LeakyReLU (1: no unit
    dead) or the identity (2: counts 0), the last -1 where a sum is not finite."""
    z = numba.carray(_pointer(z_at, like), (rows, cols))
    alive = np.zeros(cols, dtype=np.uint8)
    s1, s2, pos, n_alive = relu_moments_rows(z, shift, alive)
    if not np.isfinite(s1 + s2 + pos):
        return s1, s2, pos, pos, -1.0
    if kind == 2:
        return s1, s2, 0.0, 0.0, 0.0
    return s1, s2, pos, pos, np.float64(cols - n_alive) if kind == 0 else 0.0


@jit
def delta_at(g_at, rows, cols, like, per_unit):
    """``delta_sums_rows`` of a layer's dL/dz at an address ([rows, cols] of ``like``'s dtype): sum g^2
    (NaN where it is not finite), per-unit sums of |g| into per_unit."""
    g = numba.carray(_pointer(g_at, like), (rows, cols))
    s2 = delta_sums_rows(g, per_unit)
    return s2 if np.isfinite(s2) else np.nan
