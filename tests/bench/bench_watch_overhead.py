"""Cost of Watch in a user's own loop: the same loop bare, watched every step, watched every 10th.

Four models people train (CPU, float32): an MNIST-style CNN (F.relu, max pooling,
dropout; 28 x 28, batch 64), a ResNet-style net (BatchNorm, nn.ReLU(inplace=True)
reused, skip connections; 32 x 32, batch 32), an LSTM language model (vocabulary
2000, 2 layers of 256, 35 steps, batch 20: Watch's taps on the fused LSTM's
first layer give the gradient through time) and a small Transformer encoder
(2 layers, width 128, 4 heads, 64 tokens, batch 16). Every statistic every step;
the run directory is written to a temporary folder.

Three copies of the model, one per loop, take turns step by step on the same batches, so
that a shared machine's changing load falls on the three loops alike.

Run: .venv/bin/python tests/bench/bench_watch_overhead.py [steps (30)] [rounds (3)] [model names...]
(e.g. ``30 3 LSTM`` runs only the models whose name contains "LSTM").
Each loop reports its median time per step (and the ratio of means: a loop whose steps
differ in cost shows it there); the ratios are to the bare loop's. One thread unless
OMP_NUM_THREADS says otherwise (a shared machine's timings are noisy).
"""
from __future__ import annotations

import copy
import os
import statistics
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
from torch import nn

from backprop_lab import Watch


class MnistCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 32, 3, 1), nn.Conv2d(32, 64, 3, 1)
        self.fc1, self.fc2 = nn.Linear(9216, 128), nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        x = F.dropout(torch.flatten(x, 1), 0.25, self.training)
        return self.fc2(F.dropout(F.relu(self.fc1(x)), 0.5, self.training))


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + x)


class ResNet(nn.Module):
    def __init__(self, c=32, blocks=4):
        super().__init__()
        self.stem, self.bn = nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.blocks = nn.Sequential(*(Block(c) for _ in range(blocks)))
        self.fc = nn.Linear(c, 10)

    def forward(self, x):
        x = self.blocks(F.relu(self.bn(self.stem(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class LSTMLM(nn.Module):
    def __init__(self, vocab=2000, emb=256, hidden=256, layers=2):
        super().__init__()
        self.encoder = nn.Embedding(vocab, emb)
        self.rnn = nn.LSTM(emb, hidden, layers, dropout=0.2)
        self.decoder = nn.Linear(hidden, vocab)

    def forward(self, ids, hidden):
        out, hidden = self.rnn(self.encoder(ids), hidden)
        return self.decoder(out), hidden


class Encoder(nn.Module):
    def __init__(self, vocab=1000, d=128, heads=4, layers=2):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        layer = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, vocab)

    def forward(self, ids):
        return self.head(self.encoder(self.emb(ids)))


def cases():
    g = torch.Generator().manual_seed(0)
    yield "MNIST CNN", MnistCNN(), lambda: (torch.randn(64, 1, 28, 28, generator=g),
                                           torch.randint(0, 10, (64,), generator=g)), lambda m, x: m(x)
    yield "ResNet", ResNet(), lambda: (torch.randn(32, 3, 32, 32, generator=g),
                                       torch.randint(0, 10, (32,), generator=g)), lambda m, x: m(x)

    def lstm(m, x):
        h = (torch.zeros(2, x.shape[1], 256), torch.zeros(2, x.shape[1], 256))
        return m(x, h)[0]
    yield "LSTM LM", LSTMLM(), lambda: (torch.randint(0, 2000, (35, 20), generator=g),
                                        torch.randint(0, 2000, (35, 20), generator=g)), lstm
    yield "Transformer", Encoder(), lambda: (torch.randint(0, 1000, (16, 64), generator=g),
                                             torch.randint(0, 1000, (16, 64), generator=g)), lambda m, x: m(x)


def one_step(model, opt, x, y, call, watch=None) -> float:
    t0 = time.perf_counter()
    if watch is not None:
        watch.begin()
    out = call(model, x)
    loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
    opt.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    if watch is not None:
        watch.step(loss, out, y)
    return time.perf_counter() - t0


def loop(model, opt, batch, call, steps, watch=None):
    return [one_step(model, opt, *batch(), call, watch) for _ in range(steps)]


# (name, Watch's keyword arguments or None for the bare loop)
LOOPS = (("bare", None), ("every step", {"every": 1}), ("every 10th", {"every": 10}),
         ("every step, time gradient every 10th", {"every": 1, "time_every": 10}))


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)
    print(f"{torch.get_num_threads()} thread(s), {steps} steps x {rounds} rounds, median (mean) time per step")
    with tempfile.TemporaryDirectory() as d:
        only = sys.argv[3:]
        for name, model, batch, call in cases():
            if only and not any(o.lower() in name.lower() for o in only):
                continue
            loops = LOOPS if name.startswith("LSTM") else LOOPS[:3]   # time_every: recurrent nets only
            # three copies of one model, one per loop; the loops take turns step by step (the same
            # batch), so that a shared machine's changing load falls on all three alike
            nets = [copy.deepcopy(model) for _ in loops]
            opts = [torch.optim.SGD(m.parameters(), lr=0.01) for m in nets]
            got = {k: [] for k, _ in loops}
            for r in range(rounds):
                watches = [None if kw is None else Watch(m, f"{d}/{name}-{i}-{r}", **kw)
                           for i, (m, (_, kw)) in enumerate(zip(nets, loops))]
                for m, o, w in zip(nets, opts, watches):
                    loop(m, o, batch, call, 2, w)   # warm-up; a watch's first step finds the call sites
                for _ in range(steps):
                    x, y = batch()
                    for (k, _), m, o, w in zip(loops, nets, opts, watches):
                        got[k].append(one_step(m, o, x, y, call, w))
                for w in watches:
                    if w is not None:
                        w.close()
            bare, bare_mean = statistics.median(got["bare"]), statistics.fmean(got["bare"])
            parts = [f"bare {bare * 1e3:7.2f} ms"] + [
                f"{k} {statistics.median(v) * 1e3:7.2f} ms ({statistics.median(v) / bare:4.2f}x, mean "
                f"{statistics.fmean(v) / bare_mean:4.2f}x)" for k, v in got.items() if k != "bare"]
            print(f"{name:12s} " + ", ".join(parts), flush=True)


if __name__ == "__main__":
    main()
