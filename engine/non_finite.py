"""Where a step first became non-finite: found by re-running it with checks, not guessed from norms.

A loss that turns NaN or infinite ends a run, and no update is made at that step, so the
weights are still those the step ran with. ``locate`` runs the step's forward pass again
and checks, in the order the numbers were made: every layer's weights (input side first:
an earlier update made them non-finite), then each layer's output in the order of the
forward pass; if every output is finite, the loss itself (a log of 0, say) made it. A
gradient that overflowed at an earlier step shows in the record itself: its norms are
stored finite wherever the gradient was (engine/probes.py, ``safe_norms``), so the first
inf in ``weight_grad_norm`` / ``delta_norm`` is the first non-finite gradient.
"""
from __future__ import annotations

import torch

from .build import Model


def _first_tensor(out):
    return out[0] if isinstance(out, (tuple, list)) and out else out


def _finite(t) -> bool:
    return not isinstance(t, torch.Tensor) or not t.is_floating_point() or bool(torch.isfinite(t).all())


def locate(model: Model, forward, loss_of) -> str | None:
    """A phrase naming what first became non-finite: "the weights of 3 linear", "the output of
    5 linear", "the loss (every layer's output was finite)"; None if the re-run is finite.

    ``forward()`` re-runs the step's forward pass, ``loss_of(output)`` its loss."""
    for name, m in model.weight_layers:
        if not all(_finite(p) for p in m.parameters(recurse=not model.own_params)):
            return f"the weights of {name}"
    first, handles = [], []

    def check(name):
        def hook(module, inputs, output):
            if not first and not _finite(_first_tensor(output)):
                first.append(name)
        return hook
    watched = list(model.weight_layers)
    if model.tracer is None:   # a stack's activation modules are layers of the forward pass too
        watched += [(name, m) for name, m, _ in model.act_layers]
    for name, m in watched:
        handles.append(m.register_forward_hook(check(name)))
    try:
        with torch.no_grad():
            loss = loss_of(forward())
    except Exception:   # the re-run itself failing says nothing more than the loss did
        return None
    finally:
        for h in handles:
            h.remove()
    if first:
        return f"the output of {first[0]}"
    if not _finite(loss):
        return "the loss (every layer's output was finite)"
    return None
