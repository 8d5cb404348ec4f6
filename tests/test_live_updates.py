"""Thousands of live redraws through the real plot panels, driven by a QTimer as in the app.

A Qt binding with a reference-counting bug in the calls live plotting makes
over and over (PySide6 6.12.0 aborts in bool_dealloc after a few hundred to a
few thousand ImageItem.setImage / PlotDataItem.setData rounds) fails here in
seconds instead of in front of a class. The History is kept small so that it
decimates again and again, the statistic and the selected layer change while
frames keep coming, and the panels are on screen, so every frame is painted.
"""
import math

import numpy as np
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QGridLayout, QWidget

from backprop_lab.engine.activations import activation
from backprop_lab.engine.history import History
from backprop_lab.engine.snapshot import Snapshot

FRAMES = 2400          # snapshots appended, each followed by a refresh of every panel
PER_PAINT = 3          # refreshes between two paints: every setImage/setData runs, a third is painted
LAYERS, UNITS, ACTS, BINS = 6, 16, 5, 80


def snapshot(k: int, rng) -> Snapshot:
    # gradients that shrink a decade per layer toward the input, with noise; some undefined values
    depth = np.arange(LAYERS) - LAYERS + 1
    grads = 10.0 ** (depth + 0.3 * rng.standard_normal(LAYERS))
    bias = grads.copy()
    bias[1] = math.nan                      # a layer without bias
    neurons = (10.0 ** (-3 + rng.standard_normal(LAYERS * UNITS))).astype(np.float32)
    neurons[::7] = 0.0                      # dead units
    hist = rng.integers(0, 50, size=(ACTS, BINS)).astype(np.float64)
    return Snapshot(
        step=k, loss=1.0 + 0.1 * rng.standard_normal(), accuracy=rng.uniform(0.3, 0.9),
        test_loss=1.0 if k % 10 == 0 else math.nan, test_accuracy=0.5 if k % 10 == 0 else math.nan, lr=0.1,
        weight_grad_norm=grads, bias_grad_norm=bias, delta_norm=grads * 2, update_ratio=grads / 100,
        preact_mean=rng.standard_normal(ACTS), preact_std=rng.uniform(0.5, 2, ACTS),
        mean_derivative=rng.uniform(0, 0.25, ACTS), saturated_frac=rng.uniform(0, 1, ACTS),
        dead_frac=rng.uniform(0, 1, ACTS), neuron_grad=neurons, preact_hist=hist)


def test_panels_survive_thousands_of_live_updates(qtbot):
    from backprop_lab.widgets.activation_panel import ActivationPanel
    from backprop_lab.widgets.gradient_flow import GradientFlow
    from backprop_lab.widgets.gradient_heatmap import GradientHeatmap
    from backprop_lab.widgets.loss_plot import LossPlot
    from backprop_lab.widgets.neuron_heatmap import NeuronHeatmap
    from backprop_lab.widgets.statistics import STATISTICS

    h = History([f"{2 * i + 1} linear" for i in range(LAYERS)], [f"{2 * i + 2} tanh" for i in range(ACTS)],
                [UNITS] * LAYERS, budget_bytes=1, min_capacity=256)   # decimates every ~64 frames
    box = QWidget()
    qtbot.addWidget(box)
    grid = QGridLayout(box)
    heatmap, neurons, act, flow, loss = (GradientHeatmap(), NeuronHeatmap(), ActivationPanel(), GradientFlow(),
                                         LossPlot())
    for i, w in enumerate((heatmap, neurons, act, flow, loss)):
        grid.addWidget(w, i // 2, i % 2)
        w.set_history(h)
    act.set_activations([activation({"type": "tanh"})] * ACTS)
    heatmap.statistic_changed.connect(flow.set_statistic)
    box.resize(1000, 640)
    box.show()
    qtbot.waitExposed(box)

    renders = []
    render = heatmap.image.render
    heatmap.image.render = lambda *a: (renders.append(1), render(*a))[1]
    rng = np.random.default_rng(0)
    frame = [0]

    def update():
        k = frame[0]
        h.append(snapshot(k, rng))
        for view in (heatmap, neurons, act, flow, loss):
            view.refresh()
        if k % 250 == 125:
            heatmap.set_statistic(STATISTICS[(k // 250) % len(STATISTICS)][0])
            i = (k // 250) % LAYERS
            for view in (heatmap, neurons, flow):
                view.set_selected_layer(i)
            act.set_selected_layer(i % ACTS)
        frame[0] += 1

    def tick():
        for _ in range(PER_PAINT):
            update()
        if frame[0] >= FRAMES:
            timer.stop()

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(0)
    try:
        qtbot.waitUntil(lambda: frame[0] >= FRAMES, timeout=300_000)
    finally:
        timer.stop()

    assert h.steps[-1] == FRAMES - 1 and len(h) < FRAMES          # decimated on the way
    assert len(renders) > 10                                        # frames were really painted
    img = heatmap.image.image
    assert img.shape == (LAYERS, len(h))
    with np.errstate(divide="ignore"):
        expected = np.log10(h.series(heatmap.statistic)).T
    np.testing.assert_allclose(img, expected, rtol=1e-6)
    x, _ = flow.curves[0].getOriginalDataset()
    np.testing.assert_array_equal(x, h.steps)
    assert neurons.image.image.shape == (UNITS, len(h))
