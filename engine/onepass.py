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
import operator

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
            "segment_sq": k.segment_sq, "segment_diff_sq": k.segment_diff_sq,
            "segment_sgd": k.segment_sgd, "sgd_many": k.sgd_many, "smooth_at": k.smooth_at,
            "relu_at": k.relu_at, "delta_at": k.delta_at}


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
    k["segment_sgd"](flat, flat, starts, zero, zero, out, out.copy(), out.copy())
    at = np.array([flat.ctypes.data], dtype=np.intp)
    k["sgd_many"](at, at, np.array([flat.size], dtype=np.intp), zero, zero, np.empty((1, 3)))
    k["smooth_at"](at[0], at[0], 1, 1, 0.0, zero, False)
    k["relu_at"](at[0], 1, 1, 0.0, zero, 0)
    k["delta_at"](at[0], 1, 1, zero, np.zeros(1))


def available() -> bool:
    return _kernels() is not None


def fits(*ts, small: bool = False) -> bool:
    """Tensors the kernels take: large (or ``small``: any size), on the CPU, contiguous, float32 or
    float64; numba there."""
    least = 1 if small else MIN_ENTRIES
    return all(t.is_cpu and t.numel() >= least and t.dtype in _dtypes() and t.is_contiguous()
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


def _same(t, shape, dtype) -> bool:
    """t is of this shape and dtype, contiguous, on the CPU: what a plan made for them reads."""
    return t.shape == shape and t.dtype is dtype and t.is_cpu and t.is_contiguous()


def activation_sums(name: str, z, a, shift: float, root: float, unit_axis: int) -> tuple:
    """One layer's five raw moments as ``probes.activation_moments`` defines them, in one pass:
    (sum (z - shift), sum (z - shift)^2, sum f' (ReLU-like: count z > 0), count saturated
    (ReLU-like: count z > 0), count dead units) as floats; None where a sum is not finite
    (NaN or inf in z or a: the torch path then says which statistics still are).

    ``name``: sigmoid or tanh (saturated: |z| > root), relu (a unit is dead where z <= 0 on
    every sample), leaky_relu (none is dead) or identity (counts 0)."""
    return activation_plan(name, z, root, unit_axis)(z, a, shift)


def activation_plan(name: str, z, root: float, unit_axis: int):
    """``activation_sums`` with every decision about z's shape, dtype and layout taken once: a
    function (z, a, shift) -> the five raw moments, or None where z or a is not of this z's shape,
    dtype and layout (contiguous, CPU) or a sum is not finite. A probe's hook calls it every step:
    there, right after a large torch call, each line of Python costs 3-7 us (its data is out of the
    caches), several times its cost elsewhere. (``activation_at`` does the same for a [rows, units]
    layer with less Python.)"""
    k = _kernels()
    shape, dtype = z.shape, z.dtype
    z3 = _rows(z.detach().numpy(), unit_axis)
    form, units = z3.shape, z3.shape[1]
    reshape = form != tuple(z.shape)
    samples = z3.size // max(units, 1)
    alive = np.zeros(units, dtype=np.uint8)
    two = len(form) == 2
    isfinite = math.isfinite
    if name in ("sigmoid", "tanh"):
        kernel, tanh, root_t, live = k["smooth_rows" if two else "smooth"], name == "tanh", z3.dtype.type(root), \
            k["smooth_alive"]

        def run(z, a, shift):
            if not _same(z, shape, dtype) or not _same(a, shape, dtype):
                return None
            zn, an = z.detach().numpy(), a.detach().numpy()
            if reshape:
                zn, an = zn.reshape(form), an.reshape(form)
            s1, s2, sd, sat = kernel(zn, an, shift, root_t, tanh)
            dead = 0.0
            # f' = 0 (a is 0 or 1) is saturated: a dead unit has every one of its samples saturated,
            # so none is dead while fewer entries than one unit's samples are (no per-unit pass)
            if sat >= samples:
                alive[:] = 0
                dead = float(units - live(an.reshape(*form, 1) if two else an, tanh, alive))
            return (s1, s2, sd, float(sat), dead) if isfinite(s1) and isfinite(s2) and isfinite(sd) else None
        return run
    kernel, relu, ident = k["relu_rows" if two else "relu"], name == "relu", name == "identity"

    def run(z, a, shift):
        if not _same(z, shape, dtype) or not _same(a, shape, dtype):
            return None
        zn = z.detach().numpy()
        alive[:] = 0
        s1, s2, pos, n_alive = kernel(zn.reshape(form) if reshape else zn, shift, alive)
        if not (isfinite(s1) and isfinite(s2) and isfinite(pos)):
            return None
        if ident:
            return (s1, s2, 0.0, 0.0, 0.0)
        return (s1, s2, pos, pos, float(units - n_alive) if relu else 0.0)
    return run


def rows_form(t) -> tuple | None:
    """(rows, units) where a contiguous tensor is [rows, units] with its unit axis
    (``probes._unit_axis``) last: a (batch, units) or (batch, time, units) layer; else None."""
    if t.dim() not in (2, 3) or not t.is_contiguous() or not t.shape[-1]:   # (images: their unit axis is 1)
        return None
    return t.numel() // t.shape[-1], t.shape[-1]


def activation_at(name: str, z, root: float):
    """``activation_plan`` of a [rows, units] layer (``rows_form``) with the least Python a call:
    a function (z, a, shift) -> the five raw moments as a tuple, or None where z or a is not of this
    z's shape, dtype and layout, on the CPU, or a sum is not finite (the caller's other path then).
    The kernel reads the tensors at their addresses: nothing is converted or checked by numba. On a
    step's hot path each Python call costs microseconds (see ``activation_plan``)."""
    import torch
    rows, cols = rows_form(z)
    shape, dtype = z.shape, z.dtype
    like = np.float32(0) if dtype == torch.float32 else np.float64(0)
    k = _kernels()
    if name in ("sigmoid", "tanh"):
        kernel, r, tanh = k["smooth_at"], like.dtype.type(root), name == "tanh"

        def run(z, a, shift):
            if (z.shape == shape and a.shape == shape and z.dtype is dtype and a.dtype is dtype and z.is_cpu
                    and a.is_cpu and z.is_contiguous() and a.is_contiguous()):
                raw = kernel(z.data_ptr(), a.data_ptr(), rows, cols, shift, r, tanh)
                if raw[4] >= 0:
                    return raw
            return None
        return run
    kernel, kind = k["relu_at"], {"relu": 0, "leaky_relu": 1, "identity": 2}[name]

    def run(z, a, shift):
        if z.shape == shape and z.dtype is dtype and z.is_cpu and z.is_contiguous():
            raw = kernel(z.data_ptr(), rows, cols, shift, like, kind)
            if raw[4] >= 0:
                return raw
        return None
    return run


def delta_at(g):
    """``delta_plan`` of a [rows, units] dL/dz (as ``activation_at``): a function g -> (||g||^2,
    per-unit sums of |g|) or None (another shape, dtype, layout or device; not finite)."""
    import torch
    rows, cols = rows_form(g)
    shape, dtype = g.shape, g.dtype
    like = np.float32(0) if dtype == torch.float32 else np.float64(0)
    kernel, empty = _kernels()["delta_at"], np.empty

    def run(g):
        if g.shape == shape and g.dtype is dtype and g.is_cpu and g.is_contiguous():
            sums = empty(cols)
            s2 = kernel(g.data_ptr(), rows, cols, like, sums)
            if s2 == s2:
                return s2, sums
        return None
    return run


def delta_sums(g, unit_axis: int) -> tuple | None:
    """(||g||^2, the per-unit sums of |g| as a float64 array) of one layer's dL/dz, in one pass;
    None where a sum is not finite (the torch path then)."""
    return delta_plan(g, unit_axis)(g)


def delta_plan(g, unit_axis: int):
    """``delta_sums`` with the decisions about g's shape taken once (as ``activation_plan``): a function
    g -> (||g||^2, per-unit sums), or None where g is not of this g's shape, dtype and layout or its
    square is not finite."""
    k = _kernels()
    shape, dtype = g.shape, g.dtype
    g3 = _rows(g.detach().numpy(), unit_axis)
    form, units = g3.shape, g3.shape[1]
    reshape = form != tuple(g.shape)
    kernel, isfinite = k["delta_rows" if g3.ndim == 2 else "delta"], math.isfinite

    def run(g):
        if not _same(g, shape, dtype):
            return None
        gn = g.detach().numpy()
        sums = np.empty(units)   # (the kernel starts it at 0)
        s2 = kernel(gn.reshape(form) if reshape else gn, sums)
        return (s2, sums) if isfinite(s2) else None
    return run


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
    as float64 floats taken in the same pass (see ``SGDSteps``, which steps many at once)."""
    steps = SGDSteps([w])
    if not steps.usable:
        raise ValueError("sgd_step takes a contiguous float32 / float64 CPU tensor")
    if g.shape != w.shape or g.dtype != w.dtype or not (g.is_cpu and g.is_contiguous()):
        raise ValueError("sgd_step takes a contiguous gradient of the parameter's shape and dtype")
    got = steps.step(lr, weight_decay, [g])
    if got is None:
        raise ValueError("sgd_step takes a dense gradient of the parameter's shape")
    return tuple(float(x) for x in got[0])


_GRAD = operator.attrgetter("grad")
_DATA_PTR = operator.methodcaller("data_ptr")


class SGDSteps:
    """Plain SGD steps of a fixed list of parameters in one compiled call, bit for bit as
    torch.optim.SGD makes them (p := p - lr (g + weight_decay p): its ``grad.add(param,
    alpha=weight_decay)`` and ``param.add_(grad, alpha=-lr)``, each one fused multiply-add in the
    parameter's precision), with per parameter (||g||^2, ||p' - p||^2, ||p||^2 before the step) in
    float64 from the same pass: p and its gradient read once and p written once, where the probes'
    torch path reads the gradient once more for its norm and p three times more (the copy before
    the step and the change). One call for every parameter: on a step's hot path each Python line
    costs 3-7 us (its data is out of the caches), more than a small parameter's arithmetic.

    ``usable``: every parameter a contiguous CPU tensor of one float dtype (float32, float64).
    A gradient obeys its parameter's layout (autograd's AccumulateGrad makes it so: contiguous
    here) and dtype, so the two are read as one flat range each."""

    def __init__(self, params: list):
        import torch
        self.params = list(params)
        p0 = self.params[0] if self.params else None
        self.usable = bool(self.params) and available() and p0.dtype in (torch.float32, torch.float64) and all(
            p.is_cpu and p.dtype == p0.dtype and p.layout == torch.strided and p.is_contiguous() for p in self.params)
        self.moved = False
        if self.usable:
            self.w_at = np.array([p.data_ptr() for p in self.params], dtype=np.intp)
            self.sizes = np.array([p.numel() for p in self.params], dtype=np.intp)
            self.scalar = np.float32 if p0.dtype == torch.float32 else np.float64
            self.out = np.empty((len(self.params), 3))

    def step(self, lr: float, weight_decay: float, grads: list | None = None) -> np.ndarray | None:
        """The step, and [parameters, 3] float64: (||g||^2, ||p' - p||^2, ||p||^2 before). None, with
        nothing changed, where a gradient is missing or not dense, or a parameter's storage moved
        (make a new SGDSteps)."""
        params = self.params
        n = len(params)
        if grads is None:
            grads = map(_GRAD, params)
        try:   # (map: no Python frame a parameter; None: no gradient; sparse: no storage)
            g_at = np.fromiter(map(_DATA_PTR, grads), dtype=np.intp, count=n)
        except (TypeError, AttributeError, RuntimeError, ValueError):
            return None
        if not np.array_equal(np.fromiter(map(_DATA_PTR, params), dtype=np.intp, count=n), self.w_at):
            self.moved = True
            return None
        t = self.scalar
        _kernels()["sgd_many"](self.w_at, g_at, self.sizes, t(-lr), t(weight_decay), self.out)
        bump_versions(params)
        return self.out


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


def bump_versions(ts: list) -> None:
    """``bump_version`` of every tensor of a list (one call where torch takes a list: 2.4 on)."""
    import torch
    try:
        torch._C._increment_version(ts)
    except TypeError:   # (an older torch: one tensor a call)
        for t in ts:
            bump_version(t)
