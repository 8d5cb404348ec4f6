"""Cost of writing a step to a live run directory: flat from 100 to 1,000,000 steps.

The writer (engine/rundir.py) copies a step's row into a preallocated buffer and
appends the buffer at each flush, so a step costs the same at step 100 and at
step 1,000,000. For comparison, the previous Watch rewrote the whole compressed
record.npz at every flush (its cost grew with the run: 3 ms at 100 rows, 638 ms
at 50,000). Rows of a 20-layer net (20 layers, 19 activation layers, 64 units
each) as a Watch of a 20 x 64 MLP writes them; the 1,000,000-step run writes
~6 GB to a temporary directory (deleted at the end), so it is only run when asked:

Measured here (2 shared cores, load ~10): rows of 6.6 KB: 19, 18, 20, 22-29 and 46
us/step at 100, 1,000, 10,000, 100,000 and 1,000,000 steps (the last writes 6.6 GB:
the disk's write-back, not the writer, slows it); UNITS=4 (1.8 KB rows): 37, 26-86,
94, 36, 20 us/step (noise of the shared machine; no growth with the run's length).

Run: .venv/bin/python tests/bench/bench_rundir_write.py [max_steps (default 1000000)]
Prints microseconds per step for each run length, over the whole run and over
its last 10 % (where a cost that grows with the run would show most).
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from backprop_lab.engine.rundir import RunWriter
from backprop_lab.engine.snapshot import Snapshot

L, A, UNITS = 20, 19, int(os.environ.get("UNITS", 64))   # UNITS=4: rows of ~1 KB (less disk traffic)


def snap(k: int) -> Snapshot:
    r = np.random.default_rng(0)
    return Snapshot(k, 1.0, 0.5, np.nan, np.nan, 0.1, *(r.random(L) for _ in range(4)),
                    *(r.random(A) for _ in range(5)), r.random(L * UNITS).astype(np.float32))


def run(n: int, where: Path) -> tuple:
    w = RunWriter(where / f"run{n}", {"name": "bench"}, [f"l{i}" for i in range(L)],
                  [f"a{i}" for i in range(A)], [UNITS] * L, flush_seconds=1.0)
    s = [snap(k) for k in range(16)]   # rows differ a little; made before timing
    tail = max(1, n // 10)
    t0 = time.perf_counter()
    for k in range(n - tail):
        w.add(s[k & 15])
    t1 = time.perf_counter()
    for k in range(n - tail, n):
        w.add(s[k & 15])
    t2 = time.perf_counter()
    w.close()
    size = (where / f"run{n}" / "main.rows").stat().st_size
    shutil.rmtree(where / f"run{n}")
    return (t2 - t0) / n * 1e6, (t2 - t1) / tail * 1e6, size


def main() -> None:
    top = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    sizes = [n for n in (100, 1_000, 10_000, 100_000, 1_000_000) if n <= top]
    with tempfile.TemporaryDirectory() as d:
        for n in sizes:
            whole, last, size = run(n, Path(d))
            print(f"{n:>9} steps: {whole:6.2f} us/step over the run, {last:6.2f} us/step over its last 10 %, "
                  f"{size / n:.0f} bytes/step")


if __name__ == "__main__":
    main()
