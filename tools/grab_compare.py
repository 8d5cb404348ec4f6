"""Render the compare window offscreen after a short run of two presets, to look at it.

    QT_QPA_PLATFORM=offscreen .venv/bin/python tools/grab_compare.py [OUT.png] [PRESET_A] [PRESET_B] [STEPS]

Defaults: /tmp/compare.png, deep_sigmoid_vanishing vs deep_relu_he, 200 steps.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(out="/tmp/compare.png", preset_a="deep_sigmoid_vanishing", preset_b="deep_relu_he", steps=200) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    from backprop_lab.app.compare import CompareWindow

    presets = ROOT / "resources" / "presets"
    specs = [json.loads((presets / f"{p}.json").read_text()) for p in (preset_a, preset_b)]
    for s in specs:
        s["train"]["steps"] = int(steps)
    w = CompareWindow(specs[0], specs[1], presets, (specs[0]["name"], specs[1]["name"]))
    w.resize(1600, 960)
    w.show()
    w.start()
    loop = QEventLoop()

    def check():  # both sides done: let the 10 Hz refresh draw once more, then grab
        if not any(s.running for s in w.sessions):
            QTimer.singleShot(400, loop.quit)
        else:
            QTimer.singleShot(100, check)

    check()
    QTimer.singleShot(180_000, loop.quit)  # never hang
    loop.exec()
    ok = w.grab().save(str(out))
    w.close()
    w.deleteLater()
    app.sendPostedEvents(None, 0)
    app.processEvents()
    print(f"{'wrote' if ok else 'FAILED to write'} {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    a = sys.argv[1:]
    sys.exit(main(*a[:3], *(int(x) for x in a[3:4])))
