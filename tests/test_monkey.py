"""The GUI under abuse: random user actions on the real main window while training runs.

Drop, reorder, delete, duplicate, wrap, copy and paste layers, undo and redo, edit
properties, run, pause, step, stop, reset, change the learning rate, switch presets, apply
remedies, open and close compare windows, close the window: no exception (pytest-qt fails a
test on any exception raised in a slot or an event handler), no deadlock (every wait has a
timeout), no leaked thread, process or window. `make test` runs a short sequence; `make
fuzz` (FUZZ=1) thousands of actions.
"""
import os
import random
import threading
import traceback
import multiprocessing

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QApplication

from backprop_lab.engine import remedies
from backprop_lab.engine.spec import LAYER_TYPES
from tests.conftest import PRESETS

FUZZ = bool(os.environ.get("FUZZ"))
ACTIONS = int(os.environ.get("MONKEY_ACTIONS", 3000 if FUZZ else 120))
# presets that build in a moment (the digits one needs scikit-learn's data, recurrent ones are slow)
LIGHT = ["deep_relu_he", "deep_sigmoid_vanishing", "dead_relu_large_lr", "tanh_default_init",
         "exploding_relu_large_init", "deep_sigmoid_residual", "elu_rescue", "deep_sigmoid_batchnorm"]
KINDS = [k for k in LAYER_TYPES if k not in ("rnn", "lstm", "gru")]


class Monkey:
    def __init__(self, w, qtbot, rng):
        self.w, self.qtbot, self.rng = w, qtbot, rng
        self.compares = []
        self.counts = {}
        self.log = []

    # ------------------------------------------------------------ stack edits
    def select_random(self):
        layers = self.w.session.spec["model"].get("layers", [])
        if layers:
            self.w.stack.select_path((self.rng.randrange(len(layers)) + 1,), emit=True)

    def drop(self):
        pal = self.w.palette.model
        mime = pal.mimeData([pal.index_of(self.rng.choice(KINDS))])
        view = self.w.stack.tree.viewport()
        pos = QPoint(10, self.rng.randrange(max(view.height(), 1)))
        self.w.stack.tree.dropEvent(QDropEvent(pos, Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier))

    def edit(self):
        self.select_random()
        st = self.w.stack
        getattr(st, self.rng.choice(["remove_selected", "duplicate_selected", "copy_selected", "paste",
                                     "cut_selected", "wrap_selected", "unwrap_selected"]))()

    def move(self):
        self.select_random()
        self.w.stack.move_selected(self.rng.choice([-1, 1]))

    def append(self):
        self.w.stack.append_layer(self.rng.choice(KINDS))

    def undo_redo(self):
        (self.w.actions.undo if self.rng.random() < 0.6 else self.w.actions.redo).trigger()

    def property(self):
        self.select_random()
        key, value = self.rng.choice([("units", self.rng.choice([1, 3, 16, 64, 0, -2, 10**9])),
                                      ("slope", self.rng.choice([0.01, 0.3, -1.0])),
                                      ("p", self.rng.choice([0.1, 0.9, 1.5])), ("bias", False),
                                      ("name", "monkey")])
        self.w.properties.set_value(key, value)

    # ------------------------------------------------------------ training
    def run_control(self):
        tb = self.w.toolbar
        self.rng.choice([tb.run, tb.run, tb.pause, tb.step, tb.stop, tb.reset]).trigger()

    def lr(self):
        self.w.toolbar.lr.setValue(self.rng.choice([1e-6, 1e-3, 0.01, 0.1, 0.5, 3.0, 10.0]))

    def preset(self):
        self.w.actions.open_preset(PRESETS / f"{self.rng.choice(LIGHT)}.json")

    def remedy(self):
        self.w.apply_remedy(self.rng.choice(sorted(remedies.REMEDIES)))

    def compare(self):
        if len(self.compares) < 2:
            before = set(QApplication.topLevelWidgets())
            self.w.apply_remedy_and_compare(self.rng.choice(sorted(remedies.REMEDIES)))
            self.compares += [t for t in QApplication.topLevelWidgets() if t not in before
                              and t.windowTitle().startswith("Backprop Lab: compare")]
        else:
            self.compares.pop(0).close()

    def tick(self):
        """Let the window redraw once (the events of the actions before are handled then)."""
        n = self.w._refreshes
        self.qtbot.waitUntil(lambda: self.w._refreshes > n, timeout=30_000)

    def act(self):
        name, f = self.rng.choices(
            [("drop", self.drop), ("edit", self.edit), ("move", self.move), ("append", self.append),
             ("undo_redo", self.undo_redo), ("property", self.property), ("run_control", self.run_control),
             ("lr", self.lr), ("preset", self.preset), ("remedy", self.remedy), ("compare", self.compare),
             ("tick", self.tick)],
            weights=[6, 8, 5, 4, 8, 8, 12, 4, 2, 3, 1, 6])[0]
        self.log.append(name)
        with self.qtbot.captureExceptions() as errors:
            f()
        if errors:   # say which actions led there (the last ones), then fail with the exception
            kind, value, tb = errors[0]
            where = "".join(traceback.format_exception(kind, value, tb)[-6:])
            pytest.fail(f"{kind.__name__}: {value} after actions {self.log[-15:]}\n{where}")
        self.counts[name] = self.counts.get(name, 0) + 1


def test_random_actions_while_training_leave_no_exception_deadlock_or_leak(qtbot, qsettings):
    from backprop_lab.app.main_window import MainWindow
    threads_before = {t.ident for t in threading.enumerate()}
    w = MainWindow(settings=qsettings)
    qtbot.addWidget(w)
    w.resize(1300, 850)
    w.show()
    assert w.open_spec_file(PRESETS / "deep_relu_he.json")
    w.session.start()
    monkey = Monkey(w, qtbot, random.Random(int(os.environ.get("MONKEY_SEED", 12))))
    for _ in range(ACTIONS):
        monkey.act()
    # the window still works after all that: a fresh preset trains and shows its steps
    for c in monkey.compares:
        c.close()
    w.actions.open_preset(PRESETS / "deep_relu_he.json")
    w.session.spec["train"]["steps"] = 5
    with qtbot.waitSignal(w.session.run_ended, timeout=60_000):
        w.session.start()
    assert len(w.session.history) == 5
    w.ask_on_close = False
    assert w.close()
    qtbot.waitUntil(lambda: not w.session.running, timeout=10_000)
    print(f"monkey: {sum(monkey.counts.values())} actions {dict(sorted(monkey.counts.items()))}")
    assert sum(monkey.counts.values()) == ACTIONS
    # no leaked worker: no child process, and every Python thread we started has ended
    assert multiprocessing.active_children() == []
    qtbot.waitUntil(lambda: {t.ident for t in threading.enumerate() if t.is_alive()} <= threads_before
                    | {t.ident for t in threading.enumerate() if t.daemon and "pydevd" in t.name},
                    timeout=10_000)
