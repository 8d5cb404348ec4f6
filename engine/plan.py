"""The plan of a layer stack: each layer's input and output shape and, where it
cannot work, the reason (no torch: the GUI and the stack document use it).

``plan`` walks the stack with the shape of one sample (no batch axis) and
returns one LayerInfo per row, input side first; at the top level it appends
the output linear layer that engine.build adds (``added``). ``layout`` names
what engine.build will make of a stack (the layers with a weight, the
activation layers, each layer's units), so the window can show an empty
History of a built-in stack before the training process has imported torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .catalog import ACTIVATION_TYPES, CATALOG, NORM_TYPES, RECURRENT_TYPES
from .tree import Path, parse_path


@dataclass
class LayerInfo:
    path: str            # "3", "4.2" inside a residual block, "out" for the added output layer
    type: str
    in_shape: tuple
    out_shape: tuple
    problem: str | None = None
    added: bool = False  # the output layer that build adds
    children: list = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.path} {self.type}"

    @property
    def at(self) -> Path:
        """The row's Path tuple ((4, 2); OUT for the added output layer); ``path`` is its text."""
        return parse_path(self.path)


def _role(kind) -> str | None:
    t = CATALOG.get(kind)
    return t.role if t else None


def _shape(s: tuple) -> str:
    return " x ".join(map(str, s)) if s else "scalar"


# ----------------------------------------------------------------------------- planning
def plan(layers: list[dict], in_shape: tuple, n_out: int | None = None, prefix: str = "") -> list[LayerInfo]:
    """Shapes and problems of each layer; appends the output layer at the top level."""
    infos, shape = [], tuple(in_shape)
    for i, layer in enumerate(layers, 1):
        kind, path = layer["type"], f"{prefix}{i}"
        later_recurrent = any(l["type"] in RECURRENT_TYPES for l in layers[i:])
        info = LayerInfo(path, kind, shape, shape)
        if shape is None:
            info.problem = "an earlier layer does not fit"
        elif _role(kind) == "dense":
            info.out_shape = shape[:-1] + (layer["units"],)
        elif _role(kind) == "auxiliary" and (prefix or len(shape) != 1):
            info.problem = ("an auxiliary head belongs to the top level of the stack, on one feature axis"
                            if prefix else f"an auxiliary head needs one feature axis, got {_shape(shape)}")
        elif kind == "batchnorm" and len(shape) != 1:
            info.problem = f"batchnorm needs one feature axis, got {_shape(shape)}; put it after the recurrent layer"
        elif kind in RECURRENT_TYPES:
            if len(shape) != 2:
                info.problem = f"{kind} needs a sequence (time x features), got {_shape(shape)}"
            else:
                info.out_shape = (shape[0], layer["units"]) if later_recurrent else (layer["units"],)
        elif _role(kind) == "block":
            info.children = plan(layer["layers"], shape, None, f"{path}.")
            bad = next((c for c in info.children if c.problem), None)
            if bad:
                info.problem = f"layer {bad.path} ({bad.type}): {bad.problem}"
            else:
                inner = info.children[-1].out_shape
                if len(inner) != len(shape) or inner[:-1] != shape[:-1]:
                    info.problem = f"the block maps {_shape(shape)} to {_shape(inner)}; only the width may change"
                else:
                    info.out_shape = inner  # a projection on the skip path matches the widths
        if info.problem:
            info.out_shape = None
        infos.append(info)
        shape = info.out_shape
    if n_out is not None:
        if shape is not None and len(shape) != 1:
            infos.append(LayerInfo("out", "linear", shape, None, added=True,
                                   problem=f"the stack ends with a sequence ({_shape(shape)}); "
                                           "add a recurrent layer to read it"))
        elif not (layers and layers[-1]["type"] == "linear" and shape == (n_out,)):
            infos.append(LayerInfo("out", "linear", shape, (n_out,) if shape else None, added=True))
    return infos


@dataclass
class Layout:
    """What the probes of a built model report: names, units, activations, time steps."""
    layer_names: list
    act_names: list
    units: list
    act_layers: list      # the layer dict of each activation layer (for its f, f')
    recurrent: bool = False
    time_steps: int = 0   # of time_grad_norm: the sequence length when the net is recurrent

    def key(self) -> tuple:
        return (tuple(self.layer_names), tuple(self.act_names), tuple(self.units), self.time_steps)


def layout(layers: list[dict], infos: list[LayerInfo], x_shape: tuple = ()) -> Layout:
    """The layers engine.build makes of a stack whose plan has no problem, in its order
    (tests/test_worker.py holds it to the built probes' on every preset).

    ``x_shape``: the shape of the training inputs (samples first), for the time steps."""
    out = Layout([], [], [], [])

    def walk(ls, infs):
        for layer, info in zip(ls, infs):
            kind = layer["type"]
            if kind == "linear":
                out.layer_names.append(info.label)
                out.units.append(int(layer["units"]))
            elif kind in ACTIVATION_TYPES:
                out.act_names.append(info.label)
                out.act_layers.append(dict(layer))
            elif kind in NORM_TYPES:
                out.layer_names.append(info.label)
                out.units.append(int(info.in_shape[-1]))
            elif _role(kind) == "block":
                walk(layer["layers"], info.children)
                if info.out_shape[-1] != info.in_shape[-1]:
                    out.layer_names.append(f"{info.path} proj")
                    out.units.append(int(info.out_shape[-1]))
            elif kind in RECURRENT_TYPES:
                out.layer_names.append(info.label)
                out.units.append(int(layer["units"]))
                out.recurrent = True

    walk(layers, infos)
    if infos and infos[-1].added:
        out.layer_names.append("out linear")
        out.units.append(int(infos[-1].out_shape[-1]))
    if out.recurrent and len(x_shape) == 3:
        out.time_steps = int(x_shape[1])
    return out
