"""How often the window redraws while a run goes on.

Drawing (pyqtgraph items are painted in Python) holds the GIL that the training
thread needs for its own Python between torch calls. On a fast machine a redraw
of every panel costs ~20 ms and the views can update 10 times a second; on a
slow one it costs 100 ms, and at 10 Hz the GUI thread would hold the GIL most
of the time while training crawled. The pacer watches the GUI thread's own CPU
time per redraw cycle and stretches the interval so that drawing takes at most
``duty`` of a core; the trainer keeps the rest.
"""
from __future__ import annotations

import os


class RedrawPacer:
    """Next redraw interval (ms) from the GUI thread's CPU seconds over the last cycle."""

    def __init__(self, min_ms: int = 100, max_ms: int = 500, duty: float = 0.3):
        self.min_ms, self.max_ms, self.duty = min_ms, max_ms, duty
        self.interval_ms = min_ms

    def next_interval(self, busy_s: float) -> int:
        want = 1000.0 * max(busy_s, 0.0) / self.duty
        # halfway to the new value: one slow frame (a resize, a dock moved) does not stall the views
        ms = 0.5 * self.interval_ms + 0.5 * want
        self.interval_ms = int(min(self.max_ms, max(self.min_ms, ms)))
        return self.interval_ms


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):   # pragma: no cover  (not Linux)
        return os.cpu_count() or 1


GUI_CORES = 1   # cores kept from the workers' threads for the GUI thread (BACKPROP_LAB_GUI_CORES overrides)


def worker_threads(workers: int, n_cores: int | None = None) -> int | None:
    """torch threads for each of ``workers`` training processes running at once beside the window.

    One core is left to the window's GUI thread and the rest shared evenly: on 2 cores each
    worker gets 1 thread. Two workers with torch's default of one thread per core were two
    OpenMP teams fighting for the same two cores (each compare run got 0.11x its headless
    speed), and a team of two beside the GUI thread loses a thread whenever the GUI draws:
    measured at load ~1, window / headless was 0.93 (20 x 256 net) and 1.19 (deep sigmoid
    preset) with 1 thread against 0.78 and 0.89 with 2 (docs/performance.md). None when the
    user chose a thread count (OMP_NUM_THREADS): theirs is kept.
    """
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    n_cores = n_cores or cores()
    spare = int(os.environ.get("BACKPROP_LAB_GUI_CORES", GUI_CORES))
    return max(1, (n_cores - spare) // max(1, workers))
