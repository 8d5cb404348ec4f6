"""What every theory view shares: a title, a paragraph to read aloud, PNG/SVG export, theme fonts."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QDoubleSpinBox, QFileDialog, QHBoxLayout, QLabel, QPushButton, QSizePolicy,
                               QVBoxLayout, QWidget)

from backprop_lab.widgets import theme
from backprop_lab.widgets.flow_layout import FlowLayout

VIEW_MIN_HEIGHT = 300


def spin(lo: float, hi: float, value: float, step: float = 0.1, decimals: int = 3, tip: str = "") -> QDoubleSpinBox:
    s = QDoubleSpinBox()
    s.setRange(lo, hi)
    s.setDecimals(decimals)
    s.setSingleStep(step)
    s.setValue(value)
    s.setKeyboardTracking(False)
    if tip:
        s.setToolTip(tip)
    return s


def labelled(text: str, widget) -> QWidget:
    w = QWidget()
    lay = QHBoxLayout(w)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.setSpacing(4)
    lay.addWidget(QLabel(text))
    lay.addWidget(widget)
    return w


class TheoryPanel(QWidget):
    """Title, controls row(s), the view's body, and a paragraph to read aloud under it."""

    TITLE = ""
    PARAGRAPH = ""

    full_screen_requested = Signal()   # the Full screen / Back button (TheoryTab moves the panel)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle(self.TITLE)
        self._lay = QVBoxLayout(self)
        self._lay.setContentsMargins(6, 6, 6, 6)
        self._lay.setSpacing(4)
        head = QHBoxLayout()
        self.title = QLabel(self.TITLE)
        head.addWidget(self.title, 1)
        self.full_button = QPushButton("Full screen")
        self.full_button.setToolTip("this view alone on the whole screen, for a projector (Esc: back)")
        self.full_button.clicked.connect(self.full_screen_requested)
        head.addWidget(self.full_button)
        self.export_button = QPushButton("Export PNG/SVG…")
        self.export_button.clicked.connect(self._on_export_clicked)
        head.addWidget(self.export_button)
        self._lay.addLayout(head)
        self.controls = FlowLayout(spacing=10)   # wraps rather than squeezes (presentation mode)
        self._lay.addLayout(self.controls)
        self.body = QVBoxLayout()
        self._lay.addLayout(self.body, 1)
        self.paragraph = QLabel(self.PARAGRAPH)
        self.paragraph.setWordWrap(True)
        self.paragraph.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.paragraph.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Minimum)
        self._lay.addWidget(self.paragraph)
        self._style_texts()

    def plot_title(self, plot, text: str) -> None:
        """A plot title in the theme's font size (restyled with presentation mode)."""
        self._titles = getattr(self, "_titles", [])
        self._titles.append((plot, text))
        plot.setTitle(text, size=f"{theme.font_size(1)}pt", color=theme.FOREGROUND)

    def add_view(self, view) -> None:
        """The view's plots: they keep a usable height however long the paragraph under them is."""
        view.setMinimumHeight(VIEW_MIN_HEIGHT)
        self.body.addWidget(view, 1)

    def add_control(self, widget) -> None:
        self.controls.addWidget(widget)

    def finish_controls(self) -> None:
        """The controls are all added (a flow layout needs no closing stretch)."""

    def _style_texts(self) -> None:
        self.title.setFont(theme.font(4, bold=True))
        self.paragraph.setFont(theme.font(1))
        for plot, text in getattr(self, "_titles", []):
            plot.setTitle(text, size=f"{theme.font_size(1)}pt", color=theme.FOREGROUND)

    def _on_theme_changed(self) -> None:
        self._style_texts()

    def keyPressEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        """Esc in a view shown full screen (a window of its own) puts it back in its tab."""
        if event.key() == Qt.Key_Escape and self.isWindow():
            self.full_screen_requested.emit()
            return
        super().keyPressEvent(event)

    def export(self, path) -> None:
        from backprop_lab.widgets.export import export_widget
        export_widget(self, path)

    def _on_export_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, f"Export {self.TITLE}", f"{self.TITLE}.png",
                                              "PNG image (*.png);;SVG vector image (*.svg)")
        if path:
            try:
                self.export(path)
            except OSError as e:
                self.paragraph.setText(f"Export failed: {e}")
