"""Draw each plot panel from a real (short) run, offscreen, and save PNGs to look at.

    QT_QPA_PLATFORM=offscreen .venv/bin/python tools/grab_panels.py [OUT_DIR] [--fresh] [--presentation]

Runs two presets headless (the deep sigmoid net that vanishes, the ReLU net
whose units die at a large learning rate), builds every panel from their
History and saves OUT_DIR/<panel>.png (default /tmp/panels). The trained
Histories are cached as OUT_DIR/cache/*.pkl (a private scratch file, never a
run record) so that restyling the panels takes seconds; --fresh retrains.
"""
from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RUNS = {"sigmoid": ("deep_sigmoid_vanishing", 240), "dead_relu": ("dead_relu_large_lr", 240)}


def trained_history(preset: str, steps: int, cache: Path, fresh: bool):
    path = cache / f"{preset}-{steps}.pkl"
    if path.exists() and not fresh:
        return pickle.loads(path.read_bytes())
    import json

    from backprop_lab.engine import experiment
    from backprop_lab.engine.history import History
    from backprop_lab.engine.trainer import Trainer
    spec = json.loads((ROOT / "resources" / "presets" / f"{preset}.json").read_text())
    exp = experiment.build(spec)
    tr = Trainer(exp, hist_every=5)
    h = History.for_probe(tr.probe)
    h.stop_reason = tr.run(steps, on_snapshot=h.append)
    cache.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(h))
    return h


def main(argv: list[str]) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    args = [a for a in argv if not a.startswith("--")]
    out = Path(args[0] if args else "/tmp/panels")
    out.mkdir(parents=True, exist_ok=True)
    hist = {k: trained_history(p, n, out / "cache", "--fresh" in argv) for k, (p, n) in RUNS.items()}

    from PySide6.QtWidgets import QApplication
    app = QApplication.instance() or QApplication([])
    from backprop_lab.widgets import theme
    from backprop_lab.widgets.activation_panel import ActivationPanel
    from backprop_lab.widgets.gradient_flow import GradientFlow
    from backprop_lab.widgets.gradient_heatmap import GradientHeatmap
    from backprop_lab.widgets.loss_plot import LossPlot
    from backprop_lab.widgets.neuron_heatmap import NeuronHeatmap
    if "--presentation" in argv:
        theme.set_presentation_mode(True)

    def heatmap(h, sel=None, stat=None):
        w = GradientHeatmap()
        w.set_history(h)
        if stat:
            w.set_statistic(stat)
        if sel is not None:
            w.set_selected_layer(sel)
        return w

    def neurons(h, layer):
        w = NeuronHeatmap()
        w.set_history(h)
        w.set_selected_layer(layer)
        return w

    def act(h, a):
        w = ActivationPanel()
        w.set_history(h)
        w.set_selected_layer(a)
        return w

    def flow(h, sel=None):
        w = GradientFlow()
        w.set_history(h)
        if sel is not None:
            w.set_selected_layer(sel)
        return w

    def loss(h):
        w = LossPlot()
        w.set_history(h)
        return w

    s, d = hist["sigmoid"], hist["dead_relu"]
    panels = {
        "heatmap_sigmoid": (lambda: heatmap(s, sel=2), (960, 400)),
        "heatmap_sigmoid_delta": (lambda: heatmap(s, stat="update_ratio"), (960, 400)),
        "heatmap_dead_relu": (lambda: heatmap(d), (960, 400)),
        "neurons_sigmoid_first": (lambda: neurons(s, 0), (620, 380)),
        "neurons_dead_relu": (lambda: neurons(d, 2), (620, 380)),
        "activation_sigmoid": (lambda: act(s, 0), (620, 380)),
        "activation_relu": (lambda: act(d, 2), (620, 380)),
        "flow_sigmoid": (lambda: flow(s, sel=2), (820, 360)),
        "flow_dead_relu": (lambda: flow(d), (820, 360)),
        "loss_sigmoid": (lambda: loss(s), (520, 380)),
        "loss_dead_relu": (lambda: loss(d), (520, 380)),
        "heatmap_small": (lambda: heatmap(s, sel=2), (520, 260)),
        "flow_small": (lambda: flow(s), (520, 260)),
        "activation_small": (lambda: act(s, 4), (400, 280)),
    }
    only = os.environ.get("PANELS")
    for name, (make, size) in panels.items():
        if only and not any(p in name for p in only.split(",")):
            continue
        w = make()
        w.resize(*size)
        w.show()
        for _ in range(3):
            app.processEvents()
        w.refresh()
        app.processEvents()
        path = out / f"{name}.png"
        ok = w.grab().save(str(path))
        print(f"{'wrote' if ok else 'FAILED'} {path}")
        w.close()
        w.deleteLater()
        app.processEvents()
    app.sendPostedEvents(None, 0)
    app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
