"""Icons drawn in code (no icon files): a layer group's swatch, the problem mark, the tool row's."""
from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QIcon, QPainter, QPainterPath, QPen, QPixmap

from backprop_lab.widgets.layer_catalog import GROUP_COLOURS, PROBLEM_COLOUR


def _canvas(size: int, colour: str) -> tuple[QPixmap, QPainter]:
    """A transparent square pixmap at twice the resolution and a painter filling with ``colour``."""
    pm = QPixmap(size * 2, size * 2)
    pm.setDevicePixelRatio(2.0)
    pm.fill(Qt.transparent)
    p = QPainter(pm)
    p.setRenderHint(QPainter.Antialiasing)
    p.setPen(Qt.NoPen)
    p.setBrush(QColor(colour))
    return pm, p


def problem_icon(size: int = 14) -> QIcon:
    """A red disc with a white '!' (drawn, so no icon file is needed)."""
    pm, p = _canvas(size, PROBLEM_COLOUR)
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
    """A rounded square in the group's colour."""
    pm, p = _canvas(size, GROUP_COLOURS.get(group, "#888888"))
    p.drawRoundedRect(QRectF(1, 1, size - 2, size - 2), 2.5, 2.5)
    p.end()
    return QIcon(pm)


def tool_icon(name: str, colour: QColor) -> QIcon:
    """Small line icons for the tool row, drawn so that no icon files are needed."""
    icon = QIcon()
    faint = QColor(colour)
    faint.setAlphaF(0.3)
    icon.addPixmap(_tool_pixmap(name, QColor(colour)), QIcon.Normal)
    icon.addPixmap(_tool_pixmap(name, faint), QIcon.Disabled)
    return icon


def _tool_pixmap(name: str, colour: QColor) -> QPixmap:
    size = 16
    pm = QPixmap(size * 2, size * 2)
    pm.setDevicePixelRatio(2.0)
    pm.fill(Qt.transparent)
    p = QPainter(pm)
    p.setRenderHint(QPainter.Antialiasing)
    pen = QPen(colour, 1.6, Qt.SolidLine, Qt.RoundCap, Qt.RoundJoin)
    p.setPen(pen)
    p.setBrush(Qt.NoBrush)
    if name == "add":
        p.drawLine(QPointF(8, 3), QPointF(8, 13))
        p.drawLine(QPointF(3, 8), QPointF(13, 8))
    elif name == "duplicate":
        back = QPainterPath()
        back.moveTo(2.5, 10.5), back.lineTo(2.5, 2.5), back.lineTo(10.5, 2.5)
        p.drawPath(back)
        p.drawRoundedRect(QRectF(5.5, 5.5, 8, 8), 1.5, 1.5)
    elif name == "remove":
        p.drawLine(QPointF(4, 4), QPointF(12, 12))
        p.drawLine(QPointF(12, 4), QPointF(4, 12))
    elif name in ("up", "down"):
        path = QPainterPath()
        if name == "up":
            path.moveTo(8, 13.5), path.lineTo(8, 3), path.moveTo(4, 7), path.lineTo(8, 3), path.lineTo(12, 7)
        else:
            path.moveTo(8, 2.5), path.lineTo(8, 13), path.moveTo(4, 9), path.lineTo(8, 13), path.lineTo(12, 9)
        p.drawPath(path)
    elif name in ("wrap", "unwrap"):
        if name == "unwrap":
            pen.setStyle(Qt.DotLine)
            p.setPen(pen)
        p.drawRoundedRect(QRectF(4.5, 7.5, 7, 6), 1.5, 1.5)
        pen.setStyle(Qt.SolidLine)
        p.setPen(pen)
        path = QPainterPath()     # the skip connection arching over the body
        path.moveTo(2.5, 11)
        path.cubicTo(2.5, 1.5, 13.5, 1.5, 13.5, 11)
        p.drawPath(path)
    p.end()
    return pm


# ----------------------------------------------------------------------------- painting
