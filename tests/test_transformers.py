"""The Hugging Face callback with a real Trainer on a tiny random BERT (nothing downloaded)."""
import copy
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")   # the Trainer needs it (the [transformers] extra installs it)

from backprop_lab.engine import record  # noqa: E402
from backprop_lab.integrations.transformers import BackpropLabCallback  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")
N = 16


class Tokens(torch.utils.data.Dataset):
    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(5, 50, (N, 12), generator=g)
        self.labels = torch.randint(0, 2, (N,), generator=g)

    def __len__(self):
        return N

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(12, dtype=torch.long),
                "labels": self.labels[i]}


def tiny_bert():
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=32, num_labels=2,
                                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return transformers.BertForSequenceClassification(config)


class Weights(transformers.TrainerCallback):
    """The test's own record: the model at the start of every optimizer step."""

    def __init__(self):
        self.seen = []

    def on_step_begin(self, args, state, control, model=None, **kw):
        self.seen.append(copy.deepcopy(model).double())


def train(tmp_path, every=1, steps=3, **kw):
    model, weights = tiny_bert(), Weights()
    kw.setdefault("per_device_train_batch_size", N)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=steps, learning_rate=1e-2,
        report_to=[], save_strategy="no", logging_strategy="no", use_cpu=True, disable_tqdm=True,
        dataloader_num_workers=0, seed=0, **kw)
    cb = BackpropLabCallback(tmp_path / "run", every=every, flush_seconds=0)
    transformers.Trainer(model=model, args=args, train_dataset=Tokens(), callbacks=[weights, cb]).train()
    return record.load(tmp_path / "run"), weights.seen


def own_grad_norms(net, loss):
    """Per module with parameters of its own: (||weights||, ||biases||) of dLoss/dparams, float64."""
    mods = [(m, list(m.named_parameters(recurse=False))) for _, m in net.named_modules()]
    mods = [(m, ps) for m, ps in mods if ps]
    grads = torch.autograd.grad(loss, [p for _, ps in mods for _, p in ps])
    out, at = [], 0
    for _, ps in mods:
        w = [g for (n, _), g in zip(ps, grads[at:at + len(ps)]) if "bias" not in n]
        b = [g for (n, _), g in zip(ps, grads[at:at + len(ps)]) if "bias" in n]
        at += len(ps)
        norm = lambda gs: float(torch.sqrt(sum(g.square().sum() for g in gs))) if gs else float("nan")  # noqa: E731
        out.append((norm(w), norm(b)))
    return out


def test_hf_callback_records_unclipped_gradients_of_a_tiny_bert_equal_to_float64_autograd(tmp_path):
    (h, spec), seen = train(tmp_path, max_grad_norm=1e-3)   # the Trainer clips hard: norms are from before
    assert list(h.steps) == [0, 1, 2] and h.stop_reason == "finished"
    params = sum(p.numel() for p in seen[0].parameters())
    assert params > 0 and len(h.layer_names) == len(own_grad_norms(seen[0], seen[0](
        **{k: v for k, v in Tokens()[slice(0, N)].items()}).loss))
    data = Tokens()
    for k, net in enumerate(seen):
        out = net(input_ids=data.ids, attention_mask=torch.ones_like(data.ids), labels=data.labels)
        ref = own_grad_norms(net, out.loss)
        assert h.series("weight_grad_norm")[k] == pytest.approx([w for w, _ in ref], rel=1e-4)
        assert h.series("bias_grad_norm")[k] == pytest.approx([b for _, b in ref], rel=1e-4, abs=1e-8, nan_ok=True)  # a key bias: 0 exactly
        assert h.series("loss")[k] == pytest.approx(float(out.loss), rel=1e-5)
        acc = float((out.logits.argmax(-1) == data.labels).double().mean())
        assert h.series("accuracy")[k] == pytest.approx(acc)
    assert "transformers" not in spec.get("stopped", "")




def test_hf_every_n_with_gradient_accumulation_records_the_accumulated_gradient(tmp_path):
    (h, spec), seen = train(tmp_path, every=2, steps=4, gradient_accumulation_steps=2,
                            per_device_train_batch_size=N // 2)
    assert list(h.steps) == [0, 2] and spec["every"] == 2
    data = Tokens()   # two micro-batches of N/2 make one step over all N samples, in some order
    for row, k in enumerate((0, 2)):
        net = seen[k]
        out = net(input_ids=data.ids, attention_mask=torch.ones_like(data.ids), labels=data.labels)
        ref = np.array([w for w, _ in own_grad_norms(net, out.loss)])
        # the Trainer adds the micro-batches' gradients, divided by the number of micro-batches or
        # not (transformers 5 does not, for a model without num_items_in_batch): one factor for all
        ratio = h.series("weight_grad_norm")[row] / ref
        assert ratio == pytest.approx(np.full_like(ratio, ratio[0]), rel=1e-4)
        assert ratio[0] == pytest.approx(1.0, rel=1e-4) or ratio[0] == pytest.approx(2.0, rel=1e-4)


class OptimizerGrads(transformers.TrainerCallback):
    """The gradient norms per weight the optimizer gets (no clipping: max_grad_norm=0)."""

    def __init__(self):
        self.seen = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
        self.seen.append({n: float(p.grad.norm()) for n, p in model.named_parameters() if p.grad is not None})


def test_hf_bf16_autocast_records_the_gradients_the_optimizer_gets(tmp_path):
    """bf16=True on the CPU (torch.autocast, bfloat16 matrix products; fp16 needs a GPU there): the
    record holds the norms of the float32 gradients the optimizer steps with, and they are bf16's
    (not a float32 run's: within bf16 rounding of float64 autograd, not equal to it)."""
    model, grads = tiny_bert(), OptimizerGrads()
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=2, learning_rate=1e-2, report_to=[], save_strategy="no",
        logging_strategy="no", use_cpu=True, disable_tqdm=True, seed=0, per_device_train_batch_size=N,
        bf16=True, max_grad_norm=0)
    weights = Weights()
    cb = BackpropLabCallback(tmp_path / "run", flush_seconds=0)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=Tokens(), callbacks=[weights, cb, grads])
    assert trainer.accelerator.mixed_precision == "bf16"
    trainer.train()
    h, _ = record.load(tmp_path / "run")
    names = [n for n, p in model.named_parameters()]
    data = Tokens()
    for k, net in enumerate(weights.seen):
        ref = own_grad_norms(net, net(input_ids=data.ids, attention_mask=torch.ones_like(data.ids),
                                      labels=data.labels).loss)
        got = h.series("weight_grad_norm")[k]
        # per layer, from the optimizer's own gradients: each layer's weight tensors together
        layers = {}
        for n in names:
            if "bias" not in n.rsplit(".", 1)[-1]:
                layers.setdefault(n.rsplit(".", 1)[0], []).append(grads.seen[k][n] ** 2)
        want = [float(np.sqrt(sum(v))) for v in layers.values()]
        assert len(got) == len(want) and got == pytest.approx(want, rel=1e-5)
        assert got == pytest.approx([w for w, _ in ref], rel=5e-2)
        assert got != pytest.approx([w for w, _ in ref], rel=1e-5)   # bf16 products, not float32
