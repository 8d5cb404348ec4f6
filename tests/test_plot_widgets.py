"""The plot panels, drawn from real Histories of short Trainer runs and from exact synthetic ones.

Every panel is a thin view: these tests check what it draws against the
History it reads (values, log10, steps, NaN, dead units), and that the user's
gestures (hover, click, statistic combo) do what they say, through the real
mouse path where there is one.
"""
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QColor

from backprop_lab.engine.history import History
from backprop_lab.engine.snapshot import Snapshot
from tests.conftest import ROOT, train

# ----------------------------------------------------------------------------- runs
SMALL_SIGMOID = {
    "data": {"kind": "spirals", "n": 240, "classes": 3, "test_fraction": 0.25, "seed": 0},
    "model": {"layers": [{"type": "linear", "units": 12}, {"type": "sigmoid"},
                         {"type": "linear", "units": 12}, {"type": "sigmoid"},
                         {"type": "linear", "units": 12, "bias": False}, {"type": "sigmoid"},
                         {"type": "linear", "units": 12}, {"type": "sigmoid"}]},
    "train": {"lr": 0.5, "batch_size": 32, "seed": 0, "eval_every": 10},
}
STEPS = 40
NO_BIAS = 2   # "5 linear" has no bias: its bias gradient is NaN (undefined)

DEAD_UNIT = 3
DEAD_NET = f'''
import torch
from torch import nn

class Net(nn.Module):
    """fc1's unit {DEAD_UNIT} has a bias of -40: its ReLU input is negative for every sample."""
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(2, 8)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(8, 3)
        with torch.no_grad():
            self.fc1.weight.mul_(0.5)
            self.fc1.bias.fill_(0.5)
            self.fc1.bias[{DEAD_UNIT}] = -40.0

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))
'''


@pytest.fixture(scope="module")
def run():
    """(experiment, history) of a small sigmoid net with one bias-free layer."""
    exp, _, h = train(SMALL_SIGMOID, STEPS, hist_every=5)
    assert len(h) == STEPS
    return exp, h


@pytest.fixture(scope="module")
def dead_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("dead")
    (d / "net.py").write_text(DEAD_NET)
    spec = {"data": {"kind": "spirals", "n": 200, "test_fraction": 0, "seed": 0},
            "model": {"python": "net.py", "class": "Net"}, "train": {"lr": 0.2, "batch_size": 50, "seed": 0}}
    exp, _, h = train(spec, 25, base_dir=d, hist_every=5)
    return exp, h


def synthetic(values: np.ndarray, steps=None, accuracy=True, units=(3, 2), acts=1, hist=None, **kw) -> History:
    """A History whose every per-layer statistic is ``values`` [T, L] (exact numbers to check)."""
    T, L = values.shape
    h = History([f"{i} linear" for i in range(1, L + 1)], [f"a{i} sigmoid" for i in range(acts)],
                list(units)[:L] + [1] * max(0, L - len(units)), **kw)
    steps = np.arange(T) if steps is None else np.asarray(steps)
    U = sum(h.units)
    for t in range(T):
        v = values[t].astype(float)
        h.append(Snapshot(
            step=int(steps[t]), loss=1.0 / (t + 1), accuracy=0.5 if accuracy else math.nan,
            test_loss=0.9 if t % 5 == 0 else math.nan, test_accuracy=0.4 if t % 5 == 0 and accuracy else math.nan,
            lr=0.1, weight_grad_norm=v, bias_grad_norm=v, delta_norm=v, update_ratio=v,
            preact_mean=np.zeros(acts), preact_std=np.ones(acts), mean_derivative=np.full(acts, 0.2),
            saturated_frac=np.full(acts, 0.1), dead_frac=np.zeros(acts),
            neuron_grad=np.full(U, float(np.nanmax(v)) if np.isfinite(v).any() else 1.0, np.float32),
            preact_hist=hist))
    return h


def settle(qtbot, vb, x_max: float) -> None:
    """Wait until a view's (lazy) auto-range shows x up to x_max."""
    qtbot.waitUntil(lambda: vb.viewRange()[0][1] >= x_max - 0.5)


def view_point(plot_widget, x: float, y: float, vb=None) -> QPoint:
    """Viewport pixel of data point (x, y) in a PlotWidget (or a given ViewBox)."""
    vb = vb or plot_widget.getPlotItem().getViewBox()
    scene = vb.mapViewToScene(QPointF(x, y))
    return plot_widget.mapFromScene(scene)


def pixel(widget, pos: QPoint) -> QColor:
    return widget.grab().toImage().pixelColor(pos)


def shown(qtbot, w, size=(800, 420)):
    qtbot.addWidget(w)
    w.resize(*size)
    w.show()
    qtbot.waitExposed(w)
    return w


# ----------------------------------------------------------------------------- heatmap
@pytest.fixture
def heatmap(qtbot, run):
    from backprop_lab.widgets.gradient_heatmap import GradientHeatmap
    w = shown(qtbot, GradientHeatmap())
    w.set_history(run[1])
    settle(qtbot, w.plot.getPlotItem().getViewBox(), STEPS)
    return w


def test_heatmap_has_a_row_per_layer_and_a_column_per_step_holding_log10(heatmap, run):
    _, h = run
    img = heatmap.image.image
    assert img.shape == (len(h.layer_names), STEPS) and img.dtype == np.float32
    for row in range(len(h.layer_names)):
        if row != NO_BIAS:
            assert np.isfinite(img[row]).all(), h.layer_names[row]
    np.testing.assert_allclose(img, np.log10(h.series("bias_grad_norm")).T, rtol=1e-6)
    assert heatmap.layer_axis.names == h.layer_names
    # levels hold every value, in whole decades
    lo, hi = heatmap.levels()
    finite = img[np.isfinite(img)]
    assert lo <= finite.min() and finite.max() <= hi and float(lo).is_integer() and float(hi).is_integer()
    assert heatmap.bar.levels() == (lo, hi) and tuple(heatmap.image.levels) == (lo, hi)


def test_heatmap_nan_row_is_transparent_over_grey_and_reads_undefined(qtbot, heatmap, run):
    from backprop_lab.widgets import theme
    _, h = run
    assert np.isnan(h.series("bias_grad_norm")[:, NO_BIAS]).all()
    assert np.isnan(heatmap.image.image[NO_BIAS]).all()
    assert "undefined (NaN)" in heatmap.readout_text(NO_BIAS, 7)
    view = heatmap.plot
    grey = pixel(view, view_point(view, STEPS / 2, NO_BIAS + 0.5))
    assert grey.getRgb()[:3] == theme.NAN_COLOUR[:3]
    live = pixel(view, view_point(view, STEPS / 2, 0.5))
    assert live.getRgb()[:3] != theme.NAN_COLOUR[:3]


def test_heatmap_hover_reads_the_value_under_the_mouse(qtbot, heatmap, run):
    _, h = run
    row, col = 1, 17
    qtbot.mouseMove(heatmap.plot.viewport(), view_point(heatmap.plot, col + 0.5, row + 0.5))
    qtbot.waitUntil(lambda: heatmap.readout.text() == heatmap.readout_text(row, col))
    v = h.series("bias_grad_norm")[col, row]
    text = heatmap.readout.text()
    assert text.startswith(f"layer {h.layer_names[row]}, step {h.steps[col]}: ‖∂L/∂b‖ = {v:.3g}")
    assert f"log10 {math.log10(v):+.2f}" in text


def test_clicking_a_row_selects_its_layer(qtbot, heatmap, run):
    with qtbot.waitSignal(heatmap.layer_selected) as sig:
        qtbot.mouseClick(heatmap.plot.viewport(), Qt.LeftButton,
                         pos=view_point(heatmap.plot, 10.5, 3.5))
    assert sig.args == [3] and heatmap.selected == 3
    assert heatmap.highlight.isVisible() and heatmap.highlight.getRegion() == (3, 4)
    with qtbot.assertNotEmitted(heatmap.layer_selected):
        heatmap.set_selected_layer(1)   # the API selects without echoing the signal
    assert heatmap.highlight.getRegion() == (1, 2)


def test_statistic_combo_recolours_and_tells_the_other_views(qtbot, heatmap, run):
    _, h = run
    with qtbot.waitSignal(heatmap.statistic_changed) as sig:
        heatmap.combo.setCurrentIndex(heatmap.combo.findData("delta_norm"))
    assert sig.args == ["delta_norm"] and heatmap.statistic == "delta_norm"
    np.testing.assert_allclose(heatmap.image.image, np.log10(h.series("delta_norm")).T, rtol=1e-6)
    assert "‖∂L/∂z‖" in heatmap.bar.axis.labelText
    with qtbot.assertNotEmitted(heatmap.statistic_changed):
        heatmap.set_statistic("delta_norm")


def test_step_axis_labels_true_steps_when_history_is_decimated(qtbot):
    from backprop_lab.widgets.gradient_heatmap import GradientHeatmap
    steps = np.r_[0:200:10, 200:260]            # old steps thinned, recent ones complete
    vals = np.tile(10.0 ** -np.arange(1, 4), (len(steps), 1))
    w = shown(qtbot, GradientHeatmap())
    w.set_history(synthetic(vals, steps=steps))
    ax = w.step_axis
    assert ax.tickStrings([0.5, 20.5, 79.5], 1, 1) == ["0", "200", "259"]
    ticks = [v for _, vals_ in ax.tickValues(0, len(steps), 600) for v in vals_]
    labels = ax.tickStrings(ticks, 1, 1)
    assert labels and all(int(s) % 10 == 0 for s in labels)      # round steps, not column numbers
    assert w.readout_text(0, 20).startswith("layer 1 linear, step 200:")


def test_levels_start_fixed_and_only_widen(qtbot):
    from backprop_lab.widgets.gradient_heatmap import GradientHeatmap
    from backprop_lab.widgets.statistics import DEFAULT_LEVELS
    h = synthetic(np.full((5, 2), 1e-3))
    w = shown(qtbot, GradientHeatmap())
    w.set_history(h)
    assert w.levels() == DEFAULT_LEVELS["bias_grad_norm"]    # -3 lies inside: nothing to widen
    big = synthetic(np.array([[1e-12, 1e3]]))
    h.append(big.latest)
    w.refresh()
    assert w.levels() == (-12.0, 3.0)
    h.append(synthetic(np.array([[1e-2, 1e-2]])).latest)
    w.refresh()
    assert w.levels() == (-12.0, 3.0)                          # never shrink back


def test_exact_zero_is_the_bottom_colour_and_not_nan():
    from backprop_lab.widgets.log_image import ZERO_LOG, log10_image
    img = log10_image(np.array([[0.0, 1e-4, np.nan, 100.0]]))
    assert img.shape == (4, 1)
    assert img[0, 0] == ZERO_LOG and img[1, 0] == pytest.approx(-4) and np.isnan(img[2, 0]) and img[3, 0] == 2


def test_heatmap_follows_history_decimation(qtbot):
    from backprop_lab.widgets.gradient_heatmap import GradientHeatmap
    h = History(["1 linear", "2 linear"], [], [1, 1], budget_bytes=1, min_capacity=64)
    w = shown(qtbot, GradientHeatmap())
    w.set_history(h)
    filler = synthetic(np.ones((1, 2)), units=(1, 1))
    for k in range(300):
        s = filler.latest
        v = np.array([10.0 ** -(k % 7), 2.0 ** -(k % 5)])
        h.append(Snapshot(**{**s.__dict__, "step": k, "bias_grad_norm": v}))
        if k % 9 == 0:
            w.refresh()
    w.refresh()
    assert len(h) < 300 and h.steps[-1] == 299           # decimated at least once
    np.testing.assert_allclose(w.image.image, np.log10(h.series("bias_grad_norm")).T, rtol=1e-6)


def test_refresh_redraws_only_when_the_history_changed(qtbot, heatmap, run, monkeypatch):
    calls = []
    monkeypatch.setattr(heatmap.image, "setImage", lambda *a, **k: calls.append(1))
    heatmap.refresh()
    heatmap.refresh()
    assert calls == []
    run[1].version += 1
    heatmap.refresh()
    assert calls == [1]


def test_zoom_to_shows_the_finding_layers_and_steps(qtbot, heatmap):
    heatmap.zoom_to(0, 1, 10, 20)
    (x0, x1), (y0, y1) = heatmap.plot.getPlotItem().getViewBox().viewRange()
    assert x0 <= 10 and x1 >= 21 and x1 - x0 < STEPS
    assert y0 <= 0 and 2 <= y1 < 5


# ----------------------------------------------------------------------------- neurons
def test_neuron_heatmap_shows_a_dead_unit_as_a_black_row(qtbot, dead_run):
    from backprop_lab.widgets.log_image import ZERO_LOG
    from backprop_lab.widgets.neuron_heatmap import NeuronHeatmap
    _, h = dead_run
    assert h.layer_names[0] == "fc1 (Linear)"
    g = h.neuron_grad(0)
    assert np.all(g[:, DEAD_UNIT] == 0) and np.all(np.delete(g, DEAD_UNIT, axis=1) > 0)
    w = shown(qtbot, NeuronHeatmap(), (600, 400))
    w.set_history(h)
    w.set_selected_layer(0)
    vb = w.plot.getPlotItem().getViewBox()
    settle(qtbot, vb, len(h))
    img = w.image.image
    assert img.shape == (8, len(h))
    assert np.all(img[DEAD_UNIT] == ZERO_LOG) and np.all(img[DEAD_UNIT] < w.levels()[0])
    np.testing.assert_allclose(np.delete(img, DEAD_UNIT, 0), np.log10(np.delete(g, DEAD_UNIT, 1)).T, rtol=1e-5)
    assert list(np.flatnonzero(w.dead)) == [DEAD_UNIT]
    assert "fc1 (Linear)" in w.title.text() and "1 of 8" in w.title.text()
    dark = pixel(w.plot, view_point(w.plot, len(h) / 2, DEAD_UNIT, vb))
    assert max(dark.getRgb()[:3]) < 10                       # inferno's black
    live = pixel(w.plot, view_point(w.plot, len(h) / 2, DEAD_UNIT + 1, vb))
    assert max(live.getRgb()[:3]) > 40
    qtbot.mouseMove(w.plot.viewport(), view_point(w.plot, 4.5, DEAD_UNIT, vb))
    expected = f"unit {DEAD_UNIT} of fc1 (Linear), step {h.steps[4]}: mean |∂L/∂z| = 0 (no gradient at all)"
    qtbot.waitUntil(lambda: w.readout.text() == expected)


def test_neuron_heatmap_switches_layer_from_selection_and_combo(qtbot, run):
    from backprop_lab.widgets.neuron_heatmap import NeuronHeatmap
    _, h = run
    w = shown(qtbot, NeuronHeatmap())
    w.set_history(h)
    w.set_selected_layer(len(h.layer_names) - 1)
    assert w.image.image.shape == (h.units[-1], STEPS)
    np.testing.assert_allclose(w.image.image, np.log10(h.neuron_grad(len(h.layer_names) - 1)).T, rtol=1e-5)
    assert h.layer_names[-1] in w.title.text()
    with qtbot.waitSignal(w.layer_selected) as sig:
        w.combo.setCurrentIndex(1)
    assert sig.args == [1] and w.layer == 1 and w.image.image.shape == (12, STEPS)


# ----------------------------------------------------------------------------- activation
def test_activation_panel_draws_sigmoid_with_its_quarter_peak_and_live_histogram(qtbot, run):
    from backprop_lab.widgets.activation_panel import HIST_RANGE, ActivationPanel
    exp, h = run
    w = shown(qtbot, ActivationPanel(), (600, 400))
    w.set_activations([a for _, _, a in exp.model.act_layers])
    w.set_history(h)
    w.set_selected_layer(1)
    x, y = w.df_curve.getData()
    assert y.max() == pytest.approx(0.25, abs=1e-4) and abs(x[np.argmax(y)]) < 0.05
    assert w.max_line.value() == 0.25 and "0.25" in w.max_label.toPlainText()
    # saturated tails shaded where f'(z) < 1 % of 0.25, i.e. |z| > 5.99
    regions = sorted(r.getRegion() for r in w.shades)
    assert len(regions) == 2
    assert regions[0][0] == HIST_RANGE[0] and regions[0][1] == pytest.approx(-5.99, abs=0.03)
    assert regions[1][0] == pytest.approx(5.99, abs=0.03) and regions[1][1] == HIST_RANGE[1]
    # the histogram is the newest one, scaled to fit; the right axis reads its share in %
    counts = h.latest_hist[1]
    heights = w.hist.opts["height"]
    np.testing.assert_allclose(heights / heights.max(), counts / counts.max(), rtol=1e-6)
    assert heights.max() == pytest.approx(0.8 * w.plot.getPlotItem().getViewBox().viewRange()[1][1])
    assert heights.max() * w.right_axis.scale == pytest.approx(100 * counts.max() / counts.sum())
    md = h.series("mean_derivative")[-1, 1]
    sat = h.series("saturated_frac")[-1, 1]
    assert f"mean f′(z) = {md:.3g}" in w.stats.text() and f"saturated {100 * sat:.1f} %" in w.stats.text()
    assert "dead units" in w.stats.text() and h.act_names[1] in w.title.text()


def test_activation_panel_reads_types_from_names_and_shades_relu_below_zero(qtbot, dead_run):
    from backprop_lab.widgets.activation_panel import ActivationPanel, activation_for_name
    assert activation_for_name("4.1 leaky_relu").name == "leaky_relu"
    assert activation_for_name("act (ReLU)").name == "relu"
    assert activation_for_name("2 sigmoid").max_derivative == 0.25
    _, h = dead_run
    w = shown(qtbot, ActivationPanel())
    w.set_history(h)                           # no set_activations: from "act (ReLU)"
    assert [a.name for a in w.activations] == ["relu"]
    (lo, hi), = [r.getRegion() for r in w.shades]
    assert lo == -8.0 and hi == pytest.approx(0.0, abs=0.03)
    dead = h.series("dead_frac")[-1, 0]
    assert dead == pytest.approx(1 / 8) and "dead units 12.5 %" in w.stats.text()


def test_histogram_range_matches_the_probes():
    from backprop_lab.engine import probes
    from backprop_lab.widgets.activation_panel import HIST_RANGE
    assert tuple(HIST_RANGE) == tuple(probes.HIST_RANGE)


# ----------------------------------------------------------------------------- flow
def test_gradient_flow_bars_and_lines_match_the_history(qtbot, run):
    from backprop_lab.widgets.gradient_flow import GradientFlow
    _, h = run
    w = shown(qtbot, GradientFlow(), (900, 380))
    w.set_history(h)
    v = h.series("bias_grad_norm")
    x = w.bars.opts["x"]
    ok = [i for i in range(len(h.layer_names)) if i != NO_BIAS]
    assert list(x) == ok                              # no bar where the value is undefined
    top = w.bars.opts["y0"] + w.bars.opts["height"]
    np.testing.assert_allclose(top, np.log10(v[-1, ok]), rtol=1e-9)
    assert len(w.curves) == len(h.layer_names)
    sx, sy = w.curves[0].getOriginalDataset()
    np.testing.assert_array_equal(sx, h.steps)
    np.testing.assert_allclose(sy, v[:, 0])
    assert w.line_plot.getAxis("left").logMode
    with qtbot.waitSignal(w.layer_selected) as sig:
        qtbot.mouseClick(w.view.viewport(), Qt.LeftButton,
                         pos=view_point(w.view, 1, top[1] - 0.2, w.bar_plot.getViewBox()))
    assert sig.args == [1] and w.selected == 1
    assert w.curves[1].opts["pen"].widthF() > w.curves[0].opts["pen"].widthF()
    with qtbot.waitSignal(w.statistic_changed):
        w.combo.setCurrentIndex(w.combo.findData("weight_grad_norm"))
    np.testing.assert_allclose(w.curves[2].getOriginalDataset()[1], h.series("weight_grad_norm")[:, 2])


def test_an_empty_flow_panel_names_its_layer_axis_without_a_scale_prefix(qtbot):
    """Before any run the bar plot's range is tiny: pyqtgraph would add "(x0.001)" to the label of
    an axis whose ticks are layer names."""
    from backprop_lab.widgets.gradient_flow import GradientFlow
    w = shown(qtbot, GradientFlow(), (900, 380))
    w.bar_plot.setXRange(0, 0.004)
    qtbot.waitUntil(lambda: "layer" in w.name_axis.label.toPlainText())
    assert w.name_axis.label.toPlainText().strip() == "layer (input → output)"


def test_heatmap_and_flow_keep_one_statistic(qtbot, run):
    from backprop_lab.widgets.gradient_flow import GradientFlow
    from backprop_lab.widgets.gradient_heatmap import GradientHeatmap
    a, b = shown(qtbot, GradientHeatmap()), shown(qtbot, GradientFlow())
    for w in (a, b):
        w.set_history(run[1])
    a.statistic_changed.connect(b.set_statistic)
    b.statistic_changed.connect(a.set_statistic)
    b.combo.setCurrentIndex(b.combo.findData("update_ratio"))
    assert a.statistic == b.statistic == "update_ratio" and a.combo.currentData() == "update_ratio"


# ----------------------------------------------------------------------------- loss
def test_loss_plot_draws_train_every_step_and_test_where_evaluated(qtbot, run):
    from backprop_lab.widgets.loss_plot import LossPlot
    _, h = run
    w = shown(qtbot, LossPlot(), (500, 400))
    w.set_history(h)
    x, y = w.train_loss.getOriginalDataset()
    np.testing.assert_array_equal(x, h.steps)
    np.testing.assert_array_equal(y, h.series("loss"))
    tx, ty = w.test_loss.getOriginalDataset()
    evaluated = np.isfinite(h.series("test_loss"))
    assert 0 < evaluated.sum() < STEPS
    np.testing.assert_array_equal(tx, h.steps[evaluated])
    assert np.isfinite(ty).all() and w.test_loss.opts["symbol"] == "o"
    _, acc = w.train_acc.getOriginalDataset()
    np.testing.assert_allclose(acc, 100 * h.series("accuracy"))
    assert w.acc_plot.isVisible()
    assert w.train_loss.opts["downsampleMethod"] == "peak" and w.train_loss.opts["clipToView"]


def test_loss_plot_hides_accuracy_for_regression(qtbot):
    from backprop_lab.widgets.loss_plot import LossPlot
    w = shown(qtbot, LossPlot())
    w.set_history(synthetic(np.ones((6, 2)), accuracy=False))
    assert not w.acc_plot.isVisible() and w.loss_plot.getAxis("bottom").style["showValues"]


# ----------------------------------------------------------------------------- common
def test_empty_and_missing_histories_draw_nothing(qtbot):
    from backprop_lab.widgets.activation_panel import ActivationPanel
    from backprop_lab.widgets.gradient_flow import GradientFlow
    from backprop_lab.widgets.gradient_heatmap import GradientHeatmap
    from backprop_lab.widgets.loss_plot import LossPlot
    from backprop_lab.widgets.neuron_heatmap import NeuronHeatmap
    empty = History(["1 linear"], ["2 relu"], [4])
    for cls in (GradientHeatmap, NeuronHeatmap, ActivationPanel, GradientFlow, LossPlot):
        w = shown(qtbot, cls())
        w.set_history(None)
        w.refresh()
        w.set_history(empty)
        w.refresh()


def test_presentation_mode_scales_every_plot_font(qtbot, heatmap):
    from backprop_lab.widgets import theme
    small = heatmap.step_axis.style["tickFont"].pointSize()
    try:
        theme.set_presentation_mode(True)
        big = heatmap.step_axis.style["tickFont"].pointSize()
        assert big == theme.font_size() > small
        assert heatmap.bar.axis.style["tickFont"].pointSize() == big
        assert heatmap.layer_axis.style["tickFont"].pointSize() == big
    finally:
        theme.set_presentation_mode(False)
    assert heatmap.step_axis.style["tickFont"].pointSize() == small


def test_plot_widgets_do_not_load_torch():
    code = ("import sys; import backprop_lab.widgets.theme, backprop_lab.widgets.gradient_heatmap, backprop_lab.widgets.neuron_heatmap, "
            "backprop_lab.widgets.activation_panel, backprop_lab.widgets.gradient_flow, backprop_lab.widgets.loss_plot, backprop_lab.engine.history; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_flow_axes_label_decades_without_a_scale_factor(qtbot, run):
    from backprop_lab.widgets.gradient_flow import GradientFlow
    w = shown(qtbot, GradientFlow(), (800, 400))
    w.set_history(run[1])                       # bias gradients of 1e-3 and below
    for plot in (w.bar_plot, w.line_plot):
        ax = plot.getAxis("left")
        assert ax.autoSIPrefixScale == 1.0 and "x0." not in ax.labelString()


def test_flow_puts_the_lines_below_the_bars_only_when_narrow(qtbot, run):
    from backprop_lab.widgets.gradient_flow import GradientFlow
    w = shown(qtbot, GradientFlow(), (800, 400))
    w.set_history(run[1])
    cell = lambda: w.view.ci.layout.itemAt(1, 0) is w.line_plot   # noqa: E731
    assert not cell()
    w.resize(300, 500)
    qtbot.waitUntil(cell)
    w.resize(800, 400)
    qtbot.waitUntil(lambda: not cell())


def test_an_empty_step_axis_labels_whole_steps_once():
    from backprop_lab.widgets.axes import StepAxis
    ax = StepAxis()
    values = [v for _, vs in ax.tickValues(0.0, 1.0, 600) for v in vs]
    labels = ax.tickStrings(values, 1.0, 1.0)
    assert values and all(float(v).is_integer() for v in values) and len(set(labels)) == len(labels)


# ----------------------------------------------------------------------------- through time
def test_time_gradient_panel_draws_the_recorded_profile_and_map(qtbot):
    from tests.conftest import load_preset, train
    from backprop_lab.widgets.time_gradient import TimeGradientPanel
    spec = load_preset("recurrent_rnn_vanishing")
    _, _, h = train(spec, 6)
    g = h.series("time_grad_norm")
    w = shown(qtbot, TimeGradientPanel(), (900, 400))
    w.set_history(h)
    assert w.available and w.map_plot.isVisible()
    x, y = w.curve.getOriginalDataset()
    ok = g[-1] > 0
    np.testing.assert_array_equal(x, np.flatnonzero(ok))
    np.testing.assert_allclose(y, g[-1][ok], rtol=1e-6)
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(w.image.image[:, ok], np.log10(g[:, ok]), rtol=1e-5)
    ratio = g[-1, 0] / g[-1, -1]
    assert f"t = 0 gets {ratio:.2g} × the gradient of t = {g.shape[1] - 1}" in w.note.text()
    w.resize(300, 400)                 # narrow: the profile only
    qtbot.waitUntil(lambda: not w.map_plot.isVisible())


def test_time_gradient_panel_says_when_the_net_is_not_recurrent(qtbot, run):
    from backprop_lab.widgets.time_gradient import NO_RECURRENT, TimeGradientPanel
    w = shown(qtbot, TimeGradientPanel())
    w.set_history(run[1])
    assert not w.available and w.note.text() == NO_RECURRENT and not w.view.isVisible()


def test_profile_text_names_an_underflow():
    from backprop_lab.widgets.time_gradient import profile_text
    assert profile_text(np.array([0.0, 1e-3, 1e-2])).startswith("t = 0 gets no gradient at all")
    assert "gets 0.01 × the gradient of t = 2" in profile_text(np.array([1e-4, 1e-3, 1e-2]))


def test_activation_histogram_keeps_its_scale_while_its_tallest_bar_stays_in_the_band(qtbot, run, monkeypatch):
    # a new scale every step made the right axis draw its ticks again each frame (issue 9 item 8);
    # whatever the scale, the right axis reads each bar's share of the entries
    from PySide6.QtWidgets import QApplication
    from backprop_lab.widgets.activation_panel import HIST_BAND, HIST_TOP, ActivationPanel
    exp, h = run
    w = shown(qtbot, ActivationPanel(), (600, 400))
    w.set_activations([a for _, _, a in exp.model.act_layers])
    w.set_history(h)
    w.set_selected_layer(1)
    ytop = w.plot.getPlotItem().getViewBox().viewRange()[1][1]

    def show(counts):
        hist = np.array(h.latest_hist, dtype=float)
        hist[1] = counts
        monkeypatch.setattr(h, "latest_hist", hist)
        w.invalidate()
        w.refresh()
        QApplication.processEvents()
        heights = w.hist.opts["height"]
        assert heights.max() * w.right_axis.scale == pytest.approx(100 * counts.max() / counts.sum())
        return heights.max() / ytop, w.right_axis.scale, w.right_axis.width()

    counts = np.array(h.latest_hist[1], dtype=float)
    top, scale, width = show(counts)
    assert top == pytest.approx(HIST_TOP)
    peak = int(np.argmax(counts))
    slightly = counts.copy()
    slightly[peak] *= 1.04                      # the tallest bar 4 % taller: still in the band
    top2, scale2, _ = show(slightly)
    assert scale2 == scale and HIST_BAND[0] <= top2 <= HIST_BAND[1] and top2 > top
    much = counts.copy()
    much[peak] *= 3.0                           # far out of the band: scaled anew
    top3, scale3, _ = show(much)
    assert scale3 != scale and top3 == pytest.approx(HIST_TOP)
    widths = [width]
    rng = np.random.default_rng(1)
    for _ in range(12):                         # the axis never narrows again: the plot keeps its size
        widths.append(show(counts * rng.uniform(0.2, 5.0, len(counts)))[2])
    assert widths == sorted(widths)
