"""Probes: every Contract 2 statistic of one training step, measured cheaply.

For a layer l with output z_l (a linear layer's pre-activation) and a batch
loss L:
  weight_grad_norm[l] = ||dL/dW_l||_2        (all weight tensors of the layer together)
  bias_grad_norm[l]   = ||dL/db_l||_2        (NaN for a layer without bias)
  delta_norm[l]       = ||dL/dz_l||_2        over the whole batch
  update_ratio[l]     = ||W_l' - W_l|| / ||W_l||  across the optimiser step
  neuron_grad[l][j]   = mean over the batch of |dL/dz_lj|   (neurons x steps heatmap)
For an activation a = f(z), over all (sample, unit) entries of the batch:
  preact_mean, preact_std (population std), mean_derivative = mean f'(z),
  saturated_frac = share of entries with f'(z) < 0.01 max f',
  dead_frac = share of units whose f'(z) = 0 on every sample.
For the first recurrent layer: time_grad_norm[t] = ||dL/dh_t||_2, the total
derivative through every later step (a hook on each h_t sees the summed gradient).

Cost. On small layers the Python and dispatch cost of each torch call is
what the probes cost, so there the hooks only keep references (the forward
hooks keep z and a; a layer's output keeps its dL/dz through ``retain_grad``,
with no Python call in the backward pass) and ``collect`` reduces them after
the backward pass: one batched call per group of same-kind, same-shape
layers, their tensors stacked into [layers, ...]. Layers of more than
STACK_MAX entries are reduced inside their hooks (forward hook, gradient
hook), one at a time, while the tensor is still in cache (keeping them would
also keep the allocator from reusing their memory). Everything stays on the
device until ``collect`` makes one host copy per step.

A plain stack the engine built (an nn.Sequential whose children are its linear layers
and activations, deep sigmoid preset) goes further, as each call there costs more than
its arithmetic: no module hooks (``_tapped_forward``, the probe's own forward, keeps the
same tensors, calling each layer's forward directly while no module hook exists); all
its small [batch, units] layers reduced together in one buffer (``_cat_sums``: about ten
torch calls a step, whatever the depth; the statistics from per-unit sums in numpy); its
parameters and gradients views of two flat buffers (engine/flat_params.py: zero_grad,
every norm, the copy before the step and the update's norm one call each, numpy on the
CPU); the Trainer's norms placed per layer in numpy (``take_grad_norms``,
``take_update_ratio``, ``collect`` without wg, bg, ur).

Where the time goes (profiled 2026-12-01, docs/performance.md "Probe cost"): on
large layers every pass over a tensor, 20-40 us for 256 x 256 float32 in the running
net, however cheap its kernel; on small ones every torch call (2-5 us) and the
Python around it. So: f' = 0 implies saturation, and a unit is dead only if f' = 0
on all its samples, so the per-unit dead pass of sigmoid/tanh runs only where a
layer has at least as many saturated entries as a unit has samples; squared norms
come from one BLAS dot (one layer) or one vector_norm over [layers, entries] (a
stack: a batched bmm was 10-25x slower), with no sqrt / float64 / square round
trips; with ``begin(step_follows=True)`` (the Trainer) the weights' ||W||^2 at the
step's start come from the gradient norms' own calls; ``collect`` places the results of
every group at once (finish_activation once per kind of activation). On large layers
the torch path makes 7 passes per activation layer (sum z, z.z, |z|, > z*, their sum,
f', its sum), 3 per delta (g.g, |g|, its per-unit sum) and 5 per weight (g.g, W.W, the
copy of W, W - W', its dot); torch has no fused ``||b - a||`` and no cheap count of
|z| > t (a bool tensor and its count are 10-30x a float pass, ``histc`` 40x). So a
large CPU tensor takes engine/onepass.py instead (numba loops, where numba is
installed): one read of z and a for all five moments, one of a delta, one of a
gradient, and for the Trainer one pass over W and W' for the change, ||W'||^2 and the
copy the next step starts from (a weight is "carried": 3 passes instead of 5). Their
sums are float64, as every float32 norm here is checked to be: a vanishing layer's
float32 squares are subnormal (a norm of 1e-23 entries read 70 % low, of 1e-25 as 0).

A kept tensor that something changes in place between its hook and ``collect``
(its version counter moved: ``nn.ReLU(inplace=True)`` after a linear layer, a
user's ``h += skip`` after an activation) cannot be measured from it: that
layer's statistics are NaN for that step, and from then on the layer is
measured inside its hooks. The first step measures every layer inside its
hooks and checks for such changes, so a model that always does this loses
no step.

(Over 400 lines with a reason: the hooks, the batched reductions after backward and
their in-hook fallbacks are one measurement whose parts share buffers and must agree
with float64 autograd together.)
"""
from __future__ import annotations

import decimal
import functools
import itertools
import math
import operator

import numpy as np
import torch

from . import onepass
from .activations import SATURATION_FRACTION
from .build import Model
from .flat_params import FlatParams
from .snapshot import HIST_BINS, HIST_RANGE  # noqa: F401  (histogram of z)

ACT_STATS = ("preact_mean", "preact_std", "mean_derivative", "saturated_frac", "dead_frac")
LAYER_STATS = ("weight_grad_norm", "bias_grad_norm", "delta_norm", "update_ratio")
# per-layer tensors of at most this many entries are kept and reduced after the
# backward pass, stacked with their like; larger ones are reduced in their hooks
STACK_MAX = 1 << 14
DOT_MIN = 1 << 12   # a float32 tensor of at least this many entries: its norm by a BLAS dot (CPU)
CLOSED_FORM = ("sigmoid", "tanh", "relu", "leaky_relu", "identity")  # f' known from (name, slope)
FLAT = "flat"   # the order of squares that come per slot from FlatParams
FEW = 4   # collect: a group of at most this many small layers takes one kernel call a layer
CAT_KINDS = CLOSED_FORM   # activations that Probe._cat_sums reduces with every other small layer at once


def _first_tensor(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def _unit_axis(t: torch.Tensor) -> int:
    return _unit_axis_of(t.dim())


def _unit_axis_of(ndim: int) -> int:
    # (batch, units), (batch, time, units); images (batch, channels, h, w) count channels
    return 1 if ndim >= 4 else ndim - 1


def _layer_axes(x: torch.Tensor) -> tuple:
    """Every axis of a stack [layers, ...] but the layer axis: a reduction over them is per layer."""
    return tuple(range(1, x.dim()))


def _per_layer(reduce, x: torch.Tensor) -> torch.Tensor:
    """``reduce`` (sum, vector_norm, count_nonzero) of each layer of a stack [layers, ...]: [layers].

    A single layer takes the full reduction, the faster kernel on the CPU."""
    if x.dim() == 1:  # one entry per layer
        x = x[:, None]
    return reduce(x).reshape(1) if x.shape[0] == 1 else reduce(x, dim=_layer_axes(x))


_NORM64 = functools.partial(torch.linalg.vector_norm, dtype=torch.float64)
# A float32 squared norm below this may have lost its precision: its entries are then all below
# 1e-15, and a square below 1.2e-38 is a float32 subnormal (about 1e-45 absolute precision; at
# |g| ~ 1e-23 a float32 norm is 70 % low, at 1e-25 it is 0). Above it the subnormal squares add
# at most n * 1.4e-45, under 1e-7 relative for n <= 1e8 entries. Such a norm is taken again in
# float64: a vanishing gradient is the very thing the app shows, it must not read as 0.
TINY_SQ = 1e-30


def _untrusted(sq: torch.Tensor) -> torch.Tensor | None:
    """The positions of float32-computed squared norms [k] to take again in float64 (not finite:
    NaN, inf or an overflow; or below TINY_SQ), or None when every one is good (two host reads)."""
    lo, hi = torch.aminmax(sq)
    if math.isfinite(float(hi)) and float(lo) >= TINY_SQ:   # (NaN fails both tests)
        return None
    return (~(torch.isfinite(sq) & (sq >= TINY_SQ))).nonzero().flatten()


def _retake64(sq: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Squared norms [layers] of the stack x, float32 ones checked: the untrusted taken in float64."""
    bad = _untrusted(sq)
    sq = sq.double()
    if bad is not None:   # a large layer in one float64 pass (no cast copy), the others in torch
        sq[bad] = torch.tensor([onepass.sum_square(x[k]) for k in bad.tolist()], dtype=torch.float64) \
            if onepass.fits(x[0]) else _per_layer(_NORM64, x[bad]).square()
    return sq


def safe_norms(x: torch.Tensor) -> torch.Tensor:
    """||x|| of each layer of a stack [layers, ...], in float64, finite wherever x is.

    A float32 norm squares in float32, which overflows above ~1.8e19 (an exploding layer's
    gradient would be stored as inf) and loses its precision below ~1e-19 (a vanishing one as
    0). On a CUDA device the reduction accumulates in float64 directly (it casts as it loads, no
    copy); on the CPU, where that cast makes a copy (3-10x slower), the float32 result is
    checked and only a layer that overflowed or is tiny is taken again in float64."""
    if x.dtype == torch.float64 or x.is_cuda:
        return _per_layer(_NORM64, x)
    if x.dtype != torch.float32:
        return _per_layer(torch.linalg.vector_norm, x).double()
    return _retake64(_sum_squares(x), x).sqrt_()


def _time_norms(x: torch.Tensor) -> torch.Tensor:
    """``safe_norms`` of a fused layer's dL/dh_t [time steps, ...]: where the kernels take it, in
    float64 in one pass (a vanishing gradient's early steps, ~1e-22, square to float32 denormals,
    on which a float32 norm is ~10x slower: 0.94 ms against 0.2 ms for 100 x 64 x 64)."""
    if x.dtype == torch.float32 and x.is_contiguous() and onepass.fits(x):
        flat = x.detach().reshape(-1).numpy()
        out = onepass.segment_squares(flat, np.arange(0, flat.shape[0], flat.shape[0] // x.shape[0]),
                                      np.empty(x.shape[0]))
        return torch.from_numpy(out).sqrt_()
    return safe_norms(x)


def safe_sum_squares(x: torch.Tensor) -> torch.Tensor:
    """||x||^2 of each layer of a stack [layers, ...], finite and precise wherever x is (as
    ``safe_norms``): on the CPU one BLAS dot a layer in x's dtype, taken again in float64 only
    where the float32 sum is not finite or tiny; no square root on the way."""
    if x.is_cuda or x.dtype not in (torch.float32, torch.float64):
        return safe_norms(x).square()
    s = _sum_squares(x)
    return _retake64(s, x) if x.dtype == torch.float32 else s


def _sum_squares(x: torch.Tensor) -> torch.Tensor:
    """||x||^2 of each layer of a stack [layers, ...] in x's dtype (inf where it overflows).

    One layer: a BLAS dot, several times faster on the CPU than vector_norm. A stack: one
    vector_norm over the last axis of [layers, entries], squared; a batched dot (bmm of
    [k, 1, n] x [k, n, 1]) is 10-25x slower on the CPU (1.1 ms vs 40 us for 100 x 4096)."""
    flat = x.reshape(x.shape[0], -1)
    if x.shape[0] == 1:
        return torch.dot(flat[0], flat[0]).reshape(1)
    return torch.linalg.vector_norm(flat, dim=1).square_()


def safe_foreach_norms(ts: list) -> list:
    """||t|| of each tensor of a list, finite wherever the tensor is (as ``safe_norms``)."""
    if not ts:
        return []
    sq, order = square_norms(ts)
    norms = sq.sqrt().unbind()
    out = [None] * len(ts)
    for i, n in zip(order, norms):
        out[i] = n
    return out


def _dot_path(t: torch.Tensor) -> bool:
    """A tensor whose squared norm is one BLAS dot: a large float32 tensor on the CPU."""
    return t.dtype == torch.float32 and t.numel() >= DOT_MIN and not t.is_cuda


def norm_split(ts: list) -> tuple:
    """(indices of the tensors that take a BLAS dot, of those that take ``_foreach_norm``, of the
    None ones): what ``square_norms`` decides for each tensor of the list."""
    first, rest, absent = [], [], []
    for i, t in enumerate(ts):
        (absent if t is None else first if _dot_path(t) else rest).append(i)
    return first, rest, absent


def square_norms(ts: list, split: tuple | None = None) -> tuple:
    """(||t||^2 of the tensors of a list as one float64 tensor, the list indices in its order).

    Finite and precise wherever the tensor is (as ``safe_norms``); a None tensor (no gradient)
    gives NaN. On the CPU a large float32 tensor is one float64 pass of ``onepass.sum_square``
    (without numba: a BLAS dot), the others one ``_foreach_norm``; the float32 values are
    checked together (one host read) and only those not finite or tiny are taken again in
    float64. ``split``: ``norm_split(ts)`` taken before for tensors of the same shapes, dtypes and
    devices (a caller's cache: the per-tensor decisions cost more than the norms on a small net)."""
    first, rest, absent = norm_split(ts) if split is None else split
    exact, checked = [], []   # float64 results; float32 ones to check, with their list indices
    if first and onepass.available():
        # float64 sums where the kernels take the tensor (a vanishing gradient's float32 squares
        # are subnormals: precision lost, and a BLAS dot ~30x slower on them)
        fits = [i for i in first if onepass.fits(ts[i])]
        if fits:
            exact.append((torch.tensor([onepass.sum_square(ts[i]) for i in fits], dtype=torch.float64), fits))
        taken = set(fits)
        first = [i for i in first if i not in taken] if len(fits) < len(first) else []
    if first:
        checked.append((torch.stack([torch.dot(f, f) for f in (ts[i].reshape(-1) for i in first)]), first))
    if rest:
        rs = [ts[i] for i in rest]
        if rs[0].is_cuda or rs[0].dtype == torch.float64:
            exact.append((torch.stack(torch._foreach_norm(rs, 2, dtype=torch.float64)).square(), rest))
        else:
            checked.append((torch.stack(torch._foreach_norm(rs)).double().square(), rest))
    if checked:
        sq, idx = (torch.cat([c for c, _ in checked]), [i for _, ix in checked for i in ix]) if len(checked) > 1 \
            else checked[0]
        bad = _untrusted(sq) if not sq.is_cuda else None
        sq = sq.double()
        if bad is not None:   # overflow, NaN / inf in a tensor, or a tiny norm: in float64
            for k in bad.tolist():
                sq[k] = torch.linalg.vector_norm(ts[idx[k]], dtype=torch.float64).square()
        exact.append((sq, idx))
    order = [i for _, ix in exact for i in ix]
    dev = next((t.device for t in ts if t is not None), torch.device("cpu"))
    out = (torch.cat([v for v, _ in exact]) if len(exact) > 1 else exact[0][0]) if exact else \
        torch.zeros(0, dtype=torch.float64, device=dev)
    if absent:
        out = torch.cat([out, torch.full((len(absent),), math.nan, dtype=torch.float64, device=out.device)])
        order = order + absent
    return out, order


def diff_squares(before: list, after: list, split: tuple | None = None) -> tuple:
    """(||b - a||^2 of each pair of the lists as one float64 tensor, the indices in its order),
    finite wherever b - a is. ``before`` may be overwritten with b - a.

    A large CPU pair: one fused read of both, nothing written (``onepass.diff_square``). The others:
    one ``_foreach_sub_``, then ``square_norms`` (a BLAS dot for each large float32 tensor on the
    CPU); torch has no fused kernel that writes nothing (``mse_loss`` and ``dist`` write (b - a)
    into a fresh tensor, measured slower)."""
    if not before:
        return torch.zeros(0, dtype=torch.float64), []
    done, rest = {}, []
    for i, (b, a) in enumerate(zip(before, after)):
        got = onepass.diff_square(b, a) if onepass.fits(b, a) else None
        if got is None:
            rest.append(i)
        else:
            done[i] = got
    if not rest:
        return torch.tensor(list(done.values()), dtype=torch.float64), list(done)
    if done:   # (the split cached for the whole list does not hold for a part of it)
        split = None
        before, after = [before[i] for i in rest], [after[i] for i in rest]
    torch._foreach_sub_(before, after)   # now b - a
    sq, order = square_norms(before, split)
    if not done:
        return sq, order
    return (torch.cat([torch.tensor(list(done.values()), dtype=torch.float64), sq]),
            list(done) + [rest[k] for k in order])


def _per_unit_axes(x: torch.Tensor) -> tuple:
    """The axes of a stack [layers, *shape] that a per-unit reduction of one layer's tensor runs over.

    A layer tensor of one axis has a single "unit" (the whole tensor), as it always had."""
    n = x.dim() - 1   # axes of one layer's tensor
    u = _unit_axis_of(n) if n > 1 else None
    return tuple(i + 1 for i in range(n) if i != u)


def over_layers(fn, lists: tuple, extra: list):
    """``fn(stacks, extra)`` for lists of same-shape per-layer tensors: one batched call.

    ``fn`` takes one [layers, *shape] stack per list and the per-layer ``extra``
    values, and returns a tuple of tensors with a leading layer axis. A single
    layer goes as a t[None] view (no copy).
    """
    if len(lists[0]) == 1:
        return fn(tuple(ts[0][None] for ts in lists), extra)
    return fn(tuple(torch.stack(ts) for ts in lists), extra)


def activation_moments(act, z: torch.Tensor, a: torch.Tensor, scratch: dict, shifts: list) -> tuple:
    """Raw sums and counts of a stack of activation layers: five tensors [layers].

    z and a are [layers, *shape] (one layer: z[None]). Per layer: [sum (z - shift),
    sum (z - shift)^2, sum f'(z) (or the count of z > 0), count of saturated
    entries, count of dead units]; ``finish_activation`` turns them into the
    Contract 2 statistics in numpy after the step's single host copy, so the hot
    path has no small divisions. Few passes over the batch: closed forms where f'
    is piecewise constant (ReLU, LeakyReLU, identity), and a reused buffer for
    sigmoid/tanh, whose f' comes from the output a (a - a^2, 1 - a^2).
    """
    if z.shape[0] == 1:
        raw = onepass_sums(act, z[0], a[0], shifts[0])
        if raw is not None:
            return torch.tensor(raw, dtype=torch.float64).reshape(5, 1).unbind()
    # sum z and ||z||^2 (torch.var_mean is several times slower on the CPU). The
    # float32 sums are about 1e-7 relative, so E[z^2] - E[z]^2 loses precision when
    # |mean| >> std (1e-2 relative at mean/std = 500): such a layer's moments are
    # taken about a shift close to its mean instead, at the cost of one more pass
    zs = z
    if any(shifts):
        key = ("shift", z.shape, z.dtype, z.device)
        zs = scratch.get(key)
        if zs is None:
            zs = scratch[key] = torch.empty_like(z)
        shift = torch.tensor(shifts, dtype=z.dtype).to(z.device).view(-1, *(1,) * (z.dim() - 1))
        torch.sub(z, shift, out=zs)    # shifts are float32 numbers: exact in z's precision
    moments = [_per_layer(torch.sum, zs), safe_sum_squares(zs)]   # finite wherever z is
    threshold = SATURATION_FRACTION * act.max_derivative
    if act.name in ("relu", "leaky_relu"):
        active = _count_above(z, 0.0, scratch)            # f' = 1 there, f' = slope elsewhere
        if act.slope == 0:                                # dead: no sample gives the unit a positive z
            dead = _per_layer(torch.count_nonzero, z.amax(dim=_per_unit_axes(z)) <= 0)
        else:
            dead = active * 0
        counts = [active, active, dead]
    elif act.name == "identity":
        zero = moments[0] * 0
        counts = [zero, zero, zero]
    else:
        if act.name in ("sigmoid", "tanh"):
            key = (a.shape, a.dtype, a.device)
            d = scratch.get(key)
            if d is None:
                d = scratch[key] = torch.empty_like(a)
            # one pass: a - a^2 = a (1 - a) (>= 0 also after rounding), or 1 - a^2 (>= 0 as |a| <= 1)
            torch.addcmul(a if act.name == "sigmoid" else a.new_ones(()), a, a, value=-1, out=d)
            # f' < threshold exactly where |z| > the threshold's root (f' falls with |z|)
            saturated = _count_above(z, saturation_root(act.name, z.dtype), scratch, absolute=True)
            size = d
        else:
            d = act.torch_df(z, a)
            size = d.abs()
            saturated = _per_layer(torch.count_nonzero, d < threshold)
        if size is d and not z.is_cuda and float(saturated.max()) < z[0].numel() // _units_of_stack(z):
            # f' = 0 is saturated (f' < threshold), so a unit with f' = 0 on every sample has all its
            # entries saturated: none can be dead while no layer has as many saturated entries as one
            # unit has samples (the common case; the per-unit pass is skipped)
            total = _per_layer(torch.sum, d)
            counts = [total, saturated, total * 0]
        else:
            # a unit is dead where f' = 0 on every sample: the sum of |f'| over the samples is 0
            # exactly then (NaN stays NaN: not dead); a sum is several times faster than amax here
            alive = size.sum(dim=_per_unit_axes(size))
            # f' >= 0 (sigmoid, tanh): the layer's sum of f' is the sum of its units' (no second pass)
            total = _per_layer(torch.sum, alive if size is d else d)
            counts = [total, saturated, _per_layer(torch.count_nonzero, alive == 0)]
    return tuple(moments + counts)


def onepass_sums(act, z: torch.Tensor, a: torch.Tensor, shift: float) -> tuple | None:
    """One layer's five raw moments (as ``activation_moments``) as five floats, in one pass of
    ``onepass.activation_sums``; None where the kernels do not take z and a (small, not on the
    CPU, no closed form of f', numba missing) or a sum is not finite (the torch path says where)."""
    plan = onepass_plan(act, z, a)
    return None if plan is None else plan(z, a, shift)


def onepass_plan(act, z: torch.Tensor, a: torch.Tensor):
    """``onepass.activation_plan`` for this layer's z and a, or None where the kernels do not take them."""
    kind = onepass_kind(act)
    if kind is None or not onepass.fits(z, a):
        return None
    return onepass.activation_plan(kind, z, kind_root(kind, z.dtype), _unit_axis(z))


def onepass_kind(act) -> str | None:
    """The onepass kernels' name of an activation (sigmoid, tanh, relu, leaky_relu, identity), None
    where f' has no closed form there."""
    if act.name not in CLOSED_FORM:
        return None
    return act.name if act.name in ("sigmoid", "tanh", "identity") else "relu" if act.slope == 0 else "leaky_relu"


def kind_root(kind: str, dtype: torch.dtype) -> float:
    """The saturation root the kernels compare |z| with (ReLU-like: none, 0)."""
    return saturation_root(kind, dtype) if kind in ("sigmoid", "tanh") else 0.0


def _units_of_stack(x: torch.Tensor) -> int:
    """How many units one layer of a stack [layers, *shape] has (its unit axis' length)."""
    n = x.dim() - 1
    return x.shape[_unit_axis_of(n) + 1] if n > 1 else 1


@functools.lru_cache(maxsize=None)
def saturation_root(name: str, dtype: torch.dtype) -> float:
    """z* with f'(z) < SATURATION_FRACTION * max f' exactly where |z| > z*, rounded down to ``dtype``.

    tanh: 1 - tanh^2 z = q where tanh z = r = sqrt(1 - q), so z* = atanh r = log((1 + r) / sqrt q)
    (this form keeps full precision; atanh near 1 would not); sigmoid'(z) = (1 - tanh^2(z / 2)) / 4,
    so its z* is twice tanh's. Rounded down to a number x of z's precision, |z| > x is the same
    test for every z of that precision: f'(x) >= threshold (the root lies at or above x)."""
    with decimal.localcontext() as ctx:   # 40 digits: the rounding below is then exact
        ctx.prec = 40
        q = decimal.Decimal(repr(SATURATION_FRACTION))
        root = (2 if name == "sigmoid" else 1) * ((1 + (1 - q).sqrt()) / q.sqrt()).ln()
        x = float(root)
        if decimal.Decimal(x) > root:
            x = math.nextafter(x, -math.inf)
        if dtype != torch.float64:
            t = torch.tensor(x, dtype=torch.float64).to(dtype)
            if decimal.Decimal(float(t)) > root:
                t = torch.nextafter(t, torch.tensor(-math.inf, dtype=dtype))
            x = float(t)
    return x


def _count_above(x: torch.Tensor, t: float, scratch: dict, absolute: bool = False) -> torch.Tensor:
    """How many entries of each layer of a stack [layers, ...] are > t (|x| > t if ``absolute``);
    NaN is not counted.

    The comparison is written as 0/1 in x's own dtype into a reused buffer and summed: a
    comparison into a bool tensor (and its count_nonzero) is 10-30x slower on the CPU. A
    float32 sum of 0/1 is exact up to 2^24 entries a layer; a larger layer sums in float64."""
    key = ("count", x.shape, x.dtype, x.device)
    buf = scratch.get(key)
    if buf is None:
        buf = scratch[key] = torch.empty_like(x)
    if absolute:
        torch.abs(x, out=buf)
        x = buf
    torch.gt(x, t, out=buf)
    exact = x.dtype == torch.float64 or (x.dtype == torch.float32 and x[0].numel() <= 1 << 24)
    return _per_layer(torch.sum if exact else functools.partial(torch.sum, dtype=torch.float64), buf)


def delta_stats(g: torch.Tensor, per_unit: bool, scratch: dict | None = None) -> tuple:
    """(||dL/dz|| per layer, sum over the batch of |dL/dz_j| per layer and unit) of a stack [layers, ...].

    The second only where the layer's unit axis holds its units (else an empty [layers, 0]).
    |dL/dz| goes into a buffer of ``scratch`` reused from step to step: a fresh large tensor
    costs the allocator's page faults each time."""
    if g.shape[0] == 1:
        got = onepass_delta(g[0], per_unit)
        if got is not None:
            return got
    norms = safe_norms(g)
    if not per_unit:
        return norms, g.new_empty((g.shape[0], 0))
    if scratch is None:
        return norms, g.abs().sum(dim=_per_unit_axes(g))
    key = ("abs", g.shape, g.dtype, g.device)
    buf = scratch.get(key)
    if buf is None:
        buf = scratch[key] = torch.empty_like(g, memory_format=torch.contiguous_format)
    return norms, torch.abs(g, out=buf).sum(dim=_per_unit_axes(g))


def onepass_delta(g: torch.Tensor, per_unit: bool) -> tuple | None:
    """``delta_stats`` of one layer's dL/dz in one pass of ``onepass.delta_sums`` (as [1] and [1, units]
    or [1, 0]); None where the kernels do not take g or its squares are not finite."""
    if not onepass.fits(g):
        return None
    got = onepass.delta_sums(g, _unit_axis(g))
    if got is None:
        return None
    sq, sums = got
    return (torch.tensor([math.sqrt(sq)], dtype=torch.float64),
            torch.from_numpy(sums)[None] if per_unit else g.new_empty((1, 0)))


def _torch_only(items: list) -> list:
    return [t for t in items if isinstance(t, torch.Tensor)]


def _merged(items: list, host: np.ndarray) -> np.ndarray:
    """The values of ``items`` (torch tensors, whose values are ``host`` in order, and numpy arrays)
    as one flat array in the items' order."""
    if all(isinstance(t, torch.Tensor) for t in items):
        return host
    out, at = [], 0
    for t in items:
        if isinstance(t, np.ndarray):
            out.append(t.reshape(-1))
        else:
            n = t.numel()
            out.append(host[at:at + n])
            at += n
    return np.concatenate(out) if out else host


def _norms(g: torch.Tensor) -> tuple:
    """||g|| per layer of a stack [layers, ...] (the time gradient of each step)."""
    return (safe_norms(g),)


def _sizes(z: torch.Tensor) -> tuple:
    """(entries, units) of an activation layer's z."""
    return z.numel(), (z.shape[_unit_axis(z)] if z.dim() > 1 else 1)


def _time_step(key) -> int:
    """The time step of a hidden-state key: t, or (t, 1) for a reverse direction's h_t."""
    return key[0] if isinstance(key, tuple) else key


def _time_order(key) -> tuple:
    return (key, 0) if not isinstance(key, tuple) else key


_SHAPE = operator.attrgetter("shape")
_FIRST, _SECOND = operator.itemgetter(0), operator.itemgetter(1)


def _act_key(act):
    """Activation layers that share this key (and a shape) are reduced together."""
    return (act.name, act.slope, act.max_derivative) if act.name in CLOSED_FORM else id(act)


def _shifts_for(mean: np.ndarray, std: np.ndarray) -> list:
    """The shift of each layer's next moments: its mean where |mean| > 2 std, else 0 (no extra
    pass). A float32 number, so that z - shift is exact in z's own precision."""
    with np.errstate(invalid="ignore"):
        far = np.abs(mean) > 2 * std
    if not far.any():   # (the common case, in two numpy calls)
        return [0.0] * len(mean)
    far &= np.isfinite(mean)
    return np.where(far, mean.astype(np.float32), np.float32(0)).astype(np.float64).tolist()


def finish_activation(act, raw, n, units, shift=0.0) -> np.ndarray:
    """[preact_mean, preact_std, mean_derivative, saturated_frac, dead_frac] from the raw moments.

    ``raw`` is [5] (one layer) or [k, 5] (k layers of one activation, ``n``, ``units`` and
    ``shift`` then one value or k values each): numpy over all k at once."""
    raw = np.asarray(raw, dtype=np.float64)
    single = raw.ndim == 1
    raw = np.atleast_2d(raw)
    n = np.asarray(n, dtype=np.float64)
    # (few numpy calls: on a small net each costs more than its arithmetic; the columns of one
    # division are sum z / n (the mean of z - shift), sum z^2 / n, x / n, y / n)
    with np.errstate(all="ignore"):   # NaN and inf pass through, as the float64 sums give them
        out = raw / (n[:, None] if n.ndim else n)
        centred = out[:, 0]
        var = out[:, 1] - centred * centred
        np.sqrt(np.maximum(var, 0.0, out=var), out=out[:, 1])
        out[:, 0] += shift                      # mean
        out[:, 4] = raw[:, 4] / units           # dead units / units
        if act.name in ("relu", "leaky_relu"):
            active = out[:, 2].copy()
            threshold = SATURATION_FRACTION * act.max_derivative
            out[:, 3] = (1.0 - active) * (act.slope < threshold) + active * (1.0 < threshold)
            out[:, 2] = act.slope + (1.0 - act.slope) * active
        elif act.name == "identity":
            out[:, 2], out[:, 3] = 1.0, 0.0
    return out[0] if single else out


def _global_hooks() -> bool:
    """Whether any global module hook is registered (``Module.__call__`` must then run them)."""
    g = torch.nn.modules.module
    return any(getattr(g, name, None) for name in ("_global_forward_hooks", "_global_forward_pre_hooks",
                                                    "_global_backward_hooks", "_global_backward_pre_hooks"))


def _tap_plan(model: Model) -> list | None:
    """[(child, weight-layer index or None, activation-layer index or None, its Activation)] of a
    plain nn.Sequential the engine built whose children are its measured layers themselves (no
    block holding measured layers inside, no in-place module), or None: hooks measure then."""
    if (model.tracer is not None or model.forward is not None or model.recurrent is not None
            or model.outputs_of or model.auxiliary or type(model.module) is not torch.nn.Sequential):
        return None
    weights = {id(m): i for i, (_, m) in enumerate(model.weight_layers)}
    acts = {id(m): (j, act) for j, (_, m, act) in enumerate(model.act_layers)}
    plan, seen = [], set()
    for m in model.module:
        inner = any(id(c) in weights or id(c) in acts for c in m.modules() if c is not m)
        if id(m) in seen or inner or getattr(m, "inplace", False):
            return None
        seen.add(id(m))
        plan.append((m, weights.get(id(m)), *acts.get(id(m), (None, None))))
    if sum(i is not None for _, i, _, _ in plan) != len(weights) or sum(j is not None for *_, j, _ in plan) != len(acts):
        return None
    return plan


class Probe:
    """Hooks on a Model; ``collect`` returns one step's statistics as numpy arrays."""

    def __init__(self, model: Model):
        self.model = model
        self.layer_names = [n for n, _ in model.weight_layers]
        self.act_names = [n for n, _, _ in model.act_layers]
        self._tracer = model.tracer   # a user's module: activations come from the tracer
        self._active = False     # hooks measure only while True (not during evaluation)
        self.want_hist = False   # histogram of z this step (the live panel asks for it)
        L = len(self.layer_names)
        w, w_owner, b, b_owner = [], [], [], []
        for i, (_, m) in enumerate(model.weight_layers):
            for name, p in m.named_parameters(recurse=not model.own_params):
                # the parameter's own name: a recurrent layer's are "cell.bias_ih", attention's
                # "in_proj_bias", "bias_k"; everything else (weights, a norm's scale) is a weight
                is_weight = "bias" not in name.rsplit(".", 1)[-1]
                (w if is_weight else b).append(p)
                (w_owner if is_weight else b_owner).append(i)
        self.weights, self.biases = w, b
        self._params = w + b
        # the squared norms of weights add up in slots 0..L-1, of biases in L..2L-1
        self._owner = torch.tensor(w_owner + [L + i for i in b_owner], dtype=torch.long)
        self._owner_list, self._weight_owner_list = w_owner + [L + i for i in b_owner], list(w_owner)
        self._owner_ext = self._owner_list + [2 * L + i for i in w_owner]   # and ||W||^2 in 2L..3L-1
        # update_ratio: ||W' - W||^2 adds up in slots 0..L-1, ||W||^2 in L..2L-1
        self._ratio_owner = torch.tensor(w_owner + [L + i for i in w_owner], dtype=torch.long)
        self._has_bias = torch.zeros(L, dtype=torch.bool)
        self._has_bias[torch.tensor(b_owner, dtype=torch.long)] = True
        self._on_device = {}     # the index tensors above, moved to the parameters' device once
        self.units = [self._units_of(m) for _, m in model.weight_layers]
        self._unit_start = np.cumsum([0] + self.units)[:-1]
        self._handles, self._scratch, self._before = [], {}, None
        self._carry = {}   # weight index -> (version, storage, ||W||^2) of a buffer that holds it
        # a layer's onepass plan, made the first time it is measured (("delta", i) for weight layer
        # i's dL/dz in its hook, ("delta small", i) in collect)
        self._lean = {}
        self._on_grads = {}   # weight layer -> the pre-hook that takes its dL/dz (see _layer_hook)
        # activation layer -> what measures its z and a from then on, made the first time a large
        # layer is measured (see _quick_act)
        self._act_quick = {}
        self._layer_hooks = [self._layer_hook(i) for i in range(L)]
        # a plain stack the engine built: the probe's own forward keeps what the hooks would (a
        # module hook costs more Python than the layer it watches on a small net); else hooks
        self._taps = _tap_plan(model)
        if self._taps is not None:
            model.taps = self._tapped_forward
            self._tap_modules = [m for m, *_ in self._taps]
            # every hook dict of the stack's modules (a hook is added to its module's dict in place):
            # whether any holds a hook is one C-level any() a step
            self._tap_hook_dicts = [d for m in self._tap_modules for d in (
                m._forward_hooks, m._forward_pre_hooks, m._backward_hooks, m._backward_pre_hooks)]
        else:
            for i, (_, m) in enumerate(model.weight_layers):
                self._handles.append(m.register_forward_hook(self._layer_hooks[i]))
        self._step_follows = False   # begin(step_follows=True): see begin
        self._flat_params, self._flat_builds = None, 0   # zero_grad: flat parameter buffers (small plain stacks)
        self.fused_steps = 0   # optimiser steps made by sgd_step
        self._flat_fit = None  # FlatParams.fits of the module's parameters (decided once)
        if self._tracer is not None:
            self._tracer.on_act = self._on_traced_act
        elif self._taps is None:
            for i, (_, m, act) in enumerate(model.act_layers):
                self._handles.append(m.register_forward_hook(self._act_hook(i, act)))
        if model.recurrent is not None:
            model.recurrent.on_hidden = self._on_hidden
        # per activation layer: the shift of the next step's moments (None: not known
        # yet), the last mean where |mean| > 2 std, else 0 (no extra pass)
        self._shift = [None] * len(self.act_names)
        # layers measured inside their hooks: a kept tensor of theirs was changed in place
        self._eager_act, self._hooked = set(), set()
        self._checked = False   # the first step (every layer measured in its hooks) is done
        self._reset()

    @property
    def active(self) -> bool:
        return self._active

    @active.setter
    def active(self, on: bool) -> None:
        """Measure (True) or not; a user's module is traced only while this is on."""
        self._active = bool(on)
        if self._tracer is not None:
            (self._tracer.start if on else self._tracer.stop)()

    @staticmethod
    def _units_of(m) -> int:
        if isinstance(m, torch.nn.RNNBase):   # its output: every direction's hidden state
            return m.hidden_size * (2 if m.bidirectional else 1)
        for name in ("out_features", "num_features", "units", "out_channels", "embedding_dim", "embed_dim",
                     "hidden_size"):
            if isinstance(getattr(m, name, None), int):
                return getattr(m, name)
        ns = getattr(m, "normalized_shape", None)
        if ns:
            return int(ns[-1])
        return int(next(p for n, p in m.named_parameters() if n.rsplit(".", 1)[-1].startswith("weight")).shape[0])

    def remove(self) -> None:
        """Take every hook off: the module is as it was (a user's module: its tracer too)."""
        self.active = False
        for h in self._handles:
            h.remove()
        if self.model.taps == self._tapped_forward:
            self.model.taps = None
        if self.model.recurrent is not None:
            self.model.recurrent.on_hidden = None
            if hasattr(self.model.recurrent, "remove"):   # an unrolled fused layer: its own forward back
                self.model.recurrent.remove()
        if self._tracer is not None:
            self._tracer.remove()

    def _reset(self) -> None:
        # what the hooks keep for collect to reduce (tensors with their versions), and
        # what they reduced themselves (the first step, large layers, layers changed in place)
        self._out, self._out_check = {}, {}            # layer -> (output retaining its grad, version)
        self._delta_done = {}                          # layer -> ((norm, sums of |dL/dz_j|), entries per unit)
        self._act_kept, self._act_check = {}, {}       # act layer -> (z, a, their versions)
        self._act_done = {}                            # act layer -> five raw moments
        self._delta_fast, self._act_fast = {}, {}       # the same by engine/onepass.py, as floats and numpy
        self._act_sizes = [None] * len(self.act_names)  # (entries, units) of each z
        self._act_shift = [0.0] * len(self.act_names)   # shift of this step's moments
        self._hist = [None] * len(self.act_names)
        self._time = {}                                 # t -> (dL/dh_t, its version)
        self._time_rows = {}                            # (t, ...) -> ([dL/dh_t of each t], its version)
        self._raw_grad = self._raw_update = None         # take_grad_norms, take_update_ratio: (squares, order)
        self._flat_live = False                          # zero_grad made this step's gradients flat

    def _on(self, t: torch.Tensor, device) -> torch.Tensor:
        got = self._on_device.get((id(t), device))
        if got is None:
            got = self._on_device[(id(t), device)] = t.to(device)
        return got

    def _delta_input(self, i: int, g: torch.Tensor) -> tuple:
        """(dL/dz as delta_stats takes it, whether its unit axis holds the layer's units, entries per unit)."""
        if g.dim() <= 1:
            g = g.reshape(-1, 1)
        return g, g.shape[_unit_axis(g)] == self.units[i], g.numel() // self.units[i]

    # ------------------------------------------------------------------ hooks
    def _layer_hook(self, i):
        lean = self._lean

        def on_grad(g):
            plan = lean.get(("delta", i))   # (run, per_unit, count): run refuses another shape or layout
            if plan is not None:
                got = plan[0](g)
                if got is not None:
                    self._delta_fast[i] = (got, plan[1], plan[2])
                    if self._delta_done:
                        self._delta_done.pop(i, None)
                    return None
            shape = g.shape
            g, per_unit, count = self._delta_input(i, g.detach())
            plan = onepass.delta_plan(g, _unit_axis(g)) if onepass.fits(g) else None
            got = plan(g) if plan is not None else None
            if got is not None:   # (collect makes the torch tensors of every such layer at once)
                self._delta_fast[i] = (got, per_unit, count)
                self._delta_done.pop(i, None)
                if g.dim() == len(shape):   # (the shape as it came: the plan takes it as it is)
                    # a [rows, units] layer: read at its address, with the least Python (delta_at)
                    lean[("delta", i)] = (onepass.delta_at(g) if onepass.rows_form(g) is not None else plan,
                                          per_unit, count)
            else:
                self._delta_done[i] = (delta_stats(g[None], per_unit, self._scratch), count)
                self._delta_fast.pop(i, None)
            return None

        def on_grads(grads):   # a pre-hook of out's grad_fn, out its first output (as a tensor hook)
            if grads[0] is not None:
                on_grad(grads[0])
        self._on_grads[i] = on_grads

        also = self.model.outputs_of.get(i, ())

        def hook(module, inputs, output):
            out = _first_tensor(output)
            if not (self.active and isinstance(out, torch.Tensor) and out.requires_grad):
                return
            for j in also:   # a layer whose output is this one's (attention's out_proj)
                self._layer_hooks[j](module, inputs, output)
            if self._checked and i not in self._hooked and out.grad_fn is not None and out.numel() <= STACK_MAX:
                # small: autograd keeps dL/dz in out.grad (no Python call in the backward pass)
                # and collect reduces it with its like; on reuse, the first call's output, the
                # one whose gradient is complete last
                if i not in self._out:
                    out.retain_grad()
                    self._out[i] = (out, out._version)
            else:
                fn = out.grad_fn
                if fn is not None and out.output_nr == 0:   # (half the cost of Tensor.register_hook)
                    fn.register_prehook(self._on_grads[i])
                else:
                    out.register_hook(on_grad)
                if not self._checked:  # the first step: collect checks that out stays as it is
                    self._out_check[i] = (out, out._version)
        return hook

    def _act_hook(self, i, act):
        def hook(module, inputs, output):
            if self.active:
                self._act_seen(i, act, inputs[0], _first_tensor(output))
        return hook

    def _tapped_forward(self, module, x):
        """``module(x)`` of a plain stack, layer by layer, keeping what the hooks would keep.

        Each layer's own ``forward`` is called where no module has hooks (``Module.__call__``
        costs more than a small layer's arithmetic); after the first step a small layer's
        output is kept (retaining its grad) and an activation's z and a here, without a call."""
        if not self._active:
            return module(x)
        taps = self._taps
        direct = not (_global_hooks() or any(self._tap_hook_dicts))
        hooks, act_seen, out, kept = self._layer_hooks, self._act_seen, self._out, self._act_kept
        keep = self._checked and not self.want_hist
        hooked, eager, shift, on_grads = self._hooked, self._eager_act, self._shift, self._on_grads
        quick = self._act_quick
        for m, i, j, act in taps:
            y = m.forward(x) if direct else m(x)
            if i is not None:
                fn = y.grad_fn
                if keep and i not in hooked and fn is not None and y.numel() <= STACK_MAX and i not in out:
                    y.retain_grad()   # (what the layer hook does for a small layer after the first step)
                    out[i] = (y, y._version)
                elif keep and fn is not None and y.output_nr == 0:
                    fn.register_prehook(on_grads[i])   # (what the layer hook does for a large layer)
                else:
                    hooks[i](m, (x,), y)
            elif j is not None:
                q = quick.get(j)
                if q is not None and keep and q(x, y):
                    pass   # (a large layer seen before: measured here, see _quick_act)
                elif keep and shift[j] is not None and j not in eager and x.numel() <= STACK_MAX and x.dim():
                    kept[j] = (x, y, x._version, y._version)   # (as _act_seen)
                else:   # (the first step, a histogram step, a layer its plan refused this step)
                    act_seen(j, act, x, y)
            x = y
        return x

    def _on_traced_act(self, i, z, a):
        """A call site of a user's module (engine/tracer.py): z taken before the call."""
        if not self.active:
            return
        while len(self.act_names) < len(self.model.act_layers):   # sites found on the first step
            self.act_names.append(self.model.act_layers[len(self.act_names)][0])
            self._shift.append(None)
            self._act_sizes.append(None)
            self._act_shift.append(0.0)
            self._hist.append(None)
        self._act_seen(i, self.model.act_layers[i][2], z, a)

    def _act_seen(self, i, act, z, a):
        if z.dim() == 0:
            z, a = z.reshape(1), a.reshape(1)
        if self.want_hist:
            self._hist[i] = torch.histc(z.detach().float().clamp(*HIST_RANGE), HIST_BINS, *HIST_RANGE)
        shift = self._shift[i]
        if shift is not None and i not in self._eager_act and z.numel() <= STACK_MAX:
            self._act_kept[i] = (z, a, z._version, a._version)   # reduced in collect (under no_grad)
            self._act_done.pop(i, None)
            self._act_fast.pop(i, None)
            return
        quick = self._act_quick.get(i)   # (a large layer seen before: its plan, this step's shift)
        if shift is not None and quick is not None and quick(z, a):
            return
        z, a = z.detach(), a.detach()   # reduced here, in the forward pass: no graph
        kept = (z, a, z._version, a._version)
        if shift is None:  # the first step decides from z itself (one host copy, once)
            shift = _shifts_for(*np.array([[float(z.mean())], [float(z.std(correction=0))]]))[0] if z.numel() else 0.0
            self._act_check[i] = kept     # and collect checks that z, a stay as they are
        self._act_sizes[i], self._act_shift[i] = _sizes(z), shift
        plan = onepass_plan(act, z, a)
        raw = None if plan is None else plan(z, a, shift)
        if raw is not None:   # five floats (collect makes one tensor of every such layer's)
            self._act_fast[i] = raw
            self._act_done.pop(i, None)
            if a.shape == z.shape and onepass.rows_form(z) is not None and onepass.rows_form(a) is not None:
                kind = onepass_kind(act)   # (a [rows, units] layer: read at its address, with the least Python)
                plan = onepass.activation_at(kind, z, kind_root(kind, z.dtype))
            self._act_quick[i] = self._quick_act(i, plan, self._act_sizes[i])
        else:
            self._act_done[i] = activation_moments(act, z[None], a[None], self._scratch, [shift])
            self._act_fast.pop(i, None)
        self._act_kept.pop(i, None)

    def _quick_act(self, i, run, sizes):
        """What measures activation layer i's z and a from its second step on (``run``: its
        onepass.activation_at or activation_plan): True where taken, False where run refuses them
        (another shape or layout; a sum not finite: see _act_seen)."""
        shifts = self._shift

        def quick(z, a):
            shift = shifts[i]
            raw = run(z, a, shift)
            if raw is None:
                return False
            self._act_fast[i] = raw
            self._act_sizes[i], self._act_shift[i] = sizes, shift
            if self._act_done or self._act_kept:
                self._act_done.pop(i, None)
                self._act_kept.pop(i, None)
            return True
        return quick

    def _on_hidden(self, t, h):
        """h_t of time step t (its gradient is dL/dh_t), or, t a list of steps, h holds theirs on its first axis."""
        if self.active and h.requires_grad:
            if isinstance(t, list):
                h.register_hook(lambda g, t=tuple(t): self._time_rows.__setitem__(t, (g.detach(), g._version)))
            else:
                h.register_hook(lambda g, t=t: self._time.__setitem__(t, (g.detach(), g._version)))

    # ------------------------------------------------------------------ per step
    def begin(self, want_hist: bool = False, step_follows: bool = False) -> None:
        """Measure the next forward and backward pass. ``step_follows``: the caller takes
        ``take_grad_norms`` before the optimiser step and ``take_update_ratio`` after it, and
        nothing but the step changes the weights in between (the Trainer): the weights' squared
        norms at the step's start are then taken in the gradient norms' own calls, and large
        weights are carried from step to step (see ``_carried``).

        (Taking a large weight's norms and its copy in a post-accumulate-grad hook, while W and
        dL/dW are in cache, was measured: no gain on the 20 x 256 net, 1.00-1.03x; not kept.)"""
        self._reset()
        self._step_follows = step_follows
        self.want_hist = want_hist
        self.active = True    # (re)starts the tracer of a user's module: call ordinals from 1

    @property
    def parameters(self) -> list:
        """The measured parameters (every weight, then every bias), the order of ``grad_norms(norms)``."""
        return self._params

    def pause(self) -> None:
        """Stop measuring, by flags only: safe inside a backward pass (maybe on an autograd
        thread), where the tracer's function mode must not be left; ``active = False`` on the
        user's thread leaves it later."""
        self._active = False
        if self._tracer is not None:
            self._tracer.pause()

    def grad_norms(self, norms: list | None = None):
        """Weight and bias gradient norms per layer (call after backward, before clipping).

        ``norms``: instead of the parameters' ``.grad``, one norm per parameter of
        ``self.parameters`` (a 0-d tensor, None where it got no gradient), e.g. read before
        DDP's all-reduce."""
        L = len(self.layer_names)
        if not self._params:
            return torch.zeros(L), torch.full((L,), math.nan)
        dev = self._params[0].device
        if norms is None:   # (the Trainer takes the weights' norms with these: take_grad_norms)
            sq, order = square_norms([p.grad for p in self._params])
        else:
            nan = torch.tensor(math.nan, device=dev)
            sq = torch.stack([nan if n is None else n for n in norms]).double().square()
            order = list(range(len(norms)))
        # a weight that took no part in the loss: NaN, not a made-up 0
        per_layer = self._slots(sq, order, self._owner_list, 2 * L, dev).sqrt()
        return per_layer[:L], torch.where(self._on(self._has_bias, dev), per_layer[L:], math.nan)

    def _split_of(self, ts: list, tag=None):
        """``norm_split(ts)``, cached by the list's length and first dtype and device (the parameters'
        shapes are fixed) and ``tag`` (lists of other makeups); a list with a None tensor (a gradient
        missing) gets a fresh split."""
        t0 = ts[0]
        key = ("split", len(ts), t0.dtype, t0.device, tag) if t0 is not None else None
        split = self._on_device.get(key)
        if split is None:   # (checked once: every tensor of the layout, no gradient missing)
            split = norm_split(ts)
            if key is not None and not split[2]:
                self._on_device[key] = split
        elif any(t is None for t in ts):
            split = norm_split(ts)
        return split

    def _slots(self, sq: torch.Tensor, order: list, owner: list, slots: int, dev) -> torch.Tensor:
        """The per-slot sums of squared norms ``sq`` (of the tensors ``order``, each owned by a slot)."""
        key = (tuple(order), id(owner), dev)
        index = self._on_device.get(key)
        if index is None:
            index = self._on_device[key] = torch.tensor([owner[i] for i in order], dtype=torch.long, device=dev)
        return torch.zeros(slots, device=dev, dtype=torch.float64).index_add_(0, index, sq)

    # ------------------------------------------------------------------ the weights' change
    # With ``begin(step_follows=True)`` (the Trainer: only its optimiser step changes the weights)
    # take_update_ratio takes each large CPU weight's change in one fused pass that also copies W' into
    # its buffer and takes ||W'||^2 (``onepass.diff_copy``). The next step then neither copies W nor
    # takes ||W||^2 again: 3 passes over W instead of 5. A weight is carried only while its version
    # counter and storage are those the pass saw; anything else that changed it in place since
    # (a load, a reset, a user's edit under no_grad) makes it copied and measured afresh.
    def _carried(self) -> list:
        """Indices of the weights whose buffer still holds them (see above), with ||W||^2 known."""
        if not self._carry:
            return []
        return [k for k, c in self._carry.items()
                if c[0] == self.weights[k]._version and c[1] == self.weights[k].data_ptr()]

    def _before_buffers(self) -> list:
        ws = self.weights
        if self._before is None or any(b.shape != w.shape or b.device != w.device or b.dtype != w.dtype
                                       for b, w in zip(self._before, ws)):
            self._before = [torch.empty_like(w, memory_format=torch.contiguous_format) for w in ws]
            self._carry = {}
            self._on_device.pop(("carry fits", len(ws)), None)   # (decided again for the new buffers)
        return self._before

    def weights_before(self):
        """A copy of every weight, into buffers kept from step to step (no allocation); a weight
        that the last step's update_ratio carried is in its buffer already."""
        if self._flat_live:   # one copy of the flat buffer (take_update_ratio knows it)
            self._flat_params.copy_weights()
            return self._flat_params.before
        with torch.no_grad():
            before = self._before_buffers()
            carried = set(self._carried()) if self._step_follows else ()
            if not self._step_follows:
                self._carry = {}
            if carried:
                todo = [k for k in range(len(before)) if k not in carried]
                if todo:
                    torch._foreach_copy_([before[k] for k in todo], [self.weights[k] for k in todo])
            elif before:
                torch._foreach_copy_(before, self.weights)   # under no_grad: no detach needed
            return before

    def _diff_carry(self, before: list, ws: list) -> tuple:
        """``diff_squares(before, ws)``, the large CPU weights by ``onepass.diff_copy``: their buffers
        then hold W', and ``_carry`` its version, storage and ||W'||^2 for the next step."""
        fits = self._on_device.get(("carry fits", len(ws)))
        if fits is None:
            fits = self._on_device[("carry fits", len(ws))] = [
                k for k, (b, w) in enumerate(zip(before, ws)) if b.dtype == w.dtype and onepass.fits(b, w)]
        if not fits:
            return diff_squares(before, ws, self._split_of(before))
        self._carry = {}
        num = []
        for k in fits:
            d, q = onepass.diff_copy(before[k], ws[k])
            num.append(d)
            self._carry[k] = (ws[k]._version, ws[k].data_ptr(), q)
        out, order = torch.tensor(num, dtype=torch.float64), list(fits)
        taken = set(fits)
        rest = [k for k in range(len(ws)) if k not in taken]
        if rest:
            sq, sub = diff_squares([before[k] for k in rest], [ws[k] for k in rest])
            out, order = torch.cat([out, sq]), order + [rest[j] for j in sub]
        return out, order

    def update_ratio(self, before):
        L = len(self.layer_names)
        if not self.weights:
            return torch.zeros(L)
        dev = self.weights[0].device
        with torch.no_grad():
            ws = self.weights   # under no_grad
            owner = self._weight_owner_list
            den, den_order = square_norms(before)   # ||W||^2 at the step's start
            den = self._slots(den, den_order, owner, L, dev)
            num, num_order = diff_squares(before, ws, self._split_of(before))   # ||W - W'||^2 (before overwritten)
            num = self._slots(num, num_order, owner, L, dev)
            self.weight_norm = den.sqrt()   # ||W|| before the step, for weight_rms
            return num.div_(den).sqrt_()

    def weight_rms(self) -> np.ndarray:
        """||W|| / sqrt(number of weight entries) per layer at the step's start (NaN before update_ratio)."""
        L = len(self.layer_names)
        rms, self._rms = getattr(self, "_rms", None), None
        if rms is not None:   # collect placed it (take_update_ratio)
            return rms
        norm = getattr(self, "weight_norm", None)
        if norm is None:
            return np.full(L, np.nan)
        self.weight_norm = None
        return norm.detach().cpu().double().numpy() / np.sqrt(self._weight_sizes_np())

    def _weight_sizes_np(self) -> np.ndarray:
        """Weight entries per layer (NaN for a layer without weights), cached."""
        if getattr(self, "_weight_sizes", None) is None:
            sizes = np.zeros(len(self.layer_names))
            np.add.at(sizes, self._ratio_owner[: len(self.weights)].numpy(), [p.numel() for p in self.weights])
            self._weight_sizes = np.where(sizes > 0, sizes, np.nan)
        return self._weight_sizes

    # ------------------------------------------------------------------ after the step
    def _unchanged(self, kept: dict, lost: set) -> dict:
        """The kept tensors that nothing changed in place since their hook; the others' layers
        go to ``lost`` (measured in their hooks from now on)."""
        ok = {}
        for i, k in kept.items():   # (tensor, version) or (z, a, version, version): no generator a layer
            if k[0]._version == k[1] if len(k) == 2 else (k[0]._version == k[2] and k[1]._version == k[3]):
                ok[i] = k
            else:
                lost.add(i)
        return ok

    def _neuron_index(self, idx: list) -> np.ndarray:
        """The positions in neuron_grad of the units of the layers ``idx``, in order (cached)."""
        key = ("units", tuple(idx))
        got = self._on_device.get(key)
        if got is None:
            got = self._on_device[key] = np.concatenate(
                [np.arange(self._unit_start[i], self._unit_start[i] + self.units[i]) for i in idx])
        return got

    def _reduce_deltas(self) -> list:
        """[(layer indices, norms [k], sums of |dL/dz_j| [k, units or 0], entries per unit [k])]."""
        self._unchanged(self._out_check, self._hooked)
        out = [([i], *r, [count]) for i, (r, count) in self._delta_done.items()]
        fast = {}
        if self._delta_fast:   # one group a unit count
            idx, vals = list(self._delta_fast), list(self._delta_fast.values())
            kinds = list(zip(map(_SECOND, vals), map(len, map(_SECOND, map(_FIRST, vals)))))
            if len(set(kinds)) == 1:   # (the rule: every layer of one width; no Python a layer)
                fast[kinds[0]] = idx
            else:
                for i, kind in zip(idx, kinds):
                    fast.setdefault(kind, []).append(i)
        for (per_unit, units), idx in fast.items():   # (numpy: placed by collect without a host copy)
            got = [self._delta_fast[i] for i in idx]
            norms = np.sqrt(np.array([sq for (sq, _), _, _ in got], dtype=np.float64))
            sums = np.array([s for (_, s), _, _ in got]) if per_unit else np.zeros((len(idx), 0))
            out.append((idx, norms, sums, [count for *_, count in got]))
        groups, kept = {}, {}
        for i, (o, _) in self._unchanged(self._out, self._hooked).items():
            if o.grad is not None:                       # None: no gradient reached it (NaN)
                kept[i] = g, per_unit, _ = self._delta_input(i, o.grad)
                groups.setdefault((g.shape, g.dtype, g.device, per_unit), []).append(i)
        if onepass.available():   # a group of few small layers: one kernel call each (a group's torch
            for key in [k for k, idx in groups.items() if len(idx) <= FEW and onepass.fits(kept[idx[0]][0], small=True)]:
                idx = groups.pop(key)   # reductions cost ~10 calls, 100-200 us right after a step)
                for i in idx:
                    g, per_unit, count = kept[i]
                    plan = self._lean.get(("delta small", i))
                    if plan is None or plan[0] != g.shape:
                        plan = self._lean[("delta small", i)] = (g.shape, onepass.delta_plan(g, _unit_axis(g)))
                    got = plan[1](g)
                    if got is None:   # (not finite: the torch path)
                        groups.setdefault(key, []).append(i)
                        continue
                    sq, sums = got
                    out.append(([i], np.array([math.sqrt(sq)]), sums[None] if per_unit else np.zeros((1, 0)), [count]))
        for (*_, per_unit), idx in groups.items():
            out.append((idx, *over_layers(lambda s, _: delta_stats(s[0], per_unit, self._scratch),
                                          ([kept[i][0] for i in idx],), idx), [kept[i][2] for i in idx]))
        return out

    def _reduce_acts(self) -> list:
        """[(activation layer indices, five raw moments [k])] of this step's activation layers."""
        self._unchanged(self._act_check, self._eager_act)
        out = [([i], raw) for i, raw in self._act_done.items()]
        if self._act_fast:   # [5, k]: stat after stat, as a group's (numpy: no host copy)
            out.append((list(self._act_fast), (np.array(list(self._act_fast.values()), dtype=np.float64).T.ravel(),)))
        acts = [act for _, _, act in self.model.act_layers]
        groups = {}
        for i, (z, a, *_) in self._unchanged(self._act_kept, self._eager_act).items():
            self._act_sizes[i], self._act_shift[i] = _sizes(z), self._shift[i]
            groups.setdefault((_act_key(acts[i]), z.shape, a.shape, z.dtype, z.device), []).append(i)
        for idx in groups.values():
            act = acts[idx[0]]
            out.append((idx, over_layers(
                lambda s, shifts: activation_moments(act, s[0], s[1], self._scratch, shifts),
                ([self._act_kept[i][0] for i in idx], [self._act_kept[i][1] for i in idx]),
                [self._act_shift[i] for i in idx])))
        return out

    def _reduce_times(self) -> tuple:
        """(the time steps t, ||dL/dh_t|| of each that nothing changed in place)."""
        kept = self._unchanged(self._time, set())
        rows = self._unchanged(self._time_rows, set())   # (a fused layer's: one tensor a direction)
        ts = sorted(kept, key=_time_order)
        if not ts and not rows:
            return ts, torch.zeros(0)
        gs = [kept[t][0] for t in ts]
        norms = [_time_norms(g) for g, _ in rows.values()]
        if len({g.shape for g in gs}) == 1:
            norms.append(over_layers(lambda s, _: _norms(s[0]), (gs,), ts)[0])
        else:
            norms += [safe_norms(g[None]) for g in gs]
        return [t for keys in rows for t in keys] + ts, torch.cat(norms)

    def _placement(self, deltas: list, acts: list) -> dict:
        """Where ``collect`` puts the results of this step's groups: numpy index arrays, cached by
        the groups' layout (after the first step the same every step), so that placing them is a
        few fancy-indexed assignments with no per-layer Python."""
        key = ("place", tuple(tuple(idx) for idx, *_ in deltas), tuple(bool(s.shape[1]) for _, _, s, _ in deltas),
               tuple(tuple(idx) for idx, _ in acts),
               tuple(map(self._act_sizes.__getitem__, itertools.chain.from_iterable(map(_FIRST, acts)))))
        plan = self._on_device.get(key)
        if plan is not None:
            return plan
        d_idx = [i for idx, *_ in deltas for i in idx]
        u_idx = [i for idx, _, group_sums, _ in deltas if group_sums.shape[1] for i in idx]
        a_idx = [i for idx, _ in acts for i in idx]
        gather, at = [], 0
        for idx, _ in acts:   # each group's five stats are [5, k], stat after stat
            k = len(idx)
            gather.append(at + np.arange(5)[None, :] * k + np.arange(k)[:, None])
            at += 5 * k
        sizes = np.array([self._act_sizes[i] for i in a_idx], dtype=np.float64).reshape(-1, 2)
        layers, kinds = self.model.act_layers, {}
        for k, i in enumerate(a_idx):
            kinds.setdefault(_act_key(layers[i][2]), []).append(k)
        plan = self._on_device[key] = {
            "d_idx": np.array(d_idx, dtype=np.intp),
            "u_idx": self._neuron_index(u_idx) if u_idx else None,
            "a_idx": np.array(a_idx, dtype=np.intp),
            "gather": np.concatenate(gather) if gather else np.zeros((0, 5), dtype=np.intp),
            "entries": sizes[:, 0], "unit_n": sizes[:, 1],
            "kinds": [(np.array([a_idx[k] for k in ks]), np.array(ks), layers[a_idx[ks[0]]][2])
                      for ks in kinds.values()]}
        return plan

    def _generic_finish(self, out, host, deltas, acts, norms, sums, raws, ts, time_norms, hist_np) -> np.ndarray:
        """``collect``'s placement of the per-group reductions: delta_norm, neuron_grad, time_grad_norm and
        preact_hist into ``out``; returns the activation statistics [A, 5]."""
        L, A = len(self.layer_names), len(self.act_names)
        # layers and units with nothing measured (no gradient reached them) stay NaN; every group
        # at once (a large layer is a group of its own: per-group numpy calls cost 50-100 us a layer)
        plan = self._placement(deltas, acts)
        delta, neuron = np.full(L, np.nan, dtype=np.result_type(host.dtype, norms.dtype)), np.full(sum(self.units), np.nan)
        count = np.ones(L)
        if plan["d_idx"].size:
            delta[plan["d_idx"]] = norms
            count[plan["d_idx"]] = [c for *_, counts in deltas for c in counts]   # entries per unit: per step
            if plan["u_idx"] is not None:   # the groups' [layers, units] sums, layer after layer
                neuron[plan["u_idx"]] = sums
        act = np.full((A, 5), np.nan)
        a_idx = plan["a_idx"]
        if a_idx.size:
            rows = raws[plan["gather"]]   # [activation layers, 5], in a_idx's order
            shifts = np.array([self._act_shift[i] for i in a_idx.tolist()], dtype=np.float64)
            for at_i, ks, kind in plan["kinds"]:   # one numpy pass per kind of activation
                act[at_i] = finish_activation(kind, rows[ks], plan["entries"][ks], plan["unit_n"][ks],
                                              shifts[ks])
            for i, shift in zip(a_idx.tolist(), _shifts_for(act[a_idx, 0], act[a_idx, 1])):
                self._shift[i] = shift
        # ||dL/dh_t|| of each time step t; a bidirectional layer's two directions together
        times = None
        if self.model.recurrent is not None:
            keys = [*self._time, *(t for steps in self._time_rows for t in steps)]
            position = {t: k for k, t in enumerate(sorted({_time_step(key) for key in keys}))}
            measured = dict(zip(ts, time_norms.astype(np.float64)))
            times = np.zeros(len(position))
            for key in keys:   # NaN where one was changed in place
                times[position[_time_step(key)]] += measured.get(key, np.nan) ** 2
            times = np.sqrt(times)
        out.update({"delta_norm": delta, "neuron_grad": (neuron / np.repeat(count, self.units)).astype(np.float32),
                    "time_grad_norm": times,
                    "preact_hist": hist_np.reshape(A, HIST_BINS) if hist_np.size else None})
        return act

    # ------------------------------------------------------------------ small layers: one buffer
    def _cat_sums(self):
        """The step's kept tensors reduced together, where every layer is small and [batch, units]
        (a plain stack of linear layers and activations): (layout, per-column sums [4, columns],
        shifts), or None (the per-group reductions run instead).

        One buffer Q [4, batch, columns] holds z of every activation layer (grouped by kind) and
        dL/dz of every layer with a weight, side by side: row 0 z - shift and dL/dz, row 1 their
        squares, row 2 f'(z) (sigmoid, tanh: from a) or z > 0 (ReLU, LeakyReLU), row 3 |z| > z*
        and |dL/dz|. One cat, a few elementwise calls over all layers at once and one sum over
        the batch: about ten torch calls a step whatever the depth (a module call or a reduction
        costs 2-5 us on a small layer, more than its arithmetic). ``_cat_finish`` makes the
        statistics from the column sums in numpy, in float64."""
        L, A = len(self.layer_names), len(self.act_names)
        if (self._delta_done or self._act_done or self._delta_fast or self._act_fast or self._time or len(self._out) != L or len(self._act_kept) != A
                or self.want_hist or not L):
            return None
        outs, acts = self._out, self._act_kept
        gs = []
        for i in range(L):   # changed in place since kept (the per-group path marks those), or no gradient
            o, version = outs[i]
            g = o.grad
            if g is None or o._version != version:
                return None
            gs.append(g)
        zs = []
        for j in range(A):
            z, a, vz, va = acts[j]
            if z._version != vz or a._version != va:
                return None
            zs.append(z)
        key = ("cat", tuple(map(_SHAPE, gs)), tuple(map(_SHAPE, zs)), gs[0].dtype, gs[0].device)
        layout = self._on_device.get(key)
        if layout is None:
            layout = self._on_device[key] = self._cat_layout(gs, [acts[j] for j in range(A)])
        if not layout:
            return None
        Q, (q0, q1, q2, q3), q0z = layout["Q"], layout["rows"], layout["q0z"]
        torch.cat([zs[j] for j in layout["order"]] + gs, dim=1, out=q0)
        torch.abs(q0, out=q3)
        for name, idx, v0, v2, v3, root in layout["groups"]:
            if root is not None:               # sigmoid, tanh: saturated where |z| > z*
                torch.gt(v3, root, out=v3)
            elif name in ("relu", "leaky_relu"):   # f' = 1 where z > 0 (of z itself, before any shift)
                torch.gt(v0, 0, out=v2)
        shifts = [self._shift[j] for j in layout["order"]]
        if any(shifts):   # moments about a shift near the mean (see activation_moments)
            row = np.repeat(np.asarray(shifts, dtype=np.float32), layout["act_units"])   # float32: exact in z's dtype
            q0z.sub_(torch.from_numpy(row).to(q0.device, q0.dtype))
        torch.mul(q0, q0, out=q1)
        for (name, idx, v0, v2, v3, root), a in zip(layout["groups"], layout["a"]):
            if root is not None:               # f' from a: a - a^2, or 1 - a^2 (a cat into a
                torch.cat([acts[j][1] for j in idx], dim=1, out=a)   # contiguous buffer is 2x faster)
                torch.addcmul(a if name == "sigmoid" else layout["one"], a, a, value=-1, out=v2)
        return layout, Q.sum(dim=1), shifts

    def _cat_layout(self, gs: list, acts: list):
        """The columns of ``_cat_sums``'s buffer for these tensors (cached by their shapes), or False."""
        ts = gs + [t for z, a, *_ in acts for t in (z, a)]
        B, dtype, dev = gs[0].shape[0], gs[0].dtype, gs[0].device
        layers = self.model.act_layers
        if (any(t.dim() != 2 or t.shape[0] != B or t.dtype != dtype or t.device != dev for t in ts)
                or dtype not in (torch.float32, torch.float64)
                or any(g.shape[1] != u for g, u in zip(gs, self.units))
                or any(z.shape != a.shape for z, a, *_ in acts)
                or any(layers[j][2].name not in CAT_KINDS for j in range(len(acts)))):
            return False
        kinds = {}
        for j in range(len(acts)):
            kinds.setdefault(_act_key(layers[j][2]), []).append(j)
        order = [j for idx in kinds.values() for j in idx]
        act_units = [acts[j][0].shape[1] for j in order]
        cz = sum(act_units)
        Q = torch.zeros(4, B, cz + sum(self.units), dtype=dtype, device=dev)
        rows = tuple(Q[r] for r in range(4))
        groups, at = [], 0
        for idx in kinds.values():
            act = layers[idx[0]][2]
            width = sum(acts[j][0].shape[1] for j in idx)
            cols = slice(at, at + width)
            root = saturation_root(act.name, dtype) if act.name in ("sigmoid", "tanh") else None
            groups.append((act.name, idx, rows[0][:, cols], rows[2][:, cols], rows[3][:, cols], root))
            at += width
        starts = np.cumsum([0] + act_units + self.units)[:-1]
        pos = {j: k for k, j in enumerate(order)}
        finish = [(np.array([pos[j] for j in idx]), layers[idx[0]][2]) for idx in kinds.values()]
        kind_of = [layers[j][2] for j in order]
        relu = np.array([k for k, a in enumerate(kind_of) if a.name in ("relu", "leaky_relu")], dtype=np.intp)
        no_dead = np.array([k for k, a in enumerate(kind_of) if a.name == "identity"
                            or (a.name == "leaky_relu" and a.slope != 0)], dtype=np.intp)
        ident = np.array([k for k, a in enumerate(kind_of) if a.name == "identity"], dtype=np.intp)
        # raw rows [sum z', sum z'^2, x, y, dead] as finish_activation takes them, from the column sums:
        # ReLU's y is its x (the active count), no dead units for identity and a leaky slope, no x, y
        # for identity (each fix: (rows, cols) to set, and where from, or None for 0)
        fixes = [fix for fix, idx in [(((relu, 3), (relu, 2)), relu), (((no_dead, 4), None), no_dead),
                                      (((ident, slice(2, 4)), None), ident)] if idx.size]
        units_np = np.asarray(act_units, dtype=np.float64)
        in_order = order == sorted(order)
        a_bufs = [torch.empty(v2.shape, dtype=dtype, device=dev) if root is not None else None
                  for _, _, _, v2, _, root in groups]
        return {"Q": Q, "rows": rows, "q0z": rows[0][:, :cz], "order": order, "act_units": act_units, "cz": cz,
                "a": a_bufs,
                "groups": groups, "one": Q.new_ones(()), "starts": starts, "B": B, "finish": finish,
                "fixes": fixes, "units_np": units_np, "entries": B * units_np, "f32": dtype == torch.float32,
                "order_np": None if in_order else np.array(order, dtype=np.intp),
                "inverse": None if in_order else np.argsort(np.array(order, dtype=np.intp))}

    def _cat_finish(self, layout: dict, S: np.ndarray, shifts: list) -> dict:
        """Contract 2's delta and activation statistics from ``_cat_sums``'s column sums [4, columns]
        (float64): per-layer sums by one reduceat; a layer whose float sums are not finite (overflow,
        NaN or inf in its tensors) is taken again by the per-layer reductions."""
        A, cz, B = len(self.act_names), layout["cz"], layout["B"]
        with np.errstate(invalid="ignore", over="ignore"):   # inf - inf: NaN, taken again below
            R = np.add.reduceat(S, layout["starts"], axis=1)    # [4, activation layers (in order), layers]
            # a float32 layer's squares that may be subnormal (see TINY_SQ) are taken again too
            finite = np.isfinite(R).all() and not (layout["f32"] and (R[1] < TINY_SQ).any())
            delta = np.sqrt(R[1, A:])
        neuron = S[3, cz:] * (1.0 / B)
        if not finite:
            good_sq = np.isfinite(R[1]) & ((R[1] >= TINY_SQ) if layout["f32"] else True)
        for i in [] if finite else np.flatnonzero(~good_sq[A:]).tolist():   # overflow, NaN, inf or tiny
            with torch.no_grad():
                norm, sums = delta_stats(self._out[i][0].grad[None], True, self._scratch)
            delta[i] = float(norm[0])
            neuron[self._unit_start[i]:self._unit_start[i] + self.units[i]] = sums[0].double().cpu().numpy() / B
        raw = np.empty((A, 5))
        raw[:, :4] = R[:, :A].T
        raw[:, 4] = np.add.reduceat(S[2, :cz] == 0, layout["starts"][:A])   # units with f' = 0 (or no z > 0) on every sample
        for cols, fix in layout["fixes"]:   # ReLU: saturated = active count (finish_activation's x and y)
            raw[cols] = raw[fix] if fix is not None else 0.0
        for k in [] if finite else np.flatnonzero(~(np.isfinite(raw[:, :3]).all(axis=1) & good_sq[:A])).tolist():
            j = layout["order"][k]   # the per-layer path
            z, a, *_ = self._act_kept[j]
            with torch.no_grad():
                raw[k] = [float(t) for t in activation_moments(self.model.act_layers[j][2], z[None], a[None],
                                                               self._scratch, [shifts[k]])]
        shift = np.array(shifts)
        if len(layout["finish"]) == 1:   # one kind of activation (every layer in order)
            (ks, kind), = layout["finish"]
            act = finish_activation(kind, raw, layout["entries"], layout["units_np"], shift)
        else:
            act = np.empty((A, 5))
            for ks, kind in layout["finish"]:   # one numpy pass per kind of activation
                act[ks] = finish_activation(kind, raw[ks], layout["entries"][ks], layout["units_np"][ks], shift[ks])
        for j, s in zip(layout["order"], _shifts_for(act[:, 0], act[:, 1])):
            self._shift[j] = s
        if layout["order_np"] is not None:   # back to the activation layers' own order
            act = act[layout["inverse"]]
        return {"delta_norm": delta, "neuron_grad": neuron.astype(np.float32), "act": act}

    # ------------------------------------------------------------------ the Trainer's norms
    def zero_grad(self, optimizer) -> None:
        """``optimizer.zero_grad(set_to_none=True)``; a small plain stack's parameters are made views
        of one flat buffer instead (engine/flat_params.py), and its gradients one zero_ call."""
        fp = self._flat_params
        if fp is not None and not fp.intact():   # moved, or its gradients set to None: build them again
            fp = self._flat_params = None
            self._flat_builds += 1
        if fp is None and self._taps is not None and self._flat_builds < 3 and self._flat_fits():
            L = len(self.layer_names)
            fp = self._flat_params = FlatParams(self._params, self._owner_list,
                                                self._weight_owner_list + [None] * len(self.biases), 2 * L, L)
        if fp is None:
            optimizer.zero_grad(set_to_none=True)
        else:
            fp.zero_grad()
            self._flat_live = True   # this step's gradients accumulate into the flat buffer

    def _flat_fits(self) -> bool:
        """``FlatParams.fits`` of the module's parameters, decided once (it walks every module)."""
        fits = self._flat_fit
        if fits is None:
            fits = self._flat_fit = FlatParams.fits(self.model.module, self._params)
        return fits

    def take_grad_norms(self) -> None:
        """``grad_norms`` for a caller that steps right after (``begin(step_follows=True)``, the
        Trainer): the squared norms of every gradient and of every weight stay one tensor, and
        ``collect`` (called without wg, bg, ur) places them per layer in numpy."""
        with torch.no_grad():
            if self._flat_live:
                self._raw_grad = (self._flat_params.squares(), FLAT)
                return
            carried = self._carried()
            if not carried:
                ts = [p.grad for p in self._params] + self.weights
                self._raw_grad = square_norms(ts, self._split_of(ts))
                return
            # the weights the last step carried: their ||W||^2 is known (see ``_carried``)
            held = set(carried)
            P, rest = len(self._params), [k for k in range(len(self.weights)) if k not in held]
            ts = [p.grad for p in self._params] + [self.weights[k] for k in rest]
            sq, order = square_norms(ts, self._split_of(ts, "carried"))
            sq = torch.cat([sq, torch.tensor([self._carry[k][2] for k in carried], dtype=torch.float64)])
            # positions in the list of every gradient and then every weight (as without a carry)
            self._raw_grad = sq, [i if i < P else P + rest[i - P] for i in order] + [P + k for k in carried]

    def take_update_ratio(self, before) -> None:
        """``update_ratio`` after ``take_grad_norms``: ||W' - W||^2 kept for ``collect``."""
        with torch.no_grad():
            if self._flat_live and before is self._flat_params.before:
                self._raw_update = (self._flat_params.diff_squares(), FLAT)
                return
            if before is self._before and onepass.available():   # the large weights: W' into their buffers
                self._raw_update = self._diff_carry(before, self.weights)
            else:
                self._raw_update = diff_squares(before, self.weights, self._split_of(before))

    def sgd_step(self, optimizer, lr: float, weight_decay: float) -> bool:
        """The Trainer's plain SGD step (``optimizer``: a torch.optim.SGD of one group, no momentum,
        see trainer.plain_sgd) made here, bit for bit as the optimiser makes it, with what
        ``take_grad_norms`` and ``take_update_ratio`` keep taken from the same pass over every
        parameter (``onepass.SGDSteps``: p and dL/dp read once, p written once; the torch path reads
        them five times more, with a few torch calls per parameter). False, with nothing done, where
        the kernels do not take the parameters or a gradient is missing: the caller steps as usual."""
        with torch.no_grad():
            if self._flat_live:
                sq, diff = self._flat_params.sgd_step(lr, weight_decay)
                self._raw_grad, self._raw_update = (sq, FLAT), (diff, FLAT)
                self.fused_steps += 1
                return True
            plan = self._sgd_plan(optimizer.param_groups[0]["params"])
            if plan is None:
                return False
            steps, norm_slots, diff_slots = plan
            out = steps.step(lr, weight_decay)
            if out is None:   # (a gradient missing this step; a parameter moved: planned again next step)
                if steps.moved:
                    self._on_device.pop("sgd plan", None)
                return False
            L = len(self.layer_names)
            # per slot as FlatParams gives them: gradients' squares, then the weights' (2L..3L-1)
            self._raw_grad = (np.bincount(norm_slots, weights=out[:, (0, 2)].T.ravel(), minlength=3 * L + 1), FLAT)
            self._raw_update = (np.bincount(diff_slots, weights=out[:, 1], minlength=L + 1), FLAT)
            self._carry = {}   # (the buffers hold no weight of this step's end)
            self.fused_steps += 1
        return True

    def _sgd_plan(self, params: list):
        """(onepass.SGDSteps of the optimiser's parameters, the slot of each one's squared gradient
        norm and then squared norm, the slot of each one's change) or None where the kernels do not
        take them or a measured parameter is not among them; cached for the list."""
        got = self._on_device.get("sgd plan")
        if got is not None and got[0] is params and len(got[1]) == len(params):
            return got[2]
        plan = None
        steps = onepass.SGDSteps(params) if params else None
        index = {id(p): k for k, p in enumerate(self._params)}
        if steps is not None and steps.usable and len({id(p) for p in params} & set(index)) == len(index):
            L, W = len(self.layer_names), len(self.weights)
            drop = 3 * L   # (a parameter the probe does not measure: its sums go to a slot not read)
            ks = [index.get(id(p)) for p in params]
            grad_slot = [drop if k is None else self._owner_list[k] for k in ks]
            weight_slot = [2 * L + self._owner_list[k] if k is not None and k < W else drop for k in ks]
            diff_slot = [self._owner_list[k] if k is not None and k < W else L for k in ks]
            plan = (steps, np.array(grad_slot + weight_slot, dtype=np.intp), np.array(diff_slot, dtype=np.intp))
        self._on_device["sgd plan"] = (params, list(params), plan)
        return plan

    def _raw_finish(self, sq: np.ndarray, num) -> dict:
        """weight_grad_norm, bias_grad_norm, update_ratio and weight_rms from the squared norms that
        ``take_grad_norms`` and ``take_update_ratio`` kept (``num`` None: no update, NaN)."""
        L = len(self.layer_names)
        order, num_order = self._raw_grad[1], (None if num is None else self._raw_update[1])
        key = ("raw", order if order is FLAT else tuple(order),
               num_order if num_order is None or num_order is FLAT else tuple(num_order))
        index = self._on_device.get(key)
        if index is None:   # (the flat buffers' squares come per slot already)
            index = self._on_device[key] = (
                None if order is FLAT else np.array([self._owner_ext[i] for i in order], dtype=np.intp),
                None if num_order in (None, FLAT) else np.array([self._weight_owner_list[i] for i in num_order],
                                                                dtype=np.intp),
                self._has_bias.numpy().copy())
        slots = sq if index[0] is None else np.bincount(index[0], weights=sq, minlength=3 * L)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_layer = np.sqrt(slots[:2 * L])
            den = slots[2 * L:3 * L]
            if num is None:
                ur, rms = np.full(L, np.nan), np.full(L, np.nan)
            else:
                num = num[:L] if index[1] is None else np.bincount(index[1], weights=num, minlength=L)
                ur = np.sqrt(num / den)
                rms = np.sqrt(den) / np.sqrt(self._weight_sizes_np())
        self._rms = rms
        return {"weight_grad_norm": per_layer[:L], "bias_grad_norm": np.where(index[2], per_layer[L:], np.nan),
                "update_ratio": ur}

    def collect(self, head: torch.Tensor, wg=None, bg=None, ur=None) -> dict:
        """Reduce what the hooks kept, then one host copy of everything, split into numpy arrays.

        wg, bg, ur None: the norms that ``take_grad_norms`` / ``take_update_ratio`` kept."""
        self.active = False
        dev = head.device
        L, A = len(self.layer_names), len(self.act_names)
        raw = wg is None
        with torch.no_grad():
            cat = self._cat_sums()
            if cat is None:
                deltas, acts, (ts, time_norms) = self._reduce_deltas(), self._reduce_acts(), self._reduce_times()
        if raw:   # (numpy arrays already where the flat buffers are on the CPU)
            sq = self._raw_grad[0]
            num = self._raw_update[0] if self._raw_update is not None else None
            norm_parts = [t.to(dev) for t in (sq, num) if isinstance(t, torch.Tensor)]
        else:   # norms in float64 (finite wherever the tensors are: see safe_norms): wg is cast, and the cat
            # promotes everything to it (no cast call per part); every part is one axis already
            norm_parts = [wg.to(dev, torch.float64), bg.to(dev), ur.to(dev)]   # (CPU zeros with no parameters)
        if cat is not None:
            layout, sums, shifts = cat
            parts = [head, *norm_parts, sums.reshape(-1)]
        else:
            hist = [h for h in self._hist if h is not None]

            def flat(ts, one_axis=False):   # one_axis: every tensor is [k] already (a reshape call each saved)
                if not ts:
                    return torch.zeros(0, device=dev)
                return torch.cat(ts if one_axis else [t.reshape(-1) for t in ts])
            hist = torch.cat(hist).float() if len(hist) == len(self._hist) and hist else torch.zeros(0, device=dev)
            # (the one-pass kernels' results are numpy already: only the torch ones take the host copy)
            d_norms, d_sums = [n for _, n, _, _ in deltas], [u for _, _, u, _ in deltas]
            a_raws = [t for _, raw_ in acts for t in raw_]
            parts = [head, *norm_parts, flat(_torch_only(d_norms), True), flat(_torch_only(d_sums)),
                     flat(_torch_only(a_raws), True),  # in z's own dtype (the cat promotes)
                     time_norms.reshape(-1).to(dev), hist]
        host = torch.cat(parts).cpu().numpy()
        ends = list(itertools.accumulate(p.numel() for p in parts))
        pieces = [host[a:b] for a, b in zip([0] + ends, ends)]
        out = {"head": pieces[0]}
        if raw:
            got = iter(pieces[1:1 + len(norm_parts)])
            out.update(self._raw_finish(*(next(got) if isinstance(t, torch.Tensor) else t for t in (sq, num))))
        else:
            out.update({"weight_grad_norm": pieces[1], "bias_grad_norm": pieces[2], "update_ratio": pieces[3]})
        if cat is not None:
            got = self._cat_finish(layout, pieces[-1].reshape(4, -1).astype(np.float64), shifts)
            act = got.pop("act")
            out.update(got, time_grad_norm=None, preact_hist=None)
        else:
            norms, sums, raws, time_norms, hist_np = pieces[1 + len(norm_parts):]
            norms, sums, raws = _merged(d_norms, norms), _merged(d_sums, sums), _merged(a_raws, raws)
            act = self._generic_finish(out, host, deltas, acts, norms, sums, raws, ts, time_norms, hist_np)
        out.update(zip(ACT_STATS, act.T.copy()))   # (each statistic a row of one copy)
        self._checked = True
        if self._tracer is not None:
            self._tracer.sealed = True   # the call sites are those of the first watched step
        self._reset()  # lets go of this step's tensors
        return out
