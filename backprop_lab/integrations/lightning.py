"""PyTorch Lightning: ``Trainer(callbacks=[BackpropLabCallback("runs/my-net")])``.

The callback watches the LightningModule with ``backprop_lab.Watch``: it arms
the probes at ``on_train_batch_start``, takes the optimizer step that
``on_before_optimizer_step`` announces (gradients unscaled and before
Lightning's ``gradient_clip_val``: Watch reads them at the end of the backward
pass), and records the step at ``on_train_batch_end`` with the loss that
``training_step`` returned (a tensor, or a dict's ``"loss"``; a dict's
``"logits"`` with a batch ``(x, y)`` also gives the accuracy). Validation runs
between steps and is not measured. With ``accumulate_grad_batches=k`` a step is
one optimizer step; its deltas describe its first micro-batch.
"""
from __future__ import annotations

try:
    from lightning.pytorch import Callback
except ImportError:  # the older package name
    try:
        from pytorch_lightning import Callback
    except ImportError as e:
        raise ImportError("backprop_lab.integrations.lightning needs PyTorch Lightning: "
                          "pip install 'backprop-lab[lightning]'") from e

from backprop_lab.engine.run_end import RunEnd
from backprop_lab.engine.watch import HIST_EVERY, Watch


class BackpropLabCallback(Callback):
    def __init__(self, run_dir, every: int = 1, ranks=0, flush_seconds: float = 1.0, name: str | None = None,
                 hist_every: int = HIST_EVERY, time_every: int = 1):
        super().__init__()
        self.run_dir, self.every, self.ranks = run_dir, every, ranks
        self.flush_seconds, self.name, self.hist_every, self.time_every = flush_seconds, name, hist_every, time_every
        self.watch: Watch | None = None
        self._optimizer = None

    def on_fit_start(self, trainer, pl_module) -> None:
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        self.watch = Watch(pl_module, self.run_dir, name=self.name, flush_seconds=self.flush_seconds,
                           every=self.every, ranks=self.ranks, hist_every=self.hist_every,
                           time_every=self.time_every, scaler=scaler)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.watch is not None:
            self.watch.begin()

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        if self.watch is not None:   # training_step may call submodules only: the forward is over here
            self.watch.forward_done()

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self._optimizer = optimizer

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.watch is None or self._optimizer is None:
            return   # a micro-batch of gradient accumulation: the step is not made yet
        loss, logits, target = outputs, None, None
        if isinstance(outputs, dict):
            loss, logits = outputs.get("loss"), outputs.get("logits")
            if logits is not None and isinstance(batch, (tuple, list)) and len(batch) == 2:
                target = batch[1]
        self.watch.step(loss, logits, target, optimizer=self._optimizer)
        self._optimizer = None

    def on_fit_end(self, trainer, pl_module) -> None:
        if self.watch is not None:
            self.watch.close()
            self.watch = None

    def on_exception(self, trainer, pl_module, exception) -> None:
        if self.watch is not None:
            if self.watch.writer is not None:
                self.watch.writer.set_stop_reason(RunEnd.failed(f"failed: {type(exception).__name__}: {exception}"))
            self.watch.close()
            self.watch = None
