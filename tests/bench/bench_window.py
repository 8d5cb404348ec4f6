"""The window's costs with training in its own process (issue 9). Prints one table.

Each figure is a ratio or a distribution measured in this one run, the two sides alternated:
- window speed / headless speed: `backprop-lab SPEC --run --quit-when-done` (offscreen, the
  window drawing at its pace) against `backprop-lab run SPEC` on the deep sigmoid preset and
  a 20 x 256 sigmoid net (goal >= 0.9);
- each compare-window run / headless, two runs of the deep sigmoid preset side by side (goal >= 0.45);
- GUI-thread lateness of a 10 ms timer while the window trains flat out (goal p99 <= 30 ms);
- redraw of every live panel with 100 layers x 10,000 steps of history (goal median <= 16 ms): the refresh
  and the window's repaint; with the plots' items painted too; and a frame as the event loop paints it
  (the refresh, then the posted events: only the regions marked dirty are painted);
- first window (the app's, painted) against a bare PySide6 + pyqtgraph window (goal <= 1.5x).

Run: make bench  (or .venv/bin/python tests/bench/bench_window.py [rounds])
"""
from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRESET = ROOT / "resources" / "presets" / "deep_sigmoid_vanishing.json"
WIDE = {"format": "backprop-lab/spec", "version": 1, "name": "20 x 256 sigmoid",
        "data": {"kind": "gaussian", "n": 256, "classes": 3, "dim": 256, "test_fraction": 0},
        "model": {"layers": [{"type": "linear", "units": 256}, {"type": "sigmoid"}] * 20},
        "train": {"batch_size": None, "steps": 10_000, "eval_every": 10_000}}
ENV = dict(os.environ, QT_QPA_PLATFORM="offscreen")
RATE = re.compile(r"(\d+) steps in ([\d.]+) s, ([\d.]+) steps/s")
CLI = [sys.executable, "-c", "import sys; from backprop_lab.app.cli import main; sys.exit(main())"]


def _spec_file(tmp: Path, spec: dict, steps: int, name: str) -> Path:
    spec = json.loads(json.dumps(spec))
    spec["train"]["steps"] = steps
    if spec["data"].get("kind") == "npz":
        spec["data"]["path"] = str(PRESET.parent / spec["data"]["path"])
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(spec))
    return path


def _rate(args, tmp: Path) -> float:
    p = subprocess.run(CLI + args, env=dict(ENV, XDG_CONFIG_HOME=str(tmp)), capture_output=True, text=True,
                       timeout=900, cwd=tmp)
    found = RATE.findall(p.stdout + p.stderr)
    if p.returncode != 0 or not found:
        raise RuntimeError(f"{args}: {p.returncode}\n{p.stderr[-1500:]}")
    return float(found[-1][2])


def window_vs_headless(tmp: Path, spec_path: Path, rounds: int) -> tuple[float, float, float]:
    window, headless = [], []
    for _ in range(rounds):
        headless.append(_rate(["run", str(spec_path), "--out", str(tmp / "h.npz")], tmp))
        window.append(_rate([str(spec_path), "--run", "--quit-when-done"], tmp))
    w, h = statistics.median(window), statistics.median(headless)
    return w, h, w / h


# ----------------------------------------------------------------------------- in a window process
CHILD_SETUP = """
import json, sys, time
from PySide6.QtCore import QSettings, QTimer, Qt
from PySide6.QtWidgets import QApplication
app = QApplication([])
from backprop_lab.app.main_window import MainWindow
w = MainWindow(settings=QSettings(sys.argv[1], QSettings.IniFormat))
w.resize(1500, 920)
w.show()
def wait(cond, timeout=900):
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end
        app.processEvents()
        time.sleep(0.001)
"""

COMPARE = CHILD_SETUP + """
from backprop_lab.app.compare import CompareWindow
spec = json.loads(open(sys.argv[2]).read())
cw = CompareWindow(spec, spec, None, ("A", "B"))
cw.show()
wait(lambda: all(s._client.ready for s in cw.sessions))
cw.start()
wait(lambda: all(s.state == "finished" for s in cw.sessions))
print(json.dumps([s.last_run[0] / s.last_run[1] for s in cw.sessions]))
cw.close(); w.close()
"""

LATENESS = CHILD_SETUP + """
s = w.session
w.open_spec_file(sys.argv[2])
s.spec["train"]["steps"] = 10**6
s.start()
wait(lambda: s.history is not None and len(s.history) > 0)
ticks = []
timer = QTimer()
timer.setTimerType(Qt.PreciseTimer)
timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
timer.start(10)
end = time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    app.processEvents()   # the event loop, as app.exec runs it
    time.sleep(0.0005)
late = [max(0.0, (b - a) - 0.010) * 1000 for a, b in zip(ticks, ticks[1:])]
print(json.dumps(late))
w.close()
"""

FIRST_APP = """
import sys, time
from PySide6.QtWidgets import QApplication
app = QApplication(sys.argv[:1])
from backprop_lab.app.main_window import MainWindow
from PySide6.QtCore import QSettings, QTimer
w = MainWindow(settings=QSettings(sys.argv[1], QSettings.IniFormat))
w.show()
w.when_painted(w.session.warm_up)   # as app.main does: the worker starts behind the painted window
w.when_painted(w.build_deferred)
while not w.isVisible() or not w.windowHandle().isExposed():
    app.processEvents()
app.processEvents()
print("shown", flush=True)
import os; w.session.shutdown(); os._exit(0)
"""

FIRST_BARE = """
import sys
from PySide6.QtWidgets import QApplication, QMainWindow
import pyqtgraph as pg
app = QApplication(sys.argv[:1])
w = QMainWindow()
view = pg.GraphicsLayoutWidget()
view.addPlot().plot([1, 2, 3])
w.setCentralWidget(view)
w.resize(1500, 920)
w.show()
while not w.isVisible() or not w.windowHandle().isExposed():
    app.processEvents()
app.processEvents()
print("shown", flush=True)
import os; os._exit(0)
"""


def _child(code: str, tmp: Path, *args, timeout=900) -> str:
    p = subprocess.run([sys.executable, "-c", code, str(tmp / "s.ini"), *map(str, args)], env=ENV,
                       capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(p.stderr[-2000:])
    return p.stdout.strip().splitlines()[-1]


def _first_window(code: str, tmp: Path) -> float:
    """Seconds from the start of a fresh interpreter to its window shown and painted (its
    "shown" line), not to its exit: ending the app's training process is not part of it."""
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp / "s.ini")], env=ENV, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    shown = time.perf_counter() - t0
    _, err = p.communicate(timeout=900)
    if p.returncode != 0 or line.strip() != "shown":
        raise RuntimeError(err[-2000:])
    return shown


# ----------------------------------------------------------------------------- redraw (this process)
def redraw_ms(layers=100, steps=10_000, frames=30, scene=False, loop=False) -> list[float]:
    """Per frame: one new step, every live panel on screen refreshed, the window repainted.
    ``scene``: the plots' own items are painted too (their scenes' updates are queued events,
    which ``repaint`` alone leaves for later: without it the figure is the refresh and the
    widgets around the plots).
    ``loop``: the frame as the event loop paints it: the panels refreshed, then the posted events
    delivered (the scenes' updates, then the window's update request, which paints the regions
    marked dirty and only those), no ``repaint`` of the whole window (its dock title bars, tab
    bars, tool bar and labels, unchanged, are not painted by a real frame)."""
    import numpy as np
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication
    from backprop_lab.app.main_window import MainWindow
    from backprop_lab.engine.history import History
    from backprop_lab.engine.snapshot import PER_ACT, PER_LAYER, SCALARS
    app = QApplication.instance() or QApplication([])
    units = 8
    h = History([f"{2 * i + 1} linear" for i in range(layers)], [f"{2 * i + 2} sigmoid" for i in range(layers - 1)],
                [units] * layers, budget_bytes=2**31)
    rng = np.random.default_rng(0)

    def rows(first, n):
        depth = np.arange(layers) - layers
        grads = 10.0 ** (depth[None, :] * 0.05 + 0.3 * rng.standard_normal((n, layers)))
        b = {"step": np.arange(first, first + n), "neuron_grad": rng.random((n, layers * units)).astype(np.float32)}
        for k in SCALARS:
            b[k] = rng.random(n)
        for k in ("test_loss", "test_accuracy"):  # evaluated every 10th step, as the presets do
            b[k][b["step"] % 10 != 0] = np.nan
        for k in PER_LAYER:
            b[k] = grads
        for k in PER_ACT:
            b[k] = rng.random((n, layers - 1))
        b["preact_hist"] = rng.integers(0, 50, (layers - 1, 80)).astype(float)
        return b

    h.extend_packed(rows(0, steps))
    with tempfile.TemporaryDirectory() as d:
        w = MainWindow(settings=QSettings(str(Path(d) / "s.ini"), QSettings.IniFormat))
        w.resize(1500, 920)
        w.show()
        w.session.show_history(h, {"name": "bench"}, state="viewing")
        for _ in range(5):
            app.processEvents()
        times = []
        for k in range(frames):
            h.extend_packed(rows(steps + k, 1))      # one new step, as while training
            t0 = time.perf_counter()
            for view in w._live_views():
                if view.isVisible():
                    view.refresh()
            if scene or loop:
                app.sendPostedEvents()                # the scenes' queued updates: the plots' items
            if loop:
                app.sendPostedEvents()                # what the first pass posted (none, as a rule)
            else:
                w.repaint()                           # paint every panel now
            times.append((time.perf_counter() - t0) * 1000)
        w.close()
        w.deleteLater()
        app.processEvents()
    return times


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        sig = _spec_file(tmp, json.loads(PRESET.read_text()), 600, "deep_sigmoid")
        wide = _spec_file(tmp, WIDE, 60, "wide")
        headless = {}
        for label, path in (("deep sigmoid preset", sig), ("20 x 256 sigmoid, batch 256", wide)):
            w, headless[path], r = window_vs_headless(tmp, path, rounds)
            rows.append((f"window / headless, {label}", f"{r:.2f}  ({w:.0f} vs {headless[path]:.0f} steps/s)",
                         ">= 0.9"))
        h_sig = headless[sig]
        both = json.loads(_child(COMPARE, tmp, sig))
        rows.append(("each compare run / headless, deep sigmoid",
                     " / ".join(f"{b / h_sig:.2f}" for b in both) + f"  ({both[0]:.0f}, {both[1]:.0f} vs {h_sig:.0f})",
                     ">= 0.45"))
        import numpy as np
        late = np.array(json.loads(_child(LATENESS, tmp, PRESET, 8)))
        rows.append(("GUI lateness of a 10 ms timer while training",
                     f"p50 {np.percentile(late, 50):.1f} ms, p99 {np.percentile(late, 99):.1f} ms, "
                     f"max {late.max():.0f} ms", "p99 <= 30 ms"))
        ts = redraw_ms()
        rows.append(("redraw of every live panel, 100 layers x 10,000 steps",
                     f"median {statistics.median(ts):.1f} ms, max {max(ts):.0f} ms", "median <= 16 ms"))
        ts = redraw_ms(scene=True)
        rows.append(("... and the plots' items painted too",
                     f"median {statistics.median(ts):.1f} ms, max {max(ts):.0f} ms", "median <= 16 ms"))
        ts = redraw_ms(loop=True)
        rows.append(("... as the event loop paints it (dirty regions only)",
                     f"median {statistics.median(ts):.1f} ms, max {max(ts):.0f} ms", "median <= 16 ms"))
        app_s, bare_s = [], []
        for _ in range(max(rounds, 3)):
            bare_s.append(_first_window(FIRST_BARE, tmp))
            app_s.append(_first_window(FIRST_APP, tmp))
        a, b = statistics.median(app_s), statistics.median(bare_s)
        rows.append(("first window / bare PySide6 + pyqtgraph window", f"{a / b:.2f}  ({a:.2f} vs {b:.2f} s)",
                     "<= 1.5x"))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    width = max(len(r[0]) for r in rows)
    print(f"{'measure'.ljust(width)} | {'result':48} | goal")
    print(f"{'-' * width}-|-{'-' * 48}-|-----")
    for name, value, goal in rows:
        print(f"{name.ljust(width)} | {value:48} | {goal}")


if __name__ == "__main__":
    main()
