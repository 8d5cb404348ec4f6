"""Singular values of a stack's input-output Jacobian at initialisation. Imports torch.

J(x) = d output / d input at one input x (the whole module, logits out; the
module in evaluation mode, so dropout is off and batch norm uses its running
statistics), in float64. The singular values of J(x_i) for N training inputs
are pooled into one list. An orthogonal linear net has every singular value
exactly 1 (dynamical isometry); a Gaussian ReLU net's spread grows with depth
(Pennington, Schoenholz and Ganguli 2017).
"""
from __future__ import annotations

import numpy as np
import torch


def jacobian_singular_values(module: torch.nn.Module, inputs: torch.Tensor) -> np.ndarray:
    """Pooled singular values of d module(x) / dx over the rows of ``inputs`` (float64)."""
    module = module.double().eval()
    out = []
    for x in inputs.double():
        j = torch.autograd.functional.jacobian(lambda v: module(v.unsqueeze(0)).squeeze(0), x)
        j = j.reshape(-1, x.numel())
        out.append(torch.linalg.svdvals(j))
    return torch.cat(out).detach().numpy()


def compute(spec: dict, base_dir=None, inputs: int = 32, seed: int | None = None, state_dict=None) -> dict:
    """Contract 4's `theory spectrum` object for a spec's stack at initialisation.

    ``state_dict`` (optional) replaces the initial weights, e.g. those of a run's current step.
    """
    from ..experiment import build
    exp = build(spec, base_dir, seed=seed)
    module = exp.model.module
    if state_dict is not None:
        module.load_state_dict(state_dict)
    x = torch.as_tensor(exp.data.x_train[: max(int(inputs), 1)])
    sv = jacobian_singular_values(module, x)
    logs = np.log10(sv[sv > 0]) if np.any(sv > 0) else np.array([])
    return {
        "singular_values": [float(v) for v in sv],
        "inputs": int(min(int(inputs), len(exp.data.x_train))),
        "jacobian_shape": [int(exp.data.n_outputs), int(np.prod(exp.data.input_shape))],
        "zero_fraction": float(np.mean(sv <= 1e-12 * max(float(sv.max()), 1e-300))) if sv.size else 0.0,
        "log10_mean": float(logs.mean()) if logs.size else None,
        "log10_std": float(logs.std()) if logs.size else None,
    }
