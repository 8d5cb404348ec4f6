"""Render the stack editor's widgets offscreen and save PNGs, to look at them.

    QT_QPA_PLATFORM=offscreen .venv/bin/python tools/grab_editor.py [OUT_DIR] [--dark]   (default /tmp/editor)

Shows a deep sigmoid stack with a residual block and one layer that does not
fit (an RNN on 2-D data), the palette, the property editor (a valid layer and
a refused value) and the data / training settings.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STACK = [
    {"type": "linear", "units": 30, "init": {"scheme": "normal", "std": 1.0}},
    {"type": "sigmoid"},
    {"type": "linear", "units": 30},
    {"type": "sigmoid"},
    {"type": "linear", "units": 30, "init": {"scheme": "xavier_normal"}},
    {"type": "sigmoid"},
    {"type": "residual", "layers": [{"type": "linear", "units": 30}, {"type": "sigmoid"}]},
    {"type": "batchnorm"},
    {"type": "linear", "units": 30, "bias": False},
    {"type": "leaky_relu", "slope": 0.1},
    {"type": "dropout", "p": 0.2},
    {"type": "rnn", "units": 16},
]


def dark_palette():
    from PySide6.QtGui import QColor, QPalette
    p = QPalette()
    for role, c in ((QPalette.Window, "#2b2d30"), (QPalette.WindowText, "#dfe1e5"), (QPalette.Base, "#1e1f22"),
                    (QPalette.AlternateBase, "#26282b"), (QPalette.Text, "#dfe1e5"), (QPalette.Button, "#393b40"),
                    (QPalette.ButtonText, "#dfe1e5"), (QPalette.Highlight, "#2e5d9e"),
                    (QPalette.HighlightedText, "#ffffff"), (QPalette.PlaceholderText, "#8c8f94"),
                    (QPalette.ToolTipBase, "#2b2d30"), (QPalette.ToolTipText, "#dfe1e5")):
        p.setColor(role, QColor(c))
    return p


def main(out: str = "/tmp/editor", dark: bool = False) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication, QHBoxLayout, QSplitter, QVBoxLayout, QWidget

    app = QApplication.instance() or QApplication([])
    try:  # the app's theme, when there is one
        from backprop_lab.widgets import theme
        for name in ("apply", "apply_theme", "install"):
            if callable(getattr(theme, name, None)):
                getattr(theme, name)(app)
                break
    except Exception:  # noqa: BLE001 - the look of a tool, not a failure
        app.setStyle("Fusion")

    if dark:
        app.setStyle("Fusion")
        app.setPalette(dark_palette())
    from backprop_lab.engine.build import plan
    from backprop_lab.widgets.layer_palette import LayerPalette
    from backprop_lab.widgets.layer_stack import LayerStackView
    from backprop_lab.widgets.property_editor import PropertyEditor
    from backprop_lab.widgets.settings_panel import SettingsPanel

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)

    palette = LayerPalette()
    stack = LayerStackView()
    props = PropertyEditor(stack.model, stack.undo_stack)
    settings = SettingsPanel(stack.undo_stack)
    stack.set_layers(STACK)
    stack.set_plan(plan(stack.layers(), (2,), 3))
    settings.set_spec_sections({"kind": "spirals", "n": 1000, "classes": 3, "noise": 0.2, "turns": 1.5,
                                "test_fraction": 0.2, "seed": 0},
                               {"loss": "cross_entropy", "optimizer": "momentum", "lr": 0.1, "momentum": 0.9,
                                "weight_decay": 0.0, "clip_norm": 1.0, "clip_value": None, "batch_size": 64,
                                "steps": 500, "seed": 0, "device": "cpu", "eval_every": 10})
    stack.select_path((1,), emit=True)
    palette.view.setCurrentIndex(palette.index_of("sigmoid"))

    window = QWidget()
    window.setWindowTitle("Backprop Lab — stack editor")
    lay = QHBoxLayout(window)
    left = QSplitter(Qt.Vertical)
    left.addWidget(palette)
    left.addWidget(stack)
    left.setSizes([300, 560])
    right = QWidget()
    rl = QVBoxLayout(right)
    rl.setContentsMargins(0, 0, 0, 0)
    rl.addWidget(props)
    lay.addWidget(left, 3)
    lay.addWidget(right, 3)
    lay.addWidget(settings, 3)
    window.resize(1180, 880)
    window.show()
    app.processEvents()

    def grab(widget, name):
        for _ in range(3):   # layouts settle in more than one round of posted events
            app.processEvents()
        path = out_dir / f"{name}.png"
        widget.grab().save(str(path))
        print(path)

    grab(window, "editor")
    grab(stack, "stack")
    grab(palette, "palette")
    grab(props, "properties_linear")
    grab(settings, "settings")

    stack.select_path((7, 1), emit=True)
    props.set_value("units", -4)       # refused: the message shows, the model keeps 30
    grab(props, "properties_refused")
    stack.select_path((12,), emit=True)
    grab(window, "editor_problem")
    stack.select_path((10,), emit=True)
    grab(props, "properties_leaky")
    stack.select_path(("out",), emit=True)
    grab(props, "properties_out")

    narrow = LayerStackView()
    narrow.set_layers(STACK)
    narrow.set_plan(plan(narrow.layers(), (2,), 3))
    narrow.select_path((7,), emit=True)
    narrow.resize(250, 520)
    narrow.show()
    grab(narrow, "stack_narrow")
    narrow.close()

    stack.set_locked(True, "Training is running. Stop it (Shift+F5) or Reset to edit the stack.")
    stack.remove_selected()
    grab(stack, "stack_locked")
    stack.set_locked(False)
    settings.fields["data.kind"].setCurrentText("npz")   # waits for a file: message, nothing applied
    grab(settings, "settings_npz")
    window.close()
    return 0


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--dark"]
    sys.exit(main(*args[:1], dark="--dark" in sys.argv))
