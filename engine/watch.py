"""Watch a training loop of your own: the probes, outside the app.

    from backprop_lab import Watch
    watch = Watch(model, "runs/my-net")       # hooks every layer with a weight
    for x, y in batches:
        watch.begin()                         # before the forward pass
        out = model(x)
        loss = F.cross_entropy(out, y)
        optimizer.zero_grad()
        loss.backward()
        watch.step(optimizer, loss, out, y)   # calls optimizer.step() and records the step
    watch.close()

The run directory holds ``record.npz`` (Contract 2), rewritten atomically at
most once a second, so `backprop-lab watch runs/my-net` can follow it live and
`backprop-lab diagnose runs/my-net` can read it at any time.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from . import record
from .custom import instrument
from .history import History
from .probes import Probe
from .run_end import FINISHED, RunEnd
from .snapshot import Snapshot
from .spec import FORMAT, VERSION

RECORD_NAME = "record.npz"


class Watch:
    def __init__(self, model: torch.nn.Module, run_dir, name: str | None = None,
                 flush_seconds: float = 1.0):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.model = instrument(model)
        self.probe = Probe(self.model)
        # made at the first step: a user's module shows its activation call sites and its
        # sequence length (time_grad_norm) on its first watched forward pass
        self.history: History | None = None
        self.flush_seconds = flush_seconds
        self._last_flush = 0.0
        self.step_index = 0
        self.spec = {"format": FORMAT, "version": VERSION,
                     "name": name or f"watched {type(model).__name__}",
                     "description": "a run recorded by backprop_lab.Watch in the user's own training script",
                     "watched": {"module": type(model).__name__}}

    @property
    def path(self) -> Path:
        return self.run_dir / RECORD_NAME

    def begin(self) -> None:
        self.probe.begin(want_hist=self.step_index % 4 == 0)

    def step(self, optimizer, loss: torch.Tensor, output: torch.Tensor | None = None,
             target: torch.Tensor | None = None) -> Snapshot:
        """Record this step's statistics and make the optimiser's update."""
        self.probe.active = False
        wg, bg = self.probe.grad_norms()
        before = self.probe.weights_before()
        finite = bool(torch.isfinite(loss))
        if finite:
            optimizer.step()
            ur = self.probe.update_ratio(before)
        else:
            ur = torch.full_like(wg, math.nan)
        acc = torch.tensor(math.nan)
        if output is not None and target is not None and target.dtype == torch.long and output.dim() == 2:
            acc = (output.detach().argmax(-1) == target).float().mean()
        head = torch.stack([loss.detach().float().cpu(), acc.float().cpu()])
        s = self.probe.collect(head, wg.cpu(), bg.cpu(), ur.cpu())
        lr = optimizer.param_groups[0].get("lr", math.nan)
        snap = Snapshot(self.step_index, float(s["head"][0]), float(s["head"][1]), math.nan, math.nan, lr,
                        s["weight_grad_norm"], s["bias_grad_norm"], s["delta_norm"], s["update_ratio"],
                        s["preact_mean"], s["preact_std"], s["mean_derivative"], s["saturated_frac"],
                        s["dead_frac"], s["neuron_grad"], s["time_grad_norm"], s["preact_hist"])
        if self.history is None:
            tg = s["time_grad_norm"]
            self.history = History.for_probe(self.probe, time_steps=0 if tg is None else len(tg))
        self.history.append(snap)
        self.step_index += 1
        if not finite:
            self.history.stop_reason = RunEnd.non_finite(float(loss), snap.step)
        now = time.monotonic()
        if now - self._last_flush >= self.flush_seconds or not finite:
            self.flush()
        return snap

    def flush(self) -> None:
        if self.history is None:
            self.history = History.for_probe(self.probe)
        record.save(self.path, self.history, self.spec)
        self._last_flush = time.monotonic()

    def close(self) -> None:
        if self.history.stop_reason is None:
            self.history.stop_reason = FINISHED
        self.flush()
        self.probe.remove()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
