"""The base of the panels that draw from a History.

Each such panel shows one History (``set_history``), redraws from it only when
its ``version`` moved since the last drawing (``refresh`` is called ~10-30 times
a second and must be cheap otherwise), can be told to redraw at the next
refresh (``invalidate``, after a setting changed), and may mark a selected
layer (``set_selected_layer``; -1: none). A subclass fills in:

- ``_history_set(history)``: clear what the old History drew (names, curves, caches);
- ``_ready(history)``: whether there is anything to draw (default: always);
- ``_draw(history)``: draw from it (called with a version not drawn yet);
- ``_selected_set(i)``: show the selection (default: nothing more).

After a drawing, the panel's plots are made ready to paint at once (their auto ranges and view
transforms updated, as pyqtgraph does at the start of a paint). Left to the paint, those updates
marked every item dirty again while it was being painted, and Qt painted each plot a second
time right after: two paints of every changed plot per frame (issue 9, item 8).
"""
from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget


class HistoryPanel(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.history = None
        self.selected = -1
        self._version = -1

    def set_history(self, history) -> None:
        """Show this History (None: nothing); draws at once."""
        self.history = history
        self._version = -1
        self._history_set(history)
        self.refresh()

    def invalidate(self) -> None:
        """Redraw at the next refresh even if the History did not change."""
        self._version = -1

    @property
    def stale(self) -> bool:
        """The History moved since the last drawing (``refresh`` would redraw)."""
        h = self.history
        return h is not None and h.version != self._version and self._ready(h)

    def refresh(self) -> None:
        """Redraw from the History if it changed since the last call (cheap otherwise)."""
        h = self.history
        if h is None or h.version == self._version or not self._ready(h):
            return
        self._version = h.version
        self._draw(h)
        self.prepare_for_paint()

    def prepare_for_paint(self) -> None:
        """Update the plots' ranges and transforms now (pyqtgraph's ``prepareForPaint``), so that
        the next paint draws each item once."""
        for view in self.findChildren(pg.GraphicsView):
            if view.isVisible():
                view.scene().prepareForPaint()

    def set_selected_layer(self, i: int) -> None:
        """Mark layer ``i`` (-1: none). Emits nothing."""
        self.selected = i
        self._selected_set(i)

    # ------------------------------------------------------------------ for subclasses
    def _history_set(self, history) -> None:
        pass

    def _ready(self, history) -> bool:
        return True

    def _draw(self, history) -> None:
        raise NotImplementedError

    def _selected_set(self, i: int) -> None:
        pass


class ReadoutLabel(QWidget):
    """A word-wrapped, selectable read-out of live figures (new text with every frame).

    ``QLabel.setText`` asks its panel to lay out again, which asks its dock and the main window
    (~1.5 ms a frame, the docks' animations made anew each time). Here the label sits in a box
    of its own, without a layout: a new text asks for a new layout only when it needs another
    height at the box's width. ``label`` is the QLabel; ``text`` / ``setText`` are its own.
    """

    def __init__(self, text: str = "", parent=None):
        super().__init__(parent)
        self.label = QLabel(text, self)
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        policy = QSizePolicy(QSizePolicy.Preferred, QSizePolicy.Preferred)
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)
        # opaque (its own background filled): a new text repaints the box alone, not the panel and the
        # dock under it too (~0.25 ms a frame)
        self.setAutoFillBackground(True)
        self._height = None   # the height asked for, at the box's width

    def text(self) -> str:
        return self.label.text()

    def setText(self, text: str) -> None:
        if text == self.label.text():
            return
        self.label.setText(text)
        height = self.label.heightForWidth(max(self.width(), 1))
        if height != self._height:
            self._height = height
            self.updateGeometry()

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        return self.label.heightForWidth(width)

    def sizeHint(self):
        return self.label.sizeHint()

    def minimumSizeHint(self):
        return self.label.minimumSizeHint()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.label.setGeometry(self.rect())
        self._height = self.label.heightForWidth(max(self.width(), 1))

    def changeEvent(self, event) -> None:
        super().changeEvent(event)
        if event.type() in (QEvent.FontChange, QEvent.StyleChange):   # the text's height changes with them
            self._height = None
            self.updateGeometry()
