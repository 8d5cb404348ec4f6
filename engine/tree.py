"""The layer tree's pieces, without Qt or torch: paths, nodes, and wrapping in a block.

A ``Path`` names a layer by its 1-based positions: (3,) the third layer, (4, 2)
the second layer inside the residual block at 4, ``OUT`` the output layer the
builder adds (the numbering of the spec's messages and of engine.plan).
engine.document edits a tree of ``Node``s; ``wrapped`` and ``unwrapped`` are the
pure list forms of its wrap and unwrap.
"""
from __future__ import annotations

import copy
from typing import Tuple, Union

Path = Tuple[Union[int, str], ...]
OUT: Path = ("out",)


def path_text(path) -> str:
    """(4, 2) -> "4.2" (the plan's LayerInfo.path)."""
    return ".".join(map(str, path))


def parse_path(text: str) -> Path:
    """"4.2" -> (4, 2); "out" -> OUT."""
    return OUT if text == "out" else tuple(int(p) for p in str(text).split("."))


def top_paths(paths) -> list:
    """Distinct paths in document order, without those inside another one (and without OUT)."""
    ps = sorted({tuple(p) for p in paths if p and tuple(p) != OUT})
    return [p for p in ps if not any(q != p and p[:len(q)] == q for q in ps)]


def info_get(info, name, default=None):
    """A field of a LayerInfo, or of a dict with the same fields."""
    return info.get(name, default) if isinstance(info, dict) else getattr(info, name, default)


class Node:
    """One row. ``layer`` holds the params (no nested "layers"); a residual's body is ``children``."""
    __slots__ = ("layer", "children", "parent", "info", "added", "__weakref__")

    def __init__(self, layer: dict, parent, added: bool = False):
        self.parent, self.info, self.added = parent, None, added
        self.layer = {k: copy.deepcopy(v) for k, v in layer.items() if k != "layers"}
        self.children = None
        if layer.get("type") == "residual":
            self.children = [Node(c, self) for c in layer.get("layers", [])]

    @property
    def kind(self) -> str:
        return self.layer.get("type")

    def to_dict(self) -> dict:
        d = copy.deepcopy(self.layer)
        if self.children is not None:
            d["layers"] = [c.to_dict() for c in self.children]
        return d

    def walk(self):
        for c in self.children or []:
            yield c
            yield from c.walk()


def _shape_tree(layers) -> list:
    return [(l.get("type"), _shape_tree(l.get("layers", [])) if l.get("type") == "residual" else None)
            for l in layers]


def _siblings(layers: list, parent: Path) -> list:
    for p in parent:
        layers = layers[p - 1]["layers"]
    return layers


def wrapped(layers: list, paths) -> list | None:
    """The layers with the sibling layers at ``paths`` (contiguous) put in a new residual
    block at the first one's place; None when they are not contiguous siblings."""
    paths = sorted(tuple(p) for p in paths)
    rows = [p[-1] for p in paths]
    if not paths or len({p[:-1] for p in paths}) != 1 or rows != list(range(rows[0], rows[0] + len(rows))):
        return None
    layers = copy.deepcopy(layers)
    sib = _siblings(layers, paths[0][:-1])
    i, j = rows[0] - 1, rows[-1]
    sib[i:j] = [{"type": "residual", "layers": sib[i:j]}]
    return layers


def unwrapped(layers: list, path) -> tuple[list, list] | None:
    """The layers with the residual block at ``path`` replaced by its body, and the body's
    new paths; None when ``path`` is not a residual block."""
    path = tuple(path)
    layers = copy.deepcopy(layers)
    try:
        sib = _siblings(layers, path[:-1])
        block = sib[path[-1] - 1]
    except (IndexError, KeyError, TypeError):
        return None
    if block.get("type") != "residual":
        return None
    body = block.get("layers", [])
    sib[path[-1] - 1:path[-1]] = body
    return layers, [path[:-1] + (path[-1] + k,) for k in range(len(body))]
