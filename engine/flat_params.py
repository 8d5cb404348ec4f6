"""A small model's parameters and gradients as views of two flat buffers (the probes' fast path).

On a small net every per-parameter torch call (a norm, a copy, setting a gradient to None)
costs 2-5 us of dispatch, more than its arithmetic: 22 parameters of the deep sigmoid preset
took ~350 us a step for their gradient norms, the weights' norms, the copy before the step
and the norm of the change. With every parameter a view of one buffer P and its gradient a
view of one buffer G (autograd accumulates into an existing ``.grad`` in place, so the views
stay), each of those is one call over all parameters at once:

- zero_grad: G.zero_() (instead of setting 22 gradients to None);
- squared norms per layer slot: G and P squared in float64 and summed per parameter (float64
  sums: no float32 overflow to check, and as exact as the per-tensor norms). On the CPU this is
  numpy on the buffers' own memory, one reduceat each (torch's index_add_ over 20k entries
  costs 3-4x as much), with no torch call at all; elsewhere one index_add_;
- the copy before the step and ||W' - W||^2: one copy_, then the same as the squares.

Only where every parameter of the module is measured, needs a gradient, and all are of one
dtype and device, with at most FLAT_MAX entries in all (a large model's norms are BLAS dots,
one per tensor: engine/probes.py). ``intact()`` checks every step that the views are still in
place (``module.to()``, ``p.data = ...`` or an optimizer that sets gradients to None break
them); the caller then takes the per-tensor path or builds the views again.
"""
from __future__ import annotations

import operator

import numpy as np
import torch

from . import onepass

FLAT_MAX = 1 << 16   # parameter entries in all
_GRAD, _DATA_PTR = operator.attrgetter("grad"), operator.methodcaller("data_ptr")


class FlatParams:
    """``params`` as views of one buffer; ``slot[k]`` is where parameter k's squared gradient norm adds
    up (0 .. n_slots-1) and ``weight_slot[k]`` where its squared weight norm (and update) does, or None
    (not a weight: its entries go to a slot that is dropped)."""

    def __init__(self, params: list, slot: list, weight_slot: list, n_slots: int, n_weight_slots: int):
        self.params = params
        p0 = params[0]
        sizes = [p.numel() for p in params]
        with torch.no_grad():
            self.P = torch.cat([p.detach().reshape(-1) for p in params])
        self.G = torch.zeros_like(self.P)
        self.before = torch.empty_like(self.P)
        self.views, at = [], 0
        for p, n in zip(params, sizes):
            p.data = self.P[at:at + n].view_as(p)
            g = self.G[at:at + n].view_as(p)
            p.grad = g
            self.views.append(g)
            at += n
        self.ptrs = [p.data_ptr() for p in params]
        L = n_weight_slots
        # the slot of each parameter: its gradient's, then (weights) n_slots + its layer
        ws = [n_slots + L if w is None else n_slots + w for w in weight_slot]
        self.n_norm, self.n_diff = n_slots + L + 1, L + 1
        self.cpu = p0.device.type == "cpu"
        if self.cpu:   # numpy views of the buffers (the same memory) and where each parameter starts
            self.np = tuple(t.numpy() for t in (self.G, self.P, self.before))
            self.sq = np.empty(self.P.shape[0])   # float64 squares, reused (no allocation a step)
            self.starts = np.cumsum([0] + sizes[:-1])
            self.norm_slots = np.array(slot + ws, dtype=np.intp)
            self.diff_slots = np.array([L if w is None else w for w in weight_slot], dtype=np.intp)
        else:   # the slot of each entry of cat([G, P]), and of P
            self.norm_index = self._index(sizes * 2, slot + ws, p0.device)
            self.diff_index = self._index(sizes, [L if w is None else w for w in weight_slot], p0.device)

    @staticmethod
    def _index(sizes: list, slots: list, device) -> torch.Tensor:
        return torch.cat([torch.full((n,), s, dtype=torch.long) for n, s in zip(sizes, slots)]).to(device)

    @staticmethod
    def fits(module, params: list) -> bool:
        """Whether a module's parameters can be flat: every one measured (``params``), needing a
        gradient, of one dtype and device, FLAT_MAX entries at most in all."""
        if not params or len({id(p) for p in module.parameters()} ^ {id(p) for p in params}):
            return False
        p0 = params[0]
        return (all(p.requires_grad and p.dtype == p0.dtype and p.device == p0.device for p in params)
                and p0.dtype in (torch.float32, torch.float64) and sum(p.numel() for p in params) <= FLAT_MAX
                and len({id(p) for p in params}) == len(params))

    def intact(self) -> bool:
        """Every parameter still a view of P (same memory) with its gradient the view of G."""
        # (maps: no Python frame a parameter, where a generator makes one; this runs every step)
        return all(map(operator.is_, map(_GRAD, self.params), self.views)) and \
            list(map(_DATA_PTR, self.params)) == self.ptrs

    def zero_grad(self) -> None:
        self.G.zero_()

    def _per_param(self, x: np.ndarray) -> np.ndarray:
        """sum of x^2 over each parameter's entries of a CPU buffer, in float64 (one pass of
        engine/onepass.py; without numba a float64 square and a reduceat)."""
        got = onepass.segment_squares(x, self.starts, np.empty(len(self.starts)))
        if got is not None:
            return got
        return np.add.reduceat(np.square(x, out=self.sq, dtype=np.float64), self.starts)   # (float64 loop)

    def squares(self):
        """Float64 [n_slots + layers + 1]: squared gradient norms per slot, then squared weight norms
        per layer (the last entry collects what is dropped); a numpy array on the CPU, else a tensor."""
        if self.cpu:
            per = np.concatenate([self._per_param(self.np[0]), self._per_param(self.np[1])])
            return np.bincount(self.norm_slots, weights=per, minlength=self.n_norm)
        x = torch.cat([self.G, self.P]).double().square_()
        return torch.zeros(self.n_norm, dtype=torch.float64, device=x.device).index_add_(0, self.norm_index, x)

    def sgd_step(self, lr: float, weight_decay: float) -> tuple:
        """A plain SGD step of every parameter at once (P := P - lr (G + weight_decay P), bit for bit
        as torch.optim.SGD), with ``squares()`` taken before it and ``diff_squares()`` of it from the
        same pass (CPU; a ``copy_weights`` is not needed). Every gradient is G's view, so the optimiser
        would step every parameter too (an unused one by 0)."""
        g, d, w = onepass.segment_sgd_step(self.np[1], self.np[0], self.starts, lr, weight_decay)
        onepass.bump_versions(self.params)
        squares = np.bincount(self.norm_slots, weights=np.concatenate([g, w]), minlength=self.n_norm)
        return squares, np.bincount(self.diff_slots, weights=d, minlength=self.n_diff)

    def copy_weights(self) -> None:
        self.before.copy_(self.P)

    def diff_squares(self):
        """Float64 [layers + 1]: ||W' - W||^2 per layer since ``copy_weights`` (the last entry dropped);
        a numpy array on the CPU, else a tensor."""
        if self.cpu:
            before = self.np[2]
            per = onepass.segment_diff_squares(before, self.np[1], self.starts, np.empty(len(self.starts)))
            if per is None:
                np.subtract(before, self.np[1], out=before)   # in the weights' precision, as torch's sub_
                per = self._per_param(before)
            return np.bincount(self.diff_slots, weights=per, minlength=self.n_diff)
        d = self.before.sub_(self.P).double().square_()
        return torch.zeros(self.n_diff, dtype=torch.float64, device=d.device).index_add_(0, self.diff_index, d)
