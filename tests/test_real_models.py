"""Real model patterns, written as users write them, measured through Watch and the spec path.

Each model below follows a widely used definition: an MNIST-style CNN with functional
ReLU, pooling and dropout; a ResNet basic block whose one ``nn.ReLU(inplace=True)`` is
called twice; LSTM / GRU word language models whose forward takes ``(input, hidden)``
and returns ``(output, hidden)`` (time-major, batch-first, bidirectional); a Transformer
encoder (``nn.TransformerEncoderLayer``, attention, embedding).

The reference never uses the probes: a float64 copy of the module (same weights) runs the
same batch with the float32 run's dropout masks; its gradients come from
torch.autograd.grad, each layer's dL/d(output) from forward hooks on the copy, each
activation's z from a forward written out here by hand (f'(z) from autograd of the torch
activation), and dL/dh_t of a recurrent layer from an unrolled recurrence built from
nn.LSTMCell / nn.GRUCell with the fused layer's weights.
"""
import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from backprop_lab.engine import experiment, lstm_steps, record
from backprop_lab.engine.trainer import Trainer
from backprop_lab.engine.watch import Watch

F64 = torch.float64
LR = 0.1

SOURCE = '''
import torch
from torch import nn
import torch.nn.functional as F


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3)
        self.conv2 = nn.Conv2d(4, 6, 3)
        self.conv2_drop = nn.Dropout2d(0.25)
        self.fc1 = nn.Linear(24, 16)
        self.drop = nn.Dropout(0.5)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.drop(x)
        return F.log_softmax(self.fc2(x), dim=1)


class BasicBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = BasicBlock(8)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer1(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


class RNNModel(nn.Module):
    def __init__(self, rnn_type="LSTM", ntoken=20, ninp=6, nhid=7, nlayers=2, batch_first=False,
                 bidirectional=False):
        super().__init__()
        self.drop = nn.Dropout(0.2)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = getattr(nn, rnn_type)(ninp, nhid, nlayers, batch_first=batch_first,
                                         bidirectional=bidirectional)
        self.dirs = 2 if bidirectional else 1
        self.decoder = nn.Linear(nhid * self.dirs, ntoken)
        self.rnn_type, self.ntoken, self.nhid, self.nlayers = rnn_type, ntoken, nhid, nlayers

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        output = self.drop(output)
        decoded = self.decoder(output).view(-1, self.ntoken)
        return F.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        shape = (self.nlayers * self.dirs, bsz, self.nhid)
        if self.rnn_type == "LSTM":
            return (weight.new_zeros(shape), weight.new_zeros(shape))
        return weight.new_zeros(shape)


class Encoder(nn.Module):
    def __init__(self, ntoken=20, d=8, classes=3):
        super().__init__()
        self.embed = nn.Embedding(ntoken, d)
        layer = nn.TransformerEncoderLayer(d, 2, 16, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        return self.head(self.encoder(self.embed(x)).mean(1))


class CellRNN(nn.Module):
    def __init__(self, ntoken=20, ninp=6, nhid=7, classes=3):
        super().__init__()
        self.embed = nn.Embedding(ntoken, ninp)
        self.cell = nn.GRUCell(ninp, nhid)
        self.head = nn.Linear(nhid, classes)

    def forward(self, x):
        e = self.embed(x)
        h = e.new_zeros(x.shape[0], self.cell.hidden_size)
        for t in range(x.shape[1]):
            h = self.cell(e[:, t], h)
        return self.head(torch.tanh(h))
'''
NS = {}
exec(compile(SOURCE, "models.py", "exec"), NS)


# ----------------------------------------------------------------------------- the models' cases
def cnn_ref(r, x, outputs):
    z1 = F.max_pool2d(r.conv1(x), 2)
    z2 = F.max_pool2d(r.conv2_drop(r.conv2(F.relu(z1))), 2)
    z3 = r.fc1(torch.flatten(F.relu(z2), 1))
    out = F.log_softmax(r.fc2(r.drop(F.relu(z3))), dim=1)
    return out, {"CNN -> relu (functional)": ("relu", z1), "CNN -> relu#2 (functional)": ("relu", z2),
                 "fc1 -> relu (functional)": ("relu", z3)}, None


def resnet_ref(r, x, outputs):
    z0 = r.bn1(r.conv1(x))
    b = r.layer1
    z1 = b.bn1(b.conv1(F.relu(z0)))
    z2 = b.bn2(b.conv2(F.relu(z1))) + F.relu(z0)
    out = r.fc(torch.flatten(r.avgpool(F.relu(z2)), 1))
    return out, {"relu (ReLU)": ("relu", z0), "layer1.relu (ReLU)": ("relu", z1),
                 "layer1.relu#2 (ReLU)": ("relu", z2)}, None


def unrolled(rnn, x, h0):
    """A fused nn.LSTM / nn.GRU as nn.LSTMCell / nn.GRUCell steps with its weights: (output, [h_t of
    layer 0 per direction])."""
    lstm = isinstance(rnn, nn.LSTM)
    cell_type = nn.LSTMCell if lstm else nn.GRUCell if isinstance(rnn, nn.GRU) else nn.RNNCell
    if rnn.batch_first:
        x = x.transpose(0, 1)
    dirs = 2 if rnn.bidirectional else 1
    seq, hs = x, []
    for layer in range(rnn.num_layers):
        outs = []
        for d in range(dirs):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            cell = cell_type(seq.shape[-1], rnn.hidden_size).to(F64)
            for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                setattr(cell, n, getattr(rnn, n + sfx))  # the fused layer's own parameters
            h = h0[0][layer * dirs + d] if lstm else h0[layer * dirs + d]
            c = h0[1][layer * dirs + d] if lstm else None
            out = [None] * len(seq)
            for t in (range(len(seq)) if d == 0 else reversed(range(len(seq)))):
                if lstm:
                    h, c = cell(seq[t], (h, c))
                else:
                    h = cell(seq[t], h)
                if layer == 0:
                    h.retain_grad()
                    hs.append((t, h))
                out[t] = h
            outs.append(torch.stack(out))
        seq = torch.cat(outs, -1)
    return (seq.transpose(0, 1) if rnn.batch_first else seq), hs


def lm_ref(r, x, outputs):
    hidden = r.init_hidden(x.shape[0] if r.rnn.batch_first else x.shape[1])
    emb = r.drop(r.encoder(x))
    output, hs = unrolled(r.rnn, emb, hidden)
    output.retain_grad()
    outputs["rnn"] = output   # the fused layer's output sequence
    decoded = r.decoder(r.drop(output)).view(-1, r.ntoken)
    return F.log_softmax(decoded, dim=1), {}, hs


def encoder_ref(r, x, outputs):
    out = r(x)   # z of each feed-forward ReLU: its linear1's output, from the hooks
    return out, {f"encoder.layers.{i}.linear1 -> relu (functional)": ("relu", f"encoder.layers.{i}.linear1")
                 for i in range(2)}, None


def cell_ref(r, x, outputs):
    e = r.embed(x)
    h, hs = e.new_zeros(x.shape[0], r.cell.hidden_size), []
    for t in range(x.shape[1]):
        h = r.cell(e[:, t], h)
        h.retain_grad()
        hs.append((t, h))
    return r.head(torch.tanh(h)), {"cell -> tanh (functional)": ("tanh", h)}, hs


def lm(rnn_type, batch_first=False, bidirectional=False):
    return dict(cls="RNNModel", kwargs={"rnn_type": rnn_type, "batch_first": batch_first,
                                        "bidirectional": bidirectional},
                ref=lm_ref, loss="nll", tokens=True, time_major=not batch_first,
                forward_args=[{"call": "init_hidden"}], output=0)


CASES = {
    "cnn": dict(cls="CNN", kwargs={}, ref=cnn_ref, loss="nll", shape=(1, 14, 14)),
    "resnet": dict(cls="ResNet", kwargs={}, ref=resnet_ref, loss="cross_entropy", shape=(3, 6, 6)),
    "lstm_lm": lm("LSTM"),
    "gru_lm_batch_first_bidirectional": lm("GRU", batch_first=True, bidirectional=True),
    "rnn_lm": lm("RNN"),
    "lstm_lm_batch_first_bidirectional": lm("LSTM", batch_first=True, bidirectional=True),
    # the first layer by engine/lstm_steps.py (the way of larger layers, forced on this small one)
    "lstm_lm_steps": dict(lm("LSTM"), steps=True),
    "lstm_lm_batch_first_bidirectional_steps": dict(lm("LSTM", batch_first=True, bidirectional=True), steps=True),
    "encoder": dict(cls="Encoder", kwargs={}, ref=encoder_ref, loss="cross_entropy", tokens=True, seq=True),
    "gru_cell_loop": dict(cls="CellRNN", kwargs={}, ref=cell_ref, loss="cross_entropy", tokens=True),
}
N, T, V = 12, 5, 20


def make_data(case, seed=0):
    """(x, y) samples first; token models get ids, language models a next-token y per step."""
    g = torch.Generator().manual_seed(seed)
    if case.get("tokens"):
        x = torch.randint(0, V, (N, T), generator=g)
        y = torch.randint(0, V, (N, T), generator=g) if case["ref"] is lm_ref else torch.randint(0, 3, (N,),
                                                                                                generator=g)
    else:
        x, y = torch.randn(N, *case["shape"], generator=g), torch.randint(0, 3, (N,), generator=g)
    return x, y


def flat_loss(out, y, kind):
    if y.dim() > 1:
        y = y.reshape(-1)
    return F.nll_loss(out, y) if kind == "nll" else F.cross_entropy(out, y)


# ----------------------------------------------------------------------------- reference
def dropout_masks(net):
    """Forward hooks that record each dropout call's mask (output != 0, scaled): {path: [masks]}."""
    masks, handles = {}, []
    for path, m in net.named_modules():
        if isinstance(m, (nn.Dropout, nn.Dropout2d)):
            handles.append(m.register_forward_hook(
                lambda mod, i, o, path=path: masks.setdefault(path, []).append((o != 0).to(F64) / (1 - mod.p))))
    return masks, handles


def reference(case, net64, x, y, masks):
    """Every statistic of one step on the float64 copy, by plain autograd."""
    handles = []
    for path, m in net64.named_modules():   # the float32 run's dropout masks, in call order
        if isinstance(m, (nn.Dropout, nn.Dropout2d)):
            handles.append(m.register_forward_hook(lambda mod, i, o, path=path: i[0] * masks[path].pop(0)))
    outputs = {}

    def keep(path):
        def hook(mod, i, o):
            o = o[0] if isinstance(o, tuple) else o
            if path not in outputs and o.requires_grad:
                o.retain_grad()
                outputs[path] = o
        return hook
    for path, m in net64.named_modules():
        handles.append(m.register_forward_hook(keep(path)))
    out, zs, hs = case["ref"](net64, x, outputs)
    loss = flat_loss(out, y, case["loss"])
    loss.backward()
    for h in handles:
        h.remove()
    for name, (kind, z) in list(zs.items()):
        zs[name] = (kind, outputs[z] if isinstance(z, str) else z)
    return loss, outputs, zs, hs


def act_stats(kind, z):
    z = z.detach().to(F64)
    zz = z.clone().requires_grad_()
    f = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}[kind]
    d, = torch.autograd.grad(f(zz).sum(), zz)
    axis = 1 if z.dim() >= 4 else z.dim() - 1
    other = tuple(i for i in range(z.dim()) if i != axis)
    dead = (d.abs().amax(dim=other) == 0).to(F64).mean()
    return [float(z.mean()), float(z.std(correction=0)), float(d.mean()), float((d < 0.01).to(F64).mean()),
            float(dead)]


def check(case, snap, layer_names, act_names, net32, net64, ref, w_before):
    loss, outputs, zs, hs = ref
    assert snap.loss == pytest.approx(float(loss.detach()), rel=1e-5)
    modules = dict(net64.named_modules())
    # every parameter belongs to exactly one watched layer
    owned = [p for n in layer_names for p in modules[n.rsplit(" (", 1)[0]].parameters(recurse=False)]
    assert len({id(p) for p in owned}) == len(owned)
    assert sum(p.numel() for p in owned) == sum(p.numel() for p in net64.parameters())
    for k, name in enumerate(layer_names):
        path = name.rsplit(" (", 1)[0]
        m = modules[path]
        ws = [(n, p) for n, p in m.named_parameters(recurse=False) if "bias" not in n]
        bs = [(n, p) for n, p in m.named_parameters(recurse=False) if "bias" in n]
        wg = math.sqrt(sum(float(p.grad.square().sum()) for _, p in ws))
        assert snap.weight_grad_norm[k] == pytest.approx(wg, rel=1e-4, abs=1e-9), name
        if bs:
            bg = math.sqrt(sum(float(p.grad.square().sum()) for _, p in bs))
            assert snap.bias_grad_norm[k] == pytest.approx(bg, rel=1e-4, abs=1e-9), name
        else:
            assert math.isnan(snap.bias_grad_norm[k])
        # delta: dL/d(what the module outputs); attention's out_proj is applied inside the
        # attention's forward, so its output is the attention's output
        out_path = path.rsplit(".", 1)[0] if path.endswith("self_attn.out_proj") else path
        delta = float(outputs[out_path].grad.norm())
        assert snap.delta_norm[k] == pytest.approx(delta, rel=1e-4), name
        # SGD: W' - W = -lr dL/dW, over the layer's weights
        w_norm = math.sqrt(sum(float(w_before[f"{path}.{n}" if path else n].to(F64).square().sum()) for n, _ in ws))
        assert snap.update_ratio[k] == pytest.approx(LR * wg / w_norm, rel=1e-3, abs=1e-9), name
    assert sorted(act_names) == sorted(zs), act_names
    for j, name in enumerate(act_names):
        kind, z = zs[name]
        want = act_stats(kind, z)
        got = [snap.preact_mean[j], snap.preact_std[j], snap.mean_derivative[j], snap.saturated_frac[j],
               snap.dead_frac[j]]
        assert got[0] == pytest.approx(want[0], abs=1e-5 * max(1.0, want[1])), name
        assert got[1] == pytest.approx(want[1], rel=1e-4), name
        one = 1.0 / z.numel()   # a z within rounding of 0 may fall on either side in float32
        assert got[2:4] == pytest.approx(want[2:4], abs=2 * one), name
        assert got[4] == pytest.approx(want[4], abs=1e-9), name
    if hs is None:
        assert snap.time_grad_norm is None or len(snap.time_grad_norm) == 0
    else:
        steps = sorted({t for t, _ in hs})
        want = [math.sqrt(sum(float(h.grad.square().sum()) for t2, h in hs if t2 == t)) for t in steps]
        assert snap.time_grad_norm is not None and len(snap.time_grad_norm) == len(steps)
        np.testing.assert_allclose(snap.time_grad_norm, want, rtol=2e-4)
        # the total derivative, not the readout part that the fused layer's output gradient holds
        if "rnn" in outputs:
            direct = outputs["rnn"].grad
            direct = [float((direct[:, t] if net64.rnn.batch_first else direct[t]).norm()) for t in steps]
            assert not np.allclose(want[:-1], direct[:-1], rtol=1e-2)


def float64_copy(net):
    return copy.deepcopy(net).to(F64)


def _step_path(monkeypatch, case) -> list:
    """The LSTM's first layer by engine/lstm_steps.py where the case says so, else the taps; the
    list returned gets one entry per call of lstm_layer (the real one)."""
    monkeypatch.setattr(lstm_steps, "STEPS_FROM", 0 if case.get("steps") else 10 ** 9)
    calls, layer = [], lstm_steps.lstm_layer

    def counted(*args):
        calls.append(1)
        return layer(*args)
    monkeypatch.setattr(lstm_steps, "lstm_layer", counted)
    return calls


# ----------------------------------------------------------------------------- the two paths
@pytest.mark.parametrize("name", CASES)
def test_watch_measures_real_models_like_autograd(name, tmp_path, monkeypatch):
    case = CASES[name]
    stepped = _step_path(monkeypatch, case)
    torch.manual_seed(0)
    net = NS[case["cls"]](**case["kwargs"])
    net64 = float64_copy(net)
    x, y = make_data(case)
    if case.get("time_major"):
        x, y = x.t().contiguous(), y.t().contiguous()
    opt = torch.optim.SGD(net.parameters(), lr=LR)
    w_before = {n: p.detach().clone() for n, p in net.named_parameters()}
    masks, handles = dropout_masks(net)
    with Watch(net, tmp_path / "run", flush_seconds=0) as w:
        w.begin()
        if case["ref"] is lm_ref:
            out, _ = net(x, net.init_hidden(x.shape[0] if net.rnn.batch_first else x.shape[1]))
        else:
            out = net(x)
        loss = flat_loss(out, y, case["loss"])
        opt.zero_grad()
        loss.backward()
        snap = w.step(opt, loss, out, y.reshape(-1) if y.dim() > 1 else y)
        layer_names, act_names = list(w.probe.layer_names), list(w.probe.act_names)
    for h in handles:
        h.remove()
    check(case, snap, layer_names, act_names, net, net64, reference(case, net64, x.to(F64) if
          x.is_floating_point() else x, y, masks), w_before)
    assert bool(stepped) == bool(case.get("steps"))
    h, _ = record.load(tmp_path / "run")
    assert h.act_names == act_names and h.layer_names == layer_names
    if case["ref"] in (lm_ref, cell_ref):
        assert h.series("time_grad_norm").shape == (1, T)
        how = w.spec["watched"]["time_grad"]   # the record says how dL/dh_t was measured
        kind = case["kwargs"].get("rnn_type")
        assert "every recorded step" in how and ("zero tap" in how) == (kind in ("LSTM", "RNN"))
        assert ("backward hands out every dL/dh_t" in how) == (kind == "LSTM")
    # the watched module is left as it was: no hooks, its own fused forward
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())
    assert "forward" not in net.__dict__ and all("forward" not in m.__dict__ for m in net.modules())


@pytest.mark.parametrize("name", CASES)
def test_spec_path_measures_real_models_like_autograd(name, tmp_path, monkeypatch):
    case = CASES[name]
    stepped = _step_path(monkeypatch, case)
    (tmp_path / "models.py").write_text(SOURCE)
    x, y = make_data(case)
    if case.get("time_major"):   # stored as the model takes it: [time, samples]
        np.savez(tmp_path / "d.npz", x=x.t().numpy(), y=y.t().numpy())
    else:
        np.savez(tmp_path / "d.npz", x=x.numpy(), y=y.numpy())
    model = {"python": "models.py", "class": case["cls"], "kwargs": case["kwargs"]}
    for k in ("forward_args", "output"):
        if k in case:
            model[k] = case[k]
    data = {"kind": "npz", "path": "d.npz", "test_fraction": 0, "time_major": bool(case.get("time_major"))}
    if case.get("tokens"):
        data["classes"] = V if case["ref"] is lm_ref else 3
    spec = {"data": data, "model": model,
            "train": {"batch_size": None, "optimizer": "sgd", "lr": LR, "loss": case["loss"], "seed": 4}}
    exp = experiment.build(spec, tmp_path)
    assert exp.data.x_train.dtype == (np.int64 if case.get("tokens") else np.float32)
    net = exp.model.module
    torch.manual_seed(4)
    fresh = NS[case["cls"]](**case["kwargs"])   # the same weights: build draws them with train.seed
    assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), net.parameters()))
    net64 = float64_copy(net)
    tr = Trainer(exp)
    w_before = {n: p.detach().clone() for n, p in net.named_parameters()}
    masks, handles = dropout_masks(net)
    snap = tr.train_step()
    for h in handles:
        h.remove()
    xt, yt = torch.as_tensor(exp.data.x_train), torch.as_tensor(exp.data.y_train)
    if case.get("time_major"):
        xt, yt = xt.t(), yt.t()
    check(case, snap, tr.probe.layer_names, tr.probe.act_names, net, net64,
          reference(case, net64, xt.to(F64) if xt.is_floating_point() else xt, yt, masks), w_before)
    assert bool(stepped) == bool(case.get("steps"))
    if case["ref"] in (lm_ref, cell_ref):
        assert experiment.time_steps(exp) == T
    # a second step: the same call sites, still measured
    snap2 = tr.train_step()
    assert np.isfinite(snap2.preact_std).all() and np.isfinite(snap2.delta_norm).all()
