"""Start-up (issue 9 item 2): the first window builds only what its first frame shows.

The Theory tab and the views of the docks behind other docks' tabs ("Neurons of the
selected layer", "Gradient through time") are built when they are first shown or
reached, or in idle steps after the first paint; nothing the user can see or do
changes: a view built late shows the current History and selection, a restored
layout that shows one builds it, presentation mode reaches it.
"""
import subprocess
import sys

import numpy as np
from PySide6.QtCore import QSettings

from backprop_lab.engine.history import History
from backprop_lab.engine.snapshot import PER_ACT, PER_LAYER, SCALARS
from tests.conftest import PRESETS

LAZY_MODULES = ("backprop_lab.widgets.theory.theory_tab", "backprop_lab.engine.theory.meanfield",
                "backprop_lab.engine.theory.overlay", "backprop_lab.widgets.neuron_heatmap",
                "backprop_lab.widgets.time_gradient", "backprop_lab.app.compare", "backprop_lab.widgets.export",
                "backprop_lab.engine.export", "backprop_lab.engine.diagnosis", "numpy.ma")

FIRST_WINDOW = """
import sys
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication
app = QApplication([])
from backprop_lab.app.main_window import MainWindow
w = MainWindow(settings=QSettings(sys.argv[1], QSettings.IniFormat))
painted = []
w.when_painted(lambda: painted.append(1))
w.show()
while not painted:
    app.processEvents()
lazy = {LAZY!r}
print("first frame:", sorted(m for m in lazy if m in sys.modules), w._theory is None, sorted(w._built))
w.build_deferred()
while w._theory is None:
    app.processEvents()
print("after:", sorted(m for m in lazy if m in sys.modules))
print("torch:", "torch" in sys.modules)
w.shutdown(); w.close()
"""


def test_the_first_frame_builds_and_imports_nothing_it_does_not_show(tmp_path):
    code = FIRST_WINDOW.replace("{LAZY!r}", repr(LAZY_MODULES))
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path / "s.ini")], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    lines = dict(line.split(":", 1) for line in p.stdout.splitlines() if ":" in line)
    assert lines["first frame"].strip() == "[] True []"
    # build_deferred builds the rest (what compare, export and the diagnosis need is imported when used)
    built = ["backprop_lab.widgets.theory.theory_tab", "backprop_lab.engine.theory.meanfield",
             "backprop_lab.widgets.neuron_heatmap", "backprop_lab.widgets.time_gradient"]
    assert all(m in lines["after"] for m in built), lines["after"]
    assert lines["torch"].strip() == "False"


def small_history(layers=4, steps=12, time_steps=0) -> History:
    names = [f"{2 * i + 1} linear" for i in range(layers)]
    acts = [f"{2 * i + 2} sigmoid" for i in range(layers - 1)]
    h = History(names, acts, [3] * layers, time_steps)
    more_rows(h, steps, time_steps)
    return h


def more_rows(h: History, steps: int, time_steps=0, seed=0) -> None:
    """``steps`` more random rows after the History's last step."""
    layers, first = len(h.layer_names), len(h)
    rng = np.random.default_rng(seed)
    b = {"step": np.arange(first, first + steps), "neuron_grad": rng.random((steps, 3 * layers)).astype(np.float32)}
    for k in SCALARS:
        b[k] = rng.random(steps)
    for k in PER_LAYER:
        b[k] = 10.0 ** -rng.random((steps, layers))
    for k in PER_ACT:
        b[k] = rng.random((steps, layers - 1))
    if time_steps:
        b["time_grad_norm"] = 10.0 ** -rng.random((steps, time_steps))
    h.extend_packed(b)


def test_a_hidden_dock_builds_its_view_when_shown_with_the_history_and_selection(qtbot, window):
    assert window._built == {} and window._theory is None
    h = small_history()
    window.session.show_history(h, {"name": "late"})
    window.select_path("3")                       # the second layer
    window.docks["neurons"].raise_()              # its tab chosen
    qtbot.waitUntil(lambda: "neurons" in window._built)
    view = window._built["neurons"]
    assert window.docks["neurons"].widget() is view and view.history is h
    assert view.layer == 1 and window.heatmap.selected == 1
    assert "time" not in window._built            # still behind the activation dock
    assert view in window._live_views()
    window._select_layer_index(2)                 # selection reaches the built view
    assert view.layer == 2


def test_a_recurrent_history_raises_and_builds_the_time_dock(qtbot, window):
    h = small_history(time_steps=7)
    window.session.show_history(h, {"name": "rnn"})
    qtbot.waitUntil(lambda: "time" in window._built)
    view = window._built["time"]
    assert view.available and not window.docks["time"].visibleRegion().isEmpty()
    x, _ = view.curve.getOriginalDataset()
    assert list(x) == list(range(7))


def test_the_live_timer_redraws_the_views_on_screen_not_those_behind_a_tab(qtbot, window):
    window.session.show_history(small_history(), {"name": "live"})
    neurons = window.build_view("neurons")           # built, but its dock is behind the flow dock's tab
    window.docks["flow"].raise_()
    qtbot.waitUntil(lambda: neurons.visibleRegion().isEmpty() and not window.flow.visibleRegion().isEmpty())
    h = window.session.history
    more_rows(h, 5, seed=1)
    for _ in range(3 * len(window._live_views())):   # several rounds of the timer
        window._tick()
    assert not window.flow.stale and neurons.stale   # the one behind the tab was left alone
    window.docks["neurons"].raise_()
    qtbot.waitUntil(lambda: not neurons.visibleRegion().isEmpty())
    for _ in range(len(window._live_views()) + 1):
        window._tick()
    assert not neurons.stale                         # its tab chosen: drawn at the next round


def test_reaching_a_deferred_part_builds_it(window):
    assert window.build_view("loss") is window.docks["loss"].widget()
    assert window.neurons is window.docks["neurons"].widget() is window.build_view("neurons")
    assert window.time_gradient is window.docks["time"].widget()
    window.central_tabs.setCurrentWidget(window.theory_area)    # the Theory tab shown
    assert window._theory is not None and window.theory_area.widget() is window._theory
    assert window.theory.spectrum.spec == window.session.spec


def test_build_deferred_builds_every_piece_in_steps(qtbot, window):
    window.build_deferred()
    assert window._theory is None and window._built == {}       # nothing before the event loop runs
    qtbot.waitUntil(lambda: window._theory is not None)
    assert set(window._built) == {"neurons", "time"}


def test_a_restored_layout_that_shows_a_deferred_dock_builds_it(qtbot, qsettings, make_window):
    w = make_window(qsettings)
    w.docks["neurons"].raise_()
    w.docks["time"].setFloating(True)
    qtbot.waitUntil(lambda: {"neurons", "time"} <= set(w._built))
    w.close()
    w2 = make_window(QSettings(qsettings.fileName(), QSettings.IniFormat))
    assert w2._restored
    qtbot.waitUntil(lambda: {"neurons", "time"} <= set(w2._built))
    assert w2.docks["time"].isFloating() and w2.docks["time"].isVisible()
    assert not w2.docks["neurons"].visibleRegion().isEmpty()


def axis_font_sizes(widget) -> set:
    import pyqtgraph as pg
    return {item.style["tickFont"].pointSize() for view in widget.findChildren(pg.GraphicsView)
            for item in view.scene().items() if isinstance(item, pg.AxisItem) and item.style["tickFont"]}


def test_views_built_after_presentation_mode_was_turned_on_use_its_fonts(window):
    from backprop_lab.widgets import theme
    try:
        window.actions.presentation.setChecked(True)
        size = theme.font_size()
        assert size > theme.BASE_POINT_SIZE
        assert axis_font_sizes(window.neurons) == {size} == axis_font_sizes(window.time_gradient)
        assert axis_font_sizes(window.theory) == {size}
        assert window.theory.chain.title.font().pointSize() == theme.font_size(4)
    finally:
        window.actions.presentation.setChecked(False)
    assert axis_font_sizes(window.neurons) == {theme.BASE_POINT_SIZE} == axis_font_sizes(window.theory)


def test_a_history_reads_nan_where_no_value_was_written_however_far_it_filled():
    # the arrays are filled with NaN as rows are reached (not all at once when made)
    h = History(["1 linear", "3 linear"], ["2 tanh"], [2, 2], time_steps=3, budget_bytes=1, min_capacity=3000)
    assert h._filled == 0
    rng = np.random.default_rng(1)
    n = 2500                                  # past the first chunks (1024, 2048)
    b = {"step": np.arange(n), "neuron_grad": rng.random((n, 4)).astype(np.float32)}
    for k in SCALARS:
        b[k] = rng.random(n)
    for k in PER_LAYER:
        b[k] = rng.random((n, 2))
    for k in PER_ACT:
        b[k] = rng.random((n, 1))
    for first in range(0, n, 700):            # batches across the chunk boundaries; no time_grad_norm
        h.extend_packed({k: v[first:first + 700] for k, v in b.items()})
    assert len(h) == n and 2500 <= h._filled <= 3000
    assert np.isnan(h.series("time_grad_norm")).all() and h.series("time_grad_norm").shape == (n, 3)
    np.testing.assert_array_equal(h.series("loss"), b["loss"])
    np.testing.assert_array_equal(h.steps, np.arange(n))
    # rows written directly (a loaded record) see the whole capacity filled
    assert np.isnan(h._data["loss"][n:]).all() and (h._data["step"][n:] == 0).all()


def test_a_built_in_stacks_plan_needs_no_worker_and_the_window_starts_none(window):
    assert window.open_spec_file(PRESETS / "deep_sigmoid_vanishing.json")
    s = window.session
    assert s._client is None                      # no training process for a plan
    assert s.infos and not s.problem and s.history is not None
    assert s.history.layer_names[0].startswith("1 ") and len(s.history.layer_names) == len(s.history.units)


def test_a_fresh_window_gets_the_default_dock_proportions(qtbot, window):
    """Asked for in showEvent itself (so the first layout pass uses them and the plots are
    not laid out twice), they are in place once the window is on screen."""
    qtbot.waitExposed(window)
    w, h = max(window.width(), 1200), max(window.height(), 760)
    d = window.docks
    qtbot.waitUntil(lambda: abs(d["palette"].width() - 0.16 * w) < 0.03 * w)
    assert abs(d["diagnosis"].width() - 0.22 * w) < 0.03 * w
    assert abs(d["palette"].height() - 0.25 * h) < 0.05 * h
