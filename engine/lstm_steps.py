"""One nn.LSTM layer (one direction) whose backward pass hands out dL/dh_t of every time step.

PyTorch's fused LSTM hides h_t of the inner steps, so the total derivative dL/dh_t (through
every later step: Contract 2's time_grad_norm) cannot be read from its output gradient. The
zero taps of engine/tracer.py get it through the fused kernel by widening the layer's input
by H columns, which costs three extra products of the input's size (the forward product
with zeros, the taps' gradient, and a weight gradient that is zero), 1.3-1.8x the layer.

``lstm_layer`` is the layer as a ``torch.autograd.Function`` of its own: the forward is the
recurrence one time step at a time (one product h_(t-1) W_hh^T, a bias add and seven
element-wise calls a step, on preallocated buffers, in place), the backward the textbook
LSTM backward: the gates' local derivatives, which do not depend on the recurrence, for
every step at once (nine calls over the whole sequence), then one time step at a time one
product and four element-wise calls, in which dL/dh_t = dL/dout_t + W_hh^T dL/dgates_(t+1)
[+ dL/dh_n at the last step] is a buffer row it has to compute anyway: that buffer is the
gradient of the ``tap`` input (a tensor whose values are never read), so one hook on the tap
sees all of them, with nothing computed that the plain backward does not need. The products
of the whole sequence (x W_ih^T, and the weight and input gradients) are one matrix product
each. Cost against the fused kernel's forward and backward (CPU, float32, 1 thread,
2026-12-01): 0.93-1.15x on 35 steps x batch 20 x 256 units, less than the taps; 1.5-1.65x
on 100 steps x batch 64 x 64 units with 1 input feature, where the ~15 small torch calls a
step are what costs and the taps cost less (``pays`` says which). The values equal the fused
ones to float rounding.
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable


class _LSTMLayer(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, tap):
        T, B, I = x.shape
        H = w_hh.shape[1]
        whT = w_hh.t().contiguous()
        gates = x.new_empty(T, B, 4 * H)   # rows (i, f, g, o) as PyTorch's weights
        torch.mm(x.reshape(T * B, I), w_ih.t(), out=gates.view(T * B, 4 * H))
        bias = None if b_ih is None else b_ih + b_hh   # added a step at a time (no pass of its own)
        # the output is a tensor of its own (not a view), saved as the fused kernel saves its own:
        # changing it in place before the backward is refused there as with the fused kernel
        out, cs, tc = x.new_empty(T, B, H), x.new_empty(T + 1, B, H), x.new_empty(T, B, H)
        h0 = h0.contiguous()
        cs[0] = c0
        G, if_, o_ = gates.unbind(0), gates[..., :2 * H].unbind(0), gates[..., 3 * H:].unbind(0)
        i, f, g, o = (gates[..., k * H:(k + 1) * H].unbind(0) for k in range(4))
        hu, cu, tu = out.unbind(0), cs.unbind(0), tc.unbind(0)
        prev = (h0, *hu[:-1])   # h_(t-1)
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
        ctx.save_for_backward(x, h0, w_ih, w_hh, gates, out, cs, tc)
        return out, out[T - 1].clone(), cs[T].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, dout, dhn, dcn):
        x, h0, w_ih, w_hh, gates, out, cs, tc = ctx.saved_tensors
        T, B, H = tc.shape
        need = ctx.needs_input_grad
        i, f, g, o = (gates[..., k * H:(k + 1) * H] for k in range(4))
        # what does not depend on the recurrence, for every step at once: dgates = D * (dc, dc, dc, dh)
        grads = torch.empty_like(gates)
        one = tc.new_ones(())
        torch.addcmul(gates[..., :2 * H], gates[..., :2 * H], gates[..., :2 * H], value=-1, out=grads[..., :2 * H])
        torch.addcmul(o, o, o, value=-1, out=grads[..., 3 * H:])
        torch.addcmul(one, g, g, value=-1, out=grads[..., 2 * H:3 * H])
        grads[..., :H].mul_(g)
        grads[..., H:2 * H].mul_(cs[:-1])
        grads[..., 2 * H:3 * H].mul_(i)
        grads[..., 3 * H:].mul_(tc)
        A = torch.addcmul(one, tc, tc, value=-1).mul_(o)   # dc_t += dh_t * A_t
        dh = torch.empty_like(tc)
        dc = dcn.contiguous().clone()
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
        flat = grads.view(T * B, 4 * H)
        dx = (flat @ w_ih).view(x.shape) if need[0] else None
        dh0 = G[0] @ w_hh if need[1] else None
        dc0 = dc * fu[0] if need[2] else None
        dw_ih = flat.t() @ x.reshape(T * B, -1) if need[3] else None
        dw_hh = None
        if need[4]:
            dw_hh = torch.mm(G[0].t(), h0)
            if T > 1:
                dw_hh.addmm_(flat[B:].t(), out[:-1].reshape((T - 1) * B, H))
        db = flat.sum(0) if need[5] or need[6] else None
        return dx, dh0, dc0, dw_ih, dw_hh, db, db, dh if need[7] else None


def usable(x: torch.Tensor, weights: list) -> bool:
    """Whether ``lstm_layer`` takes this call: a CPU float32 / float64 input and weights of its
    dtype, no autocast (elsewhere the tracer keeps the fused kernel with its taps)."""
    return (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
            and all(w.dtype == x.dtype and w.device == x.device for w in weights)
            and not torch.is_autocast_enabled("cpu"))


# From this batch x hidden^2 on, ``lstm_layer`` costs less than the fused kernel with taps (whose
# extra products grow as batch x hidden^2 a step, while this layer's extra cost is its ~15 small
# torch calls a step). Measured 2026-12-01, CPU, 1 thread, in the two benchmarks' loops: the LSTM
# LM (batch 20, 256 units: 1.3 M) 1.17x the bare step here against 1.30x with taps; the memory
# task's nn.LSTM (batch 64, 64 units: 0.26 M) 1.8x with taps against 2.0x here.
STEPS_FROM = 500_000


def pays(batch: int, hidden: int) -> bool:
    """Whether ``lstm_layer`` is the cheaper of the two exact ways for this layer (see STEPS_FROM)."""
    return batch * hidden * hidden >= STEPS_FROM


def lstm_layer(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, tap=None):
    """One LSTM layer, one direction, on (time, batch, features) x with states (batch, H):
    (output (T, B, H), h_n, c_n). ``tap``: a tensor (T, B, H) that requires grad (its values
    are not read); its gradient is dL/dh_t, row t the total derivative at time step t."""
    return _LSTMLayer.apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh, tap)
