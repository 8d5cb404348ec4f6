"""The Lightning callback with a real lightning Trainer on the CPU, against float64 autograd."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytest.importorskip("lightning")
import lightning.pytorch as pl  # noqa: E402

from backprop_lab.engine import record  # noqa: E402
from backprop_lab.integrations.lightning import BackpropLabCallback  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")


class Classifier(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        return {"loss": F.cross_entropy(logits, y), "logits": logits}

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


class Weights(pl.Callback):
    """The test's own record: the module's weights at the start of every step."""

    def __init__(self):
        self.seen = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen.append((copy.deepcopy(pl_module.net).double(), batch))


def loaders(n=64, batch=32):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 4, generator=g) * 2, torch.randint(0, 3, (n,), generator=g)
    ds = torch.utils.data.TensorDataset(x, y)
    return torch.utils.data.DataLoader(ds, batch_size=batch), torch.utils.data.DataLoader(ds, batch_size=n)


def fit(tmp_path, every=1, callbacks_extra=(), **trainer_kw):
    torch.manual_seed(0)
    model, weights = Classifier(), Weights()
    cb = BackpropLabCallback(tmp_path / "run", every=every, flush_seconds=0)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=5, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, val_check_interval=2,
                         callbacks=[weights, cb, *callbacks_extra], **trainer_kw)
    train, val = loaders()
    trainer.fit(model, train, val)
    return record.load(tmp_path / "run"), weights.seen


def test_lightning_callback_records_unclipped_gradients_equal_to_float64_autograd(tmp_path):
    (h, spec), seen = fit(tmp_path, gradient_clip_val=1e-3)
    assert list(h.steps) == [0, 1, 2, 3, 4] and h.stop_reason == "finished"
    assert h.layer_names == ["net.0 (Linear)", "net.2 (Linear)"]
    for k, (net, (x, y)) in enumerate(seen):
        z1 = net[0](x.double())
        logits = net[2](net[1](z1))
        loss = F.cross_entropy(logits, y)
        g = torch.autograd.grad(loss, [net[0].weight, net[2].weight, net[0].bias, z1])
        assert h.series("weight_grad_norm")[k] == pytest.approx([float(g[0].norm()), float(g[1].norm())], rel=1e-5)
        assert h.series("bias_grad_norm")[k, 0] == pytest.approx(float(g[2].norm()), rel=1e-5)
        assert h.series("delta_norm")[k, 0] == pytest.approx(float(g[3].norm()), rel=1e-5)
        assert h.series("loss")[k] == pytest.approx(float(loss), rel=1e-5)
        acc = float((logits.argmax(-1) == y).double().mean())
        assert h.series("accuracy")[k] == pytest.approx(acc)
        assert h.series("preact_std")[k, 0] == pytest.approx(float(z1.std(correction=0)), rel=1e-5)
        if k + 1 < len(seen):
            w0, w1 = net[0].weight, seen[k + 1][0][0].weight
            assert h.series("update_ratio")[k, 0] == pytest.approx(float((w1 - w0).norm() / w0.norm()), rel=1e-3)


def test_lightning_every_n_and_gradient_accumulation(tmp_path):
    (h, spec), seen = fit(tmp_path, every=2, accumulate_grad_batches=2)
    assert list(h.steps) == [0, 2, 4] and spec["every"] == 2
    # step 0 is made of the first two batches; its norms are of their summed (averaged) gradient
    net = seen[0][0]
    (x0, y0), (x1, y1) = seen[0][1], seen[1][1]
    loss = (F.cross_entropy(net(x0.double()), y0) + F.cross_entropy(net(x1.double()), y1)) / 2
    g = torch.autograd.grad(loss, net[0].weight)[0]
    assert h.series("weight_grad_norm")[0, 0] == pytest.approx(float(g.norm()), rel=1e-5)


class Grads(pl.Callback):
    """The gradient the optimizer gets (Lightning has unscaled it here, and clips after), and the scale."""

    def __init__(self):
        self.seen = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        scaler = trainer.precision_plugin.scaler
        self.seen.append(([float(m.weight.grad.norm()) for m in (pl_module.net[0], pl_module.net[2])],
                          float(scaler.get_scale())))


def test_lightning_fp16_with_a_grad_scaler_records_the_unscaled_gradients(tmp_path):
    """16-mixed on the CPU with a real torch.amp.GradScaler: fp16 autocast, the loss scaled by 2^12 and
    more (the scale doubles every step); the record holds the unscaled gradients and deltas."""
    from lightning.pytorch.plugins.precision import MixedPrecision
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12, growth_interval=1)
    grads = Grads()
    (h, spec), seen = fit(tmp_path, plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)],
                          callbacks_extra=[grads], gradient_clip_val=1e-3)
    assert [s for _, s in grads.seen] == [2.0 ** (12 + k) for k in range(5)]   # a new scale every step
    for k, (net, (x, y)) in enumerate(seen):
        assert h.series("weight_grad_norm")[k] == pytest.approx(grads.seen[k][0], rel=1e-6)
        z1 = net[0](x.double())   # float64 without autocast: fp16 rounding aside, the same numbers
        loss = F.cross_entropy(net[2](net[1](z1)), y)
        g = torch.autograd.grad(loss, [net[0].weight, z1])
        assert h.series("weight_grad_norm")[k, 0] == pytest.approx(float(g[0].norm()), rel=2e-2)
        assert h.series("delta_norm")[k, 0] == pytest.approx(float(g[1].norm()), rel=2e-2)
