"""The layer stack editor: a tree of the layers, input side first.

Each row shows the layer's number (the path of the spec's messages and of the
run record's layer names), its type and main parameters, and the shape of one
sample at its output; residual blocks hold their body as child rows; the
output layer that build adds is a greyed last row. Problems (from
validate_layers, or from the plan the app hands over with ``set_plan``) get a
red mark, a tooltip and a line in the banner under the tree.

Every edit is an undo command on ``undo_stack``: drops from the palette and
drags inside the tree (through the model's dropMimeData), Delete, Ctrl+C/X/V,
Ctrl+D, Alt+Up/Down, Ctrl+G (wrap in a residual block), Ctrl+Shift+G (unwrap).
While ``set_locked(True, reason)`` holds (training runs), edits are refused
and the reason is shown.

(About 430 lines: the editor's actions, clipboard, keys and banner; the tree widget
and its delegate are in widgets.stack_tree.)
"""
from __future__ import annotations

from PySide6.QtCore import QModelIndex, Qt, Signal
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence, QPalette
from PySide6.QtWidgets import (QHBoxLayout, QHeaderView, QLabel, QMenu, QSizePolicy, QToolButton, QVBoxLayout,
                               QWidget)

from backprop_lab.engine.catalog import GROUPS, types_in
from backprop_lab.engine.document import StackDocument, unwrapped, wrapped
from backprop_lab.widgets.layer_catalog import format_shape, info_get, layers_from_text, new_layer, path_text, top_paths
from backprop_lab.widgets.layer_icons import tool_icon
from backprop_lab.widgets.layer_mime import MIME_TYPE, decode_mime, layers_mime
from backprop_lab.widgets.stack_model import LayerStackModel
from backprop_lab.widgets.stack_tree import LayerDelegate, StackTree  # noqa: F401  (re-exported)
from backprop_lab.widgets.undo_commands import ReplaceSpec

HINT = "Drag layers in from the palette; right-click a layer for more."
KEYS_TIP = ("Del: remove · Ctrl+C / Ctrl+X / Ctrl+V: copy, cut, paste · Ctrl+D: duplicate · "
            "Alt+↑ / Alt+↓: move · Ctrl+G: wrap in a residual block · Ctrl+Shift+G: unwrap")


# ----------------------------------------------------------------------------- the editor
class LayerStackView(QWidget):
    """The stack editor: tool row, tree, banner. See the module docstring."""

    layer_selected = Signal(object)   # path tuple of the current row: (3,), (4, 2) or ("out",)
    edit_refused = Signal(str)        # an edit was refused (locked, invalid paste...): why

    def __init__(self, parent=None, model: LayerStackModel | None = None, document: StackDocument | None = None):
        super().__init__(parent)
        self.model = model if model is not None else LayerStackModel(parent=self, document=document)
        self.undo_stack = self.model.undo_stack
        self._refusal: str | None = None
        self._programmatic = 0
        self._last_emitted = None
        self._saved_path = None

        self.tree = StackTree(self)
        self.tree.setModel(self.model)
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeToContents)
        header.setDefaultAlignment(Qt.AlignLeft | Qt.AlignVCenter)
        self.tree.expandAll()

        self.banner = QLabel()
        self.banner.setObjectName("stackBanner")
        self.banner.setWordWrap(True)
        self.banner.setTextFormat(Qt.RichText)
        self.banner.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Minimum)
        self.banner.setToolTip(KEYS_TIP)
        self.banner.setStyleSheet(
            "#stackBanner { padding: 5px 7px; border-radius: 3px; }"
            "#stackBanner[state='hint'] { color: palette(placeholder-text); }"
            "#stackBanner[state='error'] { background: rgba(214, 69, 65, 0.13);"
            " border-left: 3px solid #d64541; }"
            "#stackBanner[state='locked'] { background: rgba(227, 163, 59, 0.18);"
            " border-left: 3px solid #e3a33b; }")

        self._make_actions()
        tools = QHBoxLayout()
        tools.setContentsMargins(0, 0, 0, 0)
        tools.setSpacing(2)
        ink = self.palette().color(QPalette.ButtonText)
        self.tool_buttons: dict[str, QToolButton] = {}
        for key in ("add", "duplicate", "remove", None, "up", "down", None, "wrap", "unwrap"):
            if key is None:
                tools.addSpacing(6)
                continue
            a = self.actions[key]
            a.setIcon(tool_icon(key, ink))
            b = QToolButton()
            b.setDefaultAction(a)
            b.setAutoRaise(True)
            b.setToolButtonStyle(Qt.ToolButtonTextBesideIcon if key == "add" else Qt.ToolButtonIconOnly)
            if key == "add":
                b.setPopupMode(QToolButton.InstantPopup)
            tools.addWidget(b)
            self.tool_buttons[key] = b
        tools.addStretch(1)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(4)
        lay.addLayout(tools)
        lay.addWidget(self.tree, 1)
        lay.addWidget(self.banner)

        m = self.model
        m.layers_changed.connect(self._on_layers_changed)
        m.plan_changed.connect(self._update_banner)
        m.selection_hint.connect(self._on_selection_hint)
        m.edit_refused.connect(self._on_refused)
        m.locked_changed.connect(self._on_locked_changed)
        m.modelAboutToBeReset.connect(self._on_about_to_reset)
        m.modelReset.connect(self._on_reset)
        m.rowsInserted.connect(self._on_rows_inserted)
        self.tree.refused.connect(self._on_refused)
        self.tree.selectionModel().currentChanged.connect(self._on_current_changed)
        self.tree.selectionModel().selectionChanged.connect(lambda *_: self._update_actions())
        self.tree.customContextMenuRequested.connect(self._on_context_menu)
        self.tree.key_bindings = [
            (QKeySequence.Delete, self.remove_selected), (QKeySequence(Qt.Key_Backspace), self.remove_selected),
            (QKeySequence.Copy, self.copy_selected), (QKeySequence.Cut, self.cut_selected),
            (QKeySequence.Paste, self.paste), (QKeySequence("Ctrl+D"), self.duplicate_selected),
            (QKeySequence("Alt+Up"), lambda: self.move_selected(-1)),
            (QKeySequence("Alt+Down"), lambda: self.move_selected(+1)),
            (QKeySequence("Ctrl+G"), self.wrap_selected), (QKeySequence("Ctrl+Shift+G"), self.unwrap_selected),
        ]
        self._update_actions()
        self._update_banner()

    # ------------------------------------------------------------------ actions
    def _make_actions(self) -> None:
        def act(key, text, tip, keys, slot):
            a = QAction(text, self)
            a.setToolTip(f"{tip} ({keys})" if keys else tip)
            if keys:
                a.setShortcut(QKeySequence(keys))
                a.setShortcutContext(Qt.WidgetShortcut)   # shown in menus; keys are handled by the tree
                a.setShortcutVisibleInContextMenu(True)
            if slot is not None:
                a.triggered.connect(slot)
            self.actions[key] = a
            return a

        self.actions: dict[str, QAction] = {}
        self.context_menu: QMenu | None = None
        act("add", "Add", "Add a layer after the selected one", None, None)
        self.add_menu = QMenu(self)
        for group in GROUPS:
            sub = self.add_menu.addMenu(group)
            for kind in types_in(group):
                sub.addAction(kind, lambda k=kind: self.insert_layer(k))
        self.actions["add"].setMenu(self.add_menu)
        act("duplicate", "Duplicate", "Duplicate the selected layers", "Ctrl+D", self.duplicate_selected)
        act("remove", "Remove", "Remove the selected layers", "Del", self.remove_selected)
        act("up", "Move up", "Move the selected layers up", "Alt+Up", lambda: self.move_selected(-1))
        act("down", "Move down", "Move the selected layers down", "Alt+Down", lambda: self.move_selected(+1))
        act("wrap", "Wrap in block", "Wrap the selected layers in a residual block y = x + f(x)", "Ctrl+G",
            self.wrap_selected)
        act("unwrap", "Unwrap block", "Unwrap the selected residual block", "Ctrl+Shift+G", self.unwrap_selected)
        act("cut", "Cu&t", "Cut the selected layers", "Ctrl+X", self.cut_selected)
        act("copy", "&Copy", "Copy the selected layers (as JSON too)", "Ctrl+C", self.copy_selected)
        act("paste", "&Paste", "Paste layers after the selected one", "Ctrl+V", self.paste)

    def _update_actions(self) -> None:
        paths = [p for p in self.selected_paths() if p != ("out",)]
        editable = not self.model.locked
        one_parent = bool(paths) and len({p[:-1] for p in paths}) == 1
        for key in ("duplicate", "remove", "cut", "up", "down"):
            self.actions[key].setEnabled(editable and bool(paths))
        self.actions["copy"].setEnabled(bool(paths))
        self.actions["paste"].setEnabled(editable)
        self.actions["add"].setEnabled(editable)
        self.actions["wrap"].setEnabled(editable and one_parent and self._contiguous(paths))
        cur = self.current_path()
        self.actions["unwrap"].setEnabled(editable and cur is not None and cur != ("out",)
                                          and self.model.layer(cur)["type"] == "residual")

    def _on_context_menu(self, pos) -> None:
        if self.context_menu is None:
            menu = self.context_menu = QMenu(self)
            menu.addMenu(self.add_menu).setText("Add layer after")
            menu.addSeparator()
            for key in ("cut", "copy", "paste", "duplicate", "remove"):
                menu.addAction(self.actions[key])
            menu.addSeparator()
            for key in ("up", "down", "wrap", "unwrap"):
                menu.addAction(self.actions[key])
        self.context_menu.popup(self.tree.viewport().mapToGlobal(pos))

    # ------------------------------------------------------------------ outside API
    def layers(self) -> list[dict]:
        return self.model.layers()

    def set_layers(self, layers) -> None:
        """Show the session's layers (no undo entry, no layers_changed)."""
        self.model.set_layers(layers)
        self._update_banner()

    def set_plan(self, infos) -> None:
        """Shapes and problems per layer: engine.build.plan's LayerInfo list, from the app."""
        self.model.set_plan(infos)
        self._update_banner()

    def set_locked(self, locked: bool, reason: str = "") -> None:
        """While locked (training runs) every edit is refused and ``reason`` is shown."""
        self.model.set_locked(locked, reason or "The stack cannot be edited now.")

    def is_locked(self) -> bool:
        return self.model.locked

    def message(self) -> str:
        """The banner's text (plain)."""
        return self._banner_plain

    def current_path(self):
        return self.model.path_of(self.tree.currentIndex())

    def selected_paths(self) -> list[tuple]:
        paths = [self.model.path_of(i) for i in self.tree.selectionModel().selectedRows(0)]
        return top_paths(paths) + ([("out",)] if ("out",) in paths else [])

    def select_path(self, path, emit: bool = False) -> None:
        """Select one layer (from elsewhere in the app). Emits layer_selected only if ``emit``."""
        self.select_paths([tuple(path)] if path is not None else [], emit=emit)

    def select_paths(self, paths, emit: bool = False) -> None:
        idx = [self.model.index_of(p) for p in paths]
        idx = [i for i in idx if i.isValid()]
        sm = self.tree.selectionModel()
        self._programmatic += 0 if emit else 1
        try:
            if not idx:
                sm.clearSelection()
                sm.setCurrentIndex(QModelIndex(), sm.SelectionFlag.NoUpdate)
                self.model.set_current(None)
                return
            sm.clearSelection()
            for i in idx:
                self.tree.scrollTo(i)
                sm.select(i, sm.SelectionFlag.Select | sm.SelectionFlag.Rows)
            sm.setCurrentIndex(idx[-1], sm.SelectionFlag.Current | sm.SelectionFlag.Rows)
        finally:
            self._programmatic -= 0 if emit else 1

    def append_layer(self, kind: str) -> bool:
        """Append a new layer of this type at the end of the stack (the palette's double-click)."""
        dest = self.model.append_path()
        return self.model.add_layers(dest, [new_layer(kind, self.model.width_at(dest))])

    def insert_layer(self, kind: str, dest=None) -> bool:
        """Insert a new layer at ``dest`` (default: after the selected layer)."""
        dest = self._dest_after_selection() if dest is None else tuple(dest)
        return self.model.add_layers(dest, [new_layer(kind, self.model.width_at(dest))])

    def replace_spec(self, old_spec: dict, new_spec: dict, text: str, apply_fn) -> None:
        """One undoable edit that swaps the whole spec through ``apply_fn`` (a remedy)."""
        self.undo_stack.push(ReplaceSpec(old_spec, new_spec, text, apply_fn))

    # ------------------------------------------------------------------ edits
    def remove_selected(self) -> bool:
        paths = [p for p in self.selected_paths() if p != ("out",)]
        if self.model.locked:
            return self.model.refuse()
        if ("out",) in self.selected_paths() and not paths:
            return self.model.refuse("The output layer is added by the builder; end the stack with a "
                                     "linear layer of the output size to set it yourself.")
        return self.model.remove_layers(paths) if paths else False

    def copy_selected(self) -> bool:
        paths = [p for p in self.selected_paths() if p != ("out",)]
        if not paths:
            return False
        QGuiApplication.clipboard().setMimeData(layers_mime([self.model.layer(p) for p in paths]))
        return True

    def cut_selected(self) -> bool:
        if self.model.locked:
            return self.model.refuse()
        return self.copy_selected() and self.remove_selected()

    def paste(self) -> bool:
        """Insert the clipboard's layers (our MIME type, or JSON text) after the selection."""
        if self.model.locked:
            return self.model.refuse()
        md = QGuiApplication.clipboard().mimeData()
        payload = decode_mime(md)
        layers = payload.get("layers") if payload and "layers" in payload else None
        if payload and "new" in payload:
            layers = [new_layer(payload["new"])]
        if layers is None and md is not None and md.hasText():
            layers = layers_from_text(md.text())
        if not layers:
            return self.model.refuse("Nothing to paste: the clipboard holds no layers.")
        return self.model.add_layers(self._dest_after_selection(), layers,
                                     text=f"Paste {len(layers)} layer{'s' if len(layers) > 1 else ''}")

    def duplicate_selected(self) -> bool:
        if self.model.locked:
            return self.model.refuse()
        paths = [p for p in self.selected_paths() if p != ("out",)]
        if not paths:
            return False
        last = paths[-1]
        return self.model.add_layers(last[:-1] + (last[-1] + 1,), [self.model.layer(p) for p in paths],
                                     text=f"Duplicate {len(paths)} layer{'s' if len(paths) > 1 else ''}")

    def move_selected(self, delta: int) -> bool:
        """Move the selected sibling layers one place up (-1) or down (+1)."""
        if self.model.locked:
            return self.model.refuse()
        paths = [p for p in self.selected_paths() if p != ("out",)]
        if not paths or len({p[:-1] for p in paths}) != 1 or not self._contiguous(paths):
            return False
        first, last = paths[0], paths[-1]
        n = len(self.model.layer(first[:-1])["layers"]) if len(first) > 1 else len(self.model.layers())
        if delta < 0 and first[-1] > 1:
            return self.model.move_layers(paths, first[:-1] + (first[-1] - 1,))
        if delta > 0 and last[-1] < n:
            return self.model.move_layers(paths, last[:-1] + (last[-1] + 2,))
        return False

    def wrap_selected(self) -> bool:
        """Put the selected sibling layers in a new residual block."""
        if self.model.locked:
            return self.model.refuse()
        paths = [p for p in self.selected_paths() if p != ("out",)]
        layers = wrapped(self.model.layers(), paths) if paths else None
        if layers is None:
            return False
        return self.model.replace_layers(layers, "Wrap in a residual block", select=[min(paths)])

    def unwrap_selected(self) -> bool:
        """Replace the current residual block by its body."""
        if self.model.locked:
            return self.model.refuse()
        cur = self.current_path()
        done = unwrapped(self.model.layers(), cur) if cur is not None and cur != ("out",) else None
        if done is None:
            return False
        return self.model.replace_layers(done[0], "Unwrap the residual block", select=done[1])

    def _dest_after_selection(self) -> tuple:
        cur = self.current_path()
        if cur is None or cur == ("out",):
            return self.model.append_path()
        return cur[:-1] + (cur[-1] + 1,)

    @staticmethod
    def _contiguous(paths) -> bool:
        rows = sorted(p[-1] for p in paths)
        return bool(rows) and rows == list(range(rows[0], rows[0] + len(rows)))

    # ------------------------------------------------------------------ model -> view
    def _on_current_changed(self, current, _previous) -> None:
        path = self.model.path_of(current)
        self.model.set_current(path)
        self._update_actions()
        if self._programmatic or path is None or path == self._last_emitted:
            return
        self._last_emitted = path
        self.layer_selected.emit(path)

    def _on_layers_changed(self) -> None:
        self._refusal = None
        self.model.set_current(self.current_path())
        self._update_actions()
        self._update_banner()

    def _on_selection_hint(self, paths) -> None:
        self._last_emitted = None
        self.select_paths(paths, emit=True)
        self.model.set_current(self.current_path())
        self._update_actions()

    def _on_about_to_reset(self) -> None:
        self._saved_path = self.current_path()

    def _on_reset(self) -> None:
        self.tree.expandAll()
        if self._saved_path is not None and self.model.has_path(self._saved_path):
            self.select_path(self._saved_path)
        self.model.set_current(self.current_path())
        self._update_actions()
        self._update_banner()

    def _on_rows_inserted(self, parent, first, last) -> None:
        for row in range(first, last + 1):
            self.tree.expandRecursively(self.model.index(row, 0, parent))

    def _on_refused(self, reason: str) -> None:
        self._refusal = reason
        self._update_banner()
        self.edit_refused.emit(reason)

    def _on_locked_changed(self, locked: bool, reason: str) -> None:
        self._refusal = None
        self.tree.setToolTip(reason if locked else KEYS_TIP)
        self._update_actions()
        self._update_banner()

    def _update_banner(self) -> None:
        m = self.model
        if m.locked:
            state, text = "locked", f"Locked. {m.lock_reason}"
        elif self._refusal:
            state, text = "error", f"⚠ {self._refusal}"
        elif m.spec_error():
            state, text = "error", f"⚠ {m.spec_error()}"
        elif m.problems():
            probs = m.problems()
            path, pr = probs[0]
            kind = "output layer" if path == ("out",) else f"layer {path_text(path)} ({m.layer(path)['type']})"
            more = f" (+{len(probs) - 1} more)" if len(probs) > 1 else ""
            state, text = "error", f"⚠ {kind}: {pr}{more}"
        else:
            state, text = "hint", HINT
            top = [m.info((i,)) for i in range(1, len(m.layers()) + 1)]
            out = m.info(("out",)) if m.has_path(("out",)) else None
            last = out or (top[-1] if top else None)
            if m.plan_valid() and top and top[0] is not None and last is not None:
                i, o = info_get(top[0], "in_shape"), info_get(last, "out_shape")
                text = f"Input {format_shape(i)} → output {format_shape(o)}."
        self._banner_plain = text
        self.banner.setText(text.replace("&", "&amp;").replace("<", "&lt;"))
        self.banner.setProperty("state", state)
        self.banner.style().unpolish(self.banner)
        self.banner.style().polish(self.banner)


__all__ = ["LayerStackView", "StackTree", "LayerDelegate", "MIME_TYPE"]
