"""Hugging Face transformers: ``Trainer(..., callbacks=[BackpropLabCallback("runs/my-net")])``.

The callback watches the Trainer's model with ``backprop_lab.Watch``: it arms
the probes at ``on_step_begin`` (the first micro-batch of an optimizer step),
and ``on_pre_optimizer_step`` marks the step as made. The gradient norms are
those Watch read at the end of the backward pass, so they are from before the
Trainer's ``max_grad_norm`` clipping (which runs before on_pre_optimizer_step)
and of the gradient accumulated over ``gradient_accumulation_steps``. The step is
recorded at ``on_optimizer_step`` with the loss of the first micro-batch's
forward pass (the model output's ``loss``) and its accuracy (``logits`` against
``labels``, -100 ignored). With fp16 the statistics are of unscaled gradients (the
scale of accelerate's GradScaler divides them); with bf16 (no scaler; the only AMP
on the CPU) they are of the float32 gradients the optimizer gets.
"""
from __future__ import annotations

try:
    from transformers import TrainerCallback
except ImportError as e:
    raise ImportError("backprop_lab.integrations.transformers needs transformers: "
                      "pip install 'backprop-lab[transformers]'") from e

import torch

from backprop_lab.engine.watch import HIST_EVERY, Watch


class BackpropLabCallback(TrainerCallback):
    def __init__(self, run_dir, every: int = 1, ranks=0, flush_seconds: float = 1.0, name: str | None = None,
                 hist_every: int = HIST_EVERY, time_every: int = 1):
        self.run_dir, self.every, self.ranks = run_dir, every, ranks
        self.flush_seconds, self.name, self.hist_every, self.time_every = flush_seconds, name, hist_every, time_every
        self.watch: Watch | None = None
        self._hook = None
        self._seen = None      # (loss, logits, labels) of the step's first forward pass
        self._stepped = False

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if model is None:
            return
        # fp16: accelerate's optimizer wrapper holds the GradScaler whose scale the backward used
        scaler = getattr(optimizer, "scaler", None)
        self.watch = Watch(model, self.run_dir, name=self.name, flush_seconds=self.flush_seconds,
                           every=self.every, ranks=self.ranks, hist_every=self.hist_every,
                           time_every=self.time_every, optimizer=optimizer,
                           scaler=scaler)
        self._hook = model.register_forward_hook(self._on_forward, with_kwargs=True)

    def _on_forward(self, module, args, kwargs, output):
        if self._seen is not None or not torch.is_grad_enabled() or self.watch is None or not self.watch.measuring:
            return
        get = output.get if hasattr(output, "get") else (lambda k, d=None: getattr(output, k, d))
        loss, logits = get("loss", None), get("logits", None)
        self._seen = (None if loss is None else loss.detach(), None if logits is None else logits.detach(),
                      kwargs.get("labels"))

    def on_step_begin(self, args, state, control, **kwargs):
        if self.watch is not None:
            self._seen, self._stepped = None, False
            self.watch.begin()

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self._stepped = True

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        if self.watch is None or not self._stepped:
            return
        loss, logits, labels = self._seen or (None, None, None)
        self.watch.step(loss, logits, labels, optimizer=optimizer)
        self._stepped = False

    def on_train_end(self, args, state, control, **kwargs):
        if self.watch is not None:
            self.watch.close()
            self.watch = None
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
