"""The compare window: two live runs or saved records, shared colour scale, log10(B / A)."""
import numpy as np
import pytest

from tests.conftest import PRESETS, load_preset

pytest.importorskip("pytestqt")

from backprop_lab.app import cli  # noqa: E402
from backprop_lab.app.compare import CompareWindow  # noqa: E402
from backprop_lab.widgets.compare_view import on_step_grid  # noqa: E402

SIGMOID, RELU = "deep_sigmoid_vanishing", "deep_relu_he"


def _specs(steps: int):
    specs = [load_preset(SIGMOID), load_preset(RELU)]
    for s in specs:
        s["train"]["steps"] = steps
    return specs


def _window(qtbot, *args, **kw) -> CompareWindow:
    w = CompareWindow(*args, **kw)
    qtbot.addWidget(w)
    w.show()
    return w


def _check_views(w, key="bias_grad_norm"):
    """The ratio map, the shared levels and the table agree with numpy on the two Histories."""
    v = w.view
    ha, hb = (s.history for s in w.sessions)
    common, ia, ib = np.intersect1d(ha.steps, hb.steps, return_indices=True)
    assert np.array_equal(v.alignment.steps, common)
    img = v.ratio_item.image
    assert img.shape == (len(v.alignment.layers), len(common))
    for layer, col in ((0, len(common) // 2), (3, len(common) - 1)):
        expected = np.log10(hb.series(key)[ib[col], layer] / ha.series(key)[ia[col], layer])
        assert img[layer, col] == pytest.approx(expected, rel=1e-5, abs=1e-6)
    lo, hi = v.ratio_levels
    assert lo == -hi and hi >= 1  # centred on 0: white is "the same"
    # one colour scale: the same levels in both maps, covering the union of both runs
    assert np.array_equal(v.image_a.getLevels(), v.image_b.getLevels())
    assert tuple(v.image_a.getLevels()) == v.levels == tuple(v.bar.levels())
    both = np.concatenate([np.log10(h.series(key)[np.isfinite(h.series(key))]) for h in (ha, hb)])
    assert v.levels[0] <= np.percentile(both, 1) and v.levels[1] >= np.percentile(both, 99)
    # the table: one row per matched layer, input layer first, ReLU + He helps it
    assert v.table.rowCount() == len(v.alignment.layers) == len(ha.layer_names)
    assert v.table.item(0, 0).text() == ha.layer_names[0]
    assert v.rows[0]["ratio"] > 1


def test_two_live_runs(qtbot):
    a, b = _specs(30)
    w = _window(qtbot, a, b, PRESETS, ("sigmoid", "ReLU + He"))
    w.start()
    sa, sb = w.sessions
    assert sa.running and sb.running
    qtbot.waitUntil(lambda: len(sa.history) > 0 and len(sb.history) > 0, timeout=60_000)
    qtbot.waitUntil(lambda: not sa.running and not sb.running, timeout=120_000)
    assert len(sa.history) == len(sb.history) == 30
    w.view.refresh()
    _check_views(w)
    assert "finished, step 29" in w.state_label.text()
    # another statistic: redrawn from the same Histories, levels start afresh
    w.view.set_statistic("weight_grad_norm")
    _check_views(w, "weight_grad_norm")
    # the read-out names both values and their ratio
    text = w.view.readout_text(2, 10.0, 0.5)
    assert text.startswith("layer 1 linear, step 10") and "B / A" in text
    # presentation mode restyles the window's text (theme calls the view's hook)
    from backprop_lab.widgets import theme
    theme.set_presentation_mode(True)
    try:
        assert w.view.axes[0].width() > 0 and "font-size" in w.view.run_labels[0].text()
    finally:
        theme.set_presentation_mode(False)
    # Run both again: a finished side starts over from the same seed
    w.start()
    qtbot.waitUntil(lambda: not sa.running and not sb.running, timeout=120_000)
    assert len(sa.history) == 30


def test_closing_mid_run_stops_both_threads(qtbot):
    a, b = _specs(1_000_000)
    w = _window(qtbot, a, b, PRESETS)
    w.start()
    sa, sb = w.sessions
    qtbot.waitUntil(lambda: len(sa.history) > 0 and len(sb.history) > 0, timeout=60_000)
    assert sa.running and sb.running
    w.close()
    assert not sa.running and not sb.running
    assert not w._timer.isActive()


def test_two_saved_records_and_a_bad_file(qtbot, tmp_path, capsys):
    paths = []
    for name in (SIGMOID, RELU):
        out = tmp_path / f"{name}.npz"
        assert cli.main(["run", str(PRESETS / f"{name}.json"), "--steps", "20", "--out", str(out)]) == 0
        paths.append(out)
    w = CompareWindow.from_records(*paths)
    qtbot.addWidget(w)
    w.show()
    w.view.refresh()
    assert [len(s.history) for s in w.sessions] == [20, 20]
    assert w.view.labels[0].startswith(paths[0].name)
    _check_views(w)
    w.start()  # records are not retrained
    assert not any(s.running for s in w.sessions)
    # a file that is not a record: a clear message, the side keeps its record
    bad = tmp_path / "bad.npz"
    bad.write_text("not a record")
    before = w.sessions[0].history
    assert not w.load_record(0, bad)
    assert "cannot load run A" in w.statusBar().currentMessage()
    assert w.error_box.isVisible() and "not a run record" in w.error_box.text()
    w.error_box.close()
    assert w.sessions[0].history is before


def test_live_run_against_a_record(qtbot, tmp_path, capsys):
    out = tmp_path / "relu.npz"
    assert cli.main(["run", str(PRESETS / f"{RELU}.json"), "--steps", "20", "--out", str(out)]) == 0
    a, b = _specs(30)
    w = _window(qtbot, a, b, PRESETS)
    assert w.load_record(1, out)
    w.start()
    sa, sb = w.sessions
    assert sa.running and not sb.running
    qtbot.waitUntil(lambda: not sa.running, timeout=120_000)
    w.view.refresh()
    assert (len(sa.history), len(sb.history)) == (30, 20)
    assert len(w.view.alignment.steps) == 20  # ratios on the steps both recorded
    _check_views(w)
    assert "B: saved run, step 19" in w.state_label.text()


def test_decimated_steps_are_placed_at_their_true_steps():
    steps = np.array([0, 2, 4, 6, 7, 8, 9])
    img = np.arange(7, dtype=np.float32)[None, :]
    out, x0, width = on_step_grid(steps, img)
    assert (x0, width) == (-0.5, 10.0)
    assert out[0].tolist() == [0, 0, 1, 1, 2, 2, 3, 4, 5, 6]
    out, x0, width = on_step_grid(np.array([10, 20, 30]), img[:, :3])
    assert out is not None and (x0, width) == (5.0, 30.0)


def test_align_pairs_linear_layers_in_order_when_a_remedy_changed_the_stack():
    from backprop_lab.engine.compare import align
    from backprop_lab.engine.history import History
    a = History(["1 linear", "3 linear", "5 linear", "out linear"], [], [4, 4, 4, 2])
    b = History(["1 linear", "4 linear", "7 linear", "out linear"], [], [4, 4, 4, 2])  # batchnorm added
    assert [(na, nb) for na, nb, _, _ in align(a, b).layers] == [
        ("1 linear", "1 linear"), ("3 linear", "4 linear"), ("5 linear", "7 linear"), ("out linear", "out linear")]
    same = align(a, a).layers
    assert [(i, j) for _, _, i, j in same] == [(0, 0), (1, 1), (2, 2), (3, 3)]
    c = History(["fc1", "fc2", "head"], [], [4, 4, 2])
    d = History(["fc0", "fc1", "fc2", "head"], [], [4, 4, 4, 2])  # custom modules: by name
    assert [(i, j) for _, _, i, j in align(c, d).layers] == [(0, 1), (1, 2), (2, 3)]


def _history(rows: int, seed: int, capacity: int):
    from backprop_lab.engine.history import History
    from backprop_lab.engine.snapshot import PER_ACT, PER_LAYER, SCALARS
    h = History(["1 linear", "3 linear", "out"], ["2 sigmoid", "4 sigmoid"], [4, 4, 3], budget_bytes=1,
                min_capacity=capacity)
    rng = np.random.default_rng(seed)

    def batch(first, n):
        b = {"step": np.arange(first, first + n), "neuron_grad": rng.random((n, 11)).astype(np.float32)}
        b.update({k: rng.random(n) for k in SCALARS})
        b.update({k: 10.0 ** rng.uniform(-6, 0, (n, 3)) for k in PER_LAYER})
        b.update({k: rng.random((n, 2)) for k in PER_ACT})
        b["bias_grad_norm"][rng.random((n, 3)) < 0.05] = 0.0   # log10(B / A) undefined there
        return b
    return h, batch


def test_ratio_columns_grow_as_the_runs_go_and_equal_the_whole_ratio():
    """The compare view's log10(B / A) takes only the new common steps; it equals ratio_matrix on the
    whole Histories after every refresh, also once a History has thinned itself (steps no longer a prefix)."""
    from backprop_lab.engine import compare
    (a, batch_a), (b, batch_b) = _history(0, 1, 64), _history(0, 2, 64)
    cols, at_a, at_b, news = compare.RatioColumns(), 0, 0, []
    rng = np.random.default_rng(3)
    for _ in range(40):
        na, nb = (int(n) for n in rng.integers(0, 9, 2))   # the two runs go at their own pace
        a.extend_packed(batch_a(at_a, na)) if na else None
        b.extend_packed(batch_b(at_b, nb)) if nb else None
        at_a, at_b = at_a + na, at_b + nb
        if not (len(a) and len(b)):
            continue
        al = compare.align(a, b)
        got = cols.update(a, b, "bias_grad_norm", al)
        news.append(cols.new)
        np.testing.assert_array_equal(got, compare.ratio_matrix(a, b, "bias_grad_norm", al).T.astype(np.float32))
    assert max(at_a, at_b) > 64 and a.steps[1] - a.steps[0] > 1   # the Histories did thin themselves
    assert any(n > 0 for n in news) and 0 in news[1:]              # grown in place, and started over
    got = cols.update(a, b, "weight_grad_norm", compare.align(a, b))   # another statistic: from scratch
    assert cols.new == 0
    np.testing.assert_array_equal(got, compare.ratio_matrix(a, b, "weight_grad_norm").T.astype(np.float32))
