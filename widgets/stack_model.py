"""The layer stack as a Qt item model: a tree of layer dicts in the spec's format.

Paths. A layer is named by a tuple of 1-based positions, the numbering of the
spec's error messages ("layer 3 (linear): ...") and of engine.build.plan
("4.2"): (3,) is the third layer, (4, 2) the second layer inside the residual
block at 4, ("out",) the output layer that build adds. An *insertion point* is
a path too: the position the first new layer will have, so (n + 1,) appends
and (4, 1) puts layers at the top of block 4.

The model holds the layers; every user edit goes through an undo command
(widgets.undo_commands) that calls the ``apply_*`` methods, which change the
tree, invalidate the plan and emit ``layers_changed`` once per edit. The app
answers with ``set_layers`` (the normalised spec, no signal) and ``set_plan``
(shapes and problems from engine.build.plan); neither is undoable.
"""
from __future__ import annotations

import copy
import json
import os
from contextlib import contextmanager

from PySide6.QtCore import QAbstractItemModel, QMimeData, QModelIndex, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QIcon, QPainter, QPixmap, QUndoStack

from backprop_lab.engine.catalog import CATALOG
from backprop_lab.engine.spec import SpecError, validate_layers
from backprop_lab.widgets import undo_commands as cmds
from backprop_lab.widgets.layer_catalog import (GROUP_COLOURS, PROBLEM_COLOUR, description, format_shape, group_of,
                                                info_get, layer_summary, new_layer, path_text, top_paths)

MIME_TYPE = "application/x-backprop-lab-layer"

# item data roles beyond Qt's
PATH_ROLE = Qt.UserRole + 1      # tuple path
LAYER_ROLE = Qt.UserRole + 2     # the layer dict (a copy)
PROBLEM_ROLE = Qt.UserRole + 3   # str or None
GROUP_ROLE = Qt.UserRole + 4
ADDED_ROLE = Qt.UserRole + 5     # True on the output layer that build adds
TYPE_ROLE = Qt.UserRole + 6
SUMMARY_ROLE = Qt.UserRole + 7   # "30 · xavier_normal"
IN_SHAPE_ROLE = Qt.UserRole + 8
OUT_SHAPE_ROLE = Qt.UserRole + 9


def problem_icon(size: int = 14) -> QIcon:
    """A red disc with a white '!' (drawn, so no icon file is needed)."""
    pm = QPixmap(size * 2, size * 2)
    pm.setDevicePixelRatio(2.0)
    pm.fill(Qt.transparent)
    p = QPainter(pm)
    p.setRenderHint(QPainter.Antialiasing)
    p.setPen(Qt.NoPen)
    p.setBrush(QColor(PROBLEM_COLOUR))
    p.drawEllipse(QRectF(0.5, 0.5, size - 1, size - 1))
    p.setPen(QColor("white"))
    f = QFont()
    f.setBold(True)
    f.setPixelSize(int(size * 0.8))
    p.setFont(f)
    p.drawText(QRectF(0, 0, size, size), Qt.AlignCenter, "!")
    p.end()
    return QIcon(pm)


def group_icon(group: str, size: int = 10) -> QIcon:
    pm = QPixmap(size * 2, size * 2)
    pm.setDevicePixelRatio(2.0)
    pm.fill(Qt.transparent)
    p = QPainter(pm)
    p.setRenderHint(QPainter.Antialiasing)
    p.setPen(Qt.NoPen)
    p.setBrush(QColor(GROUP_COLOURS.get(group, "#888888")))
    p.drawRoundedRect(QRectF(1, 1, size - 2, size - 2), 2.5, 2.5)
    p.end()
    return QIcon(pm)


# ----------------------------------------------------------------------------- tree nodes
class _Node:
    """One row. ``layer`` holds the params (no nested "layers"); a residual's body is ``children``."""
    __slots__ = ("layer", "children", "parent", "info", "added", "__weakref__")

    def __init__(self, layer: dict, parent, added: bool = False):
        self.parent, self.info, self.added = parent, None, added
        self.layer = {k: copy.deepcopy(v) for k, v in layer.items() if k != "layers"}
        self.children = None
        if layer.get("type") == "residual":
            self.children = [_Node(c, self) for c in layer.get("layers", [])]

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


# ----------------------------------------------------------------------------- the model
class LayerStackModel(QAbstractItemModel):
    """Tree model over a list of spec layer dicts; two columns: the layer and its output shape."""

    layers_changed = Signal()          # after every edit (once per undo command), not after set_layers
    current_changed = Signal(object)   # path of the layer being edited (set by the view), or None
    locked_changed = Signal(bool, str)  # locked, reason
    edit_refused = Signal(str)         # an edit was refused: the reason
    selection_hint = Signal(object)    # list of paths the last edit produced (the view selects them)
    plan_changed = Signal()

    COLUMNS = ("Layer", "Output")

    def __init__(self, layers=None, undo_stack: QUndoStack | None = None, parent=None):
        super().__init__(parent)
        self.undo_stack = undo_stack if undo_stack is not None else QUndoStack(self)
        self._root = _Node({"type": "residual", "layers": []}, None)
        self._out: _Node | None = None
        self._plan_valid = False
        self._locked, self._lock_reason = False, ""
        self._current = None
        self._batch, self._dirty, self._hint = 0, False, []
        self._spec_error: tuple | None = None   # (path or None, message)
        self._token = f"{os.getpid()}:{id(self)}"
        if layers:
            self.set_layers(layers)

    # ------------------------------------------------------------------ reading
    def layers(self) -> list[dict]:
        """The stack as spec layers (a deep copy)."""
        return [c.to_dict() for c in self._root.children]

    def layer(self, path) -> dict:
        """The layer at ``path`` (a copy; a residual block includes its "layers")."""
        return self._node_at(path).to_dict()

    def has_path(self, path) -> bool:
        try:
            self._node_at(path)
            return True
        except (KeyError, IndexError, TypeError):
            return False

    def info(self, path):
        """The plan's LayerInfo for ``path`` (None when the plan is stale or does not know it)."""
        return self._node_at(path).info if self._plan_valid else None

    def problem(self, path) -> str | None:
        return self._problem(self._node_at(path))

    def spec_error(self) -> str | None:
        """validate_layers' message for the whole stack, or None when it is valid."""
        return self._spec_error[1] if self._spec_error else None

    def problems(self) -> list[tuple[tuple, str]]:
        """Every (path, problem) in document order."""
        out = []
        for n in list(self._root.walk()) + ([self._out] if self._out else []):
            pr = self._problem(n)
            if pr:
                out.append((self._path(n), pr))
        return out

    def plan_valid(self) -> bool:
        return self._plan_valid

    def all_paths(self) -> list[tuple]:
        return [self._path(n) for n in self._root.walk()]

    def width_at(self, dest) -> int | None:
        """The feature width flowing into insertion point ``dest`` per the plan (None if unknown)."""
        if not self._plan_valid:
            return None
        try:
            parent, row = self._insertion(dest)
        except (KeyError, IndexError, TypeError):
            return None
        shape = None
        if row < len(parent.children) and parent.children[row].info is not None:
            shape = info_get(parent.children[row].info, "in_shape")
        elif row > 0 and parent.children[row - 1].info is not None:
            shape = info_get(parent.children[row - 1].info, "out_shape")
        elif parent is self._root and self._out is not None and self._out.info is not None:
            shape = info_get(self._out.info, "in_shape")
        elif parent is not self._root and parent.info is not None:
            shape = info_get(parent.info, "in_shape")
        return int(shape[-1]) if shape else None

    def append_path(self, parent_path=()) -> tuple:
        """The insertion point after the last layer of the stack (or of a block)."""
        parent = self._node_at(parent_path) if parent_path else self._root
        return tuple(parent_path) + (len(parent.children) + 1,)

    # ------------------------------------------------------------------ lock & current
    @property
    def locked(self) -> bool:
        return self._locked

    @property
    def lock_reason(self) -> str:
        return self._lock_reason

    def set_locked(self, locked: bool, reason: str = "") -> None:
        locked = bool(locked)
        if (locked, reason) != (self._locked, self._lock_reason):
            self._locked, self._lock_reason = locked, reason if locked else ""
            self.locked_changed.emit(self._locked, self._lock_reason)

    def refuse(self, reason: str | None = None) -> bool:
        """Say why an edit was not made; returns False so callers can ``return model.refuse()``."""
        self.edit_refused.emit(reason or self._lock_reason or "the stack cannot be edited now")
        return False

    @property
    def current_path(self):
        return self._current

    def set_current(self, path) -> None:
        path = tuple(path) if path is not None else None
        if path != self._current:
            self._current = path
            self.current_changed.emit(path)

    # ------------------------------------------------------------------ outside updates
    def set_layers(self, layers) -> None:
        """Show these layers (e.g. the session's normalised spec): no undo entry, no layers_changed."""
        layers = copy.deepcopy(list(layers))
        if layers == self.layers():
            return
        if _shape_tree(layers) == _shape_tree(self.layers()):
            # same structure (typically defaults filled in): update rows in place, keep the plan
            def fill(nodes, ls):
                for n, l in zip(nodes, ls):
                    n.layer = {k: v for k, v in l.items() if k != "layers"}
                    if n.children is not None:
                        fill(n.children, l.get("layers", []))
            fill(self._root.children, layers)
            self._revalidate()
            self._emit_all_changed()
            return
        self.beginResetModel()
        self._root.children = [_Node(l, self._root) for l in layers]
        self._plan_valid = False
        self._revalidate()
        self.endResetModel()

    def set_plan(self, infos) -> None:
        """Attach engine.build.plan's LayerInfo list (or dicts with the same fields).

        Rows are matched by position and type; the added output layer ("out")
        becomes a greyed last row."""
        infos = list(infos or [])
        for n in self._root.walk():
            n.info = None
        body = [i for i in infos if not info_get(i, "added", False)]
        out = next((i for i in infos if info_get(i, "added", False)), None)
        self._attach(self._root.children, body)
        n_top = len(self._root.children)
        if out is not None and self._out is None:
            self.beginInsertRows(QModelIndex(), n_top, n_top)
            self._out = _Node({"type": info_get(out, "type", "linear")}, self._root, added=True)
            self.endInsertRows()
        elif out is None and self._out is not None:
            self.beginRemoveRows(QModelIndex(), n_top, n_top)
            self._out = None
            self.endRemoveRows()
        if out is not None:
            self._out.layer = {"type": info_get(out, "type", "linear")}
            self._out.info = out
        self._plan_valid = True
        self._emit_all_changed()
        self.plan_changed.emit()

    def _attach(self, nodes, infos) -> None:
        for n, info in zip(nodes, infos):
            if info_get(info, "type") == n.kind:
                n.info = info
                if n.children is not None:
                    self._attach(n.children, list(info_get(info, "children", []) or []))

    # ------------------------------------------------------------------ undoable edits
    def add_layers(self, dest, layers, text: str | None = None) -> bool:
        if self._locked:
            return self.refuse()
        layers = copy.deepcopy(list(layers))
        try:
            if not layers:
                raise SpecError("nothing to add")
            validate_layers(layers, where="new")
            self._insertion(dest)
        except SpecError as e:
            return self.refuse(f"cannot add: {e}")
        except (KeyError, IndexError, TypeError):
            return self.refuse(f"cannot add at {path_text(dest)}: no such place in the stack")
        self.undo_stack.push(cmds.AddLayers(self, tuple(dest), layers, text))
        return True

    def remove_layers(self, paths, text: str | None = None) -> bool:
        if self._locked:
            return self.refuse()
        paths = [p for p in top_paths(paths) if self.has_path(p)]
        if not paths:
            return False
        self.undo_stack.push(cmds.RemoveLayers(self, paths, text))
        return True

    def move_layers(self, paths, dest, text: str | None = None) -> bool:
        if self._locked:
            return self.refuse()
        paths = [p for p in top_paths(paths) if self.has_path(p)]
        if not paths or not self.can_move(paths, dest) or self._is_noop_move(paths, tuple(dest)):
            return False
        self.undo_stack.push(cmds.MoveLayer(self, paths, tuple(dest), text))
        return True

    def edit_layer(self, path, layer: dict, text: str | None = None) -> bool:
        if self._locked:
            return self.refuse()
        if not self.has_path(path) or self.layer(path) == layer:
            return False
        self.undo_stack.push(cmds.EditLayer(self, tuple(path), layer, text))
        return True

    def replace_layers(self, layers, text: str = "Replace the stack", select=None) -> bool:
        if self._locked:
            return self.refuse()
        if list(layers) == self.layers():
            return False
        self.undo_stack.push(cmds.ReplaceStack(self, layers, text, select))
        return True

    def can_move(self, paths, dest) -> bool:
        """False when a block would be dropped into itself."""
        try:
            parent, _ = self._insertion(dest)
        except (KeyError, IndexError, TypeError):
            return False
        ppath = self._path(parent) if parent is not self._root else ()
        return not any(ppath[:len(p)] == tuple(p) for p in paths)

    def _is_noop_move(self, paths, dest) -> bool:
        parents = {p[:-1] for p in paths}
        if len(parents) != 1 or dest[:-1] != paths[0][:-1]:
            return False
        rows = sorted(p[-1] for p in paths)
        contiguous = rows == list(range(rows[0], rows[0] + len(rows)))
        return contiguous and rows[0] <= dest[-1] <= rows[-1] + 1

    # ------------------------------------------------------------------ raw changes (undo commands)
    @contextmanager
    def batch(self):
        """Group raw changes: one layers_changed (and selection hint) at the end."""
        self._batch += 1
        try:
            yield
        finally:
            self._batch -= 1
            if self._batch == 0 and self._dirty:
                self._dirty = False
                self.layers_changed.emit()
                self.selection_hint.emit(list(self._hint))

    def hint(self, paths) -> None:
        """The rows the view should select after the current change."""
        self._hint = [tuple(p) for p in paths]

    def apply_insert(self, dest, layers) -> list[tuple]:
        parent, row = self._insertion(dest)
        self.beginInsertRows(self._index_of_node(parent), row, row + len(layers) - 1)
        parent.children[row:row] = [_Node(l, parent) for l in layers]
        self.endInsertRows()
        paths = [tuple(dest[:-1]) + (row + 1 + i,) for i in range(len(layers))]
        self._changed(paths)
        return paths

    def apply_remove(self, paths) -> list[tuple[tuple, dict]]:
        """Remove layers; returns [(path, layer)] in document order for re-insertion."""
        paths = top_paths(paths)
        removed = []
        for p in reversed(paths):
            node = self._node_at(p)
            parent, row = node.parent, node.parent.children.index(node)
            removed.append((p, node.to_dict()))
            self.beginRemoveRows(self._index_of_node(parent), row, row)
            del parent.children[row]
            self.endRemoveRows()
        removed.reverse()
        self._changed(self._after_removal(paths[0]) if paths else [])
        return removed

    def apply_move(self, paths, dest) -> tuple[list[tuple], list[tuple[tuple, dict]]]:
        """Move layers to insertion point ``dest`` (given before the move).

        Returns (new paths, [(old path, layer)])."""
        paths = top_paths(paths)
        parent, row = self._insertion(dest)
        moving = [self._node_at(p) for p in paths]
        anchor = next((c for c in parent.children[row:] if c not in moving), None)
        with self.batch():
            removed = self.apply_remove(paths)
            at = parent.children.index(anchor) if anchor is not None else len(parent.children)
            base = self._path(parent) if parent is not self._root else ()
            new_paths = self.apply_insert(base + (at + 1,), [d for _, d in removed])
            self.hint(new_paths)
        return new_paths, removed

    def apply_set(self, path, layer: dict) -> None:
        node = self._node_at(path)
        node.layer = {k: copy.deepcopy(v) for k, v in layer.items() if k != "layers"}
        if node.children is not None and "layers" in layer \
                and layer["layers"] != [c.to_dict() for c in node.children]:
            idx = self._index_of_node(node)
            if node.children:
                self.beginRemoveRows(idx, 0, len(node.children) - 1)
                node.children = []
                self.endRemoveRows()
            if layer["layers"]:
                self.beginInsertRows(idx, 0, len(layer["layers"]) - 1)
                node.children = [_Node(c, node) for c in layer["layers"]]
                self.endInsertRows()
        self._changed([tuple(path)])

    def apply_replace_all(self, layers, hint=()) -> None:
        self.beginResetModel()
        self._root.children = [_Node(l, self._root) for l in copy.deepcopy(list(layers))]
        self.endResetModel()
        self._changed([tuple(p) for p in hint])

    def _changed(self, hint) -> None:
        self._plan_valid = False   # shapes are stale until the app sends the new plan
        self._revalidate()
        self._emit_all_changed()
        self._hint = list(hint)
        if self._batch:
            self._dirty = True
            return
        self.layers_changed.emit()
        self.selection_hint.emit(list(self._hint))

    def _after_removal(self, first: tuple) -> list[tuple]:
        """What to select once ``first`` is gone: the layer now there, or the one before, or the parent."""
        if self.has_path(first):
            return [first]
        if first[-1] > 1 and self.has_path(first[:-1] + (first[-1] - 1,)):
            return [first[:-1] + (first[-1] - 1,)]
        return [first[:-1]] if len(first) > 1 else []

    def _revalidate(self) -> None:
        try:
            validate_layers(self.layers())
            self._spec_error = None
        except SpecError as e:
            self._spec_error = (e.path, str(e))

    def _emit_all_changed(self) -> None:
        self.headerDataChanged.emit(Qt.Horizontal, 0, 0)
        def emit(parent_node, parent_index):
            n = len(parent_node.children) + (1 if parent_node is self._root and self._out else 0)
            if n:
                self.dataChanged.emit(self.index(0, 0, parent_index),
                                      self.index(n - 1, len(self.COLUMNS) - 1, parent_index))
            for row, c in enumerate(parent_node.children):
                if c.children:
                    emit(c, self.index(row, 0, parent_index))
        emit(self._root, QModelIndex())

    # ------------------------------------------------------------------ paths and nodes
    def _node_at(self, path) -> _Node:
        path = tuple(path)
        if path == ("out",):
            if self._out is None:
                raise KeyError(path)
            return self._out
        if not path:
            raise KeyError(path)
        node = self._root
        for p in path:
            if node.children is None or not isinstance(p, int) or not 1 <= p <= len(node.children):
                raise KeyError(path)
            node = node.children[p - 1]
        return node

    def _insertion(self, dest) -> tuple[_Node, int]:
        dest = tuple(dest)
        parent = self._node_at(dest[:-1]) if len(dest) > 1 else self._root
        if parent.children is None or not isinstance(dest[-1], int) \
                or not 1 <= dest[-1] <= len(parent.children) + 1:
            raise KeyError(dest)
        return parent, dest[-1] - 1

    def _path(self, node: _Node) -> tuple:
        if node is self._out:
            return ("out",)
        path = []
        while node.parent is not None:
            path.append(node.parent.children.index(node) + 1)
            node = node.parent
        return tuple(reversed(path))

    def _problem(self, node: _Node) -> str | None:
        if self._spec_error and self._spec_error[0] is not None and node is not self._out:
            if self._path(node) == self._spec_error[0]:
                return self._spec_error[1]
        if self._plan_valid and node.info is not None:
            return info_get(node.info, "problem")
        return None

    def _index_of_node(self, node: _Node, column: int = 0) -> QModelIndex:
        if node is self._root or node is None:
            return QModelIndex()
        row = len(self._root.children) if node is self._out else node.parent.children.index(node)
        return self.createIndex(row, column, node)

    def index_of(self, path, column: int = 0) -> QModelIndex:
        """The model index of ``path`` (invalid when there is no such layer)."""
        try:
            return self._index_of_node(self._node_at(path), column)
        except (KeyError, IndexError, TypeError):
            return QModelIndex()

    def path_of(self, index: QModelIndex):
        """The path of an index, or None for the root / an invalid index."""
        if not index.isValid():
            return None
        return self._path(index.internalPointer())

    # ------------------------------------------------------------------ QAbstractItemModel
    def index(self, row, column, parent=QModelIndex()):
        if column < 0 or column >= len(self.COLUMNS) or row < 0:
            return QModelIndex()
        node = parent.internalPointer() if parent.isValid() else self._root
        kids = node.children or []
        if row < len(kids):
            return self.createIndex(row, column, kids[row])
        if node is self._root and row == len(kids) and self._out is not None:
            return self.createIndex(row, column, self._out)
        return QModelIndex()

    def parent(self, index=None):
        if index is None:          # QObject.parent()
            return super().parent()
        if not index.isValid():
            return QModelIndex()
        node = index.internalPointer()
        if node is self._out or node.parent is self._root or node.parent is None:
            return QModelIndex()
        return self._index_of_node(node.parent)

    def rowCount(self, parent=QModelIndex()):
        if parent.isValid():
            if parent.column() != 0:
                return 0
            return len(parent.internalPointer().children or [])
        return len(self._root.children) + (1 if self._out is not None else 0)

    def columnCount(self, parent=QModelIndex()):
        return len(self.COLUMNS)

    def headerData(self, section, orientation, role=Qt.DisplayRole):
        if orientation != Qt.Horizontal or not 0 <= section < len(self.COLUMNS):
            return None
        if role == Qt.DisplayRole:
            if section == 0:
                n = len(self._root.children)
                return f"{n} layer{'s' if n != 1 else ''}" if n else "Layers"
            return self.COLUMNS[section]
        if role == Qt.ToolTipRole:
            if section == 0:
                nested = sum(1 for _ in self._root.walk()) - len(self._root.children)
                return "Each layer's number, type and parameters" + \
                    (f"; {nested} more inside residual blocks" if nested else "")
            return "Shape of one sample at the layer's output (from the plan of the stack)"
        return None

    def data(self, index, role=Qt.DisplayRole):
        if not index.isValid():
            return None
        node: _Node = index.internalPointer()
        col, kind = index.column(), node.kind
        group = group_of(kind)
        if role == Qt.DisplayRole:
            if col == 0:
                if node.added:
                    return f"out {kind}, added"
                return " ".join(filter(None, (kind, layer_summary(self._full(node)))))
            return self._shape_text(node)
        if role == PATH_ROLE:
            return self._path(node)
        if role == LAYER_ROLE:
            return self._full(node)
        if role == TYPE_ROLE:
            return kind
        if role == SUMMARY_ROLE:
            return "added" if node.added else layer_summary(self._full(node))
        if role == GROUP_ROLE:
            return group
        if role == ADDED_ROLE:
            return node.added
        if role == PROBLEM_ROLE:
            return self._problem(node)
        if role in (IN_SHAPE_ROLE, OUT_SHAPE_ROLE):
            if not self._plan_valid or node.info is None:
                return None
            return info_get(node.info, "in_shape" if role == IN_SHAPE_ROLE else "out_shape")
        if role == Qt.DecorationRole and col == 0:
            return problem_icon() if self._problem(node) else group_icon(group)
        if role == Qt.ToolTipRole:
            return self._tooltip(node)
        if role == Qt.TextAlignmentRole and col == 1:
            return int(Qt.AlignRight | Qt.AlignVCenter)
        if role == Qt.ForegroundRole:
            if col == 1 and self._problem(node):
                return QColor(PROBLEM_COLOUR)
            if node.added:
                return QColor(128, 128, 128)
        if role == Qt.FontRole and node.added:
            f = QFont()
            f.setItalic(True)
            return f
        return None

    def _full(self, node: _Node) -> dict:
        return node.to_dict()

    def _shape_text(self, node: _Node) -> str:
        if not self._plan_valid or node.info is None:
            return ""
        if self._problem(node):
            return "✕"
        return format_shape(info_get(node.info, "out_shape"))

    def _tooltip(self, node: _Node) -> str:
        path, kind = self._path(node), node.kind
        lines = [f"<b>{path_text(path)} {kind}</b>" + (" <i>(added output layer)</i>" if node.added else "")]
        if not node.added:
            summ = layer_summary(self._full(node))
            if summ:
                lines.append(summ)
        if self._plan_valid and node.info is not None:
            i, o = info_get(node.info, "in_shape"), info_get(node.info, "out_shape")
            lines.append(f"in {format_shape(i)} → out {format_shape(o)}")
        pr = self._problem(node)
        if pr:
            lines.append(f"<span style='color:{PROBLEM_COLOUR}'>⚠ {pr}</span>")
        if node.added:
            lines.append("Added because the stack does not end with a linear layer of the output size.")
        elif description(kind):
            lines.append(f"<span style='color:gray'>{description(kind)}</span>")
        return "<br>".join(lines)

    def flags(self, index):
        if not index.isValid():
            return Qt.ItemIsDropEnabled
        node = index.internalPointer()
        f = Qt.ItemIsEnabled | Qt.ItemIsSelectable
        if node.added:
            return f
        if not self._locked:
            f |= Qt.ItemIsDragEnabled
            if node.children is not None:
                f |= Qt.ItemIsDropEnabled
        return f

    # ------------------------------------------------------------------ drag and drop
    def mimeTypes(self):
        return [MIME_TYPE]

    def supportedDropActions(self):
        return Qt.CopyAction | Qt.MoveAction

    def supportedDragActions(self):
        return Qt.CopyAction | Qt.MoveAction

    def mimeData(self, indexes):
        paths = top_paths({self._path(i.internalPointer()) for i in indexes if i.isValid()})
        return layers_mime([self.layer(p) for p in paths], move=paths, source=self._token)

    def drop_destination(self, row: int, parent: QModelIndex) -> tuple | None:
        """The insertion point of a drop at (row, parent) as Qt reports it."""
        node = parent.internalPointer() if parent.isValid() else self._root
        if node is self._out:
            return (len(self._root.children) + 1,)
        if node.children is None:      # dropped onto a plain layer: after it
            p = self._path(node)
            return p[:-1] + (p[-1] + 1,)
        n = len(node.children)
        r = n if row < 0 or row > n else row
        base = () if node is self._root else self._path(node)
        return base + (r + 1,)

    def canDropMimeData(self, data, action, row, column, parent):
        if self._locked:
            return False
        payload = decode_mime(data)
        if payload is None:
            return False
        dest = self.drop_destination(row, parent)
        if self._is_move(payload, action):
            paths = [tuple(p) for p in payload["move"]]
            return all(self.has_path(p) for p in paths) and self.can_move(paths, dest)
        return "new" in payload or "layers" in payload

    def dropMimeData(self, data, action, row, column, parent):
        if action == Qt.IgnoreAction:
            return True
        if self._locked:
            return self.refuse()
        payload = decode_mime(data)
        if payload is None or not self.canDropMimeData(data, action, row, column, parent):
            return False
        dest = self.drop_destination(row, parent)
        if self._is_move(payload, action):
            return self.move_layers([tuple(p) for p in payload["move"]], dest)
        if "new" in payload:
            return self.add_layers(dest, [new_layer(payload["new"], self.width_at(dest))])
        return self.add_layers(dest, payload["layers"])

    def _is_move(self, payload: dict, action) -> bool:
        return action == Qt.MoveAction and "move" in payload and payload.get("source") == self._token


# ----------------------------------------------------------------------------- MIME payloads
def layers_mime(layers: list[dict], move=None, source=None) -> QMimeData:
    """MIME data carrying layer dicts (copy/paste, drags out of the stack)."""
    payload = {"layers": layers}
    if move is not None:
        payload.update(move=[list(p) for p in move], source=source)
    md = QMimeData()
    md.setData(MIME_TYPE, json.dumps(payload).encode("utf-8"))
    md.setText(json.dumps(layers, indent=2))
    return md


def new_layer_mime(kind: str) -> QMimeData:
    """MIME data of a palette drag: only the type id travels."""
    md = QMimeData()
    md.setData(MIME_TYPE, json.dumps({"new": kind}).encode("utf-8"))
    md.setText(kind)
    return md


def decode_mime(data: QMimeData) -> dict | None:
    """The payload of our MIME type, checked: {"new": type} or {"layers": [...], "move"?: [...]}."""
    if data is None or not data.hasFormat(MIME_TYPE):
        return None
    try:
        payload = json.loads(bytes(data.data(MIME_TYPE)).decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(payload, dict):
        return None
    if "new" in payload:
        return payload if payload["new"] in CATALOG else None
    if isinstance(payload.get("layers"), list) and all(isinstance(l, dict) for l in payload["layers"]):
        return payload
    return None


__all__ = ["LayerStackModel", "MIME_TYPE", "layers_mime", "new_layer_mime", "decode_mime"]
