"""The window and the training process: no torch in the window, faults, quitting, --quit-when-done.

The checks that look at the window's own interpreter (is torch imported? are
the training processes gone after quitting?) run the window in a subprocess of
their own, so that the other tests' imports do not count.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.conftest import PRESETS, ROOT

pytest.importorskip("pytestqt")

NET = textwrap.dedent("""
    import os, sys, ctypes, time
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self, fault="none", at=4):
            super().__init__()
            self.a, self.s, self.b = nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 3)
            self.fault, self.at, self.n = fault, at, 0

        def forward(self, x):
            if self.training:
                self.n += 1
                if self.n == self.at:
                    if self.fault == "segfault":
                        ctypes.string_at(0)
                    elif self.fault == "exit":
                        sys.exit(3)
                    elif self.fault == "raise":
                        raise RuntimeError("a bug in the user's forward")
                    elif self.fault == "hang":
                        while True:
                            time.sleep(0.01)
            return self.b(self.s(self.a(x)))
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (ended, not yet reaped by anyone) is not "left behind" running
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _run_window_script(body: str, tmp_path, timeout=240):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent("""
        import json, sys, time
        from PySide6.QtCore import QSettings
        from PySide6.QtWidgets import QApplication
        app = QApplication([])
        from backprop_lab.app.main_window import MainWindow
        w = MainWindow(settings=QSettings(sys.argv[1], QSettings.IniFormat))
        w.resize(1400, 900)
        w.show()

        def wait(cond, timeout=120):
            end = time.monotonic() + timeout
            while not cond():
                assert time.monotonic() < end, "timed out"
                app.processEvents()
                time.sleep(0.002)
        """) + textwrap.dedent(body))
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    p = subprocess.run([sys.executable, str(script), str(tmp_path / "s.ini")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1]), p


def test_the_window_trains_shows_every_panel_and_compares_without_importing_torch(tmp_path):
    (tmp_path / "net.py").write_text(NET)
    (tmp_path / "custom.json").write_text(json.dumps({
        "format": "backprop-lab/spec", "version": 1, "data": {"kind": "spirals", "n": 60, "test_fraction": 0},
        "model": {"python": "net.py", "class": "Net"}, "train": {"steps": 5}}))
    out, _ = _run_window_script(f"""
        s = w.session
        assert w.open_spec_file({str(PRESETS / 'deep_sigmoid_vanishing.json')!r})
        s.spec["train"]["steps"] = 30
        s.start()
        wait(lambda: s.state == "finished")
        for dock in w.docks.values():     # every panel on screen and redrawn
            dock.show(); dock.raise_()
            app.processEvents()
            w._refresh(force_diagnosis=True)
        w.central_tabs.setCurrentWidget(w.theory_area)   # and the Theory tab (built when first shown)
        app.processEvents()
        assert w._theory is not None and sorted(w._built) == ["neurons", "time"]
        assert len(s.history) == 30 and w.diagnosis.cards
        pids = [s.worker_pid]
        w.apply_remedy_and_compare("relu_he")
        from backprop_lab.app.compare import CompareWindow
        cw = [x for x in app.topLevelWidgets() if isinstance(x, CompareWindow)][0]
        wait(lambda: all(x.state == "finished" for x in cw.sessions))
        cw.view.refresh()
        pids += [x.worker_pid for x in cw.sessions]
        assert len(set(pids)) == 3          # each run in a process of its own
        assert w.open_spec_file({str(tmp_path / 'custom.json')!r})   # a custom model: its plan from the worker
        wait(lambda: s.history is not None and s.history.layer_names == ["a (Linear)", "b (Linear)"])
        s.start()
        wait(lambda: s.state == "finished")
        torch_here = "torch" in sys.modules
        w.close()
        app.processEvents()
        print(json.dumps({{"torch": torch_here, "pids": pids, "steps": len(s.history)}}))
        """, tmp_path)
    assert out["torch"] is False and out["steps"] == 5
    assert not any(_alive(pid) for pid in out["pids"])


def _custom(tmp_path, fault, at=4, steps=50):
    (tmp_path / "net.py").write_text(NET)
    path = tmp_path / f"{fault}.json"
    path.write_text(json.dumps({
        "format": "backprop-lab/spec", "version": 1, "data": {"kind": "spirals", "n": 60, "test_fraction": 0},
        "model": {"python": "net.py", "class": "Net", "kwargs": {"fault": fault, "at": at}},
        "train": {"steps": steps}}))
    return path


@pytest.mark.parametrize("fault, cause", [("segfault", "segmentation fault"), ("exit", "sys.exit(3)")])
def test_a_worker_that_dies_is_reported_and_the_window_keeps_its_history(qtbot, window, tmp_path, fault, cause):
    s = window.session
    assert window.open_spec_file(_custom(tmp_path, fault, at=6))
    with qtbot.waitSignal(s.run_ended, timeout=120_000) as ended:
        s.start()
    reason = ended.args[0]
    assert "died" in reason and cause in reason
    # what the worker had sent before it died is kept (a segfault loses the steps it had not sent yet)
    assert f"last step received: {int(s.history.steps[-1])}" in reason
    assert 1 <= len(s.history) <= 5 and (fault != "exit" or len(s.history) == 5)
    assert s.state == "idle" and not s.running
    assert s.save_run(tmp_path / "kept.npz")                   # the history survives and can be saved
    old = s.worker_pid
    s.spec["model"]["kwargs"]["fault"] = "none"
    s.set_spec(s.spec)
    with qtbot.waitSignal(s.run_ended, timeout=120_000) as ended:
        s.start()                                              # a new process
    assert ended.args[0] == "finished" and s.worker_pid != old and len(s.history) == 50


def test_an_exception_in_a_users_model_reaches_the_window_with_its_traceback(qtbot, window, tmp_path):
    s = window.session
    assert window.open_spec_file(_custom(tmp_path, "raise", at=3))
    with qtbot.waitSignal(s.run_ended, timeout=120_000) as ended:
        s.start()
    assert ended.args[0] == "failed at step 2: RuntimeError: a bug in the user's forward"
    assert "net.py" in s.last_traceback and "RuntimeError" in s.last_traceback
    assert len(s.history) == 2 and s.worker_pid is not None     # the worker lives on
    window.actions.error_details.trigger()                      # shown on request
    assert "a bug in the user's forward" in window.error_box.detailedText()
    window.error_box.close()


def test_a_worker_killed_mid_run_is_reported_and_the_next_run_starts_a_new_one(qtbot, window):
    s = window.session
    window.open_spec_file(PRESETS / "deep_relu_he.json")
    s.spec["train"]["steps"] = 10**6
    s.start()
    qtbot.waitUntil(lambda: len(s.history) > 3, timeout=120_000)
    pid = s.worker_pid
    with qtbot.waitSignal(s.run_ended, timeout=30_000) as ended:
        os.kill(pid, signal.SIGKILL)
    assert "SIGKILL" in ended.args[0] and f"last step received: {int(s.history.steps[-1])}" in ended.args[0]
    kept = len(s.history)
    assert kept > 3 and s.state == "idle"
    s.spec["train"]["steps"] = 5
    with qtbot.waitSignal(s.run_ended, timeout=120_000):
        s.start()
    assert s.worker_pid != pid and len(s.history) == 5


def test_stop_terminates_a_step_that_never_returns_and_says_so(qtbot, window, tmp_path):
    s = window.session
    assert window.open_spec_file(_custom(tmp_path, "hang", at=3))
    s.start()
    qtbot.waitUntil(lambda: s.history is not None and len(s.history) == 2, timeout=120_000)
    pid = s.worker_pid
    with qtbot.waitSignal(s.run_ended, timeout=10_000) as ended:
        s.stop(grace=0.5)
    assert "did not end within 0.5 s" in ended.args[0] and "terminated" in ended.args[0]
    assert not s.running and s.state == "idle" and not _alive(pid) and len(s.history) == 2


@pytest.mark.parametrize("state", ["idle", "running", "paused", "compare", "saving"])
def test_quitting_in_any_state_exits_0_and_leaves_no_process(tmp_path, state):
    out, _ = _run_window_script(f"""
        s = w.session
        w.open_spec_file({str(PRESETS / 'deep_sigmoid_vanishing.json')!r})
        s.spec["train"]["steps"] = 10**6
        state = {state!r}
        pids = []
        if state != "idle":
            s.start()
            wait(lambda: len(s.history) > 2)
        else:
            s.warm_up()
            wait(lambda: s._client.ready)
        if state == "paused":
            s.pause()
        if state == "compare":
            w.apply_remedy_and_compare("relu_he")
            from backprop_lab.app.compare import CompareWindow
            cw = [x for x in app.topLevelWidgets() if isinstance(x, CompareWindow)][0]
            wait(lambda: all(x.history is not None and len(x.history) > 1 for x in cw.sessions))
            pids += [x.worker_pid for x in cw.sessions]
        if state == "saving":
            assert s.save_run({str(tmp_path / 'mid.npz')!r})
        pids.append(s.worker_pid)
        t0 = time.monotonic()
        w.close()
        app.processEvents()
        print(json.dumps({{"pids": pids, "seconds": time.monotonic() - t0}}))
        """, tmp_path)
    assert not any(_alive(pid) for pid in out["pids"])
    assert out["seconds"] < 5.0   # generous on a loaded machine; the benchmark measures it


def test_run_quit_when_done_prints_the_speed(tmp_path):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path))
    spec = json.loads((PRESETS / "deep_sigmoid_vanishing.json").read_text())
    spec["train"]["steps"] = 25
    (tmp_path / "s.json").write_text(json.dumps(spec))
    p = subprocess.run([sys.executable, "-c", "import sys; from backprop_lab.app.cli import main; sys.exit(main())",
                        str(tmp_path / "s.json"), "--run", "--quit-when-done"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-2000:]
    line = [l for l in p.stderr.splitlines() if l.startswith("finished:")]
    assert line and line[0].startswith("finished: 25 steps in ") and line[0].endswith(" steps/s")
    rate = float(line[0].split(", ")[1].split()[0])
    assert np.isfinite(rate) and rate > 0


def test_run_then_stop_before_the_worker_is_ready_then_run_again(qtbot, window):
    s = window.session
    window.open_spec_file(PRESETS / "deep_relu_he.json")
    s.spec["train"]["steps"] = 6
    s.start()                       # the worker is still importing torch: Run is queued
    assert s.running and s.state == "running"
    s.stop()
    assert not s.running and s.state == "idle" and len(s.history) == 0
    with qtbot.waitSignal(s.run_ended, timeout=120_000) as ended:
        s.start()
    assert ended.args[0] == "finished" and len(s.history) == 6
