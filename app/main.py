"""Start the desktop app: check the display, make the window, exit cleanly.

The window is shown first; the training process (engine.worker) is started
right after its first paint, in the background, and imports torch while the
user looks at the window; what the first frame does not show (the Theory tab,
the views of docks behind other docks' tabs) is built in idle steps after it. Ctrl+C and SIGTERM in the terminal close the window like Ctrl+Q does:
the training process is told to stop and ended (terminated if it must be),
the window (and its pyqtgraph widgets) is deleted before the interpreter
exits, and the exit status is 0.
"""
from __future__ import annotations

import ctypes.util
import os
import signal
import sys

XCB_LIBS = {"xcb-cursor": "libxcb-cursor0", "xcb-icccm": "libxcb-icccm4", "xcb-keysyms": "libxcb-keysyms1"}


def display_problem() -> str | None:
    """Why Qt could not open a window here, in plain words (None when it can)."""
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform and not platform.startswith("xcb"):
        return None
    if sys.platform != "linux":
        return None
    if not os.environ.get("DISPLAY"):
        if os.environ.get("WAYLAND_DISPLAY") and not platform:
            return None
        return ("no display: DISPLAY is not set. Run it on a desktop, under Xvfb, or headless with "
                "QT_QPA_PLATFORM=offscreen")
    missing = [pkg for lib, pkg in XCB_LIBS.items() if ctypes.util.find_library(lib) is None]
    if missing:
        return ("Qt's X11 (xcb) platform plugin needs the libraries " + " ".join(missing) +
                "; install them with: sudo apt-get install " + " ".join(missing))
    return None


def report_when_done(window, app, stream=sys.stderr) -> None:
    """--quit-when-done: when the run ends, print what ``backprop-lab run`` prints and quit (exit 0)."""
    from PySide6.QtCore import QTimer

    def done(reason: str) -> None:
        steps, seconds = window.session.last_run
        if not steps and window.session.history is not None:
            steps = len(window.session.history)
        print(f"{reason}: {steps} steps in {seconds:.2f} s, {steps / max(seconds, 1e-9):.1f} steps/s",
              file=stream, flush=True)
        QTimer.singleShot(0, window.close)
    window.session.run_ended.connect(done)


def main(spec: str | None = None, run: bool = False, watch: str | None = None, model: str | None = None,
         model_kwargs: dict | None = None, data: str = "digits", quit_when_done: bool = False) -> int:
    problem = display_problem()
    if problem:
        print(f"backprop-lab: {problem}", file=sys.stderr)
        return 1
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from backprop_lab.app.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Backprop Lab")
    app.setOrganizationName("Backprop Lab")
    window = MainWindow()
    window.show()
    if not watch:   # torch is imported there, behind the painted window
        window.when_painted(window.session.warm_up)
    window.when_painted(window.build_deferred)   # the Theory tab and the hidden docks' views, when idle
    if model:
        window.model_opener().open_path(model, model_kwargs, data)
    elif watch:
        window.watch_directory(watch)
    elif spec:
        if window.open_spec_file(spec) and run:
            if quit_when_done:
                report_when_done(window, app)

            def start():
                window.session.start()
                print(f"backprop-lab: training {window.session.spec['name']!r}", file=sys.stderr, flush=True)
            QTimer.singleShot(0, start)

    if not (watch or spec):   # after a crash or a kill: offer the autosaved stack and run back
        QTimer.singleShot(0, window.offer_recovery)
    else:
        window.autosave.start()

    def close_from_terminal(signum, frame):  # Ctrl+C, SIGTERM: as if the user closed the window,
        window.ask_on_close = False          # without a question: unsaved edits stay autosaved
        QTimer.singleShot(0, window.close)

    signal.signal(signal.SIGINT, close_from_terminal)
    signal.signal(signal.SIGTERM, close_from_terminal)
    # Python runs signal handlers only between bytecodes; wake it regularly.
    ticker = QTimer()
    ticker.timeout.connect(lambda: None)
    ticker.start(200)
    code = app.exec()
    ticker.stop()
    from backprop_lab.widgets.stack_model import MIME_TYPE
    board = app.clipboard()
    held = board.mimeData()
    if held is not None and held.hasFormat(MIME_TYPE):
        board.clear()  # layers we put there crash Qt's teardown if they outlive the window
    window.shutdown()
    window.deleteLater()
    del window
    app.processEvents()  # carry out the deleteLater before the interpreter tears down
    return code
