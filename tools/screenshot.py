"""Take the README's screenshot from the real app: the deep sigmoid preset, mid-run.

    QT_QPA_PLATFORM=offscreen .venv/bin/python tools/screenshot.py docs/screenshot.png [PRESET] [STEPS]
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(out="docs/screenshot.png", preset="deep_sigmoid_vanishing", steps=300) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QEventLoop, QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    import tempfile
    app = QApplication.instance() or QApplication([])
    from backprop_lab.app.main_window import MainWindow

    settings = QSettings(str(Path(tempfile.mkdtemp()) / "settings.ini"), QSettings.IniFormat)
    w = MainWindow(settings=settings)  # a fresh layout, not the user's saved one
    w.resize(1600, 960)
    w.show()
    w.open_spec_file(ROOT / "resources" / "presets" / f"{preset}.json")
    w.session.spec["train"]["steps"] = 100_000  # still training when the picture is taken
    w.session.start()
    loop = QEventLoop()
    steps = int(steps)

    def check():
        if w.session.history is not None and len(w.session.history) >= steps:
            loop.quit()
    poll = QTimer()
    poll.timeout.connect(check)
    poll.start(50)
    QTimer.singleShot(120_000, loop.quit)  # never hang
    loop.exec()
    poll.stop()
    w._select_layer_index(2)  # a hidden layer: its neurons, its activation
    QTimer.singleShot(300, loop.quit)
    loop.exec()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    ok = w.grab().save(str(out))
    w.shutdown()
    w.close()
    w.deleteLater()
    app.processEvents()
    print(f"{'wrote' if ok else 'FAILED to write'} {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
