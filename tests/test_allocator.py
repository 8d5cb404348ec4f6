"""The training process keeps what a step frees for the next step (engine/allocator.py)."""
import json
import os
import subprocess
import sys

import pytest

from backprop_lab.engine import allocator

# a real second process: the Trainer on a 12 x 256 sigmoid net (batch 256), its minor page faults
# counted a step over 30 steps after 8 to settle (the probe settles its paths in the first steps)
CHILD = """
import json, resource, sys
from backprop_lab.engine import allocator, experiment
from backprop_lab.engine.trainer import Trainer
kept = allocator.keep_freed_memory() if sys.argv[1] == "keep" else None
spec = {"data": {"kind": "gaussian", "n": 256, "classes": 3, "dim": 256, "test_fraction": 0},
        "model": {"layers": [{"type": "linear", "units": 256}, {"type": "sigmoid"}] * 12},
        "train": {"batch_size": None, "steps": 100, "eval_every": 1000}}
tr = Trainer(experiment.build(spec))
tr.run(8)
steps = []
for _ in range(30):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    tr.run(1)
    steps.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
# the 3 largest steps are dropped: a few steps still grow the heap once (64-512 faults, more
# often on a busy machine); glibc's own settings make it a step in three or more, 700 or so each
print(json.dumps({"kept": kept, "faults": sum(sorted(steps)[:-3]) / 27, "steps": steps}))
"""


def _child(mode: str, **env) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in allocator.USER_SETTINGS} | env
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, timeout=300,
                         env=env | {"OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(allocator._glibc() is None, reason="glibc's malloc only")
def test_a_training_process_that_keeps_freed_memory_touches_no_fresh_pages_a_step():
    got = _child("keep")
    assert got["kept"] is True
    # (with glibc's own thresholds: 17-326 a step here, 170-1,330 on the 20 x 256 net, changing from
    # run to run: docs/performance.md; each new 4 KiB page of the step's ~13 MB is one)
    assert got["faults"] < 10, got


def test_the_users_malloc_settings_and_other_platforms_are_left_alone(monkeypatch):
    # (each case returns before mallopt: this test process's malloc is not changed)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000000")
    assert allocator.keep_freed_memory() is False
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    monkeypatch.setenv("BACKPROP_LAB_KEEP_FREED", "0")
    assert allocator.keep_freed_memory() is False
    monkeypatch.delenv("BACKPROP_LAB_KEEP_FREED")
    monkeypatch.setattr(sys, "platform", "darwin")
    assert allocator._glibc() is None and allocator.keep_freed_memory() is False
    allocator.give_back_memory()   # (nothing to give back there: no error)

