"""Build a torch module from a layer stack, and say what each layer is.

``plan`` (engine.plan, torch-free, re-exported here) gives each row's shapes and
problems. ``build`` turns a validated spec into a Model: the torch
module plus the lists the probes need (layers with a weight, activation
layers, the first recurrent layer), input side first.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from .activations import Activation, activation  # noqa: F401
from .catalog import ACTIVATION_TYPES, CATALOG, NORM_TYPES, RECURRENT_TYPES  # noqa: F401
from .plan import LayerInfo, plan  # noqa: F401  (the plan is torch-free; build re-exports it)
from .spec import SpecError


@dataclass
class Model:
    module: nn.Module
    weight_layers: list   # [(name, module)] every layer with a weight
    act_layers: list      # [(name, module, Activation)]
    recurrent: nn.Module | None  # the first recurrent layer (for time_grad_norm)
    infos: list
    # a user's module (engine/custom.py): the tracer that sees its activations, each layer
    # holds only its own parameters, layers whose output is another's (attention's out_proj),
    # and how the spec calls it (extra forward arguments, which output): None is module(x)
    tracer: object = None
    own_params: bool = False
    outputs_of: dict = field(default_factory=dict)
    forward: object = None
    auxiliary: list = field(default_factory=list)   # [(Auxiliary, loss weight)] side heads
    # a probe's own forward of a plain stack (engine/probes.py): taps(module, x) runs the layers
    # one by one and keeps what the probe measures, with no module hooks; None: module(x)
    taps: object = None

    def __call__(self, x):
        if self.taps is not None:
            return self.taps(self.module, x)
        return self.module(x) if self.forward is None else self.forward(self.module, x)


# ----------------------------------------------------------------------------- init
def init_weight(w: torch.Tensor, init: dict) -> None:
    """Initialise a weight in place; fan_in is the number of inputs of a unit."""
    s = init["scheme"]
    if s == "default":
        return
    fan_out, fan_in = w.shape[0], (w[0].numel() if w.dim() > 1 else 1)
    with torch.no_grad():
        if s == "normal":
            nn.init.normal_(w, init.get("mean", 0.0), init.get("std", 1.0))
        elif s == "uniform":
            a = init.get("a", 1.0)
            nn.init.uniform_(w, -a, a)
        elif s == "xavier_normal":
            nn.init.xavier_normal_(w, gain=init.get("gain", 1.0))
        elif s == "xavier_uniform":
            nn.init.xavier_uniform_(w, gain=init.get("gain", 1.0))
        elif s == "kaiming_normal":  # He et al. 2015: std = gain / sqrt(fan_in), gain sqrt(2) for ReLU
            nn.init.normal_(w, 0.0, init.get("gain", math.sqrt(2)) / math.sqrt(fan_in))
        elif s == "kaiming_uniform":
            b = init.get("gain", math.sqrt(2)) * math.sqrt(3.0 / fan_in)
            nn.init.uniform_(w, -b, b)
        elif s == "orthogonal":
            nn.init.orthogonal_(w, gain=init.get("gain", 1.0))
        else:
            raise SpecError(f"unknown init scheme {s!r}")
    del fan_out


def init_bias(b: torch.Tensor, init: dict) -> None:
    s = init["scheme"]
    with torch.no_grad():
        if s == "zeros":
            b.zero_()
        elif s == "normal":
            nn.init.normal_(b, init.get("mean", 0.0), init.get("std", 1.0))
        elif s == "uniform":
            nn.init.uniform_(b, -init.get("a", 1.0), init.get("a", 1.0))


# ----------------------------------------------------------------------------- modules
class Auxiliary(nn.Module):
    """An auxiliary classifier (Szegedy et al. 2015): passes x on unchanged; while training it also
    reads the classes out of x with its own linear head and keeps the logits for the trainer,
    which adds weight * loss(logits, y) to the loss. In evaluation mode it is the identity."""

    def __init__(self, head: nn.Linear, weight: float):
        super().__init__()
        self.head, self.loss_weight = head, float(weight)
        self.logits = None

    def forward(self, x):
        self.logits = self.head(x) if self.training else None
        return x

    def take(self):
        out, self.logits = self.logits, None
        return out


class Residual(nn.Module):
    """y = f(x) + P x, with P a bias-free linear projection only where widths differ."""

    def __init__(self, body: nn.Module, proj: nn.Module | None):
        super().__init__()
        self.body, self.proj = body, proj

    def forward(self, x):
        return self.body(x) + (x if self.proj is None else self.proj(x))


class Recurrent(nn.Module):
    """An RNN/LSTM/GRU layer unrolled one time step at a time.

    PyTorch's fused nn.RNN/nn.LSTM hide the hidden states of inner time steps,
    so the gradient dLoss/dh_t through later steps (Contract 2's
    time_grad_norm) cannot be read from them. Here each h_t is a tensor of its
    own; ``on_hidden`` (set by the probe) sees it as it is made.
    """

    CELLS = {"rnn": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}

    def __init__(self, kind: str, n_in: int, units: int, return_sequences: bool):
        super().__init__()
        self.kind, self.units, self.return_sequences = kind, units, return_sequences
        self.cell = self.CELLS[kind](n_in, units)
        self.on_hidden = None

    def forward(self, x):
        b, steps = x.shape[0], x.shape[1]
        h = x.new_zeros(b, self.units)
        c = x.new_zeros(b, self.units) if self.kind == "lstm" else None
        outs = []
        for t in range(steps):
            if c is not None:
                h, c = self.cell(x[:, t], (h, c))
            else:
                h = self.cell(x[:, t], h)
            if self.on_hidden is not None:
                self.on_hidden(t, h)
            outs.append(h)
        return torch.stack(outs, 1) if self.return_sequences else h


def make_activation_module(layer: dict) -> nn.Module:
    t = CATALOG[layer["type"]]
    return getattr(nn, t.torch_class)(**t.torch_kwargs(layer))


def _make(layers, infos, model: Model, n_out: int | None = None) -> list[nn.Module]:
    mods = []
    for layer, info in zip(layers, infos):
        kind, n_in = layer["type"], info.in_shape[-1]
        if kind == "linear":
            m = nn.Linear(n_in, layer["units"], bias=layer["bias"])
            init_weight(m.weight, layer["init"])
            if m.bias is not None:
                init_bias(m.bias, layer["bias_init"])
            model.weight_layers.append((info.label, m))
        elif kind in ACTIVATION_TYPES:
            m = make_activation_module(layer)
            model.act_layers.append((info.label, m, activation(layer)))
        elif kind in NORM_TYPES:
            t = CATALOG[kind]
            m = getattr(nn, t.torch_class)(n_in, **t.torch_kwargs(layer))
            if m.weight is not None:   # affine off: nothing to learn, not a layer with a weight
                model.weight_layers.append((info.label, m))
        elif kind == "dropout":
            m = nn.Dropout(**CATALOG[kind].torch_kwargs(layer))
        elif kind == "auxiliary":   # its head is not a layer of the stack: the probes do not list it
            m = Auxiliary(nn.Linear(n_in, n_out), layer["weight"])
            model.auxiliary.append((m, m.loss_weight))
        elif kind == "residual":
            body = nn.Sequential(*_make(layer["layers"], info.children, model))
            proj = None
            if info.out_shape[-1] != n_in:
                proj = nn.Linear(n_in, info.out_shape[-1], bias=False)
                model.weight_layers.append((f"{info.path} proj", proj))
            m = Residual(body, proj)
        elif kind in RECURRENT_TYPES:
            m = Recurrent(kind, n_in, layer["units"], len(info.out_shape) == 2)
            for name, p in m.cell.named_parameters():
                if name.startswith("weight"):
                    init_weight(p, layer["init"])
            if kind == "lstm" and layer.get("forget_bias") is not None:
                u = layer["units"]  # gate order i, f, g, o: the forget gate's total bias is set
                with torch.no_grad():
                    m.cell.bias_ih[u:2 * u] = layer["forget_bias"]
                    m.cell.bias_hh[u:2 * u] = 0.0
            model.weight_layers.append((info.label, m))
            if model.recurrent is None:
                model.recurrent = m
        else:  # pragma: no cover - the spec validator knows every type
            raise SpecError(f"layer {info.path}: cannot build type {kind!r}")
        mods.append(m)
    return mods


def build_stack(layers: list[dict], in_shape: tuple, n_out: int, seed: int) -> Model:
    """The torch module of a validated layer stack, its weights drawn with ``seed``."""
    infos = plan(layers, in_shape, n_out)
    bad = next((i for i in infos if i.problem), None)
    if bad:
        where = "output layer" if bad.added else f"layer {bad.path} ({bad.type})"
        raise SpecError(f"{where}: {bad.problem}", bad.at)
    model = Model(None, [], [], None, infos)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mods = _make(layers, infos, model, n_out)
        if infos[-1].added:
            out = nn.Linear(infos[-1].in_shape[-1], n_out)
            model.weight_layers.append(("out linear", out))
            mods.append(out)
    model.module = nn.Sequential(*mods)
    return model
