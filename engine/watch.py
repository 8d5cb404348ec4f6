"""Watch a training loop of your own: the probes, outside the app.

    from backprop_lab import Watch
    watch = Watch(model, "runs/my-net")         # hooks every layer with a weight
    for x, y in batches:
        watch.begin()                           # before the forward pass
        out = model(x)
        loss = F.cross_entropy(out, y)
        optimizer.zero_grad()
        loss.backward()
        clip_grad_norm_(model.parameters(), 1)  # yours: Watch has the norms from before it
        optimizer.step()
        watch.step(loss, out, y)                # records the step
    watch.close()

``watch.step(optimizer, loss, out, y)`` (the optimizer first) also works: Watch
then makes the optimizer's step itself (and skips it on a NaN loss).

What is measured, whatever the loop does:
- gradient norms are those of the gradient the optimizer gets, read at the end of
  each backward pass (a callback that autograd runs after every gradient is
  accumulated, and after DDP's all-reduce), so a later clip or unscale does not
  change them; with several backward passes per step (gradient accumulation)
  they are of the accumulated gradient;
- deltas (dL/dz), activations and recurrent time gradients describe the first
  forward pass after ``begin()`` (its micro-batch); evaluation under
  ``torch.no_grad`` after the backward pass is not measured;
- update ratios compare the weights at ``begin()`` with those at ``step()``;
- with AMP, pass the GradScaler (``Watch(..., scaler=scaler)``): gradients and
  deltas are divided by the scale their backward pass used.
``every=N`` records every N-th step (the others cost a few Python calls);
``hist_every=M`` (10) adds the histogram of each activation's z (``preact_hist``)
to every M-th recorded step (0: none). ``time_every=K`` (1) measures the gradient
through time of a fused nn.LSTM / nn.RNN / nn.GRU on every K-th recorded step only
(NaN on the others; the record's ``watched.time_grad`` says so): its exact taps
widen the first layer's input product (engine/tracer.py), the one cost of Watch
that grows with the recurrent layer.

The run directory (engine/rundir.py) is append-only: ``backprop-lab watch
RUN_DIR`` follows it live and ``backprop-lab diagnose RUN_DIR`` reads it at any
time, also after the script was killed.

Distributed (torchrun, DDP): by default only rank 0 records, the all-reduced
gradients and its own batch's deltas and activations (stream ``main``);
``ranks="all"`` makes every rank record its own statistics to stream ``rank<r>``
of the same directory: its loss, deltas and activations, and the norms of its
own gradient (of its batch), read as autograd accumulates each parameter's
gradient, before DDP's hook on that parameter all-reduces it. Gradient
accumulation over several backward passes keeps them local when the passes but
the last run under ``ddp.no_sync()`` (Lightning and accelerate do so); a step
whose earlier pass was all-reduced holds no rank's own sum, and its gradient
norms are NaN.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from .custom import instrument
from .probes import Probe, safe_foreach_norms
from .run_end import RunEnd
from .rundir import MAIN, RunWriter, stream_name
from .snapshot import Snapshot
from .spec import FORMAT, VERSION

HIST_EVERY = 10   # a histogram of z every 10th recorded step (its histc passes cost more than the moments)
NO_BEGIN = ("Watch.step() was called without Watch.begin(): call watch.begin() right before the "
            "forward pass of every step (it arms the hooks that measure that step)")


def _dist() -> tuple:
    """(rank, world size) of a torch.distributed job, (None, 1) outside one."""
    d = torch.distributed
    if d.is_available() and d.is_initialized():
        return d.get_rank(), d.get_world_size()
    return None, 1


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The user's module inside DistributedDataParallel (or DataParallel)."""
    while isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
        model = model.module
    return model


def main_output(out):
    """The tensor of a model's output: the first of a tuple, ``logits`` of a dict or ModelOutput."""
    if isinstance(out, torch.Tensor) or out is None:
        return out
    if isinstance(out, dict) or hasattr(out, "keys"):
        for key in ("logits", "prediction", "output"):
            if key in out and isinstance(out[key], torch.Tensor):
                return out[key]
        return None
    if isinstance(out, (tuple, list)) and out:
        return main_output(out[0])
    return None


def accuracy(out, target) -> torch.Tensor:
    """Share of correct argmax predictions, on the device (no host copy); NaN where it does not apply.

    Class scores on the last axis ([..., C] against targets [...]) or on axis 1
    ([N, C, ...] against [N, ...]); targets equal to -100 (ignore_index) do not count."""
    out = main_output(out)
    nan = torch.tensor(math.nan)
    if not isinstance(out, torch.Tensor) or not isinstance(target, torch.Tensor):
        return nan
    if not out.is_floating_point() or target.is_floating_point() or target.dtype == torch.bool:
        return nan
    out = out.detach()
    if out.dim() != target.dim() + 1:
        return nan
    if out.shape[:-1] == target.shape:
        axis = -1
    elif out.dim() >= 2 and out.shape[0] == target.shape[0] and out.shape[2:] == target.shape[1:]:
        axis = 1
    else:
        return nan
    keep = target != -100
    right = _hits(out, target, axis) if not out.is_cuda else out.argmax(axis) == target
    return (right & keep).sum().float() / keep.sum().float()  # 0/0 = NaN: nothing to score


def _hits(scores: torch.Tensor, target: torch.Tensor, axis: int) -> torch.Tensor:
    """``scores.argmax(axis) == target``, cheaper on the CPU (argmax over a language model's
    vocabulary costs several times the maximum): a row whose target score is below the row's
    maximum is a miss; only the rows where it equals the maximum (where a tie or a NaN, which
    argmax takes first, could decide) go to argmax, unless they are most rows."""
    if axis not in (-1, scores.dim() - 1):
        return scores.argmax(axis) == target
    classes = scores.shape[-1]
    flat, t = scores.reshape(-1, classes), target.reshape(-1).clamp(0, classes - 1)   # -100: ignored later
    best = flat.amax(1)
    hit = flat.gather(1, t[:, None]).squeeze(1) == best   # NaN in a row: never equal
    rows = (hit | best.isnan()).nonzero().squeeze(1)
    if 2 * len(rows) > len(t):
        return scores.argmax(axis) == target
    if len(rows):
        hit[rows] = flat.index_select(0, rows).argmax(1) == t[rows]
    return hit.reshape(target.shape)


def _float(x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().reshape(-1)[0].float().cpu() if x.numel() else torch.tensor(math.nan)
    return torch.tensor(math.nan if x is None else float(x))


def _is_optimizer(x) -> bool:
    return hasattr(x, "param_groups") and hasattr(x, "step") and not isinstance(x, torch.Tensor)


class Watch:
    def __init__(self, model: torch.nn.Module, run_dir, name: str | None = None, flush_seconds: float = 1.0,
                 every: int = 1, ranks=0, scaler=None, optimizer=None, hist_every: int = HIST_EVERY,
                 time_every: int = 1):
        if int(every) < 1:
            raise ValueError(f"every must be a positive integer, got {every!r}")
        if int(hist_every) < 0:
            raise ValueError(f"hist_every must be 0 (no histograms) or a positive integer, got {hist_every!r}")
        if int(time_every) < 1:
            raise ValueError(f"time_every must be a positive integer, got {time_every!r}")
        self.hist_every, self.time_every = int(hist_every), int(time_every)
        if ranks != "all" and not isinstance(ranks, int):
            raise ValueError(f"ranks must be a rank number or 'all', got {ranks!r}")
        self.run_dir = Path(run_dir)
        self.every, self.scaler, self.optimizer = int(every), scaler, optimizer
        self.rank, self.world_size = _dist()
        self.enabled = self.rank is None or ranks == "all" or self.rank == ranks
        self.step_index = 0
        self.last: Snapshot | None = None
        self._begun = self._armed = self._queued = False
        self._grads = self._before = None
        self._scale = 1.0
        self._backwards = 0
        self._stopped = False
        self._handles = []
        self.writer = None
        self.local_grads = False
        self._local, self._local_pass, self._reduced_before = None, False, False
        if not self.enabled:   # another rank records: this one only counts steps
            return
        inner = _unwrap(model)
        self.model = instrument(inner)
        self.probe = Probe(self.model)
        distributed = self.rank is not None
        # ranks="all": each rank's own gradient, before DDP's all-reduce
        self.local_grads = distributed and ranks == "all"
        if self.local_grads:
            self._index = {id(p): i for i, p in enumerate(self.probe.parameters)}
            for p in self.probe.parameters:
                if p.requires_grad:
                    self._handles.append(p.register_post_accumulate_grad_hook(self._on_local_grad))
        for p in inner.parameters():
            if p.requires_grad:
                self._handles.append(p.register_post_accumulate_grad_hook(self._on_accumulated))
        # the tracer's function mode costs a Python call per torch call: leave it as soon as the
        # module's forward returns (a loop that calls submodules only leaves it at step())
        self._handles.append(inner.register_forward_hook(self._after_forward))
        stream = MAIN if ranks != "all" or self.rank is None else stream_name(self.rank)
        if self.local_grads:
            grads = (f"rank {self.rank}'s own gradient (of its batch, before DDP's all-reduce; NaN on a step whose "
                     "earlier backward pass was all-reduced)")
        elif distributed:
            grads = "all-reduced (the gradient the optimizer gets)"
        else:
            grads = "the gradient the optimizer gets"
        self.spec = {"format": FORMAT, "version": VERSION,
                     "name": name or f"watched {type(inner).__name__}",
                     "description": "a run recorded by backprop_lab.Watch in the user's own training script",
                     "watched": {"module": type(inner).__name__, "every": self.every,
                                 "hist_every": self.hist_every,
                                 "grads": grads + ", before clipping, unscaled",
                                 "deltas": "the first forward pass after begin() (its micro-batch)"
                                           + (f", rank {self.rank}'s batch" if distributed else "")}}
        recurrent = getattr(self.model, "recurrent", None)
        self._fused_taps = recurrent if hasattr(recurrent, "measure") else None
        if recurrent is not None and hasattr(recurrent, "description"):
            how = recurrent.description
            if self._fused_taps is not None and self.time_every > 1:
                how = how.replace("on every recorded step", f"on one recorded step in {self.time_every} "
                                  "(the first, then every time_every-th; NaN on the others)")
            self.spec["watched"]["time_grad"] = how
            self.spec["watched"]["time_every"] = self.time_every if self._fused_taps is not None else 1
        self._extra = {"grads": grads, "deltas": self.spec["watched"]["deltas"]}
        if distributed:
            self._extra.update(rank=self.rank, world_size=self.world_size)
        self._stream, self._flush_seconds = stream, flush_seconds
        self.writer = None   # made at the first recorded step: its activation call sites are known then

    def _writer(self) -> RunWriter:
        if self.writer is None:
            self.writer = RunWriter(self.run_dir, self.spec, self.probe.layer_names, self.probe.act_names,
                                    self.probe.units, stream=self._stream, every=self.every,
                                    flush_seconds=self._flush_seconds,
                                    extra={**self._extra, "backward_passes": self._backwards})
        return self.writer

    # ------------------------------------------------------------------ hooks
    def _on_accumulated(self, param) -> None:
        # After a parameter's gradient was accumulated, in every backward pass: the
        # first one of a pass queues a callback that queues the reading of the norms,
        # so that it runs after every callback queued meanwhile (DDP's all-reduce).
        if not self._armed or self._queued:
            return
        self._queued = True
        self._pause_probe()   # later forward passes (micro-batches, evaluation) are not measured
        engine = torch.autograd.Variable._execution_engine
        engine.queue_callback(lambda: engine.queue_callback(self._after_backward))

    def _after_forward(self, module, inputs, output) -> None:
        if torch.is_grad_enabled():
            self.forward_done()

    def forward_done(self) -> None:
        """The measured forward pass is over (called by the module's forward hook, or by a framework
        callback before backward): later torch calls no longer go through the tracer."""
        if self._armed and self.probe.active:
            self.probe.active = False

    def _pause_probe(self) -> None:
        # flags only: this runs inside backward, maybe on an autograd device thread; step()
        # leaves the tracer's function mode on the user's thread
        self.probe.pause()

    def _on_local_grad(self, param) -> None:
        # ranks="all" in a DDP job: the rank's own gradient, read as autograd accumulates it,
        # before DDP's all-reduce (its hook on the same parameter runs after this one)
        if not self._armed:
            return
        i = self._index[id(param)]
        if self._reduced_before:   # an earlier backward pass of this step was all-reduced
            self._local_norms[i] = torch.tensor(math.nan, device=param.device)
        else:
            self._local_norms[i] = safe_foreach_norms([param.grad.detach()])[0]
        self._local_pass = True

    def _after_backward(self) -> None:
        self._queued = False
        self._backwards += 1
        self._grads = self.probe.grad_norms()
        if self._local_pass:
            local = self.probe.grad_norms(self._local_norms)
            # several backward passes a step, each all-reduced (no no_sync): from the next pass
            # on .grad holds the ranks' mean plus the rank's own micro-batch, no rank's own sum
            self._reduced_before = not all(torch.allclose(a, b, rtol=0, atol=0, equal_nan=True)
                                           for a, b in zip(local, self._grads))
            self._local_pass = False
            self._local = local
        if self.scaler is not None and self.scaler.is_enabled():
            self._scale = float(self.scaler.get_scale())

    # ------------------------------------------------------------------ per step
    @property
    def measuring(self) -> bool:
        """Whether begin() armed the hooks of a recorded step that step() has not recorded yet."""
        return self._armed

    @property
    def recording(self) -> bool:
        """Whether the current step is one that is recorded (every N-th)."""
        return self.enabled and self.step_index % self.every == 0

    def begin(self) -> None:
        """Arm the hooks for this step; call it right before the (first) forward pass."""
        if self._begun:   # again before step(): another micro-batch of the same step
            return
        self._begun = True
        if not self.recording:
            return
        self._armed, self._grads, self._backwards, self._scale = True, None, 0, 1.0
        if self.local_grads:
            self._local, self._local_pass, self._reduced_before = None, False, False
            self._local_norms = [None] * len(self._index)
        self._before = self.probe.weights_before()   # the weights before this step's update
        j = self.step_index // self.every   # the j-th recorded step
        if self._fused_taps is not None:     # a fused layer's time gradient: its own cadence
            self._fused_taps.measure = j % self.time_every == 0
        self.probe.begin(want_hist=self.hist_every > 0 and j % self.hist_every == 0)

    def step(self, *args, optimizer=None, test_loss=None, test_accuracy=None) -> Snapshot | None:
        """Record this step: ``step(loss, outputs=None, targets=None)`` after your optimizer's step,
        or ``step(optimizer, loss, outputs=None, targets=None)`` to have Watch make it.

        Returns the step's Snapshot, or None on a step that is not recorded (``every``)."""
        if args and _is_optimizer(args[0]):
            optimizer, args = args[0], args[1:]
            make_step = True
        else:
            make_step = False
        if len(args) > 3:
            raise TypeError("Watch.step(loss, outputs=None, targets=None) takes at most three values")
        loss, outputs, targets = (*args, None, None, None)[:3]
        if not self._begun:
            raise RuntimeError(NO_BEGIN)
        self._begun = False
        if loss is None and outputs is not None and not isinstance(outputs, torch.Tensor):
            loss = getattr(outputs, "loss", None)   # a Hugging Face ModelOutput carries its loss
        recorded = self.recording
        # a host copy of the loss only where it is needed (no GPU sync on a step that is not recorded)
        finite = loss is None or not (make_step or recorded) or bool(torch.isfinite(torch.as_tensor(loss)).all())
        if make_step and finite:
            optimizer.step()
        k = self.step_index
        self.step_index += 1
        if not recorded:
            return None
        self._armed = False
        self.probe.active = False
        if self._grads is None:   # no backward pass reached a parameter's .grad (or autograd.grad)
            self._grads = self.probe.grad_norms()
        wg, bg = self._grads
        if self.local_grads:
            # the rank's own gradient; no backward pass reached any parameter: NaN, as there is none
            wg, bg = self._local if self._local is not None else (wg * math.nan, bg * math.nan)
        if make_step and not finite:
            ur = torch.full_like(wg, math.nan)
        else:
            ur = self.probe.update_ratio(self._before)
        head = torch.stack([_float(loss), accuracy(outputs, targets).float().cpu()])
        s = self.probe.collect(head, wg.cpu(), bg.cpu(), ur.cpu())
        scale = 1.0 / self._scale
        tg = s["time_grad_norm"]
        opt = optimizer or self.optimizer
        lr = float(opt.param_groups[0].get("lr", math.nan)) if opt is not None else math.nan
        snap = Snapshot(k, float(s["head"][0]), float(s["head"][1]), _num(test_loss), _num(test_accuracy), lr,
                        s["weight_grad_norm"] * scale, s["bias_grad_norm"] * scale, s["delta_norm"] * scale,
                        s["update_ratio"], s["preact_mean"], s["preact_std"], s["mean_derivative"],
                        s["saturated_frac"], s["dead_frac"], s["neuron_grad"] * scale,
                        None if tg is None else tg * scale, s["preact_hist"])
        self._writer().add(snap)
        if not math.isfinite(snap.loss) and not self._stopped and loss is not None:
            self._stopped = True
            self.writer.set_stop_reason(RunEnd.non_finite(snap.loss, k))
        self.last = snap
        return snap

    # ------------------------------------------------------------------ the end
    @property
    def path(self) -> Path:
        return self.run_dir

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        if self.writer is not None:
            self.writer.close()
        self.probe.remove()
        for h in self._handles:
            h.remove()
        self._handles = []
        self.writer = None
        self.enabled = False

    def __deepcopy__(self, memo):
        # a copy of the watched model (an EMA copy, a Trainer's snapshot) keeps hooks that point
        # here; the run directory's open file cannot be copied, nor should the recording be
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _num(x) -> float:
    if x is None:
        return math.nan
    return float(x.detach()) if isinstance(x, torch.Tensor) else float(x)
