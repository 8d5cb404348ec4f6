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

The deltas and activation statistics are reduced inside autograd / forward
hooks, so no activation is kept beyond the pass; everything stays on the
device until ``collect`` makes one host copy per step.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .activations import SATURATION_FRACTION
from .build import Model

ACT_STATS = ("preact_mean", "preact_std", "mean_derivative", "saturated_frac", "dead_frac")
LAYER_STATS = ("weight_grad_norm", "bias_grad_norm", "delta_norm", "update_ratio")
HIST_BINS, HIST_RANGE = 80, (-8.0, 8.0)  # histogram of z; the end bins hold the tails


def _first_tensor(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def _unit_axis(t: torch.Tensor) -> int:
    # (batch, units), (batch, time, units); images (batch, channels, h, w) count channels
    return 1 if t.dim() >= 4 else t.dim() - 1


def _other_axes(t: torch.Tensor) -> tuple:
    """Every axis but the unit axis: reducing over them gives one number per unit."""
    u = _unit_axis(t)
    return tuple(i for i in range(t.dim()) if i != u)


def activation_moments(act, z: torch.Tensor, a: torch.Tensor, scratch: dict, shift: float = 0.0) -> list:
    """Five 0-d tensors of raw sums and counts for one activation layer.

    [sum (z - shift), sum (z - shift)^2, sum f'(z) (or the count of z > 0), count
    of saturated entries, count of dead units]; ``finish_activation`` turns them into the
    Contract 2 statistics in numpy after the step's single host copy, so the
    hot path has no small divisions. Few passes over the batch: closed forms
    where f' is piecewise constant (ReLU, LeakyReLU, identity), and a reused
    buffer for sigmoid/tanh, whose f' comes from the output a (a - a^2, 1 - a^2).
    """
    axes = _other_axes(z)
    # sum z and ||z||^2 (torch.var_mean is several times slower on the CPU). The
    # float32 sums are about 1e-7 relative, so E[z^2] - E[z]^2 loses precision when
    # |mean| >> std (1e-2 relative at mean/std = 500): such a layer's moments are
    # taken about a shift close to its mean instead, at the cost of one more pass
    zs = z
    if shift:
        key = ("shift", z.shape, z.dtype, z.device)
        zs = scratch.get(key)
        if zs is None:
            zs = scratch[key] = torch.empty_like(z)
        torch.sub(z, shift, out=zs)
    moments = [zs.sum(), torch.linalg.vector_norm(zs).square()]
    threshold = SATURATION_FRACTION * act.max_derivative
    if act.name in ("relu", "leaky_relu"):
        active = torch.count_nonzero(z > 0)           # f' = 1 there, f' = slope elsewhere
        if act.slope == 0:                            # dead: no sample gives the unit a positive z
            dead = torch.count_nonzero(z.amax(dim=axes) <= 0) if axes else (z.max() <= 0).long()
        else:
            dead = active * 0
        return moments + [active, active, dead]
    if act.name == "identity":
        zero = moments[0] * 0
        return moments + [zero, zero, zero]
    if act.name in ("sigmoid", "tanh"):
        key = (a.shape, a.dtype, a.device)
        d = scratch.get(key)
        if d is None:
            d = scratch[key] = torch.empty_like(a)
        torch.mul(a, a, out=d)
        if act.name == "sigmoid":
            torch.sub(a, d, out=d)        # a - a^2 = a (1 - a)
        else:
            d.neg_().add_(1.0)           # 1 - a^2
        size = d                         # f' >= 0
    else:
        d = act.torch_df(z, a)
        size = d.abs()
    alive = size.amax(dim=axes) if axes else size.max()
    return moments + [d.sum(), torch.count_nonzero(d < threshold),
                      torch.count_nonzero(alive == 0)]


def _shift_for(mean: float, std: float) -> float:
    """The shift of a layer's next moments: its mean where |mean| > 2 std, else 0 (no extra pass).

    A float32 number, so that z - shift is exact in z's own precision."""
    return float(np.float32(mean)) if math.isfinite(mean) and abs(mean) > 2 * std else 0.0


def finish_activation(act, raw: np.ndarray, n: int, units: int, shift: float = 0.0) -> np.ndarray:
    """[preact_mean, preact_std, mean_derivative, saturated_frac, dead_frac] from the raw moments."""
    sum_z, sum_z2, x, y, dead = (float(v) for v in raw)
    centred = sum_z / n   # mean of z - shift
    mean = shift + centred
    std = math.sqrt(max(sum_z2 / n - centred * centred, 0.0))
    if act.name in ("relu", "leaky_relu"):
        active = x / n
        mean_d = act.slope + (1.0 - act.slope) * active
        threshold = SATURATION_FRACTION * act.max_derivative
        saturated = (1.0 - active) * (act.slope < threshold) + active * (1.0 < threshold)
    elif act.name == "identity":
        mean_d, saturated = 1.0, 0.0
    else:
        mean_d, saturated = x / n, y / n
    return np.array([mean, std, mean_d, saturated, dead / units])


class Probe:
    """Hooks on a Model; ``collect`` returns one step's statistics as numpy arrays."""

    def __init__(self, model: Model):
        self.model = model
        self.layer_names = [n for n, _ in model.weight_layers]
        self.act_names = [n for n, _, _ in model.act_layers]
        self.active = False      # hooks measure only while True (not during evaluation)
        self.want_hist = False   # histogram of z this step (the live panel asks for it)
        w, w_owner, b, b_owner = [], [], [], []
        for i, (_, m) in enumerate(model.weight_layers):
            for name, p in m.named_parameters():
                # the parameter's own name: a recurrent layer's are "cell.weight_ih", ...
                is_weight = name.rsplit(".", 1)[-1].startswith("weight")
                (w if is_weight else b).append(p)
                (w_owner if is_weight else b_owner).append(i)
        self.weights, self.biases = w, b
        self._w_owner = torch.tensor(w_owner, dtype=torch.long)
        self._b_owner = torch.tensor(b_owner, dtype=torch.long)
        self._has_bias = torch.zeros(len(self.layer_names), dtype=torch.bool)
        self._has_bias[self._b_owner] = True
        self.units = [self._units_of(m) for _, m in model.weight_layers]
        self._handles, self._scratch, self._before = [], {}, None
        for i, (_, m) in enumerate(model.weight_layers):
            self._handles.append(m.register_forward_hook(self._layer_hook(i)))
        for i, (_, m, act) in enumerate(model.act_layers):
            self._handles.append(m.register_forward_hook(self._act_hook(i, act)))
        if model.recurrent is not None:
            model.recurrent.on_hidden = self._on_hidden
        # per activation layer: the shift of the next step's moments (None: not known
        # yet), the last mean where |mean| > 2 std, else 0 (no extra pass)
        self._shift = [None] * len(self.act_names)
        self._reset()

    @staticmethod
    def _units_of(m) -> int:
        for name in ("out_features", "num_features", "units", "out_channels", "hidden_size"):
            if isinstance(getattr(m, name, None), int):
                return getattr(m, name)
        ns = getattr(m, "normalized_shape", None)
        if ns:
            return int(ns[-1])
        return int(next(p for n, p in m.named_parameters() if n.rsplit(".", 1)[-1].startswith("weight")).shape[0])

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        if self.model.recurrent is not None:
            self.model.recurrent.on_hidden = None

    def _reset(self) -> None:
        nan = torch.tensor(math.nan)
        self._delta = [nan] * len(self.layer_names)
        self._neuron = [torch.full((u,), math.nan) for u in self.units]
        self._neuron_count = [1] * len(self.units)
        self._act = [None] * len(self.act_names)        # raw moments, see activation_moments
        self._act_sizes = [None] * len(self.act_names)  # (entries, units) of each z
        self._act_shift = [0.0] * len(self.act_names)   # shift of this step's moments
        self._hist = [None] * len(self.act_names)
        self._time = {}

    # ------------------------------------------------------------------ hooks
    def _layer_hook(self, i):
        def on_grad(g):
            g = g.detach()
            self._delta[i] = torch.linalg.vector_norm(g)
            if g.dim() == 1:
                g = g[:, None]
            if g.shape[_unit_axis(g)] == self.units[i]:  # sum |dL/dz_j|; collect divides by the batch
                self._neuron[i] = g.abs().sum(dim=_other_axes(g))
                self._neuron_count[i] = g.numel() // self.units[i]
            return None

        def hook(module, inputs, output):
            out = _first_tensor(output)
            if self.active and isinstance(out, torch.Tensor) and out.requires_grad:
                out.register_hook(on_grad)
        return hook

    def _act_hook(self, i, act):
        def hook(module, inputs, output):
            if not self.active:
                return
            with torch.no_grad():
                z = inputs[0].detach()
                shift = self._shift[i]
                if shift is None:  # the first step decides from z itself (one host copy, once)
                    shift = _shift_for(float(z.mean()), float(z.std(correction=0))) if z.numel() else 0.0
                self._act_shift[i] = shift
                self._act[i] = activation_moments(act, z, _first_tensor(output).detach(), self._scratch, shift)
                self._act_sizes[i] = (z.numel(), z.shape[_unit_axis(z)] if z.dim() > 1 else 1)
                if self.want_hist:
                    self._hist[i] = torch.histc(z.float().clamp(*HIST_RANGE), HIST_BINS, *HIST_RANGE)
        return hook

    def _on_hidden(self, t, h):
        if self.active and h.requires_grad:
            h.register_hook(lambda g, t=t: self._time.__setitem__(t, torch.linalg.vector_norm(g.detach())))

    # ------------------------------------------------------------------ per step
    def begin(self, want_hist: bool = False) -> None:
        self._reset()
        self.want_hist = want_hist
        self.active = True

    def grad_norms(self):
        """Weight and bias gradient norms per layer (call after backward, before clipping)."""
        wg = self._grad_norms(self.weights, self._w_owner)
        bg = self._grad_norms(self.biases, self._b_owner)
        bg = torch.where(self._has_bias.to(bg.device), bg, torch.full_like(bg, math.nan))
        return wg, bg

    def _grad_norms(self, params, owner):
        """sqrt of the per-layer sum of squared gradient norms (one fused foreach call)."""
        n = len(self.layer_names)
        if not params:
            return torch.zeros(n)
        dev = params[0].device
        grads = [p.grad for p in params]
        present = [g for g in grads if g is not None]
        norms = iter(torch._foreach_norm(present)) if present else iter(())
        # a weight that took no part in the loss has no gradient: NaN, not a made-up 0
        sq = torch.stack([next(norms).float() if g is not None else torch.tensor(math.nan, device=dev)
                          for g in grads]).square()
        return torch.zeros(n, device=dev).index_add_(0, owner.to(dev), sq).sqrt()

    def weights_before(self):
        """A copy of every weight, into buffers kept from step to step (no allocation)."""
        with torch.no_grad():
            ws = [p.detach() for p in self.weights]
            if self._before is None or any(b.shape != w.shape or b.device != w.device
                                           for b, w in zip(self._before, ws)):
                self._before = [torch.empty_like(w) for w in ws]
            if ws:
                torch._foreach_copy_(self._before, ws)
            return self._before

    def update_ratio(self, before):
        n = len(self.layer_names)
        if not self.weights:
            return torch.zeros(n)
        dev = self.weights[0].device
        with torch.no_grad():
            owner = self._w_owner.to(dev)
            den = torch.stack(torch._foreach_norm(before)).float().square()
            torch._foreach_sub_(before, [p.detach() for p in self.weights])  # now W_before - W_after
            num = torch.stack(torch._foreach_norm(before)).float().square()
            num = torch.zeros(n, device=dev).index_add_(0, owner, num)
            den = torch.zeros(n, device=dev).index_add_(0, owner, den)
            return num.sqrt() / den.sqrt()

    def collect(self, head: torch.Tensor, wg, bg, ur) -> dict:
        """One host copy of everything measured this step, split into numpy arrays."""
        self.active = False
        dev = head.device
        times = [self._time[t] for t in sorted(self._time)]
        hist = [h for h in self._hist if h is not None]
        parts = [head.float(), wg.float(), bg.float(),
                 torch.stack(self._delta).float().to(dev) if self._delta else torch.zeros(0, device=dev),
                 ur.float(),
                 torch.stack([t for m in self._act if m is not None for t in m]).to(dev)
                 if any(m is not None for m in self._act) else torch.zeros(0, device=dev),
                 torch.cat([x.float().to(dev) for x in self._neuron]) if self._neuron else torch.zeros(0, device=dev),
                 torch.stack(times).float() if times else torch.zeros(0, device=dev),
                 torch.cat(hist).float() if len(hist) == len(self._hist) and hist else torch.zeros(0, device=dev)]
        sizes = [p.numel() for p in parts]
        flat = torch.cat([p.reshape(-1).to(dev) for p in parts]).cpu().numpy()
        chunks = np.split(flat, np.cumsum(sizes)[:-1])
        A = len(self.act_names)
        act = np.full((A, 5), np.nan)
        raw = iter(chunks[5].reshape(-1, 5))
        for i, (_, _, a) in enumerate(self.model.act_layers):
            if self._act[i] is not None:
                act[i] = finish_activation(a, next(raw), *self._act_sizes[i], self._act_shift[i])
                mean, std = act[i, 0], act[i, 1]
                self._shift[i] = _shift_for(mean, std)
        out = {"head": chunks[0], "weight_grad_norm": chunks[1], "bias_grad_norm": chunks[2],
               "delta_norm": chunks[3], "update_ratio": chunks[4],
               "neuron_grad": (chunks[6] / np.repeat(self._neuron_count, self.units)).astype(np.float32),
               "time_grad_norm": chunks[7] if self.model.recurrent is not None else None,
               "preact_hist": chunks[8].reshape(A, HIST_BINS) if chunks[8].size else None}
        for k, name in enumerate(ACT_STATS):
            out[name] = act[:, k].copy()
        return out
