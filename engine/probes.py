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


def _units_first(t: torch.Tensor) -> torch.Tensor:
    """Reshape to (units, everything else)."""
    return t.movedim(_unit_axis(t), 0).reshape(t.shape[_unit_axis(t)], -1)


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
                (w if name.startswith("weight") else b).append(p)
                (w_owner if name.startswith("weight") else b_owner).append(i)
        self.weights, self.biases = w, b
        self._w_owner = torch.tensor(w_owner, dtype=torch.long)
        self._b_owner = torch.tensor(b_owner, dtype=torch.long)
        self._has_bias = torch.zeros(len(self.layer_names), dtype=torch.bool)
        self._has_bias[self._b_owner] = True
        self.units = [self._units_of(m) for _, m in model.weight_layers]
        self._handles = []
        for i, (_, m) in enumerate(model.weight_layers):
            self._handles.append(m.register_forward_hook(self._layer_hook(i)))
        for i, (_, m, act) in enumerate(model.act_layers):
            self._handles.append(m.register_forward_hook(self._act_hook(i, act)))
        if model.recurrent is not None:
            model.recurrent.on_hidden = self._on_hidden
        self._reset()

    @staticmethod
    def _units_of(m) -> int:
        for name in ("out_features", "num_features", "units", "out_channels", "hidden_size"):
            if isinstance(getattr(m, name, None), int):
                return getattr(m, name)
        ns = getattr(m, "normalized_shape", None)
        if ns:
            return int(ns[-1])
        return int(next(p for n, p in m.named_parameters() if n.startswith("weight")).shape[0])

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        if self.model.recurrent is not None:
            self.model.recurrent.on_hidden = None

    def _reset(self) -> None:
        nan = torch.tensor(math.nan)
        self._delta = [nan] * len(self.layer_names)
        self._neuron = [torch.full((u,), math.nan) for u in self.units]
        self._act = [torch.full((5,), math.nan) for _ in self.act_names]
        self._hist = [None] * len(self.act_names)
        self._time = {}

    # ------------------------------------------------------------------ hooks
    def _layer_hook(self, i):
        def on_grad(g):
            g = g.detach()
            self._delta[i] = torch.linalg.vector_norm(g)
            if g.dim() == 1:
                g = g[:, None]
            if g.shape[_unit_axis(g)] == self.units[i]:
                self._neuron[i] = _units_first(g).abs().mean(1)
            return None

        def hook(module, inputs, output):
            out = _first_tensor(output)
            if self.active and isinstance(out, torch.Tensor) and out.requires_grad:
                out.register_hook(on_grad)
        return hook

    def _act_hook(self, i, act):
        threshold = SATURATION_FRACTION * act.max_derivative

        def hook(module, inputs, output):
            if not self.active:
                return
            with torch.no_grad():
                z = inputs[0].detach()
                d = act.torch_df(z, _first_tensor(output).detach())
                var, mean = torch.var_mean(z, correction=0)
                saturated = (d < threshold).sum() / d.numel()
                alive = (_units_first(d) != 0).any(1)
                dead = 1.0 - alive.sum() / alive.numel()
                self._act[i] = torch.stack([mean, var.sqrt(), d.mean(), saturated, dead]).float()
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
        with torch.no_grad():
            return torch._foreach_mul([p.detach() for p in self.weights], 1.0)

    def update_ratio(self, before):
        n = len(self.layer_names)
        if not self.weights:
            return torch.zeros(n)
        dev = self.weights[0].device
        with torch.no_grad():
            diff = torch._foreach_sub([p.detach() for p in self.weights], before)
            owner = self._w_owner.to(dev)
            num = torch.zeros(n, device=dev).index_add_(0, owner, torch.stack(torch._foreach_norm(diff)).float().square())
            den = torch.zeros(n, device=dev).index_add_(0, owner, torch.stack(torch._foreach_norm(before)).float().square())
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
                 torch.cat([a.to(dev) for a in self._act]) if self._act else torch.zeros(0, device=dev),
                 torch.cat([x.float().to(dev) for x in self._neuron]) if self._neuron else torch.zeros(0, device=dev),
                 torch.stack(times).float() if times else torch.zeros(0, device=dev),
                 torch.cat(hist).float() if len(hist) == len(self._hist) and hist else torch.zeros(0, device=dev)]
        sizes = [p.numel() for p in parts]
        flat = torch.cat([p.reshape(-1).to(dev) for p in parts]).cpu().numpy()
        chunks = np.split(flat, np.cumsum(sizes)[:-1])
        A = len(self.act_names)
        act = chunks[5].reshape(A, 5) if A else np.zeros((0, 5), np.float32)
        out = {"head": chunks[0], "weight_grad_norm": chunks[1], "bias_grad_norm": chunks[2],
               "delta_norm": chunks[3], "update_ratio": chunks[4],
               "neuron_grad": chunks[6],
               "time_grad_norm": chunks[7] if self.model.recurrent is not None else None,
               "preact_hist": chunks[8].reshape(A, HIST_BINS) if chunks[8].size else None}
        for k, name in enumerate(ACT_STATS):
            out[name] = act[:, k].copy()
        return out
