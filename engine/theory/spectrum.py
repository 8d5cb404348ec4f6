"""Singular values of a stack's input-output Jacobian, at initialisation or at a run's current step. Imports torch.

J(x) = d output / d input at one input x (the whole module, logits out; the
module in evaluation mode, so dropout is off and batch norm uses its running
statistics), in float64. The singular values of J(x_i) for N training inputs
are pooled into one list. An orthogonal linear net has every singular value
exactly 1 (dynamical isometry); a Gaussian ReLU net's spread grows with depth
(Pennington, Schoenholz and Ganguli 2017).

The module itself is left as it was: its parameters and buffers are copied in
float64 and swapped in for the computation (torch.func.functional_call), its
training mode restored after. So the training process can measure its live
model between two steps (engine.worker's "spectrum" message).
"""
from __future__ import annotations

import numpy as np
import torch


def _first_tensor(out):
    while isinstance(out, (tuple, list)):
        out = out[0]
    return out


def jacobian_singular_values(module: torch.nn.Module, inputs: torch.Tensor) -> np.ndarray:
    """Pooled singular values of d module(x) / dx over the rows of ``inputs`` (float64).

    Leaves ``module`` unchanged (its dtype, device, mode and weights)."""
    state = {k: v.detach().to("cpu", torch.float64) if v.is_floating_point() else v.detach().cpu()
             for k, v in [*module.named_parameters(remove_duplicate=False),
                          *module.named_buffers(remove_duplicate=False)]}
    was_training = module.training
    module.eval()
    try:
        out = []
        for x in inputs.detach().to("cpu", torch.float64):
            def f(v):
                y = torch.func.functional_call(module, state, (v.unsqueeze(0),))
                return _first_tensor(y).squeeze(0)
            j = torch.autograd.functional.jacobian(f, x)
            out.append(torch.linalg.svdvals(j.reshape(-1, x.numel())))
    finally:
        module.train(was_training)
    return torch.cat(out).detach().numpy()


def summary(sv: np.ndarray, inputs: int, jacobian_shape) -> dict:
    """Contract 4's `theory spectrum` keys for pooled singular values (``singular_values`` a numpy array)."""
    sv = np.asarray(sv, float)
    logs = np.log10(sv[sv > 0]) if np.any(sv > 0) else np.array([])
    return {
        "singular_values": sv,
        "inputs": int(inputs),
        "jacobian_shape": [int(v) for v in jacobian_shape],
        "zero_fraction": float(np.mean(sv <= 1e-12 * max(float(sv.max()), 1e-300))) if sv.size else 0.0,
        "log10_mean": float(logs.mean()) if logs.size else None,
        "log10_std": float(logs.std()) if logs.size else None,
    }


def of_module(module: torch.nn.Module, x_train, inputs: int, n_outputs: int) -> dict:
    """The spectrum of ``module`` as it is now, pooled over the first ``inputs`` rows of ``x_train``."""
    x = torch.as_tensor(x_train[: max(int(inputs), 1)])
    sv = jacobian_singular_values(module, x)
    return summary(sv, len(x), [n_outputs, int(np.prod(x.shape[1:]))])


def compute(spec: dict, base_dir=None, inputs: int = 32, seed: int | None = None, state_dict=None) -> dict:
    """Contract 4's `theory spectrum` object (JSON: lists) for a spec's stack at initialisation.

    ``state_dict`` (optional) replaces the initial weights, e.g. those of a run's current step.
    """
    from ..experiment import build
    exp = build(spec, base_dir, seed=seed)
    module = exp.model.module
    if state_dict is not None:
        module.load_state_dict(state_dict)
    r = of_module(module, exp.data.x_train, inputs, exp.data.n_outputs)
    r["singular_values"] = [float(v) for v in r["singular_values"]]
    return r
