"""The stack editor's tree widget and the delegate that paints its rows.

Column 0 shows the group colour bar, the layer's number, a problem mark, its type
and main parameters; drags and drops go through the model (widgets.stack_model)
and are refused while it is locked; the editor's keys are taken before window
shortcuts with the same keys.
"""
from __future__ import annotations

from PySide6.QtCore import QEvent, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QIcon, QKeySequence, QPainter, QPalette
from PySide6.QtWidgets import (QAbstractItemView, QApplication, QStyle, QStyledItemDelegate, QStyleOptionViewItem,
                               QTreeView)

from backprop_lab.widgets.layer_catalog import GROUP_COLOURS, path_text
from backprop_lab.widgets.layer_icons import problem_icon
from backprop_lab.widgets.stack_model import (ADDED_ROLE, GROUP_ROLE, PATH_ROLE, PROBLEM_ROLE, SUMMARY_ROLE,
                                              TYPE_ROLE, LayerStackModel)


class LayerDelegate(QStyledItemDelegate):
    """Column 0: group bar, number, problem mark, type (bold) and parameters (dim)."""

    def paint(self, painter, option, index):
        if index.column() != 0:
            opt = QStyleOptionViewItem(option)
            self.initStyleOption(opt, index)
            opt.font.setFamilies(["DejaVu Sans Mono", "Menlo", "Consolas", "monospace"])
            opt.font.setPointSizeF(opt.font.pointSizeF() * 0.92)
            style = opt.widget.style() if opt.widget else QApplication.style()
            style.drawControl(QStyle.CE_ItemViewItem, opt, painter, opt.widget)
            return
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        style = opt.widget.style() if opt.widget else QApplication.style()
        opt.text = ""
        opt.icon = QIcon()
        opt.features &= ~QStyleOptionViewItem.HasDecoration
        style.drawControl(QStyle.CE_ItemViewItem, opt, painter, opt.widget)

        added, problem = bool(index.data(ADDED_ROLE)), index.data(PROBLEM_ROLE)
        selected = bool(opt.state & QStyle.State_Selected)
        fg = opt.palette.color(QPalette.HighlightedText if selected else QPalette.Text)
        dim = QColor(fg)
        dim.setAlphaF(0.55)
        r = opt.rect.adjusted(2, 0, -4, 0)
        painter.save()
        painter.setRenderHint(QPainter.Antialiasing)
        painter.setPen(Qt.NoPen)
        colour = QColor(GROUP_COLOURS.get(index.data(GROUP_ROLE), "#888888"))
        if added:
            colour = dim
        painter.setBrush(colour)
        painter.drawRoundedRect(QRectF(r.left(), r.top() + 4, 3, r.height() - 8), 1.5, 1.5)

        x = r.left() + 9
        small = QFont(opt.font)
        small.setPointSizeF(opt.font.pointSizeF() * 0.85)
        fm_small = QFontMetrics(small)
        path = index.data(PATH_ROLE) or ()
        num = "out" if added else path_text(path)
        wnum = max(fm_small.horizontalAdvance("00.0"), fm_small.horizontalAdvance(num))
        painter.setFont(small)
        painter.setPen(dim)
        painter.drawText(QRect(x, r.top(), wnum, r.height()), Qt.AlignRight | Qt.AlignVCenter, num)
        x += wnum + 8
        if problem:
            s = 14
            problem_icon(s).paint(painter, QRect(x, r.top() + (r.height() - s) // 2, s, s))
            x += s + 5

        bold = QFont(opt.font)
        bold.setBold(not added)
        bold.setItalic(added)
        kind = index.data(TYPE_ROLE) or ""
        painter.setFont(bold)
        painter.setPen(dim if added else (QColor("#d64541") if problem and not selected else fg))
        fm_b = QFontMetrics(bold)
        wk = fm_b.horizontalAdvance(kind)
        painter.drawText(QRect(x, r.top(), wk + 2, r.height()), Qt.AlignLeft | Qt.AlignVCenter, kind)
        x += wk + 8
        summary = index.data(SUMMARY_ROLE) or ""
        if summary and x < r.right():
            f = QFont(opt.font)
            f.setItalic(added)
            painter.setFont(f)
            painter.setPen(dim)
            text = QFontMetrics(f).elidedText(summary, Qt.ElideRight, r.right() - x)
            painter.drawText(QRect(x, r.top(), r.right() - x, r.height()), Qt.AlignLeft | Qt.AlignVCenter, text)
        painter.restore()

    def sizeHint(self, option, index):
        s = super().sizeHint(option, index)
        h = QFontMetrics(option.font).height() + 10
        if index.column() == 0:
            fm = QFontMetrics(option.font)
            w = 60 + fm.horizontalAdvance(f"{index.data(TYPE_ROLE)} {index.data(SUMMARY_ROLE) or ''}") + 16
            return QSize(max(s.width(), w), max(s.height(), h))
        return QSize(s.width() + 8, max(s.height(), h))


# ----------------------------------------------------------------------------- the tree
def _key_matches(event, seq) -> bool:
    if isinstance(seq, QKeySequence.StandardKey):
        return event.matches(seq)
    return QKeySequence(event.keyCombination()) == QKeySequence(seq)


class StackTree(QTreeView):
    """The tree widget: drag and drop go through the model; a hint is painted when empty."""

    refused = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.key_bindings: list = []   # [(key sequence, callable)], filled by LayerStackView
        self.setDragDropMode(QAbstractItemView.DragDrop)
        self.setDefaultDropAction(Qt.MoveAction)
        self.setDropIndicatorShown(True)
        self.setDragDropOverwriteMode(False)
        self.setSelectionMode(QAbstractItemView.ExtendedSelection)
        self.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.setUniformRowHeights(True)
        self.setIndentation(16)
        self.setAllColumnsShowFocus(True)
        self.setExpandsOnDoubleClick(False)
        self.setItemDelegate(LayerDelegate(self))
        self.setContextMenuPolicy(Qt.CustomContextMenu)

    def _locked(self) -> bool:
        m = self.model()
        return isinstance(m, LayerStackModel) and m.locked

    def dragEnterEvent(self, event):
        if self._locked():
            event.ignore()
            self.refused.emit(self.model().lock_reason)
            return
        super().dragEnterEvent(event)

    def dragMoveEvent(self, event):
        if self._locked():
            event.ignore()
            return
        super().dragMoveEvent(event)

    def dropEvent(self, event):
        if self._locked():
            event.ignore()
            self.refused.emit(self.model().lock_reason)
            return
        super().dropEvent(event)

    def event(self, e):
        # take our keys before a window shortcut with the same keys would
        if e.type() == QEvent.ShortcutOverride and any(_key_matches(e, k) for k, _ in self.key_bindings):
            e.accept()
            return True
        return super().event(e)

    def keyPressEvent(self, event):
        for seq, fn in self.key_bindings:
            if _key_matches(event, seq):
                fn()
                event.accept()
                return
        super().keyPressEvent(event)

    def paintEvent(self, event):
        super().paintEvent(event)
        if self.model() is not None and self.model().rowCount() == 0:
            p = QPainter(self.viewport())
            c = self.palette().color(QPalette.Text)
            c.setAlphaF(0.45)
            p.setPen(c)
            p.drawText(self.viewport().rect().adjusted(12, 12, -12, -12), Qt.AlignCenter | Qt.TextWordWrap,
                       "Drop layers here\n\nDrag them from the palette, or double-click one there")
            p.end()
