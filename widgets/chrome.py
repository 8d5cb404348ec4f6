"""Qt's own window chrome, painted without the work it repeats on every paint.

A dock's title bar: Fusion lays out the title's text on every paint of a QDockWidget
(``CE_DockWidgetTitle`` asks ``SE_DockWidgetTitleBarText``), and that layout asks the
style for the close and float buttons' standard icons to measure them. Fusion builds each
of those icons anew on every call: a QIcon from its theme's files, read and decoded (PNG
inflate included) to answer ``actualSize``, ~0.08 ms a call, about three calls a title
bar. Profiled over a whole-window repaint (the bench's ``redraw_ms(scene=True)``), that was
~27 % of Qt's painting of the window: more than every label, tab bar and button together.

``IconCacheStyle`` is the application's own style (a QProxyStyle over a new instance of
it, so the same look) that keeps each standard icon it has answered once, keyed by the
pixmap and the palette and device pixel ratio it was asked for. ``cache_title_icons``
gives it to a dock widget: its title bar is then measured with a kept icon (the same
image, the same size), and everything else the dock paints goes to the base style
unchanged. The dock's children (its buttons, its contents) keep the application's style.
"""
from __future__ import annotations

import shiboken6
from PySide6.QtWidgets import QApplication, QProxyStyle, QStyle, QStyleFactory, QWidget

_style: "IconCacheStyle | None" = None


class IconCacheStyle(QProxyStyle):
    """The application's style, keeping the standard icons it builds."""

    def __init__(self, base: QStyle | None = None):
        app = QApplication.instance()
        super().__init__(base or QStyleFactory.create(app.style().name()))
        self.setParent(app)          # ends with the application, as the widgets using it do
        self._icons: dict = {}
        self.misses = 0              # icons built (tests read it)

    def standardIcon(self, sp, option=None, widget=None):
        key = (sp, option.palette.cacheKey() if option is not None else None,
               widget.devicePixelRatioF() if widget is not None else None)
        icon = self._icons.get(key)
        if icon is None:
            self.misses += 1
            icon = self._icons[key] = super().standardIcon(sp, option, widget)
        return icon

    def clear(self) -> None:
        """Forget the kept icons (an icon theme changed)."""
        self._icons.clear()


def shared_style() -> IconCacheStyle:
    """One IconCacheStyle for the application (made on first use, again after a new QApplication)."""
    global _style
    if _style is None or not shiboken6.isValid(_style):
        _style = IconCacheStyle()
    return _style


def cache_title_icons(dock: QWidget) -> None:
    """Paint ``dock``'s title bar with kept standard icons (see the module's docstring)."""
    dock.setStyle(shared_style())
