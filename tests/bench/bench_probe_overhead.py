"""Cost of watching: a bare PyTorch loop vs the Trainer with every probe on.

Two nets:
- SCIENCE.md's setting: 20-layer sigmoid MLP, width 256, batch 256, SGD. Large
  tensors: the cost is passes over memory; the target is <= 1.10 (full statistics).
- the deep sigmoid preset (resources/presets/deep_sigmoid_vanishing.json: ten
  linear layers of 30 units with sigmoids, batch 64). Small tensors: the cost is
  the Python and dispatch cost of each torch call, so the ratio is far above the
  large net's; it is reported, not held to the 1.10 target.
Run: make bench  (or .venv/bin/python tests/bench/bench_probe_overhead.py [steps] [rounds])
Prints time per step and the ratio of each; OMP_NUM_THREADS sets the thread count.
"""
from __future__ import annotations

import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from backprop_lab.engine import experiment
from backprop_lab.engine.trainer import Trainer

SPEC = {"name": "bench", "data": {"kind": "gaussian", "n": 256, "classes": 3, "dim": 256, "test_fraction": 0},
        "model": {"layers": [{"type": "linear", "units": 256}, {"type": "sigmoid"}] * 20},
        "train": {"batch_size": None, "steps": 10_000, "eval_every": 10_000}}
PRESET = Path(__file__).resolve().parents[2] / "resources" / "presets" / "deep_sigmoid_vanishing.json"


def small_spec() -> dict:
    """The deep sigmoid preset, with no test evaluation inside the timed steps (the bare loop has none)."""
    spec = copy.deepcopy(json.loads(PRESET.read_text()))
    spec["train"]["eval_every"] = 10 ** 9
    return spec


def bare_step_time(exp, n):
    model = exp.model.module
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    bs = exp.spec["train"]["batch_size"] or len(exp.data.x_train)
    x, y = torch.as_tensor(exp.data.x_train[:bs]), torch.as_tensor(exp.data.y_train[:bs])
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


def ratio(spec, n, rounds, label):
    bare, probed = [], []
    for r in range(rounds):  # interleave so that machine load hits both alike
        bare.append(bare_step_time(experiment.build(spec), n))
        probed.append(probed_step_time(experiment.build(spec), n))
    b, p = statistics.median(bare), statistics.median(probed)
    print(f"{label}: bare loop {b * 1e3:.2f} ms/step ({1 / b:.0f} steps/s), with all probes "
          f"{p * 1e3:.2f} ms/step ({1 / p:.0f} steps/s), ratio {p / b:.3f} (torch threads {torch.get_num_threads()})")
    return p / b


def main(n=60, rounds=5):
    """The large net's ratio (n steps a round), then the small net's (10 n steps a round)."""
    big = ratio(SPEC, n, rounds, "20 x 256 sigmoid, batch 256")
    ratio(small_spec(), 10 * n, rounds, "deep sigmoid preset, 10 x 30, batch 64")
    return big


def test_probe_overhead():
    r = main(n=30, rounds=3)
    assert r < 1.5, "watching costs far more than the 10 % budget"


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
