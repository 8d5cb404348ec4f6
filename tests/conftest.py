"""Shared test set-up: Qt offscreen, small helpers to build and train experiments."""
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# The tests' tensors are tiny: one intra-op thread is faster, and on a busy 2-core
# machine a pool of two turns every small op into a wait for a time slice (an
# LSTM cell step took 25 ms instead of 0.2 ms). Set before torch is imported;
# subprocesses (the CLI tests) inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Closing a window with unsaved edits asks (a modal box); the tests that check it ask for it.
os.environ.setdefault("BACKPROP_LAB_NO_CLOSE_QUESTION", "1")

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PRESETS = ROOT / "resources" / "presets"


def load_preset(name: str) -> dict:
    return json.loads((PRESETS / f"{name}.json").read_text())


def train(spec: dict, steps: int, base_dir=None, seed=None, hist_every: int = 0):
    """Build and train a spec headless; returns (experiment, trainer, history)."""
    from backprop_lab.engine import experiment
    from backprop_lab.engine.history import History
    from backprop_lab.engine.trainer import Trainer
    exp = experiment.build(spec, base_dir, seed=seed)
    tr = Trainer(exp, hist_every=hist_every)
    x = exp.data.x_train
    T = x.shape[1] if exp.model.recurrent is not None and x.ndim == 3 else 0
    h = History.for_probe(tr.probe, time_steps=T)
    h.stop_reason = tr.run(steps, on_snapshot=h.append)
    return exp, tr, h


@pytest.fixture
def qsettings(tmp_path):
    """A throw-away settings file, so tests never see the user's saved layout."""
    from PySide6.QtCore import QSettings
    return QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)


@pytest.fixture
def window(qtbot, qsettings):
    """The main window, shown, with a throw-away settings file; its worker is shut down after."""
    from backprop_lab.app.main_window import MainWindow
    w = MainWindow(settings=qsettings)
    qtbot.addWidget(w)
    w.resize(1400, 900)
    w.show()
    yield w
    w.shutdown()


@pytest.fixture
def make_window(qtbot):
    """``make(settings)``: a main window shown with these settings (several per test: a layout
    saved by one and restored by the next); each is shut down after the test."""
    made = []

    def make(settings):
        from backprop_lab.app.main_window import MainWindow
        w = MainWindow(settings=settings)
        qtbot.addWidget(w)
        w.show()
        made.append(w)
        return w
    yield make
    for w in made:
        w.ask_on_close = False
        w.shutdown()


@pytest.fixture(scope="session", autouse=True)
def _delete_qt_objects_before_exit():
    """pyqtgraph + PySide6 can crash in Qt's teardown when Python-owned widgets outlive
    the tests (DEVELOPERS.md's exit trap): delete every top-level widget while Python
    and the QApplication are both still alive."""
    yield
    import gc
    from PySide6.QtWidgets import QApplication
    app = QApplication.instance()
    if app is None:
        return
    app.clipboard().clear()  # mime data the copy/paste tests left there crash Qt's teardown
    for w in app.topLevelWidgets():
        w.close()
        w.deleteLater()
    app.sendPostedEvents(None, 0)  # 0: QEvent.DeferredDelete is among the posted events
    app.processEvents()
    gc.collect()


_exit_status = {"code": None}


def pytest_sessionfinish(session, exitstatus):
    _exit_status["code"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """End the test process without the interpreter's own teardown.

    With PySide6 6.11 and pyqtgraph 0.14 the interpreter can segfault while it
    finalises modules after the last test (status 139 with every test passed):
    Qt's global objects are destroyed in an order pyqtgraph's Python-side items do
    not expect. The app itself deletes its windows before exit (app/main.py); the
    suite, which leaves hundreds of widgets to the garbage collector, leaves by
    os._exit with pytest's own status once every report has been written.
    """
    if _exit_status["code"] is None:
        return
    import sys
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_exit_status["code"])
