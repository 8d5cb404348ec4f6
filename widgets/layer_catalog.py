"""How the stack editor shows layers, without Qt: group colours, the text of a row,
shapes, paths. What a layer type *is* (group, parameters, explanation) is
engine.catalog's.

Paths: engine.document.Path (1-based tuples; ("out",) the added output layer).
"""
from __future__ import annotations

import json

from backprop_lab.engine.catalog import CATALOG, GROUPS  # noqa: F401  (GROUPS: palette order)
from backprop_lab.engine.document import info_get, new_layer, path_text, top_paths  # noqa: F401  (re-exported)

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
