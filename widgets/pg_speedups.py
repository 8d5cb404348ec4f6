"""Two pyqtgraph costs the first frame (and every live redraw) paid for nothing.

1. Each ViewBox's right-click menu is built when it is first asked for, not with the plot.

pyqtgraph makes a ViewBoxMenu (three sub-menus of axis controls, ~4 ms) in every
ViewBox's constructor; most of our plots turn it off right after, and the others are
rarely right-clicked. Profiled on the path to the first painted frame, these menus were
~30 ms of the ~100 ms the first frame's seven plots took (docs/performance.md,
"Start-up"). Importing this module (theme does) makes ``ViewBox.menu`` a property: the
constructor stores a placeholder, and the first read (a right-click, ``getMenu``,
``getContextMenus``, any code that reads ``vb.menu``) builds the real menu and fills its
list of views to link, as ``setMenuEnabled(True)`` does. A disabled menu is never built.

2. An axis sets its label's HTML only when the text changes. pyqtgraph's
``AxisItem._updateLabel`` runs on every ``setRange`` (through the SI-prefix update), so
every pan, zoom and auto-range re-parsed the same HTML into the label's QTextDocument:
422 ``setHtml`` calls, ~21 ms, before the first frame. The size, the tick picture and
the repaint are still updated on every call, as before.
"""
from __future__ import annotations

import sys

from pyqtgraph.graphicsItems.AxisItem import AxisItem
from pyqtgraph.graphicsItems.ViewBox import ViewBox

_module = sys.modules[ViewBox.__module__]
_PENDING = object()          # "enabled, not built yet"
_KEY = "_lazy_menu"
_HTML = "_label_html"        # the HTML an axis's label holds


def _fits() -> bool:
    """Whether this pyqtgraph has the internals both patches replace (0.13.7 and 0.14 do); another
    version keeps its own behaviour, only slower to build."""
    return (all(hasattr(AxisItem, n) for n in ("_updateLabel", "labelString", "_adjustSize"))
            and all(hasattr(ViewBox, n) for n in ("updateViewLists", "_applyMenuEnabled"))
            and hasattr(_module, "ViewBoxMenu"))


def _install_axis_labels() -> None:
    if getattr(AxisItem, "_label_is_cached", False):
        return

    def update_label(self):
        html = self.labelString()
        if self.__dict__.get(_HTML) != html:
            self.label.setHtml(html)
            self.__dict__[_HTML] = html
        self._adjustSize()
        self.picture = None
        self.update()

    AxisItem._updateLabel = update_label
    AxisItem._label_is_cached = True


def _install() -> None:
    if getattr(ViewBox, "_menu_is_lazy", False):
        return
    real_menu = _module.ViewBoxMenu
    update_view_lists = ViewBox.updateViewLists
    apply_menu_enabled = ViewBox._applyMenuEnabled

    def get_menu(self):
        menu = self.__dict__.get(_KEY)
        if menu is _PENDING:
            menu = self.__dict__[_KEY] = real_menu(self)
            update_view_lists(self)          # the "link axis to view" lists
        return menu

    def set_menu(self, menu):
        self.__dict__[_KEY] = menu

    def pending_factory(_vb):
        return _PENDING

    def lazy_update_view_lists(self):
        if self.__dict__.get(_KEY) is not _PENDING:
            return update_view_lists(self)
        self.__dict__[_KEY] = None           # the menu's list is filled when it is built
        try:
            return update_view_lists(self)
        finally:
            self.__dict__[_KEY] = _PENDING

    def lazy_apply_menu_enabled(self):
        if self.__dict__.get(_KEY) is _PENDING:
            if not self.state.get("enableMenu", True):
                self.__dict__[_KEY] = None   # turned off before it was ever built
            return
        return apply_menu_enabled(self)

    _module.ViewBoxMenu = pending_factory    # what ViewBox.__init__ calls
    ViewBox.menu = property(get_menu, set_menu)
    ViewBox.updateViewLists = lazy_update_view_lists
    ViewBox._applyMenuEnabled = lazy_apply_menu_enabled
    ViewBox._menu_is_lazy = True


if _fits():
    _install()
    _install_axis_labels()
