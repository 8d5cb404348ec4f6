"""What the stack editor knows about layers, without Qt: groups, colours, one-line
descriptions, the text of a row, shapes, paths and the SpecError helpers.

Paths are tuples of 1-based positions, the numbering of the spec's messages and
of engine.build.plan: (3,) is the third layer, (4, 2) the second layer inside
the residual block at 4, ("out",) the output layer that build adds.
"""
from __future__ import annotations

import json
import re

from backprop_lab.engine.spec import LAYER_TYPES, default_layer

GROUPS = ("Dense", "Activations", "Normalisation", "Structure", "Recurrent")
# Tableau-10 hues: distinct on light and dark backgrounds, and for most colour-blind readers.
GROUP_COLOURS = {"Dense": "#4e79a7", "Activations": "#f28e2b", "Normalisation": "#59a14f",
                 "Structure": "#b07aa1", "Recurrent": "#76b7b2"}
PROBLEM_COLOUR = "#d64541"

DESCRIPTIONS = {
    "linear": "Fully connected: y = W x + b. The init sets the scale of W, and with it whether "
              "the signal and the gradient shrink or grow from layer to layer.",
    "sigmoid": "σ(z) = 1 / (1 + e^−z). Its slope is at most 1/4, so every sigmoid layer can "
               "shrink the gradient fourfold: the classic vanishing gradient.",
    "tanh": "tanh(z): slope at most 1 (at z = 0), near 0 once |z| > 2 (saturation).",
    "relu": "max(0, z): slope 1 where active, so no shrinking; a unit whose z stays "
            "negative has slope 0 and stops learning (dead unit).",
    "leaky_relu": "z for z > 0, slope · z otherwise: a small gradient survives for negative z.",
    "elu": "z for z > 0, α (e^z − 1) otherwise: smooth, with negative outputs.",
    "gelu": "z Φ(z): a smooth ReLU (transformers); slope up to 1.13.",
    "softplus": "log(1 + e^z): a smooth ReLU whose slope σ(z) is always below 1.",
    "identity": "f(z) = z: no non-linearity; stacked linear layers collapse into one.",
    "batchnorm": "Normalises each feature over the batch, then scales and shifts: keeps "
                 "pre-activations away from saturation.",
    "layernorm": "Normalises each sample over its features, then scales and shifts.",
    "dropout": "Zeroes each unit with probability p while training (the rest scaled by 1/(1−p)).",
    "residual": "y = x + f(x): the gradient also reaches earlier layers through the identity "
                "path. A projection is added where the widths differ.",
    "rnn": "Elman RNN: h_t = tanh(W x_t + U h_(t−1) + b). The gradient through time is a "
           "product of Jacobians, one per step.",
    "lstm": "Long short-term memory: the additive cell update lets the gradient cross many steps.",
    "gru": "Gated recurrent unit: gates decide how much of h_(t−1) passes on.",
}


def new_layer(kind: str, width: int | None = None) -> dict:
    """A layer for a palette type id. A residual block comes with a body (linear of
    ``width`` units + relu) so that the stack stays valid (an empty block is not)."""
    layer = default_layer(kind)
    if kind == "residual":
        body = default_layer("linear")
        if width:
            body["units"] = int(width)
        layer["layers"] = [body, default_layer("relu")]
    return layer


def format_shape(shape) -> str:
    """(30,) -> "30", (20, 32) -> "20 × 32", None -> "—"."""
    if shape is None:
        return "—"
    shape = tuple(shape)
    return " × ".join(map(str, shape)) if shape else "scalar"


def format_number(v) -> str:
    """Shortest text that reads back as the same float."""
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e6:
        return f"{v:.1f}"
    return repr(v)


def layer_summary(layer: dict) -> str:
    """The parameters worth seeing in the stack row: "30 · xavier_normal · no bias"."""
    kind, parts = layer.get("type"), []
    if "units" in LAYER_TYPES.get(kind, {}).get("params", {}):
        parts.append(str(layer.get("units")))
    if kind == "leaky_relu":
        parts.append(f"slope {format_number(layer.get('slope', 0.01))}")
    elif kind == "elu":
        parts.append(f"α {format_number(layer.get('alpha', 1.0))}")
    elif kind == "dropout":
        parts.append(f"p {format_number(layer.get('p', 0.5))}")
    elif kind == "residual":
        n = len(layer.get("layers", []))
        parts.append(f"{n} layer{'s' if n != 1 else ''} + skip")
    init = layer.get("init")
    if isinstance(init, dict) and init.get("scheme", "default") != "default":
        extra = next((f" {k} {format_number(init[k])}" for k in ("std", "a", "gain") if k in init), "")
        parts.append(init["scheme"] + extra)
    if layer.get("bias") is False:
        parts.append("no bias")
    if kind == "lstm" and layer.get("forget_bias") is not None:
        parts.append(f"forget bias {format_number(layer['forget_bias'])}")
    if layer.get("name"):
        parts.append(f"“{layer['name']}”")
    return " · ".join(parts)


def path_text(path) -> str:
    return ".".join(map(str, path))


def top_paths(paths) -> list[tuple]:
    """Distinct paths in document order, without those inside another one."""
    ps = sorted({tuple(p) for p in paths if p and p != ("out",)})
    return [p for p in ps if not any(q != p and p[:len(q)] == q for q in ps)]


def error_path(message: str) -> tuple | None:
    """The layer a validate_layers message names: "layer 4 (residual) > layer 2 (x): ..." -> (4, 2)."""
    head = message.split(": ", 1)[0]
    nums = re.findall(r"layer (\d+)", head)
    return tuple(int(n) for n in nums) or None


def relocate_error(message: str, path: tuple, kinds=()) -> str:
    """A message about layer 1 of a one-layer list, re-addressed to ``path`` in the stack
    (``kinds``: the types of the enclosing blocks, outermost first)."""
    parts = [f"layer {p} ({k})" for p, k in zip(path[:-1], kinds)]
    parts.append(f"layer {path[-1]}")
    return re.sub(r"^layer 1\b", " > ".join(parts), message)


def info_get(info, name, default=None):
    return info.get(name, default) if isinstance(info, dict) else getattr(info, name, default)


def layers_from_text(text: str) -> list[dict] | None:
    """Layers pasted as JSON text: a layer, a list of layers or a whole spec."""
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"].get("layers")
    if isinstance(obj, dict) and "type" in obj:
        obj = [obj]
    if isinstance(obj, list) and obj and all(isinstance(l, dict) and "type" in l for l in obj):
        return obj
    return None
