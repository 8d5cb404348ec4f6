"""The training loop: plain Python, any thread, steered by a thread-safe Control.

    exp = experiment.build(spec, base_dir)
    trainer = Trainer(exp)
    reason = trainer.run(steps=500, on_snapshot=history.append)

Step k computes the loss, the gradients and every probe statistic at the
weights before the k-th update, then makes the update. A loss that is NaN or
infinite ends the run (the step that showed it is recorded, no update is made).
"""
from __future__ import annotations

import math
import operator
import threading
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .experiment import Experiment
from .non_finite import locate
from .probes import Probe
from .snapshot import Snapshot

from .run_end import FINISHED, STOPPED, RunEnd  # noqa: F401  (FINISHED, STOPPED: the trainer's ends)


EPOCH_COPY_MAX = 64 << 20   # bytes: a training set up to this size is copied in each epoch's order


class Control:
    """Thread-safe commands for a running Trainer: pause, resume, step, stop, set_lr."""

    def __init__(self):
        self._cond = threading.Condition()
        self._paused = False
        self._stop = False
        self._budget = 0   # single steps allowed while paused
        self._lr = None

    def pause(self):
        """Pause now: single steps still owed by ``step`` are cancelled."""
        with self._cond:
            self._paused = True
            self._budget = 0
            self._cond.notify_all()

    def resume(self):
        """Run freely; a later pause does not run what an earlier ``step(n)`` had left."""
        with self._cond:
            self._paused = False
            self._budget = 0
            self._cond.notify_all()

    def step(self, n: int = 1):
        """Pause (if running) and let exactly n more steps happen."""
        with self._cond:
            self._paused = True
            self._budget += n
            self._cond.notify_all()

    def stop(self):
        with self._cond:
            self._stop = True
            self._cond.notify_all()

    def set_lr(self, lr: float):
        with self._cond:
            self._lr = float(lr)

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def stopped(self) -> bool:
        return self._stop

    def take_lr(self):
        with self._cond:
            lr, self._lr = self._lr, None
            return lr

    def wait_turn(self) -> bool:
        """Block while paused; False once stop was asked."""
        with self._cond:
            while not self._stop and self._paused and self._budget == 0:
                self._cond.wait(0.1)
            if self._stop:
                return False
            if self._paused:
                self._budget -= 1
            return True


_TRAINING = operator.attrgetter("training")   # (in map: no Python frame a module, as a generator has)


def _optimizer(params, t: dict):
    name, lr, wd = t["optimizer"], t["lr"], t["weight_decay"]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd)
    if name in ("momentum", "nesterov"):
        return torch.optim.SGD(params, lr=lr, momentum=t["momentum"], nesterov=name == "nesterov",
                               weight_decay=wd)
    return {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "rmsprop": torch.optim.RMSprop,
            "adagrad": torch.optim.Adagrad}[name](params, lr=lr, weight_decay=wd)


def plain_sgd(optimizer) -> tuple | None:
    """(lr, weight_decay) where ``optimizer`` is a torch.optim.SGD whose step is p -= lr (g +
    weight_decay p) and nothing else: one group, no momentum, not maximising, not the fused or
    differentiable kernels, no step hooks and its step not wrapped (an LR scheduler's counter);
    else None. Such a step is made by the probe, fused with its statistics (Probe.sgd_step)."""
    if type(optimizer) is not torch.optim.SGD or len(optimizer.param_groups) != 1 or "step" in vars(optimizer):
        return None
    from torch.optim import optimizer as base
    if optimizer._optimizer_step_pre_hooks or optimizer._optimizer_step_post_hooks or \
            base._global_optimizer_pre_hooks or base._global_optimizer_post_hooks:
        return None
    g = optimizer.param_groups[0]
    if g["momentum"] != 0 or g.get("maximize") or g.get("differentiable") or g.get("fused") or \
            isinstance(g["lr"], torch.Tensor) or isinstance(g["weight_decay"], torch.Tensor):
        return None
    return float(g["lr"]), float(g["weight_decay"])


class Trainer:
    def __init__(self, exp: Experiment, hist_every: int = 0):
        self.exp, self.t = exp, exp.spec["train"]
        self.hist_every = hist_every
        self.device = exp.device
        self.module = exp.model.module.to(self.device)
        self._modules = list(self.module.modules())   # train mode is set only where it is not on
        self.probe = Probe(exp.model)
        self.optimizer = _optimizer(self.module.parameters(), self.t)
        d = exp.data
        self.x = torch.as_tensor(d.x_train, device=self.device)
        self.y = torch.as_tensor(d.y_train, device=self.device)
        self.x_test = torch.as_tensor(d.x_test, device=self.device)
        self.y_test = torch.as_tensor(d.y_test, device=self.device)
        self.classify = d.task == "classification"
        self.time_major = d.time_major   # the model takes [time, batch, ...]: batches are transposed
        self.loss_name = self.t["loss"] or ("cross_entropy" if self.classify else "mse")
        n = len(d.x_train)
        bs = self.t["batch_size"]
        self.batch = n if bs is None or bs >= n else bs
        self._rng = np.random.default_rng(self.t["seed"])
        self._order, self._pos = np.arange(n), n  # reshuffled at the first batch
        self._epoch = None   # (x, y) of the epoch in its order (a small training set)
        self.step_index = 0
        self.stop_reason = None
        torch.manual_seed(self.t["seed"])  # dropout draws

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def set_lr(self, lr: float) -> None:
        for g in self.optimizer.param_groups:
            g["lr"] = lr

    # ------------------------------------------------------------------ pieces
    def _next_batch(self):
        n = len(self.x)
        if self.batch == n:
            return self.x, self.y
        if self._pos + self.batch > n:  # a new epoch; the short tail is dropped
            self._order, self._pos = self._rng.permutation(n), 0
            if self.x.numel() * self.x.element_size() <= EPOCH_COPY_MAX:
                # the epoch's samples in its order, once: each batch is then a slice (no index call)
                idx = torch.as_tensor(self._order, device=self.device)
                self._epoch = (self.x[idx], self.y[idx])
            else:
                self._epoch = None
        a, b = self._pos, self._pos + self.batch
        self._pos = b
        if self._epoch is not None:
            return self._epoch[0][a:b], self._epoch[1][a:b]
        idx = torch.as_tensor(self._order[a:b], device=self.device)
        return self.x[idx], self.y[idx]

    def _layout(self, x, y):
        """A batch as the model takes it: [time, batch, ...] for a time-major model (y too, per step)."""
        if not self.time_major:
            return x, y
        return x.transpose(0, 1), (y.transpose(0, 1) if y.dim() > 1 else y)

    def loss_fn(self, out, y):
        if self.loss_name in ("cross_entropy", "nll"):
            if not self.classify:
                raise ValueError(f"{self.loss_name} needs class labels; use mse for regression data")
            if out.dim() > 2 or y.dim() > 1:   # a class per sample and time step: every one counts
                out, y = out.reshape(-1, out.shape[-1]), y.reshape(-1)
            return (F.cross_entropy if self.loss_name == "cross_entropy" else F.nll_loss)(out, y)
        target = F.one_hot(y, out.shape[-1]).to(out.dtype) if self.classify else y
        return F.mse_loss(out, target)  # the mean over every (sample, output) entry

    def _accuracy(self, out, y):
        if not self.classify:
            return torch.tensor(math.nan, device=out.device)
        pred = out.argmax(-1)
        if pred.shape != y.shape and pred.numel() == y.numel():  # a (time x batch, classes) output
            y = y.reshape(pred.shape)
        return (pred == y).float().mean()

    @torch.no_grad()
    def evaluate(self):
        """(loss, accuracy) on the test split in eval mode, or NaN with no test split."""
        if len(self.x_test) == 0:
            return math.nan, math.nan
        was = self.module.training
        self.module.eval()
        x, y = self._layout(self.x_test, self.y_test)
        out = self.exp.model(x)
        loss, acc = self.loss_fn(out, y), self._accuracy(out, y)
        self.module.train(was)
        return float(loss), float(acc)

    # ------------------------------------------------------------------ one step
    def _fused_step(self) -> bool:
        """Plain SGD: the step and the norms around it in one pass of each weight (Probe.sgd_step)."""
        if self.t["clip_norm"] is not None or self.t["clip_value"] is not None:
            return False   # (the gradient norms are those before clipping)
        sgd = plain_sgd(self.optimizer)
        return sgd is not None and self.probe.sgd_step(self.optimizer, *sgd)

    def train_step(self) -> Snapshot:
        k = self.step_index
        if not all(map(_TRAINING, self._modules)):   # module.train() visits every module: 8 % of a small step
            self.module.train()
        x, y = self._layout(*self._next_batch())
        want_hist = self.hist_every > 0 and k % self.hist_every == 0
        self.probe.begin(want_hist, step_follows=True)   # the weights change only by the step below
        self.probe.zero_grad(self.optimizer)   # (a small plain stack: its gradients are one flat buffer)
        out = self.exp.model(x)
        loss = self.loss_fn(out, y)
        total = loss   # the recorded loss is the output's; auxiliary heads add theirs to what is minimised
        for aux, weight in self.exp.model.auxiliary:
            logits = aux.take()
            if logits is not None and weight:
                total = total + weight * self.loss_fn(logits, y)
        # the forward pass is over: the tracer of a user's module stops before backward (its
        # TorchFunctionMode would see every torch call of the hooks in the backward pass)
        self.probe.active = False
        total.backward()
        finite = math.isfinite(total.item())
        if not finite:
            self.probe.take_grad_norms()   # (no update on a non-finite loss: its ratio NaN)
        elif not self._fused_step():
            self.probe.take_grad_norms()   # (placed per layer by collect, in numpy)
            before = self.probe.weights_before()
            if self.t["clip_norm"] is not None or self.t["clip_value"] is not None:
                params = [p for p in self.module.parameters() if p.grad is not None]
                if self.t["clip_norm"] is not None:
                    nn.utils.clip_grad_norm_(params, self.t["clip_norm"])
                if self.t["clip_value"] is not None:
                    nn.utils.clip_grad_value_(params, self.t["clip_value"])
            self.optimizer.step()
            self.probe.take_update_ratio(before)
        labels = self.classify and out.dim() == 2 and y.dim() == 1 and y.device.type == "cpu"
        if labels:   # the predicted classes go with the step's one host copy; the accuracy is counted there
            head = torch.cat([loss.detach().reshape(1).float(), out.detach().argmax(-1)])
        else:
            head = torch.stack([loss.detach().float(), self._accuracy(out.detach(), y).float()])
        s = self.probe.collect(head)
        if labels:   # as (pred == y).float().mean() in float32
            s["head"] = [s["head"][0], np.float32(np.count_nonzero(s["head"][1:] == y.numpy())) / np.float32(len(y))]
        test_loss = test_acc = math.nan
        if finite and (k % self.t["eval_every"] == 0):
            test_loss, test_acc = self.evaluate()
        self.step_index += 1
        if not finite:
            end = RunEnd.non_finite(float(s["head"][0]), k)
            where = locate(self.exp.model, lambda: self.exp.model(x), lambda out: self.loss_fn(out, y))
            self.stop_reason = RunEnd(f"{end}; first non-finite: {where}", end.kind, k) if where else end
        return Snapshot(k, float(s["head"][0]), float(s["head"][1]), test_loss, test_acc, self.lr,
                        s["weight_grad_norm"], s["bias_grad_norm"], s["delta_norm"], s["update_ratio"],
                        s["preact_mean"], s["preact_std"], s["mean_derivative"], s["saturated_frac"],
                        s["dead_frac"], s["neuron_grad"], s["time_grad_norm"], s["preact_hist"],
                        self.probe.weight_rms())

    # ------------------------------------------------------------------ the loop
    def run(self, steps: int | None = None, control: Control | None = None, on_snapshot=None,
            on_progress=None) -> RunEnd:
        """Train until ``steps`` more updates are done, the loss stops being finite, or stop.

        Returns the reason the run ended. Safe to call from any thread.
        """
        control = control or Control()
        end = self.step_index + (self.t["steps"] if steps is None else steps)
        self.stop_reason = None
        while self.step_index < end:
            if not control.wait_turn():
                self.stop_reason = STOPPED
                break
            lr = control.take_lr()
            if lr is not None:
                self.set_lr(lr)
            snap = self.train_step()
            if on_snapshot is not None:
                on_snapshot(snap)
            if on_progress is not None:
                on_progress(self.step_index, end)
            if self.stop_reason:
                break
        return self.stop_reason or FINISHED


def time_steps(trainer: Trainer, n: int) -> float:
    """Steps per second over n steps (for the CLI's report and benchmarks)."""
    t0 = time.perf_counter()
    trainer.run(n)
    return n / max(time.perf_counter() - t0, 1e-9)
