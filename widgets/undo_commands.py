"""Every edit of the experiment as a QUndoCommand.

Stack commands edit an engine.document.StackDocument (the Qt model follows
its events) and address layers by path (engine.document.Path, 1-based tuples). Each
command's undo restores exactly the layer list that was there before its redo.
Consecutive edits of one field of one layer (spin box clicks, typing) merge
into one undo step, and so do consecutive edits of one setting.
"""
from __future__ import annotations

import copy

from PySide6.QtGui import QUndoCommand

EDIT_LAYER_ID = 0x4C59     # "LY"
EDIT_SETTINGS_ID = 0x5354  # "ST"


def _dotted(path) -> str:
    return ".".join(map(str, path))


def changed_fields(old: dict, new: dict) -> tuple[str, ...]:
    """Which keys differ, one level into init objects: ("units",), ("init.std",), ("init.scheme",)."""
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict) and a.get("scheme") == b.get("scheme"):
            out += [f"{k}.{s}" for s in sorted(set(a) | set(b)) if a.get(s) != b.get(s)]
        elif isinstance(a, dict) and isinstance(b, dict):
            out.append(f"{k}.scheme")
        else:
            out.append(k)
    return tuple(out)


class AddLayers(QUndoCommand):
    """Insert layers at insertion point ``dest`` (the path the first one will have)."""

    def __init__(self, doc, dest: tuple, layers: list[dict], text: str | None = None, parent=None):
        n = len(layers)
        super().__init__(text or (f"Add {layers[0]['type']}" if n == 1 else f"Add {n} layers"), parent)
        self.doc, self.dest, self.layers = doc, tuple(dest), copy.deepcopy(layers)
        self.paths: list[tuple] = []

    def redo(self):
        self.paths = self.doc.insert(self.dest, self.layers)

    def undo(self):
        self.doc.remove(self.paths)


class RemoveLayers(QUndoCommand):
    def __init__(self, doc, paths, text: str | None = None, parent=None):
        self.paths = sorted(tuple(p) for p in paths)
        if text is None:
            text = (f"Remove {doc.layer(self.paths[0])['type']}" if len(self.paths) == 1
                    else f"Remove {len(self.paths)} layers")
        super().__init__(text, parent)
        self.doc = doc
        self.removed: list[tuple[tuple, dict]] = []

    def redo(self):
        self.removed = self.doc.remove(self.paths)

    def undo(self):
        # re-inserting in document order, each at its old path, rebuilds the old tree exactly
        self.doc.restore(self.removed)


class MoveLayer(QUndoCommand):
    """Move layers (one or several, anywhere in the tree) to insertion point ``dest``,
    given in the coordinates before the move."""

    def __init__(self, doc, paths, dest: tuple, text: str | None = None, parent=None):
        self.paths, self.dest = sorted(tuple(p) for p in paths), tuple(dest)
        if text is None:
            text = (f"Move {doc.layer(self.paths[0])['type']}" if len(self.paths) == 1
                    else f"Move {len(self.paths)} layers")
        super().__init__(text, parent)
        self.doc = doc
        self.new_paths: list[tuple] = []
        self.moved: list[tuple[tuple, dict]] = []

    def redo(self):
        self.new_paths, self.moved = self.doc.move(self.paths, self.dest)

    def undo(self):
        with self.doc.batch():
            self.doc.remove(self.new_paths)
            self.doc.restore(self.moved)


class EditLayer(QUndoCommand):
    """Replace the parameters of the layer at ``path``; consecutive edits of the
    same field(s) of the same layer merge."""

    def __init__(self, doc, path: tuple, layer: dict, text: str | None = None, parent=None):
        self.doc, self.path = doc, tuple(path)
        self.old, self.new = doc.layer(self.path), copy.deepcopy(layer)
        self.fields = changed_fields(self.old, self.new)
        super().__init__(text or f"Set {', '.join(self.fields) or 'parameters'} of layer {_dotted(path)}",
                         parent)

    def id(self):
        return EDIT_LAYER_ID

    def mergeWith(self, other) -> bool:
        if not isinstance(other, EditLayer) or other.path != self.path or other.fields != self.fields:
            return False
        self.new = copy.deepcopy(other.new)
        if self.new == self.old:
            self.setObsolete(True)   # edited back to where it was: no undo step at all
        return True

    def redo(self):
        self.doc.set(self.path, self.new)

    def undo(self):
        self.doc.set(self.path, self.old)


class ReplaceStack(QUndoCommand):
    """Replace the whole layer list (remedies, wrap in a block, paste over...)."""

    def __init__(self, doc, layers: list[dict], text: str = "Replace the stack", select=None, parent=None):
        super().__init__(text, parent)
        self.doc = doc
        self.old, self.new = doc.layers(), copy.deepcopy(list(layers))
        self.old_select = [doc.current] if doc.current and doc.current != ("out",) else []
        self.select = [tuple(p) for p in (select or [])]

    def redo(self):
        self.doc.replace(self.new, self.select)

    def undo(self):
        self.doc.replace(self.old, self.old_select)


class ReplaceSpec(QUndoCommand):
    """Swap the whole spec through ``apply_fn(spec) -> bool`` (the session's set_spec).

    Used by one-click remedies, which may rewrite the stack and the training
    settings at once; the views follow from the session's spec_changed."""

    def __init__(self, old_spec: dict, new_spec: dict, text: str, apply_fn, parent=None):
        super().__init__(text, parent)
        self.old, self.new = copy.deepcopy(old_spec), copy.deepcopy(new_spec)
        self.apply_fn = apply_fn

    def redo(self):
        ok = self.apply_fn(copy.deepcopy(self.new))
        if ok is False:
            self.setObsolete(True)   # refused: leave no undo step behind

    def undo(self):
        self.apply_fn(copy.deepcopy(self.old))


class EditSettings(QUndoCommand):
    """Change the data and train sections of an engine.document.ExperimentDocument (the settings
    panel shows and announces them on its "settings_changed" event)."""

    def __init__(self, doc, old: tuple[dict, dict], new: tuple[dict, dict], text: str | None = None,
                 parent=None):
        self.doc = doc
        self.old = copy.deepcopy(old)
        self.new = copy.deepcopy(new)
        self.fields = tuple(f"data.{k}" for k in changed_fields(self.old[0], self.new[0])) + \
            tuple(f"train.{k}" for k in changed_fields(self.old[1], self.new[1]))
        super().__init__(text or self._describe(), parent)

    def _describe(self) -> str:
        if len(self.fields) == 1:
            sec, key = self.fields[0].split(".", 1)
            value = (self.new[0] if sec == "data" else self.new[1]).get(key)
            return f"Set {key} to {value if value is not None else 'off'}"
        if "data.kind" in self.fields:
            return f"Use {self.new[0]['kind']} data"
        return f"Change {len(self.fields)} settings"

    def id(self):
        return EDIT_SETTINGS_ID

    def mergeWith(self, other) -> bool:
        if not isinstance(other, EditSettings) or other.doc is not self.doc or other.fields != self.fields:
            return False
        self.new = copy.deepcopy(other.new)
        self.setText(other.text())
        if self.new == self.old:
            self.setObsolete(True)
        return True

    def redo(self):
        self.doc.set_settings(*self.new)

    def undo(self):
        self.doc.set_settings(*self.old)
