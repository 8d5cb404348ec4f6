"""Activation functions: f, f' and the facts the probes and theory views need.

Each activation knows its derivative in closed form, as a torch expression (used
by the probes on the training batch) and as a numpy expression (used by the
theory panel to draw f and f'). Both are the derivative autograd computes:
the probe tests compare them with torch.autograd.

``max_derivative`` is max over z of f'(z); a unit is *saturated* on a sample
when f'(z) < SATURATION_FRACTION * max_derivative (Contract 2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .catalog import type_of_class_name

SATURATION_FRACTION = 0.01


def _np_sigmoid(z):
    # overflow-free and accurate in both tails (0.5 (1 + tanh(z/2)) rounds to 0 below z ~ -37,
    # which the chain explorer's exact derivatives would notice)
    z = np.asarray(z, dtype=float)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _np_erf(x):
    # numpy has no erf; math.erf is exact enough for a curve.
    return np.vectorize(math.erf, otypes=[float])(x)


@dataclass(frozen=True)
class Activation:
    name: str
    max_derivative: float
    # numpy curves for the theory panel, with the layer's parameters bound
    f: Callable[[np.ndarray], np.ndarray]
    df: Callable[[np.ndarray], np.ndarray]
    # torch derivative from (z, a=f(z)); imported lazily so this module stays numpy-only
    torch_df: Callable
    slope: float = 0.0   # leaky_relu's negative slope (the probes' closed form uses it)


def _sigmoid(params):
    return Activation(
        "sigmoid", 0.25, _np_sigmoid,
        lambda z: _np_sigmoid(z) * (1 - _np_sigmoid(z)),
        lambda z, a: a * (1 - a))


def _tanh(params):
    return Activation(
        "tanh", 1.0, np.tanh, lambda z: 1 - np.tanh(z) ** 2,
        lambda z, a: 1 - a * a)


def _relu(params):
    return Activation(
        "relu", 1.0, lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(float),
        lambda z, a: (z > 0).to(z.dtype))


def _leaky_relu(params):
    s = float(params.get("slope", 0.01))
    return Activation(
        "leaky_relu", max(1.0, s), lambda z: np.where(z > 0, z, s * z),
        lambda z: np.where(z > 0, 1.0, s),
        lambda z, a: _torch().where(z > 0, 1.0, s).to(z.dtype), slope=s)


def _elu(params):
    al = float(params.get("alpha", 1.0))
    return Activation(
        "elu", max(1.0, al), lambda z: np.where(z > 0, z, al * np.expm1(np.minimum(z, 0))),
        lambda z: np.where(z > 0, 1.0, al * np.exp(np.minimum(z, 0))),
        lambda z, a: _torch().where(z > 0, 1.0, al * _torch().exp(z.clamp(max=0))).to(z.dtype))


_GELU_MAX = 1.1289  # max of Phi(z) + z phi(z), at z = sqrt(2)


def _gelu(params):
    def df(z):
        return 0.5 * (1 + _np_erf(z / math.sqrt(2))) + z * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)

    def tdf(z, a):
        t = _torch()
        return 0.5 * (1 + t.erf(z / math.sqrt(2))) + z * t.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return Activation("gelu", _GELU_MAX, lambda z: 0.5 * z * (1 + _np_erf(z / math.sqrt(2))), df, tdf)


def _softplus(params):
    # PyTorch's Softplus(beta=1, threshold=20) is linear above 20.
    return Activation(
        "softplus", 1.0, lambda z: np.where(z > 20, z, np.log1p(np.exp(np.minimum(z, 20)))),
        lambda z: np.where(z > 20, 1.0, _np_sigmoid(z)),
        lambda z, a: _torch().where(z > 20, 1.0, _torch().sigmoid(z)).to(z.dtype))


def _identity(params):
    return Activation(
        "identity", 1.0, lambda z: np.asarray(z, float), lambda z: np.ones_like(z, dtype=float),
        lambda z, a: _torch().ones_like(z))


_SILU_MAX = 1.09984  # max of sigma(z) (1 + z (1 - sigma(z))), at z = 2.3994


def _silu(params):
    # f = z sigma(z) (nn.SiLU, F.silu): seen in users' modules; no spec layer type of its own
    return Activation(
        "silu", _SILU_MAX, lambda z: z * _np_sigmoid(z),
        lambda z: _np_sigmoid(z) * (1 + z * (1 - _np_sigmoid(z))),
        lambda z, a: (lambda s: s * (1 + z * (1 - s)))(_torch().sigmoid(z)))


def _torch():
    import torch
    return torch


ACTIVATIONS: dict[str, Callable[[dict], Activation]] = {
    "sigmoid": _sigmoid, "tanh": _tanh, "relu": _relu, "leaky_relu": _leaky_relu,
    "elu": _elu, "gelu": _gelu, "softplus": _softplus, "identity": _identity,
}


# activations the probes measure in users' modules that the spec has no layer type for
EXTRA_ACTIVATIONS: dict[str, Callable[[dict], Activation]] = {"silu": _silu}



def activation(layer: dict) -> Activation:
    """The Activation of a spec layer such as {"type": "leaky_relu", "slope": 0.1}."""
    kind = layer["type"]
    return (ACTIVATIONS[kind] if kind in ACTIVATIONS else EXTRA_ACTIVATIONS[kind])(layer)


def kind_of_name(name: str) -> str:
    """The layer kind of a recorded layer name, lower case: "3 linear" -> linear, "fc (Linear)" ->
    linear, "relu#2 (ReLU)" -> relu, "fc1 -> leaky_relu (functional)" -> leaky_relu."""
    if name.endswith(" (functional)"):
        return name[: -len(" (functional)")].rsplit(" ", 1)[-1].split("#")[0].lower()
    if name.endswith(")") and " (" in name:
        word = name.rsplit(" (", 1)[-1][:-1].lower()
    else:
        word = name.split(" ", 1)[-1].strip("()").lower()
    return type_of_class_name(word) or word   # class names of torch modules: the catalogue's map


def activation_for_name(name: str) -> Activation:
    """The Activation of a recorded layer name ("2 sigmoid", "act (LeakyReLU)"), with default
    parameters; identity when the name says nothing known."""
    kind = kind_of_name(name)
    return activation({"type": kind if kind in ACTIVATIONS or kind in EXTRA_ACTIVATIONS else "identity"})
