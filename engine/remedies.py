"""One-click remedies: pure functions from a spec to a remedied spec (no torch, no Qt).

Each is a textbook answer to a finding: swap saturating activations for
ReLU-family ones with He init (He et al. 2015), Xavier init for sigmoid/tanh
(Glorot and Bengio 2010), BatchNorm after each linear layer (Ioffe and
Szegedy 2015), residual connections (He et al. 2016), L2 weight decay,
gradient clipping (Pascanu et al. 2013), Adam (Kingma and Ba 2015), a
smaller learning rate, or an LSTM with forget-gate bias 1 for a recurrent net
(Gers et al. 2000). Each is a ``Remedy`` record (id, label, explanation, and the
function that edits a spec); ``apply(remedy_id, spec)`` returns the new, validated
spec and a sentence saying what changed; the input spec is never modified.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

from .catalog import RECURRENT_TYPES, RELU_FAMILY, SATURATING, WIDTH_TYPES, default_layer  # noqa: F401
from .spec import validate

_TEXTS = {  # id: label and explanation (the records are made below, with their edits)
    "relu_he": {"label": "ReLU + He init",
                "explanation": "ReLU's slope is 1 where it is active, and He init (std = sqrt(2/fan_in)) keeps "
                               "the signal's variance constant through depth."},
    "leaky_relu_he": {"label": "LeakyReLU + He init",
                      "explanation": "LeakyReLU keeps a small slope (0.01) for z < 0, so no unit can die."},
    "elu_he": {"label": "ELU + He init",
               "explanation": "ELU is smooth, keeps a slope for z < 0 and pushes mean activations toward 0."},
    "xavier_init": {"label": "Xavier init",
                    "explanation": "Glorot and Bengio's init, var(W) = 2/(fan_in + fan_out), keeps the "
                                   "forward and backward variance of sigmoid/tanh nets near constant."},
    "he_init": {"label": "He init",
                "explanation": "He et al.'s init, std = sqrt(2/fan_in), is made for ReLU: it keeps every "
                               "layer's gradient about the same size."},
    "batchnorm": {"label": "BatchNorm after linears",
                  "explanation": "Normalising each pre-activation keeps units in the steep part of their "
                                 "activation, so the per-layer factor stays near 1."},
    "residual": {"label": "Residual blocks",
                 "explanation": "y = x + f(x): the gradient reaches early layers through the identity path."},
    "weight_decay": {"label": "L2 weight decay 1e-4",
                     "explanation": "Penalising large weights keeps them (and the per-layer factors) small."},
    "clip_norm": {"label": "Gradient clipping (norm 1)",
                  "explanation": "Rescales the whole gradient when its norm exceeds 1: a huge step can no "
                                 "longer throw the weights away."},
    "adam": {"label": "Adam (lr 1e-3)",
             "explanation": "Adam divides each parameter's step by its own gradient scale, so layers with "
                            "tiny gradients still move."},
    "lstm": {"label": "LSTM, forget-gate bias 1",
             "explanation": "An LSTM carries its state through a cell that is only multiplied by the forget "
                            "gate; with that gate's bias at +1 (Gers et al. 2000) the gradient survives many "
                            "time steps where a plain RNN's vanishes."},
    "auxiliary": {"label": "Auxiliary classifier",   # (at mid-depth: the explanation says so)
                  "explanation": "A side head at the middle of the stack reads out the classes and adds its "
                                 "loss (weight 0.3) while training (Szegedy et al. 2015): the gradient enters "
                                 "halfway down, so the early layers get a much larger one. Dropped at "
                                 "evaluation."},
    "lower_lr": {"label": "Learning rate / 10",
                 "explanation": "Smaller steps: no overshoot into huge weights, fewer ReLUs knocked dead."},
}


def _map_layers(layers, fn):
    """Apply fn to every layer (nested ones included); fn returns a list of layers."""
    out = []
    for layer in layers:
        layer = copy.deepcopy(layer)
        if layer["type"] == "residual":
            layer["layers"] = _map_layers(layer["layers"], fn)
        out.extend(fn(layer))
    return out


def _set_init(layers, scheme):
    def fn(layer):
        if layer["type"] == "linear":
            layer["init"] = {"scheme": scheme}
            layer["bias_init"] = {"scheme": "zeros"}
        return [layer]
    return _map_layers(layers, fn)


def _swap_activation(layers, new_type):
    def fn(layer):
        if layer["type"] in SATURATING:
            return [default_layer(new_type)]
        return [layer]
    return _set_init(_map_layers(layers, fn), "kaiming_normal")


def _add_batchnorm(layers):
    out = []
    for i, layer in enumerate(layers):
        layer = copy.deepcopy(layer)
        if layer["type"] == "residual":
            layer["layers"] = _add_batchnorm(layer["layers"])
        out.append(layer)
        nxt = layers[i + 1]["type"] if i + 1 < len(layers) else None
        last_linear = layer["type"] == "linear" and not any(l["type"] == "linear" for l in layers[i + 1:])
        if layer["type"] == "linear" and nxt != "batchnorm" and not (last_linear and nxt is None):
            out.append({"type": "batchnorm"})
    return out


BLOCK_BREAKERS = ("residual", *WIDTH_TYPES)


def _out_width(layer, width):
    """Feature width after a layer, given the width before it (None: unknown)."""
    if layer["type"] in WIDTH_TYPES:
        return layer["units"]
    if layer["type"] == "residual":
        for inner in layer["layers"]:
            width = _out_width(inner, width)
    return width


def _add_residual(layers):
    """Wrap each linear layer and what follows it up to the next linear layer (its activation,
    BatchNorm, dropout) in a residual block y = x + f(x), where the width does not change.
    The first linear layer (input width) and the last one (often the output) stay outside."""
    out, i, width = [], 0, None
    last_linear = max((k for k, l in enumerate(layers) if l["type"] == "linear"), default=-1)
    while i < len(layers):
        layer = layers[i]
        j = i + 1
        while j < len(layers) and layers[j]["type"] not in BLOCK_BREAKERS:
            j += 1
        if layer["type"] == "linear" and j > i + 1 and width == layer["units"]:
            out.append({"type": "residual", "layers": copy.deepcopy(layers[i:j])})
            i = j
            continue
        width = _out_width(layer, width)
        out.append(copy.deepcopy(layer))
        i += 1
    return out


def _add_auxiliary(layers, weight: float = 0.3):
    """An auxiliary head after the activation that follows the middle hidden linear layer."""
    if any(l["type"] == "auxiliary" for l in layers):
        return layers
    linears = [k for k, l in enumerate(layers) if l["type"] in ("linear", "residual")]
    if len(linears) < 3:
        raise ValueError("an auxiliary classifier helps a deep stack; this one has fewer than 3 layers")
    mid = linears[(len(linears) - 1) // 2]
    at = mid + 1
    while at < len(layers) and layers[at]["type"] not in ("linear", "residual") and \
            layers[at]["type"] not in RECURRENT_TYPES:
        at += 1   # past the middle layer's activation, norm, dropout
    return copy.deepcopy(layers[:at]) + [{"type": "auxiliary", "weight": weight}] + copy.deepcopy(layers[at:])


def _to_lstm(layers):
    changed = []

    def fn(layer):
        if layer["type"] in RECURRENT_TYPES and layer["type"] != "lstm":
            changed.append(layer["type"])
            return [{"type": "lstm", "units": layer["units"], "init": layer.get("init", {"scheme": "default"}),
                     "forget_bias": 1.0}]
        if layer["type"] == "lstm" and layer.get("forget_bias") is None:
            changed.append("lstm")
            layer["forget_bias"] = 1.0
        return [layer]
    return _map_layers(layers, fn), changed


# ----------------------------------------------------------------------------- the records
@dataclass(frozen=True)
class Remedy:
    """One remedy: ``edit(spec)`` changes a validated deep copy of a spec in place and returns
    the sentence saying what changed (ValueError: it does not apply to this spec);
    ``needs_stack``: it edits the layer stack (a custom Python model cannot take it)."""

    id: str
    label: str
    explanation: str
    edit: Callable[[dict], str]
    needs_stack: bool = True

    def __getitem__(self, key):   # the table's older form: REMEDIES[id]["label"]
        return getattr(self, key)

    def get(self, key, default=None):
        return getattr(self, key, default)


def _layers_edit(fn, text):
    """An edit of the stack by ``fn(layers) -> layers``."""
    def edit(spec):
        spec["model"]["layers"] = fn(spec["model"]["layers"])
        return text
    return edit


def _swap_edit(new_type):
    return _layers_edit(lambda ls: _swap_activation(ls, new_type), f"sigmoid/tanh replaced by {new_type} with He init")


def _residual_edit(spec):
    layers = spec["model"]["layers"]
    wrapped = _add_residual(layers)
    if wrapped == layers:
        raise ValueError("no (linear, activation) pair of unchanged width to wrap in a residual block")
    spec["model"]["layers"] = wrapped
    return "residual blocks around the (linear, activation) pairs"


def _lstm_edit(spec):
    new_layers, changed = _to_lstm(spec["model"]["layers"])
    if not changed:
        raise ValueError("no recurrent layer to turn into an LSTM with forget-gate bias 1")
    spec["model"]["layers"] = new_layers
    return "recurrent layers made LSTMs with forget-gate bias 1"


def _train_edit(values: dict, text: str):
    def edit(spec):
        spec["train"].update(values)
        return text
    return edit


def _lower_lr(spec):
    t = spec["train"]
    t["lr"] = float(f"{t['lr'] / 10:.3g}")
    return f"learning rate lowered to {t['lr']:g}"


_EDITS = {
    "relu_he": (_swap_edit("relu"), True), "leaky_relu_he": (_swap_edit("leaky_relu"), True),
    "elu_he": (_swap_edit("elu"), True),
    "xavier_init": (_layers_edit(lambda ls: _set_init(ls, "xavier_normal"),
                                 "Xavier (Glorot) normal init on every linear layer"), True),
    "he_init": (_layers_edit(lambda ls: _set_init(ls, "kaiming_normal"),
                             "He (kaiming) normal init on every linear layer"), True),
    "batchnorm": (_layers_edit(_add_batchnorm, "a BatchNorm layer after each hidden linear layer"), True),
    "residual": (_residual_edit, True),
    "weight_decay": (_train_edit({"weight_decay": 1e-4}, "L2 weight decay 1e-4"), False),
    "clip_norm": (_train_edit({"clip_norm": 1.0}, "gradient clipping at norm 1"), False),
    "adam": (_train_edit({"optimizer": "adam", "lr": 1e-3}, "Adam with learning rate 1e-3"), False),
    "lstm": (_lstm_edit, True),
    "lower_lr": (_lower_lr, False),
    "auxiliary": (_layers_edit(_add_auxiliary, "an auxiliary classifier (loss weight 0.3) at the middle of the stack"),
                  True),
}
REMEDIES: dict[str, Remedy] = {rid: Remedy(rid, t["label"], t["explanation"], *_EDITS[rid])
                               for rid, t in _TEXTS.items()}


def apply(remedy_id: str, spec: dict) -> tuple[dict, str]:
    """The spec with one remedy applied (validated), and a sentence saying what changed."""
    remedy = REMEDIES.get(remedy_id)
    if remedy is None:
        raise ValueError(f"unknown remedy {remedy_id!r}")
    before = validate(spec)
    before.pop("stopped", None)
    new = copy.deepcopy(before)
    if remedy.needs_stack and new["model"].get("layers") is None:
        raise ValueError("this remedy edits a layer stack; the model is a custom Python module")
    text = remedy.edit(new)
    new.pop("stopped", None)
    new = validate(new)
    if new == before:
        raise ValueError(f"{remedy.label}: the spec has it already, nothing to change")
    return new, text
