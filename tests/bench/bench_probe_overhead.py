"""Cost of watching: a bare PyTorch loop vs the Trainer with every probe on.

SCIENCE.md's setting: 20-layer sigmoid MLP, width 256, batch 256, SGD.
Run: make bench  (or .venv/bin/python tests/bench/bench_probe_overhead.py)
Prints time per step and the ratio; the target is <= 1.10 (full statistics).
"""
from __future__ import annotations

import statistics
import sys
import time

import torch
import torch.nn.functional as F

from engine import experiment
from engine.trainer import Trainer

SPEC = {"name": "bench", "data": {"kind": "gaussian", "n": 256, "classes": 3, "dim": 256, "test_fraction": 0},
        "model": {"layers": [{"type": "linear", "units": 256}, {"type": "sigmoid"}] * 20},
        "train": {"batch_size": None, "steps": 10_000, "eval_every": 10_000}}


def bare_step_time(exp, n):
    model = exp.model.module
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.as_tensor(exp.data.x_train), torch.as_tensor(exp.data.y_train)
    for _ in range(5):
        opt.zero_grad(); F.cross_entropy(model(x), y).backward(); opt.step()
    t = time.perf_counter()
    for _ in range(n):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        float(loss.detach())  # the bare loop also reads its loss once a step
    return (time.perf_counter() - t) / n


def probed_step_time(exp, n):
    tr = Trainer(exp)
    tr.run(5)
    t = time.perf_counter()
    tr.run(n)
    return (time.perf_counter() - t) / n


def main(n=60, rounds=5):
    bare, probed = [], []
    for r in range(rounds):  # interleave so that machine load hits both alike
        bare.append(bare_step_time(experiment.build(SPEC), n))
        probed.append(probed_step_time(experiment.build(SPEC), n))
    b, p = statistics.median(bare), statistics.median(probed)
    print(f"bare loop {b * 1e3:.2f} ms/step, with all probes {p * 1e3:.2f} ms/step, ratio {p / b:.3f} "
          f"(torch threads {torch.get_num_threads()})")
    return p / b


def test_probe_overhead():
    ratio = main(n=30, rounds=3)
    assert ratio < 1.5, "watching costs far more than the 10 % budget"


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
