"""How the stack editor shows layers, without Qt: group colours, the text of a row,
shapes, paths. What a layer type *is* (group, parameters, explanation) is
engine.catalog's.

Paths are tuples of 1-based positions, the numbering of the spec's messages and
of engine.build.plan: (3,) is the third layer, (4, 2) the second layer inside
the residual block at 4, ("out",) the output layer that build adds.
"""
from __future__ import annotations

import json

from backprop_lab.engine.catalog import CATALOG, GROUPS, default_layer  # noqa: F401  (GROUPS: palette order)

# Tableau-10 hues: distinct on light and dark backgrounds, and for most colour-blind readers.
GROUP_COLOURS = {"Dense": "#4e79a7", "Activations": "#f28e2b", "Normalisation": "#59a14f",
                 "Structure": "#b07aa1", "Recurrent": "#76b7b2"}
PROBLEM_COLOUR = "#d64541"


def description(kind: str) -> str:
    """The catalogue's one-line explanation of a layer type ("" for an unknown one)."""
    t = CATALOG.get(kind)
    return t.description if t else ""


def group_of(kind: str) -> str:
    t = CATALOG.get(kind)
    return t.group if t else ""


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
    """The parameters worth seeing in the stack row, from the catalogue: numbers first
    ("30", "slope 0.1"), then a non-default init, switched-off options ("no bias"), set
    optional values ("forget bias 1.0") and the label: "30 · xavier_normal · no bias"."""
    t, parts = CATALOG.get(layer.get("type")), []
    params = t.params if t else ()
    for p in params:
        if p.kind in ("int", "float") and not p.optional:
            v = layer.get(p.name, p.default)
            parts.append(f"{p.short} {format_number(v)}" if p.short else str(v))
    if t is not None and t.role == "block":
        n = len(layer.get("layers", []))
        parts.append(f"{n} layer{'s' if n != 1 else ''} + skip")
    init = layer.get("init")
    if isinstance(init, dict) and init.get("scheme", "default") != "default":
        extra = next((f" {k} {format_number(init[k])}" for k in ("std", "a", "gain") if k in init), "")
        parts.append(init["scheme"] + extra)
    parts += [p.off for p in params if p.kind == "bool" and p.off and layer.get(p.name) is False]
    parts += [f"{p.short} {format_number(layer[p.name])}" for p in params
              if p.optional and layer.get(p.name) is not None]
    if layer.get("name"):
        parts.append(f"“{layer['name']}”")
    return " · ".join(parts)


def path_text(path) -> str:
    return ".".join(map(str, path))


def top_paths(paths) -> list[tuple]:
    """Distinct paths in document order, without those inside another one."""
    ps = sorted({tuple(p) for p in paths if p and p != ("out",)})
    return [p for p in ps if not any(q != p and p[:len(q)] == q for q in ps)]


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
