"""The layer stack as a Qt item model: a thin adapter over engine.document.StackDocument.

The document (Qt-free) holds the tree of layers, its paths, validation and
plan, and emits plain events around each change; this model turns them into
Qt's begin/end row signals and its own ``layers_changed`` (once per edit),
``plan_changed``, ``locked_changed``, ``current_changed``. What is Qt's alone
stays here: item data (text, icons, tooltips, colours), flags and the MIME
coding of drags. Every user edit is an undo command (widgets.undo_commands)
that changes the document. Paths: engine.document.Path (1-based tuples,
("out",) the output layer that the builder adds).

(Over 400 lines with a reason: Qt's item-model interface (index, parent, rows, data
for a dozen roles, flags, drop handling) is one class; the tree and its edits are
in engine.document, icons in widgets.layer_icons, MIME coding in widgets.layer_mime.)
"""
from __future__ import annotations

import os

from PySide6.QtCore import QAbstractItemModel, QModelIndex, Qt, Signal
from PySide6.QtGui import QColor, QFont, QUndoStack

from backprop_lab.engine.document import Node, StackDocument, top_paths
from backprop_lab.engine.spec import SpecError, validate_layers
from backprop_lab.widgets import undo_commands as cmds
from backprop_lab.widgets.layer_catalog import (PROBLEM_COLOUR, description, format_shape, group_of, info_get,
                                                layer_summary, new_layer, path_text)
from backprop_lab.widgets.layer_icons import group_icon, problem_icon  # noqa: F401  (re-exported)
from backprop_lab.widgets.layer_mime import (MIME_TYPE, decode_mime, layers_mime,  # noqa: F401  (re-exported)
                                             new_layer_mime)

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


# ----------------------------------------------------------------------------- the model
class LayerStackModel(QAbstractItemModel):
    """Tree model over a StackDocument; two columns: the layer and its output shape."""

    layers_changed = Signal()          # after every edit (once per undo command), not after set_layers
    current_changed = Signal(object)   # path of the layer being edited (set by the view), or None
    locked_changed = Signal(bool, str)  # locked, reason
    edit_refused = Signal(str)         # an edit was refused: the reason
    selection_hint = Signal(object)    # list of paths the last edit produced (the view selects them)
    plan_changed = Signal()

    COLUMNS = ("Layer", "Output")

    def __init__(self, layers=None, undo_stack: QUndoStack | None = None, parent=None,
                 document: StackDocument | None = None):
        super().__init__(parent)
        self.undo_stack = undo_stack if undo_stack is not None else QUndoStack(self)
        self.doc = document if document is not None else StackDocument()
        self._token = f"{os.getpid()}:{id(self)}"
        ev = self.doc.events
        self._handlers = {
            "inserting": lambda parent, row, n: self.beginInsertRows(self._index_of_node(parent), row, row + n - 1),
            "inserted": lambda *_: self.endInsertRows(),
            "removing": lambda parent, row, n: self.beginRemoveRows(self._index_of_node(parent), row, row + n - 1),
            "removed": lambda *_: self.endRemoveRows(),
            "resetting": self.beginResetModel, "reset": self.endResetModel,
            "changed": self._emit_all_changed, "edited": self._on_edited,
            "planned": self.plan_changed.emit, "locked": self.locked_changed.emit,
            "current": self.current_changed.emit}
        for name, fn in self._handlers.items():
            ev.connect(name, fn)
        if layers:
            self.set_layers(layers)

    def detach(self) -> None:
        """Stop following the document (before the model goes away)."""
        for name, fn in self._handlers.items():
            self.doc.events.disconnect(name, fn)

    def _on_edited(self, hint) -> None:
        self.layers_changed.emit()
        self.selection_hint.emit(list(hint))

    # ------------------------------------------------------------------ reading (the document's)
    def layers(self) -> list[dict]:
        """The stack as spec layers (a deep copy)."""
        return self.doc.layers()

    def layer(self, path) -> dict:
        """The layer at ``path`` (a copy; a residual block includes its "layers")."""
        return self.doc.layer(path)

    def has_path(self, path) -> bool:
        return self.doc.has_path(path)

    def info(self, path):
        """The plan's LayerInfo for ``path`` (None when the plan is stale or does not know it)."""
        return self.doc.info(path)

    def problem(self, path) -> str | None:
        return self.doc.problem(path)

    def spec_error(self) -> str | None:
        """validate_layers' message for the whole stack, or None when it is valid."""
        return str(self.doc.spec_error) if self.doc.spec_error else None

    def problems(self) -> list[tuple[tuple, str]]:
        """Every (path, problem) in document order."""
        return self.doc.problems()

    def plan_valid(self) -> bool:
        return self.doc.plan_valid

    def all_paths(self) -> list[tuple]:
        return self.doc.all_paths()

    def width_at(self, dest) -> int | None:
        """The feature width flowing into insertion point ``dest`` per the plan (None if unknown)."""
        return self.doc.width_at(dest)

    def append_path(self, parent_path=()) -> tuple:
        """The insertion point after the last layer of the stack (or of a block)."""
        return self.doc.append_path(parent_path)

    def can_move(self, paths, dest) -> bool:
        """False when a block would be dropped into itself."""
        return self.doc.can_move(paths, dest)

    # ------------------------------------------------------------------ lock & current
    @property
    def locked(self) -> bool:
        return self.doc.locked

    @property
    def lock_reason(self) -> str:
        return self.doc.lock_reason

    def set_locked(self, locked: bool, reason: str = "") -> None:
        self.doc.set_locked(locked, reason)

    def refuse(self, reason: str | None = None) -> bool:
        """Say why an edit was not made; returns False so callers can ``return model.refuse()``."""
        self.edit_refused.emit(reason or self.doc.lock_reason or "the stack cannot be edited now")
        return False

    @property
    def current_path(self):
        return self.doc.current

    def set_current(self, path) -> None:
        self.doc.set_current(path)

    # ------------------------------------------------------------------ outside updates
    def set_layers(self, layers) -> None:
        """Show these layers (e.g. the session's normalised spec): no undo entry, no layers_changed."""
        self.doc.show_layers(layers)

    def set_plan(self, infos) -> None:
        """Attach engine.plan's LayerInfo list (or dicts with the same fields); the added output
        layer ("out") becomes a greyed last row."""
        self.doc.set_plan(infos)

    def batch(self):
        """Group raw changes: one layers_changed (and selection hint) at the end."""
        return self.doc.batch()

    def hint(self, paths) -> None:
        self.doc.hint(paths)

    # ------------------------------------------------------------------ undoable edits
    def add_layers(self, dest, layers, text: str | None = None) -> bool:
        if self.locked:
            return self.refuse()
        layers = [dict(l) for l in layers]
        try:
            if not layers:
                raise SpecError("nothing to add")
            validate_layers(layers, where="new")
            self.doc.insertion(dest)
        except SpecError as e:
            return self.refuse(f"cannot add: {e}")
        except (KeyError, IndexError, TypeError):
            return self.refuse(f"cannot add at {path_text(dest)}: no such place in the stack")
        self.undo_stack.push(cmds.AddLayers(self.doc, tuple(dest), layers, text))
        return True

    def remove_layers(self, paths, text: str | None = None) -> bool:
        if self.locked:
            return self.refuse()
        paths = [p for p in top_paths(paths) if self.has_path(p)]
        if not paths:
            return False
        self.undo_stack.push(cmds.RemoveLayers(self.doc, paths, text))
        return True

    def move_layers(self, paths, dest, text: str | None = None) -> bool:
        if self.locked:
            return self.refuse()
        paths = [p for p in top_paths(paths) if self.has_path(p)]
        if not paths or not self.can_move(paths, dest) or self.doc.is_noop_move(paths, tuple(dest)):
            return False
        self.undo_stack.push(cmds.MoveLayer(self.doc, paths, tuple(dest), text))
        return True

    def edit_layer(self, path, layer: dict, text: str | None = None) -> bool:
        if self.locked:
            return self.refuse()
        if not self.has_path(path) or self.layer(path) == layer:
            return False
        self.undo_stack.push(cmds.EditLayer(self.doc, tuple(path), layer, text))
        return True

    def replace_layers(self, layers, text: str = "Replace the stack", select=None) -> bool:
        if self.locked:
            return self.refuse()
        if list(layers) == self.layers():
            return False
        self.undo_stack.push(cmds.ReplaceStack(self.doc, layers, text, select))
        return True

    # ------------------------------------------------------------------ Qt indexes
    def _emit_all_changed(self) -> None:
        self.headerDataChanged.emit(Qt.Horizontal, 0, 0)
        root, out = self.doc.root, self.doc.out

        def emit(parent_node, parent_index):
            n = len(parent_node.children) + (1 if parent_node is root and out else 0)
            if n:
                self.dataChanged.emit(self.index(0, 0, parent_index),
                                      self.index(n - 1, len(self.COLUMNS) - 1, parent_index))
            for row, c in enumerate(parent_node.children):
                if c.children:
                    emit(c, self.index(row, 0, parent_index))
        emit(root, QModelIndex())

    def _index_of_node(self, node: Node, column: int = 0) -> QModelIndex:
        if node is self.doc.root or node is None:
            return QModelIndex()
        return self.createIndex(self.doc.row_of(node), column, node)

    def index_of(self, path, column: int = 0) -> QModelIndex:
        """The model index of ``path`` (invalid when there is no such layer)."""
        try:
            return self._index_of_node(self.doc.node_at(path), column)
        except (KeyError, IndexError, TypeError):
            return QModelIndex()

    def path_of(self, index: QModelIndex):
        """The path of an index, or None for the root / an invalid index."""
        if not index.isValid():
            return None
        return self.doc.path_of(index.internalPointer())

    # ------------------------------------------------------------------ QAbstractItemModel
    def index(self, row, column, parent=QModelIndex()):
        if column < 0 or column >= len(self.COLUMNS) or row < 0:
            return QModelIndex()
        node = parent.internalPointer() if parent.isValid() else self.doc.root
        kids = node.children or []
        if row < len(kids):
            return self.createIndex(row, column, kids[row])
        if node is self.doc.root and row == len(kids) and self.doc.out is not None:
            return self.createIndex(row, column, self.doc.out)
        return QModelIndex()

    def parent(self, index=None):
        if index is None:          # QObject.parent()
            return super().parent()
        if not index.isValid():
            return QModelIndex()
        node = index.internalPointer()
        if node is self.doc.out or node.parent is self.doc.root or node.parent is None:
            return QModelIndex()
        return self._index_of_node(node.parent)

    def rowCount(self, parent=QModelIndex()):
        if parent.isValid():
            if parent.column() != 0:
                return 0
            return len(parent.internalPointer().children or [])
        return len(self.doc.root.children) + (1 if self.doc.out is not None else 0)

    def columnCount(self, parent=QModelIndex()):
        return len(self.COLUMNS)

    def headerData(self, section, orientation, role=Qt.DisplayRole):
        if orientation != Qt.Horizontal or not 0 <= section < len(self.COLUMNS):
            return None
        if role == Qt.DisplayRole:
            if section == 0:
                n = len(self.doc.root.children)
                return f"{n} layer{'s' if n != 1 else ''}" if n else "Layers"
            return self.COLUMNS[section]
        if role == Qt.ToolTipRole:
            if section == 0:
                nested = sum(1 for _ in self.doc.root.walk()) - len(self.doc.root.children)
                return "Each layer's number, type and parameters" + \
                    (f"; {nested} more inside residual blocks" if nested else "")
            return "Shape of one sample at the layer's output (from the plan of the stack)"
        return None

    def data(self, index, role=Qt.DisplayRole):
        if not index.isValid():
            return None
        node: Node = index.internalPointer()
        col, kind = index.column(), node.kind
        group = group_of(kind)
        if role == Qt.DisplayRole:
            if col == 0:
                if node.added:
                    return f"out {kind}, added"
                return " ".join(filter(None, (kind, layer_summary(self._full(node)))))
            return self._shape_text(node)
        if role == PATH_ROLE:
            return self.doc.path_of(node)
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
            return self.doc.problem_of(node)
        if role in (IN_SHAPE_ROLE, OUT_SHAPE_ROLE):
            if not self.doc.plan_valid or node.info is None:
                return None
            return info_get(node.info, "in_shape" if role == IN_SHAPE_ROLE else "out_shape")
        if role == Qt.DecorationRole and col == 0:
            return problem_icon() if self.doc.problem_of(node) else group_icon(group)
        if role == Qt.ToolTipRole:
            return self._tooltip(node)
        if role == Qt.TextAlignmentRole and col == 1:
            return int(Qt.AlignRight | Qt.AlignVCenter)
        if role == Qt.ForegroundRole:
            if col == 1 and self.doc.problem_of(node):
                return QColor(PROBLEM_COLOUR)
            if node.added:
                return QColor(128, 128, 128)
        if role == Qt.FontRole and node.added:
            f = QFont()
            f.setItalic(True)
            return f
        return None

    def _full(self, node: Node) -> dict:
        return node.to_dict()

    def _shape_text(self, node: Node) -> str:
        if not self.doc.plan_valid or node.info is None:
            return ""
        if self.doc.problem_of(node):
            return "✕"
        return format_shape(info_get(node.info, "out_shape"))

    def _tooltip(self, node: Node) -> str:
        path, kind = self.doc.path_of(node), node.kind
        lines = [f"<b>{path_text(path)} {kind}</b>" + (" <i>(added output layer)</i>" if node.added else "")]
        if not node.added:
            summ = layer_summary(self._full(node))
            if summ:
                lines.append(summ)
        if self.doc.plan_valid and node.info is not None:
            i, o = info_get(node.info, "in_shape"), info_get(node.info, "out_shape")
            lines.append(f"in {format_shape(i)} → out {format_shape(o)}")
        pr = self.doc.problem_of(node)
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
        if not self.locked:
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
        paths = top_paths({self.doc.path_of(i.internalPointer()) for i in indexes if i.isValid()})
        return layers_mime([self.layer(p) for p in paths], move=paths, source=self._token)

    def drop_destination(self, row: int, parent: QModelIndex) -> tuple | None:
        """The insertion point of a drop at (row, parent) as Qt reports it."""
        node = parent.internalPointer() if parent.isValid() else self.doc.root
        if node is self.doc.out:
            return (len(self.doc.root.children) + 1,)
        if node.children is None:      # dropped onto a plain layer: after it
            p = self.doc.path_of(node)
            return p[:-1] + (p[-1] + 1,)
        n = len(node.children)
        r = n if row < 0 or row > n else row
        base = () if node is self.doc.root else self.doc.path_of(node)
        return base + (r + 1,)

    def canDropMimeData(self, data, action, row, column, parent):
        if self.locked:
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
        if self.locked:
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


__all__ = ["LayerStackModel", "MIME_TYPE", "layers_mime", "new_layer_mime", "decode_mime"]
