"""The layer palette: every layer type of the catalogue (engine.catalog), grouped.

A drag carries only the type id, in the MIME type of the stack editor
(widgets.stack_model.MIME_TYPE: {"new": "sigmoid"}); a double-click or Enter
asks for the layer to be appended (``layer_requested``).
"""
from __future__ import annotations

from PySide6.QtCore import QModelIndex, QSize, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QColor, QFont, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (QAbstractItemView, QLabel, QLineEdit, QStyledItemDelegate, QTreeView, QVBoxLayout,
                               QWidget)

from backprop_lab.engine.activations import ACTIVATIONS
from backprop_lab.engine.catalog import GROUPS, default_layer, types_in
from backprop_lab.widgets.layer_catalog import GROUP_COLOURS, description, layer_summary
from backprop_lab.widgets.stack_model import MIME_TYPE, TYPE_ROLE, group_icon, new_layer_mime


def _slope_note(kind: str) -> str:
    if kind not in ACTIVATIONS:
        return ""
    m = ACTIVATIONS[kind](default_layer(kind)).max_derivative
    return f"max f′ = {m:g}"


class PaletteModel(QStandardItemModel):
    """Groups (not draggable) with one item per layer type; drags carry {"new": type}."""

    def __init__(self, parent=None):
        super().__init__(parent)
        bold = QFont()
        bold.setBold(True)
        self._items: dict[str, QStandardItem] = {}
        for group in GROUPS:
            g = QStandardItem(group)
            g.setFont(bold)
            g.setFlags(Qt.ItemIsEnabled)
            g.setData(group, Qt.UserRole)
            g.setForeground(self._group_brush(group))
            for kind in types_in(group):
                it = QStandardItem(group_icon(group), kind)
                it.setData(kind, TYPE_ROLE)
                it.setFlags(Qt.ItemIsEnabled | Qt.ItemIsSelectable | Qt.ItemIsDragEnabled)
                it.setToolTip(self._tooltip(kind))
                g.appendRow(it)
                self._items[kind] = it
            self.appendRow(g)

    @staticmethod
    def _group_brush(group):
        return QColor(GROUP_COLOURS[group])

    @staticmethod
    def _tooltip(kind: str) -> str:
        defaults = layer_summary(default_layer(kind))
        note = _slope_note(kind)
        extra = " · ".join(x for x in (defaults and f"default {defaults}", note) if x)
        return (f"<b>{kind}</b>" + (f" <span style='color:gray'>({extra})</span>" if extra else "") +
                f"<br>{description(kind)}<br><i>Drag into the stack, or double-click to append.</i>")

    def index_of(self, kind: str) -> QModelIndex:
        """The index of a layer type's item."""
        return self.indexFromItem(self._items[kind])

    def types(self) -> list[str]:
        return list(self._items)

    def mimeTypes(self):
        return [MIME_TYPE]

    def supportedDragActions(self):
        return Qt.CopyAction

    def mimeData(self, indexes):
        kinds = [i.data(TYPE_ROLE) for i in indexes if i.isValid() and i.data(TYPE_ROLE)]
        if not kinds:
            return None
        return new_layer_mime(kinds[0])


class _RoomyDelegate(QStyledItemDelegate):
    """A little more height per row than the style's minimum: easier to grab."""

    def sizeHint(self, option, index):
        s = super().sizeHint(option, index)
        return QSize(s.width(), s.height() + 6)


class _PaletteView(QTreeView):
    activated_type = Signal(str)

    def keyPressEvent(self, event):
        if event.key() in (Qt.Key_Return, Qt.Key_Enter):
            kind = self.currentIndex().data(TYPE_ROLE)
            if kind:
                self.activated_type.emit(kind)
                return
        super().keyPressEvent(event)


class LayerPalette(QWidget):
    """Filter box + grouped tree of layer types + a description of the current one."""

    layer_requested = Signal(str)   # a type id to append to the stack

    def __init__(self, parent=None):
        super().__init__(parent)
        self.model = PaletteModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setRecursiveFilteringEnabled(True)
        self.proxy.setAutoAcceptChildRows(True)   # "dense" shows the whole Dense group
        self.proxy.setFilterCaseSensitivity(Qt.CaseInsensitive)

        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter layers…")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self._on_filter_changed)

        self.view = _PaletteView()
        self.view.setModel(self.proxy)
        self.view.setItemDelegate(_RoomyDelegate(self.view))
        self.view.setIconSize(QSize(10, 10))
        self.view.setHeaderHidden(True)
        self.view.setIndentation(12)
        self.view.setRootIsDecorated(False)
        self.view.setUniformRowHeights(True)
        self.view.setDragEnabled(True)
        self.view.setDragDropMode(QAbstractItemView.DragOnly)
        self.view.setDefaultDropAction(Qt.CopyAction)
        self.view.setSelectionMode(QAbstractItemView.SingleSelection)
        self.view.setExpandsOnDoubleClick(False)
        self.view.expandAll()
        self.view.doubleClicked.connect(self._on_double_clicked)
        self.view.activated_type.connect(self.layer_requested)
        self.view.selectionModel().currentChanged.connect(self._on_current_changed)

        self.description = QLabel("Drag a layer into the stack, or double-click it to append it.")
        self.description.setWordWrap(True)
        self.description.setObjectName("paletteDescription")
        self.description.setStyleSheet("#paletteDescription { color: palette(placeholder-text); }")
        self.description.setMinimumHeight(self.description.fontMetrics().lineSpacing() * 3 + 4)
        self.description.setAlignment(Qt.AlignTop | Qt.AlignLeft)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(4)
        lay.addWidget(self.filter)
        lay.addWidget(self.view, 1)
        lay.addWidget(self.description)

    def index_of(self, kind: str) -> QModelIndex:
        """The view's (proxy) index of a layer type, for selecting or scrolling to it."""
        return self.proxy.mapFromSource(self.model.index_of(kind))

    def _on_filter_changed(self, text: str) -> None:
        self.proxy.setFilterFixedString(text.strip())
        self.view.expandAll()

    def _on_double_clicked(self, index: QModelIndex) -> None:
        kind = index.data(TYPE_ROLE)
        if kind:
            self.layer_requested.emit(kind)
        elif self.view.isExpanded(index):
            self.view.collapse(index)
        else:
            self.view.expand(index)

    def _on_current_changed(self, current: QModelIndex, _previous) -> None:
        kind = current.data(TYPE_ROLE)
        if kind:
            note = _slope_note(kind)
            self.description.setText(f"<b>{kind}</b>" + (f" &nbsp;<span>{note}</span>" if note else "") +
                                     f"<br>{description(kind)}")
