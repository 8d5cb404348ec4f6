"""Qt's chrome painted without repeated work (widgets/chrome.py): same pixels, less building."""
import numpy as np
import shiboken6
from PySide6.QtWidgets import QApplication, QDockWidget, QLabel, QStyle, QStyleOption


def _pixels(widget) -> np.ndarray:
    img = widget.grab().toImage()
    img = img.convertToFormat(img.Format.Format_RGB32)
    return np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine() // 4, 4)[..., :3].copy()


def _same_object(a, b) -> bool:
    return shiboken6.getCppPointer(a) == shiboken6.getCppPointer(b)


def test_the_window_with_kept_title_icons_looks_as_with_the_application_style(window, qtbot):
    """Every dock's title bar (text, elision, float and close buttons) and everything else in the window:
    the same pixels whether the docks use the icon-keeping style or the application's own."""
    window.resize(1500, 920)
    qtbot.waitExposed(window)
    QApplication.processEvents()
    kept = _pixels(window)
    for d in window.docks.values():
        d.setStyle(None)                   # back to the application's style
    QApplication.processEvents()
    assert all(_same_object(d.style(), QApplication.style()) for d in window.docks.values())
    plain = _pixels(window)
    differ = np.any(kept != plain, axis=2)
    assert kept.shape == plain.shape and differ.sum() == 0, np.argwhere(differ)[:10]


def test_a_dock_title_bar_builds_its_icons_once_not_on_every_paint(qtbot):
    from backprop_lab.widgets.chrome import cache_title_icons, shared_style
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QMainWindow
    main = QMainWindow()                   # docked: a floating dock's title is the platform's, not painted
    qtbot.addWidget(main)
    main.setCentralWidget(QLabel("centre"))
    dock = QDockWidget("A title long enough to be measured", main)
    dock.setWidget(QLabel("contents"))
    cache_title_icons(dock)
    main.addDockWidget(Qt.LeftDockWidgetArea, dock)
    main.resize(500, 200)
    main.show()
    qtbot.waitExposed(main)
    main.resizeDocks([dock], [300], Qt.Horizontal)
    qtbot.waitUntil(lambda: dock.width() >= 250)
    dock.repaint()
    style = shared_style()
    built = style.misses
    for _ in range(5):
        dock.repaint()
    assert built > 0 and style.misses == built   # five more paints, no icon built
    # the kept icon is the one the base style builds: the same image at the title bar's size
    fresh = QApplication.style().standardIcon(QStyle.SP_TitleBarCloseButton, None, dock)
    kept = style.standardIcon(QStyle.SP_TitleBarCloseButton, None, dock)
    assert kept.pixmap(16).toImage() == fresh.pixmap(16).toImage()
    assert kept.actualSize(dock.size()) == fresh.actualSize(dock.size())
    # the dock's contents keep the application's style
    assert _same_object(dock.widget().style(), QApplication.style())
    assert _same_object(dock.style(), style)
    main.close()


def test_another_palette_gets_its_own_icon_and_clear_forgets_them(qtbot):
    from PySide6.QtGui import QColor, QPalette
    from backprop_lab.widgets.chrome import shared_style
    style = shared_style()
    opt = QStyleOption()
    opt.palette = QPalette(QApplication.palette())
    style.standardIcon(QStyle.SP_TitleBarNormalButton, opt, None)
    built = style.misses
    style.standardIcon(QStyle.SP_TitleBarNormalButton, opt, None)
    assert style.misses == built
    dark = QPalette(QApplication.palette())
    dark.setColor(QPalette.Window, QColor("#202020"))
    opt.palette = dark
    style.standardIcon(QStyle.SP_TitleBarNormalButton, opt, None)
    assert style.misses == built + 1
    style.clear()
    style.standardIcon(QStyle.SP_TitleBarNormalButton, opt, None)
    assert style.misses == built + 2


def test_the_main_window_docks_use_the_icon_keeping_style(window):
    from backprop_lab.widgets.chrome import shared_style
    assert window.docks and all(_same_object(d.style(), shared_style()) for d in window.docks.values())
    assert _same_object(window.flow.style(), QApplication.style())


def _tab_bars(window):
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QTabBar
    return [tuple(b.tabText(i) for i in range(b.count()))
            for b in window.findChildren(QTabBar, options=Qt.FindDirectChildrenOnly) if b.isVisible()]


def _one_bar_per_group(window, qtbot):
    qtbot.waitExposed(window)
    QApplication.processEvents()
    bars = _tab_bars(window)
    assert len(bars) == len(set(bars)), bars          # no group drawn twice
    assert sorted(bars) == sorted([("Properties", "Data and training"),
                                   ("Gradient flow", "Neurons of the selected layer"),
                                   ("Activation f, f' and z", "Gradient through time")]), bars


def test_one_tab_bar_per_dock_group_fresh_after_reset_and_restored(make_window, qsettings, qtbot):
    """Qt leaves a dead copy of a tab group's bar after tabifying in a hidden window and after every
    restoreState (two over the status bar on a first start, eight bars for three groups after a restart):
    the window shows one bar per group on a first start, after View > Reset layout, and restored."""
    first = make_window(qsettings)
    first.resize(1500, 920)
    _one_bar_per_group(first, qtbot)
    first.reset_layout()
    _one_bar_per_group(first, qtbot)
    first.close()                          # saves the layout
    again = make_window(qsettings)
    assert again._restored
    _one_bar_per_group(again, qtbot)


def test_after_a_tab_is_used_and_the_layout_reset_every_group_can_still_be_switched(window, qtbot):
    """The bars hidden by the main window come back for the groups the layout uses: after a user has
    switched tabs and reset the layout, each group still has a bar on screen, and a click on a tab shows
    that dock (its bar is the top widget there, not the status bar or a dead copy)."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QTabBar
    window.resize(1500, 920)
    qtbot.waitExposed(window)

    def click(text):
        bars = [b for b in window.findChildren(QTabBar, options=Qt.FindDirectChildrenOnly) if b.isVisible()
                and text in [b.tabText(i) for i in range(b.count())]]
        assert bars, text
        bar = bars[0]
        pos = bar.mapTo(window, bar.tabRect([bar.tabText(i) for i in range(bar.count())].index(text)).center())
        top = window.childAt(pos)
        assert isinstance(top, QTabBar), type(top)
        qtbot.mouseClick(top, Qt.LeftButton, pos=top.mapFrom(window, pos))

    for _ in range(2):
        click("Neurons of the selected layer")
        qtbot.waitUntil(lambda: not window.docks["neurons"].visibleRegion().isEmpty())
        click("Data and training")
        qtbot.waitUntil(lambda: not window.docks["settings"].visibleRegion().isEmpty())
        window.reset_layout()
        qtbot.waitUntil(lambda: {t for b in _tab_bars(window) for t in b} >= {
            "Properties", "Data and training", "Gradient flow", "Neurons of the selected layer",
            "Activation f, f' and z", "Gradient through time"})
    click("Gradient through time")
    qtbot.waitUntil(lambda: not window.docks["time"].visibleRegion().isEmpty())
