"""The experiment document, without Qt: the layer tree of a spec, its plan and its settings.

Paths. A layer is named by a ``Path``, a tuple of 1-based positions, the
numbering of the spec's messages and of engine.plan: (3,) is the third layer,
(4, 2) the second layer inside the residual block at 4, ``OUT`` the output
layer that the builder adds. An *insertion point* is a path too: the position
the first new layer will have, so (n + 1,) appends and (4, 1) puts layers at
the top of block 4.

``StackDocument`` holds the tree (``Node``s) and edits it: insert, remove,
move, set, replace, wrap in / unwrap a residual block. Each edit emits plain
events (callbacks, see ``Events``) around the change, in the order a tree view
needs them: "inserting"/"inserted" (parent node, first row, count),
"removing"/"removed", "resetting"/"reset", "changed" (after parameters
changed in place), then "edited" (the paths to select) once per edit or
batch. After every edit the stack is validated (``spec_error``: a SpecError
with the layer's path) and the plan is stale until ``set_plan`` or
``update_plan`` (engine.plan: shapes and problems, no torch) attaches a new
one ("planned"). The edits do not check their arguments beyond the paths:
callers (the editor's undo commands) validate first.

``ExperimentDocument`` is the whole spec being edited: the stack plus the
data and training sections ("settings_changed"), the object every undo
command of the editor changes.

(Over 400 lines with a reason: the edits, their events, the validation and the
plan are one object's state and belong together; the tree's pieces are in
engine.tree.)
"""
from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Callable

from .catalog import new_layer  # noqa: F401  (re-exported: the palette's new layers)
from .plan import plan
from .spec import SpecError, validate_layers

from .tree import (OUT, Node, Path, _shape_tree, info_get, parse_path, path_text, top_paths,  # noqa: F401
                   unwrapped, wrapped)


class Events:
    """Named callbacks: ``connect(name, fn)``, ``disconnect(name, fn)``, ``emit(name, *args)``."""

    def __init__(self):
        self._callbacks: dict[str, list[Callable]] = {}

    def connect(self, name: str, fn: Callable) -> None:
        self._callbacks.setdefault(name, []).append(fn)

    def disconnect(self, name: str, fn: Callable) -> None:
        if fn in self._callbacks.get(name, []):
            self._callbacks[name].remove(fn)

    def emit(self, name: str, *args) -> None:
        for fn in list(self._callbacks.get(name, [])):
            fn(*args)


class StackDocument:
    """The layer tree with its edits, validation and plan (see the module docstring)."""

    def __init__(self, layers=None):
        self.events = Events()
        self.root = Node({"type": "residual", "layers": []}, None)
        self.out: Node | None = None
        self.plan_valid = False
        self.locked, self.lock_reason = False, ""
        self.current: Path | None = None
        self._batch, self._dirty, self._hint = 0, False, []
        self.spec_error: SpecError | None = None
        if layers:
            self.root.children = [Node(l, self.root) for l in copy.deepcopy(list(layers))]
        self._revalidate()

    # ------------------------------------------------------------------ reading
    def layers(self) -> list[dict]:
        """The stack as spec layers (a deep copy)."""
        return [c.to_dict() for c in self.root.children]

    def layer(self, path) -> dict:
        """The layer at ``path`` (a copy; a residual block includes its "layers")."""
        return self.node_at(path).to_dict()

    def has_path(self, path) -> bool:
        try:
            self.node_at(path)
            return True
        except (KeyError, IndexError, TypeError):
            return False

    def all_paths(self) -> list:
        return [self.path_of(n) for n in self.root.walk()]

    def info(self, path):
        """The plan's LayerInfo for ``path`` (None when the plan is stale or does not know it)."""
        return self.node_at(path).info if self.plan_valid else None

    def problem(self, path) -> str | None:
        return self.problem_of(self.node_at(path))

    def problem_of(self, node: Node) -> str | None:
        """The spec error about this layer, else the plan's problem."""
        err = self.spec_error
        if err is not None and err.path is not None and node is not self.out and self.path_of(node) == err.path:
            return str(err)
        if self.plan_valid and node.info is not None:
            return info_get(node.info, "problem")
        return None

    def problems(self) -> list:
        """Every (path, problem) in document order."""
        nodes = list(self.root.walk()) + ([self.out] if self.out else [])
        return [(self.path_of(n), pr) for n in nodes if (pr := self.problem_of(n))]

    def width_at(self, dest) -> int | None:
        """The feature width flowing into insertion point ``dest`` per the plan (None if unknown)."""
        if not self.plan_valid:
            return None
        try:
            parent, row = self.insertion(dest)
        except (KeyError, IndexError, TypeError):
            return None
        shape = None
        if row < len(parent.children) and parent.children[row].info is not None:
            shape = info_get(parent.children[row].info, "in_shape")
        elif row > 0 and parent.children[row - 1].info is not None:
            shape = info_get(parent.children[row - 1].info, "out_shape")
        elif parent is self.root and self.out is not None and self.out.info is not None:
            shape = info_get(self.out.info, "in_shape")
        elif parent is not self.root and parent.info is not None:
            shape = info_get(parent.info, "in_shape")
        return int(shape[-1]) if shape else None

    def append_path(self, parent_path=()) -> Path:
        """The insertion point after the last layer of the stack (or of a block)."""
        parent = self.node_at(parent_path) if parent_path else self.root
        return tuple(parent_path) + (len(parent.children) + 1,)

    def can_move(self, paths, dest) -> bool:
        """False when a block would be moved into itself (or ``dest`` is no place)."""
        try:
            parent, _ = self.insertion(dest)
        except (KeyError, IndexError, TypeError):
            return False
        ppath = self.path_of(parent) if parent is not self.root else ()
        return not any(ppath[:len(p)] == tuple(p) for p in paths)

    def is_noop_move(self, paths, dest) -> bool:
        """True when moving these siblings to ``dest`` leaves them where they are."""
        dest = tuple(dest)
        parents = {tuple(p)[:-1] for p in paths}
        if len(parents) != 1 or dest[:-1] != tuple(paths[0])[:-1]:
            return False
        rows = sorted(p[-1] for p in paths)
        contiguous = rows == list(range(rows[0], rows[0] + len(rows)))
        return contiguous and rows[0] <= dest[-1] <= rows[-1] + 1

    # ------------------------------------------------------------------ paths and nodes
    def node_at(self, path) -> Node:
        path = tuple(path)
        if path == OUT:
            if self.out is None:
                raise KeyError(path)
            return self.out
        if not path:
            raise KeyError(path)
        node = self.root
        for p in path:
            if node.children is None or not isinstance(p, int) or not 1 <= p <= len(node.children):
                raise KeyError(path)
            node = node.children[p - 1]
        return node

    def insertion(self, dest) -> tuple[Node, int]:
        """(parent node, 0-based row) of an insertion point; KeyError when there is no such place."""
        dest = tuple(dest)
        parent = self.node_at(dest[:-1]) if len(dest) > 1 else self.root
        if parent.children is None or not isinstance(dest[-1], int) \
                or not 1 <= dest[-1] <= len(parent.children) + 1:
            raise KeyError(dest)
        return parent, dest[-1] - 1

    def path_of(self, node: Node) -> Path:
        if node is self.out:
            return OUT
        path = []
        while node.parent is not None:
            path.append(node.parent.children.index(node) + 1)
            node = node.parent
        return tuple(reversed(path))

    def row_of(self, node: Node) -> int:
        """The 0-based row of a node under its parent (the output layer is the root's last row)."""
        return len(self.root.children) if node is self.out else node.parent.children.index(node)

    # ------------------------------------------------------------------ editor state
    def set_locked(self, locked: bool, reason: str = "") -> None:
        locked = bool(locked)
        if (locked, reason) != (self.locked, self.lock_reason):
            self.locked, self.lock_reason = locked, reason if locked else ""
            self.events.emit("locked", self.locked, self.lock_reason)

    def set_current(self, path) -> None:
        path = tuple(path) if path is not None else None
        if path != self.current:
            self.current = path
            self.events.emit("current", path)

    # ------------------------------------------------------------------ edits
    @contextmanager
    def batch(self):
        """Group edits: one "edited" event (with the last selection hint) at the end."""
        self._batch += 1
        try:
            yield
        finally:
            self._batch -= 1
            if self._batch == 0 and self._dirty:
                self._dirty = False
                self.events.emit("edited", list(self._hint))

    def hint(self, paths) -> None:
        """The rows a view should select after the current edit."""
        self._hint = [tuple(p) for p in paths]

    def insert(self, dest, layers) -> list:
        """Insert layers at insertion point ``dest``; returns their paths."""
        layers = copy.deepcopy(list(layers))
        parent, row = self.insertion(dest)
        self.events.emit("inserting", parent, row, len(layers))
        parent.children[row:row] = [Node(l, parent) for l in layers]
        self.events.emit("inserted", parent, row, len(layers))
        paths = [tuple(dest[:-1]) + (row + 1 + i,) for i in range(len(layers))]
        self._edited(paths)
        return paths

    def remove(self, paths) -> list:
        """Remove layers; returns [(path, layer)] in document order, for re-insertion."""
        paths = top_paths(paths)
        removed = []
        for p in reversed(paths):
            node = self.node_at(p)
            parent, row = node.parent, node.parent.children.index(node)
            removed.append((p, node.to_dict()))
            self.events.emit("removing", parent, row, 1)
            del parent.children[row]
            self.events.emit("removed", parent, row, 1)
        removed.reverse()
        self._edited(self._after_removal(paths[0]) if paths else [])
        return removed

    def restore(self, removed) -> None:
        """Undo ``remove``: re-insert [(path, layer)] in document order, each at its old path."""
        with self.batch():
            for path, layer in removed:
                self.insert(path, [layer])
            self.hint([p for p, _ in removed])

    def move(self, paths, dest) -> tuple[list, list]:
        """Move layers to insertion point ``dest`` (given before the move).

        Returns (new paths, [(old path, layer)])."""
        paths = top_paths(paths)
        parent, row = self.insertion(dest)
        moving = [self.node_at(p) for p in paths]
        anchor = next((c for c in parent.children[row:] if c not in moving), None)
        with self.batch():
            removed = self.remove(paths)
            at = parent.children.index(anchor) if anchor is not None else len(parent.children)
            base = self.path_of(parent) if parent is not self.root else ()
            new_paths = self.insert(base + (at + 1,), [d for _, d in removed])
            self.hint(new_paths)
        return new_paths, removed

    def set(self, path, layer: dict) -> None:
        """Replace the layer at ``path`` (a residual block's body too, when ``layer`` has "layers")."""
        node = self.node_at(path)
        node.layer = {k: copy.deepcopy(v) for k, v in layer.items() if k != "layers"}
        if node.children is not None and "layers" in layer \
                and layer["layers"] != [c.to_dict() for c in node.children]:
            if node.children:
                n = len(node.children)
                self.events.emit("removing", node, 0, n)
                node.children = []
                self.events.emit("removed", node, 0, n)
            if layer["layers"]:
                self.events.emit("inserting", node, 0, len(layer["layers"]))
                node.children = [Node(c, node) for c in copy.deepcopy(layer["layers"])]
                self.events.emit("inserted", node, 0, len(layer["layers"]))
        self._edited([tuple(path)])

    def replace(self, layers, hint=()) -> None:
        """Replace the whole stack."""
        self.events.emit("resetting")
        self.root.children = [Node(l, self.root) for l in copy.deepcopy(list(layers))]
        self.events.emit("reset")
        self._edited([tuple(p) for p in hint])

    def wrap(self, paths) -> Path | None:
        """Put contiguous sibling layers in a new residual block; returns its path (None: not possible)."""
        new = wrapped(self.layers(), paths)
        if new is None:
            return None
        first = min(tuple(p) for p in paths)
        self.replace(new, [first])
        return first

    def unwrap(self, path) -> list | None:
        """Replace a residual block by its body; returns the body's paths (None: not a block)."""
        out = unwrapped(self.layers(), path)
        if out is None:
            return None
        self.replace(out[0], out[1])
        return out[1]

    def show_layers(self, layers) -> None:
        """Show these layers (e.g. the normalised spec) without an edit: no "edited" event.
        Where only values differ (defaults filled in), rows are updated in place and the plan kept."""
        layers = copy.deepcopy(list(layers))
        if layers == self.layers():
            return
        if _shape_tree(layers) == _shape_tree(self.layers()):
            def fill(nodes, ls):
                for n, l in zip(nodes, ls):
                    n.layer = {k: v for k, v in l.items() if k != "layers"}
                    if n.children is not None:
                        fill(n.children, l.get("layers", []))
            fill(self.root.children, layers)
            self._revalidate()
            self.events.emit("changed")
            return
        self.events.emit("resetting")
        self.root.children = [Node(l, self.root) for l in layers]
        self.plan_valid = False
        self._revalidate()
        self.events.emit("reset")

    def _edited(self, hint) -> None:
        self.plan_valid = False   # shapes are stale until a new plan is set
        self._revalidate()
        self.events.emit("changed")
        self._hint = list(hint)
        if self._batch:
            self._dirty = True
            return
        self.events.emit("edited", list(self._hint))

    def _after_removal(self, first: Path) -> list:
        """What to select once ``first`` is gone: the layer now there, or the one before, or the parent."""
        if self.has_path(first):
            return [first]
        if first[-1] > 1 and self.has_path(first[:-1] + (first[-1] - 1,)):
            return [first[:-1] + (first[-1] - 1,)]
        return [first[:-1]] if len(first) > 1 else []

    def _revalidate(self) -> None:
        try:
            validate_layers(self.layers())
            self.spec_error = None
        except SpecError as e:
            self.spec_error = e

    # ------------------------------------------------------------------ plan
    def update_plan(self, in_shape, n_out) -> list:
        """Plan the current stack for inputs of ``in_shape`` and ``n_out`` outputs (engine.plan) and
        attach it; a stack that does not validate gets no plan. Returns the LayerInfo list."""
        if self.spec_error is not None:
            return []
        infos = plan(validate_layers(self.layers()), tuple(in_shape), n_out)
        self.set_plan(infos)
        return infos

    def set_plan(self, infos) -> None:
        """Attach a plan (LayerInfo list, or dicts with the same fields): rows are matched by position
        and type; the added output layer becomes the node ``out`` (the root's last row)."""
        infos = list(infos or [])
        for n in self.root.walk():
            n.info = None
        body = [i for i in infos if not info_get(i, "added", False)]
        out = next((i for i in infos if info_get(i, "added", False)), None)
        self._attach(self.root.children, body)
        n_top = len(self.root.children)
        if out is not None and self.out is None:
            self.events.emit("inserting", self.root, n_top, 1)
            self.out = Node({"type": info_get(out, "type", "linear")}, self.root, added=True)
            self.events.emit("inserted", self.root, n_top, 1)
        elif out is None and self.out is not None:
            self.events.emit("removing", self.root, n_top, 1)
            self.out = None
            self.events.emit("removed", self.root, n_top, 1)
        if out is not None:
            self.out.layer = {"type": info_get(out, "type", "linear")}
            self.out.info = out
        self.plan_valid = True
        self.events.emit("changed")
        self.events.emit("planned")

    def _attach(self, nodes, infos) -> None:
        for n, info in zip(nodes, infos):
            if info_get(info, "type") == n.kind:
                n.info = info
                if n.children is not None:
                    self._attach(n.children, list(info_get(info, "children", []) or []))


class ExperimentDocument:
    """The spec being edited: its layer stack (a StackDocument) and its other sections.

    ``set_settings(data, train)`` replaces the data and training sections and emits
    "settings_changed" (data, train); ``spec()`` is the whole spec, as plain data."""

    def __init__(self, spec: dict | None = None):
        self.events = Events()
        spec = copy.deepcopy(spec or {})
        model = spec.get("model", {"layers": []})
        self.stack = StackDocument(model.get("layers", []) if "layers" in model else [])
        self.head = {k: v for k, v in spec.items() if k not in ("data", "train", "model")}
        self.custom_model = None if "layers" in model else model
        self.data: dict = spec.get("data", {"kind": "spirals"})
        self.train: dict = spec.get("train", {})

    def settings(self) -> tuple[dict, dict]:
        return copy.deepcopy(self.data), copy.deepcopy(self.train)

    def show_settings(self, data: dict, train: dict) -> None:
        """Take these sections without an event (the views show them themselves)."""
        self.data, self.train = copy.deepcopy(data), copy.deepcopy(train)

    def set_settings(self, data: dict, train: dict) -> None:
        self.data, self.train = copy.deepcopy(data), copy.deepcopy(train)
        self.events.emit("settings_changed", copy.deepcopy(data), copy.deepcopy(train))

    def spec(self) -> dict:
        model = copy.deepcopy(self.custom_model) if self.custom_model is not None else {"layers": self.stack.layers()}
        return {**copy.deepcopy(self.head), "data": copy.deepcopy(self.data), "model": model,
                "train": copy.deepcopy(self.train)}
