"""One nn.LSTM layer (one direction) whose backward pass hands out dL/dh_t of every time step.

PyTorch's fused LSTM hides h_t of the inner steps, so the total derivative dL/dh_t (through
every later step: Contract 2's time_grad_norm) cannot be read from its output gradient. The
zero taps of engine/tracer.py get it through the fused kernel by widening the layer's input
by H columns, which costs three extra products of the input's size (the forward product
with zeros, the taps' gradient, and a weight gradient that is zero), 1.5-1.7x the layer.

``lstm_layer`` is the layer as a ``torch.autograd.Function`` of its own: the forward is the
recurrence one time step at a time, the backward the textbook LSTM backward one time step at
a time, in which dL/dh_t = dL/dout_t + W_hh^T dL/dgates_(t+1) [+ dL/dh_n at the last step] is
a buffer row it has to compute anyway: that buffer is the gradient of the ``tap`` input (a
tensor whose values are never read), so one hook on the tap sees all of them, with nothing
computed that the plain backward does not need. dL/dW_hh is one product over the whole
sequence.

Float32 with numba (engine/lstm_loops.py): a time step is two calls each way. Forward: the
gate product h_(t-1) W_hh^T (torch.mm), then one compiled call for the rest (the input's part
where there are at most FOLD_INPUT features, and the bias; the four gates' nonlinearities; c_t,
tanh(c_t), h_t); with more features x W_ih^T + b is one product over the whole sequence
first. Backward: dL/dh_t (torch.addmm), then one compiled call (the dL/dc recursion, the four
gate gradients, the bias's and the few input weights' gradient sums). Float64, or no numba:
the same recurrence as torch calls, ~9 a step forward and 5 backward (the gates' local
derivatives for every step at once first).

Measured 2026-12-01 18:40 UTC, CPU, float32, 1 thread, load 2.0, forward + backward with a
tap against the fused kernel's (alternated, medians of 15 rounds): 100 steps x batch 64 x 64
units, 1 input feature (the memory task): 1.02x (torch calls 1.54x, taps 1.53x); 35 steps x
batch 20 x 256 units, 256 features (the LSTM LM's first layer): 0.86x (torch calls 0.95x,
taps 1.68x). Per time step of the memory task in the probed Trainer (cProfile, load 2.7): the
gate product 20 us, the compiled forward 21 us, dL/dh_t 27 us, the compiled backward 18 us;
dL/dW_hh 1.9 ms a step. The values equal the fused ones to float rounding
(tests/test_lstm_steps.py: both ways against float64 autograd).

The buffers of the forward (gates, c_t, tanh c_t) and the backward's gate gradients are kept
for the next call of the same shape (see ``_take``): fresh ones were ~1,250-2,000 page faults
a step (the memory task's layer 16.3 against 13.9 ms a call, medians, when glibc did not
reuse the memory).
"""
from __future__ import annotations

import collections
import functools
import weakref

import torch
from torch.autograd.function import once_differentiable


@functools.lru_cache(maxsize=1)
def _loops():
    """engine/lstm_loops.py (compiled on first use, cached on disk by numba), or None where numba
    is missing or broken: then the layer is the torch calls alone."""
    try:
        from . import lstm_loops
    except Exception:   # not installed, or a broken install
        return None
    return lstm_loops


def warm() -> None:
    """Load (or compile) the kernels now, not inside a run's first watched step."""
    k = _loops()
    if k is not None:
        x, h0 = torch.zeros(2, 1, 1), torch.zeros(1, 1)
        w = [torch.zeros(4, 1, requires_grad=True), torch.zeros(4, 1)]
        out, _, _ = _LSTMLayer.apply(x, h0, h0, *w, None, None, None, True)
        out.sum().backward()


# Buffers of a few recent shapes, used again: a fresh 6.5 MB buffer is fresh pages, each page
# faulted in and zeroed on its first write. The forward's (gates, c_t, tanh(c_t)) come back when
# the graph that keeps them is freed (a finalizer on its node: a second backward through a
# retained graph still finds them), the backward's scratch at its end.
_FREE: collections.OrderedDict = collections.OrderedDict()   # key -> [buffers, ...], newest last
_KEEP, _KEEP_EACH = 4, 2   # at most 4 keys (shapes), 2 sets each
_KEEP_BYTES = 64 << 20      # and no set larger than 64 MB (a large layer's pages cost little beside its products)


def _take(key, make):
    """A set of buffers for ``key`` from the pool, or ``make()``'s. (No lock: the list operations
    are atomic, and a finalizer that ran inside a lock here would wait on itself.)"""
    try:
        return _FREE[key].pop()
    except (KeyError, IndexError):
        return make()


def _give(key, bufs) -> None:
    """Hand a set of buffers back to the pool (the oldest key goes where there are too many)."""
    if sum(b.nbytes for b in (bufs if isinstance(bufs, tuple) else (bufs,))) > _KEEP_BYTES:
        return
    kept = _FREE.setdefault(key, [])
    if len(kept) < _KEEP_EACH:
        kept.append(bufs)
    _FREE.move_to_end(key)
    while len(_FREE) > _KEEP:
        _FREE.popitem(last=False)


class _LSTMLayer(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, tap, compiled):
        T, B, I = x.shape
        H = w_hh.shape[1]
        k = _loops() if compiled and is_compiled(x.dtype) else None
        whT = w_hh.t().contiguous()
        bias = None if b_ih is None else b_ih + b_hh
        key = (T, B, H, x.dtype)
        # gates: rows (i, f, g, o) as PyTorch's weights; cs: c_t (row 0 c0); tc: tanh(c_t)
        ctx.key, ctx.bufs = key, _take(key, lambda: (x.new_empty(T, B, 4 * H), x.new_empty(T + 1, B, H),
                                                      x.new_empty(T, B, H)))
        weakref.finalize(ctx, _give, key, ctx.bufs).atexit = False
        gates, cs, tc = ctx.bufs
        flat, xs = gates.view(T * B, 4 * H), x.reshape(T * B, I)
        fold = k is not None and I <= FOLD_INPUT   # the compiled step adds x_t W_ih^T + b itself
        if not fold and k is not None and bias is not None:   # the bias in the input product
            torch.addmm(bias, xs, w_ih.t(), out=flat)
            bias = None
        elif not fold:
            torch.mm(xs, w_ih.t(), out=flat)
        # the output is a tensor of its own (not a view), saved as the fused kernel saves its own:
        # changing it in place before the backward is refused there as with the fused kernel
        out = x.new_empty(T, B, H)
        h0 = h0.contiguous()
        cs[0] = c0
        G, hu = gates.unbind(0), out.unbind(0)
        prev = (h0, *hu[:-1])   # h_(t-1)
        if fold:
            gn, cn, tn, hn = (a.detach().numpy() for a in (gates, cs, tc, out))
            xn = x.detach().contiguous().numpy()
            wn = w_ih.detach().t().contiguous().numpy()
            bn = (bias if bias is not None else x.new_zeros(4 * H)).detach().numpy()
            step = k.forward_step_in
            with torch._C.DisableTorchFunction():   # (a function mode, as the tracer's: 2 us a call)
                for t in range(T):
                    torch.mm(prev[t], whT, out=G[t])
                    step(gn[t], xn[t], wn, bn, cn[t], cn[t + 1], tn[t], hn[t])
        elif k is not None:   # per step: the gate product, then one call for all the rest
            gn, cn, tn, hn = (a.detach().numpy() for a in (gates, cs, tc, out))
            step = k.forward_step
            with torch._C.DisableTorchFunction():
                for t in range(T):
                    G[t].addmm_(prev[t], whT)
                    step(gn[t], cn[t], cn[t + 1], tn[t], hn[t])
        else:
            _forward_torch(gates, bias, prev, whT, cs, tc, out)
        ctx.compiled, ctx.fold = k is not None, fold
        ctx.save_for_backward(x, h0, w_ih, w_hh, out)
        return out, out[T - 1].clone(), cs[T].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, dout, dhn, dcn, *_):
        x, h0, w_ih, w_hh, out = ctx.saved_tensors
        gates, cs, tc = ctx.bufs
        T, B, H = tc.shape
        need = ctx.needs_input_grad
        scratch = ("grads",) + ctx.key
        grads, dh = _take(scratch, lambda: torch.empty_like(gates)), torch.empty_like(tc)
        dc = dcn.contiguous().clone()
        G, du, dou = grads.unbind(0), dh.unbind(0), dout.unbind(0)
        db = dw_ih = None
        if ctx.compiled:
            k = _loops()
            gn, cn, tn, hn, grn = (a.numpy() for a in (gates, cs, tc, dh, grads))
            dcv, dbv = dc.numpy(), torch.zeros(4 * H, dtype=torch.float64)
            dbn = dbv.numpy()
            if ctx.fold:   # the input weights' gradient summed a step at a time as the bias's
                xn, dwv = x.detach().contiguous().numpy(), torch.zeros(x.shape[2], 4 * H, dtype=torch.float64)
                dwn = dwv.numpy()

                def step(t, nxt):
                    k.backward_step_in(gn[t], nxt, cn[t], tn[t], hn[t], dcv, grn[t], dbn, xn[t], dwn)
            else:
                def step(t, nxt):
                    k.backward_step(gn[t], nxt, cn[t], tn[t], hn[t], dcv, grn[t], dbn)
            for t in range(T - 1, -1, -1):
                if t < T - 1:
                    torch.addmm(dou[t], G[t + 1], w_hh, out=du[t])
                    step(t, gn[t + 1])
                else:
                    torch.add(dou[t], dhn, out=du[t])
                    step(t, None)
            db = dbv.to(gates.dtype)
            if ctx.fold and need[3]:
                dw_ih = dwv.t().to(gates.dtype, memory_format=torch.contiguous_format)
        else:
            _backward_torch(gates, cs, tc, w_hh, dout, dhn, dc, grads, dh)
        f0 = gates[0, :, H:2 * H]
        flat = grads.view(T * B, 4 * H)
        dx = (flat @ w_ih).view(x.shape) if need[0] else None
        dh0 = G[0] @ w_hh if need[1] else None
        dc0 = dc * f0 if need[2] else None
        if need[3] and dw_ih is None:
            dw_ih = flat.t() @ x.reshape(T * B, -1)
        dw_hh = None
        if need[4]:
            dw_hh = torch.mm(G[0].t(), h0)
            if T > 1:
                dw_hh.addmm_(flat[B:].t(), out[:-1].reshape((T - 1) * B, H))
        if need[5] or need[6]:
            db = flat.sum(0) if db is None else db
        else:
            db = None
        _give(scratch, grads)   # nothing returned is a view of it
        return dx, dh0, dc0, dw_ih, dw_hh, db, db, dh if need[7] else None, None


def _forward_torch(gates, bias, prev, whT, cs, tc, out):
    """The forward's time steps as torch calls (float64, or no numba): nine a step, in place."""
    T, H = tc.shape[0], tc.shape[2]
    G, if_, o_ = gates.unbind(0), gates[..., :2 * H].unbind(0), gates[..., 3 * H:].unbind(0)
    i, f, g, o = (gates[..., k * H:(k + 1) * H].unbind(0) for k in range(4))
    hu, cu, tu = out.unbind(0), cs.unbind(0), tc.unbind(0)
    for t in range(T):
        if bias is not None:
            G[t].add_(bias)
        G[t].addmm_(prev[t], whT)
        if_[t].sigmoid_()
        g[t].tanh_()
        o_[t].sigmoid_()
        torch.mul(f[t], cu[t], out=cu[t + 1])
        cu[t + 1].addcmul_(i[t], g[t])
        torch.tanh(cu[t + 1], out=tu[t])
        torch.mul(o[t], tu[t], out=hu[t])


def _backward_torch(gates, cs, tc, w_hh, dout, dhn, dc, grads, dh):
    """The backward's time steps as torch calls: the gates' local derivatives for every step at
    once, then per step one product and four element-wise calls; grads, dh and dc filled in."""
    T, B, H = tc.shape
    i, f, g, o = (gates[..., k * H:(k + 1) * H] for k in range(4))
    # what does not depend on the recurrence, for every step at once: dgates = D * (dc, dc, dc, dh)
    one = tc.new_ones(())
    torch.addcmul(gates[..., :2 * H], gates[..., :2 * H], gates[..., :2 * H], value=-1, out=grads[..., :2 * H])
    torch.addcmul(o, o, o, value=-1, out=grads[..., 3 * H:])
    torch.addcmul(one, g, g, value=-1, out=grads[..., 2 * H:3 * H])
    grads[..., :H].mul_(g)
    grads[..., H:2 * H].mul_(cs[:-1])
    grads[..., 2 * H:3 * H].mul_(i)
    grads[..., 3 * H:].mul_(tc)
    A = torch.addcmul(one, tc, tc, value=-1).mul_(o)   # dc_t += dh_t * A_t
    dc3 = dc[:, None]
    G, Go = grads.unbind(0), grads[..., 3 * H:].unbind(0)
    Gifg = grads[..., :3 * H].view(T, B, 3, H).unbind(0)
    du, dou, fu, Au = dh.unbind(0), dout.unbind(0), f.unbind(0), A.unbind(0)
    for t in range(T - 1, -1, -1):
        if t < T - 1:
            torch.addmm(dou[t], G[t + 1], w_hh, out=du[t])
            dc.mul_(fu[t + 1])
        else:
            torch.add(dou[t], dhn, out=du[t])
        dc.addcmul_(du[t], Au[t])
        Gifg[t].mul_(dc3)
        Go[t].mul_(du[t])


def usable(x: torch.Tensor, weights: list) -> bool:
    """Whether ``lstm_layer`` takes this call: a CPU float32 / float64 input and weights of its
    dtype, no autocast (elsewhere the tracer keeps the fused kernel with its taps)."""
    return (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
            and all(w.dtype == x.dtype and w.device == x.device for w in weights)
            and not torch.is_autocast_enabled("cpu"))


def is_compiled(dtype: torch.dtype) -> bool:
    """Whether ``lstm_layer`` runs its time steps by engine/lstm_loops.py for this dtype (float32,
    where numba is installed); else by torch calls."""
    return dtype == torch.float32 and _loops() is not None


# From this batch x hidden^2 on, ``lstm_layer`` costs less than the fused kernel with taps (whose
# extra products grow as batch x hidden^2 a step, while this layer's extra cost is its few calls
# a step): with its compiled steps from STEPS_FROM, with the torch calls alone (~15 a step) from
# TORCH_STEPS times that. Measured 2026-12-01 18:40 UTC, CPU, 1 thread, load 2-3, 100 steps, 8
# input features, the layer's forward and backward against the fused kernel's: compiled 1.36x
# at 65 k (batch 16 x 64 units; taps 1.44x), 1.44x / 1.68x at 33 k (32 x 32 / 8 x 64; taps
# 1.30x / 1.39x), 1.77x at 16 k (16 x 32; taps 1.30x); the benchmarks' layers in the docstring.
STEPS_FROM = 50_000
TORCH_STEPS = 10
FOLD_INPUT = 4   # up to this many input features the compiled steps add x_t W_ih^T themselves
# (100 steps x batch 64 x 64 units: with 4 features 13.5 ms against 14.5 for one product over
# the whole sequence, with 8 12.7 against 12.1)


def steps_from(dtype: torch.dtype = torch.float32) -> int:
    """The batch x hidden^2 from which ``lstm_layer`` pays for this dtype (see STEPS_FROM)."""
    return STEPS_FROM * (1 if is_compiled(dtype) else TORCH_STEPS)


def pays(batch: int, hidden: int, dtype: torch.dtype = torch.float32) -> bool:
    """Whether ``lstm_layer`` is the cheaper of the two exact ways for this layer (see STEPS_FROM)."""
    return batch * hidden * hidden >= steps_from(dtype)


def lstm_layer(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, tap=None, compiled=True):
    """One LSTM layer, one direction, on (time, batch, features) x with states (batch, H):
    (output (T, B, H), h_n, c_n). ``tap``: a tensor (T, B, H) that requires grad (its values
    are not read); its gradient is dL/dh_t, row t the total derivative at time step t.
    ``compiled``: float32 steps by engine/lstm_loops.py where numba is there (False: torch calls)."""
    return _LSTMLayer.apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh, tap, compiled)
