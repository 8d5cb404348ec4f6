"""Nothing lost: atomic saves, autosave offered back after a kill, quitting with unsaved edits
asks, View > Reset layout."""
import json
import os
import signal
import subprocess
import sys

import pytest
from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from backprop_lab.engine import atomic, record
from backprop_lab.engine import spec as S
from tests.conftest import PRESETS, ROOT, train


# ----------------------------------------------------------------------------- atomic saves
def test_a_save_that_fails_midway_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "s.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic.open_atomic(target, "w", encoding="utf-8") as f:
            f.write("half of the new")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]


def test_spec_and_record_saves_leave_no_part_file(tmp_path):
    spec = S.validate({"data": {"kind": "xor", "n": 40}, "model": {"layers": [{"type": "linear", "units": 3}]}})
    S.save(spec, tmp_path / "a.json")
    _, _, h = train(spec, 3)
    record.save(tmp_path / "r.npz", h, spec)
    record.save(tmp_path / "r.npz", h, spec)   # over an existing one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "r.npz"]
    assert S.load(tmp_path / "a.json")[0] == spec and len(record.load(tmp_path / "r.npz")[0]) == 3
    assert oct((tmp_path / "a.json").stat().st_mode & 0o777) != oct(0o600)   # the usual mode, not mkstemp's


# ----------------------------------------------------------------------------- the window
def answer_box(name: str, button):
    """Click ``button`` of the modal box ``name`` as soon as it is shown (from the event loop)."""
    def poll():
        box = QApplication.activeModalWidget()
        if isinstance(box, QMessageBox) and box.objectName() == name:
            box.button(button).click()
        else:
            QTimer.singleShot(20, poll)
    QTimer.singleShot(0, poll)


def test_quitting_with_unsaved_edits_asks_and_cancel_keeps_the_window(qtbot, qsettings, make_window, tmp_path):
    w = make_window(qsettings)
    w.ask_on_close = True
    assert w.open_spec_file(PRESETS / "deep_sigmoid_vanishing.json")
    assert not w.has_unsaved_edits()
    w.apply_remedy("relu_he")
    assert w.has_unsaved_edits()
    answer_box("unsaved_changes", QMessageBox.Cancel)
    assert not w.close() and w.isVisible()
    w.session.path = tmp_path / "mine.json"
    answer_box("unsaved_changes", QMessageBox.Save)
    assert w.close()
    assert "relu" in {l["type"] for l in S.load(tmp_path / "mine.json")[0]["model"]["layers"]}


def test_quitting_without_edits_does_not_ask(qtbot, qsettings, make_window):
    w = make_window(qsettings)
    w.ask_on_close = True
    assert w.open_spec_file(PRESETS / "deep_relu_he.json")
    assert w.close()    # no box: a modal one would block here


def test_discard_closes_and_the_edits_are_offered_back_next_time(qtbot, qsettings, make_window):
    w = make_window(qsettings)
    w.offer_recovery(ask=lambda r: pytest.fail("nothing to recover yet"))
    assert w.open_spec_file(PRESETS / "deep_sigmoid_vanishing.json")
    w.apply_remedy("relu_he")
    w.ask_on_close = True
    answer_box("unsaved_changes", QMessageBox.Discard)
    assert w.close()
    w2 = make_window(QSettings(qsettings.fileName(), QSettings.IniFormat))
    assert not w2.offer_recovery(ask=lambda r: pytest.fail("discarded edits are not offered"))


def test_a_killed_app_offers_its_stack_settings_and_last_run_back(qtbot, tmp_path, make_window):
    spec = json.loads((PRESETS / "deep_relu_he.json").read_text())
    spec["train"].update(steps=25, lr=0.037)   # an edited setting that must come back
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(spec))
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path / "config"))
    p = subprocess.Popen([sys.executable, "-c", "import sys; from backprop_lab.app.cli import main; sys.exit(main())",
                          str(path), "--run"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    folder = tmp_path / "config" / "Backprop Lab" / "autosave"
    try:
        qtbot.waitUntil(lambda: (folder / "run.npz").is_file(), timeout=120_000)   # the run ended
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(30)
    assert not any(f.name.endswith(".part") for f in folder.iterdir())
    settings = QSettings(str(tmp_path / "config" / "Backprop Lab" / "Backprop Lab.conf"), QSettings.IniFormat)
    w = make_window(settings)
    offered = []
    assert w.offer_recovery(ask=lambda r: offered.append(r) or True)
    assert offered and w.session.spec["train"]["lr"] == 0.037 and w.session.spec["name"] == spec["name"]
    assert w.session.history is not None and len(w.session.history) == 25
    assert w.has_unsaved_edits()   # a recovered stack is not saved until the user saves it
    w.ask_on_close = False
    w.close()
    w3 = make_window(QSettings(settings.fileName(), QSettings.IniFormat))   # closed, with edits kept
    assert w3.offer_recovery(ask=lambda r: False) is False


def test_reset_layout_restores_the_default_docks(qtbot, qsettings, make_window):
    w = make_window(qsettings)
    default = {k: w.dockWidgetArea(d) for k, d in w.docks.items()}
    w.docks["loss"].close()
    w.docks["diagnosis"].setFloating(True)
    w.removeDockWidget(w.docks["palette"])
    w.addDockWidget(Qt.RightDockWidgetArea, w.docks["palette"])
    w.docks["palette"].show()
    w.close()
    w2 = make_window(QSettings(qsettings.fileName(), QSettings.IniFormat))   # a moved dock persists
    assert w2.dockWidgetArea(w2.docks["palette"]) == Qt.RightDockWidgetArea
    assert not w2.docks["loss"].isVisible()
    w2.actions.reset_layout.trigger()
    assert {k: w2.dockWidgetArea(d) for k, d in w2.docks.items()} == default
    assert all(d.isVisible() and not d.isFloating() for d in w2.docks.values())
