"""The tracer sees every functional activation, in-place or not, with z taken before the call."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from backprop_lab.engine.watch import Watch

F64 = torch.float64
# (op as the record names it, the call made in forward, the activation autograd differentiates, max f')
CALLS = [
    ("relu", lambda z: F.relu(z), torch.relu, 1.0),
    ("relu", lambda z: torch.relu(z), torch.relu, 1.0),
    ("relu", lambda z: F.relu(z, inplace=True), torch.relu, 1.0),
    ("relu", lambda z: z.relu_(), torch.relu, 1.0),
    ("sigmoid", lambda z: torch.sigmoid(z), torch.sigmoid, 0.25),
    ("sigmoid", lambda z: torch.sigmoid_(z), torch.sigmoid, 0.25),
    ("tanh", lambda z: z.tanh(), torch.tanh, 1.0),
    ("tanh", lambda z: z.tanh_(), torch.tanh, 1.0),
    ("gelu", lambda z: F.gelu(z), F.gelu, 1.1289),
    ("leaky_relu", lambda z: F.leaky_relu(z, 0.2), lambda z: F.leaky_relu(z, 0.2), 1.0),
    ("leaky_relu", lambda z: F.leaky_relu_(z, 0.1), lambda z: F.leaky_relu(z, 0.1), 1.0),
    ("elu", lambda z: F.elu(z, alpha=1.5), lambda z: F.elu(z, 1.5), 1.5),
    ("elu", lambda z: F.elu(z, inplace=True), F.elu, 1.0),
    ("silu", lambda z: F.silu(z), F.silu, 1.09984),
    ("softplus", lambda z: F.softplus(z), F.softplus, 1.0),
]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fcs = nn.ModuleList(nn.Linear(6, 6) for _ in CALLS)
        self.out = nn.Linear(6, 3)

    def forward(self, x):
        for fc, (_, call, _, _) in zip(self.fcs, CALLS):
            x = call(fc(x) * 3.0)   # wide z: some saturation, some dead units
        return self.out(x)


def test_every_functional_activation_and_in_place_form_is_measured_like_autograd(tmp_path):
    torch.manual_seed(0)
    net = Net()
    ref = copy.deepcopy(net).to(F64)
    x, y = torch.randn(40, 6), torch.randint(0, 3, (40,))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with Watch(net, tmp_path / "run", flush_seconds=0) as w:
        w.begin()
        out = net(x)
        loss = F.cross_entropy(out, y) + 0 * torch.sigmoid(out).sum()   # the loss's sigmoid is not the model's
        opt.zero_grad()
        loss.backward()
        snap = w.step(opt, loss, out, y)
        names = list(w.probe.act_names)
    assert names == [f"Net -> {op}" + (f"#{k + 1}" if k else "") + " (functional)"
                     for op, k in zip([c[0] for c in CALLS],
                                      [sum(c[0] == d[0] for d in CALLS[:i]) for i, c in enumerate(CALLS)])]
    h = x.to(F64)
    for j, (fc, (_, _, f, max_d)) in enumerate(zip(ref.fcs, CALLS)):
        z = (fc(h) * 3.0).detach()
        zz = z.clone().requires_grad_()
        a = f(zz)
        d, = torch.autograd.grad(a.sum(), zz)
        h = a.detach()
        assert snap.preact_mean[j] == pytest.approx(float(z.mean()), abs=1e-5 * float(z.std())), names[j]
        assert snap.preact_std[j] == pytest.approx(float(z.std(correction=0)), rel=1e-5), names[j]
        assert snap.mean_derivative[j] == pytest.approx(float(d.mean()), rel=1e-4, abs=1e-6), names[j]
        assert snap.saturated_frac[j] == pytest.approx(float((d < 0.01 * max_d).to(F64).mean()), abs=1e-9), names[j]
        assert snap.dead_frac[j] == pytest.approx(float((d.abs().amax(0) == 0).to(F64).mean()), abs=1e-9), names[j]


def test_a_call_site_seen_only_after_the_first_step_is_not_added(tmp_path):
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)
            self.late = False

        def forward(self, x):
            x = torch.tanh(self.fc(x))
            return torch.sigmoid(x) if self.late else x

    net = Branchy()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x = torch.randn(8, 3)
    with Watch(net, tmp_path / "run", flush_seconds=0) as w:
        for step in range(3):
            net.late = step > 0
            w.begin()
            loss = net(x).square().mean()
            opt.zero_grad()
            loss.backward()
            snap = w.step(opt, loss)
            assert w.probe.act_names == ["fc -> tanh (functional)"]
            assert np.isfinite(snap.preact_std).all()


@pytest.mark.parametrize("cls,steps", [(nn.LSTM, False), (nn.LSTM, True), (nn.GRU, False), (nn.RNN, False)])
@pytest.mark.parametrize("batch_first", [False, True])
def test_the_unrolled_layer_gives_the_fused_output_also_with_dropout(cls, steps, batch_first, monkeypatch):
    """Same weights, same math, and on the CPU the same dropout draws between layers (an LSTM's
    first layer with taps, or step by step: engine/lstm_steps.py)."""
    from backprop_lab.engine import lstm_steps
    from backprop_lab.engine.custom import instrument
    monkeypatch.setattr(lstm_steps, "STEPS_FROM", 0 if steps else 10 ** 9)
    torch.manual_seed(0)
    net = cls(5, 6, 3, dropout=0.5, bidirectional=True, batch_first=batch_first)
    x = torch.randn(4, 7, 5) if batch_first else torch.randn(7, 4, 5)
    h0 = torch.randn(6, 4, 6)
    hx = (h0, torch.randn(6, 4, 6)) if cls is nn.LSTM else h0
    torch.manual_seed(1)
    out, h = net(x, hx)
    model = instrument(net)
    model.tracer.start()
    try:
        torch.manual_seed(1)
        out2, h2 = net(x, hx)
        assert model.recurrent.time_steps == 7
        assert _graph_has(out2.grad_fn, "_LSTMLayerBackward") == steps
    finally:
        model.tracer.stop()
    torch.testing.assert_close(out2, out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h2, h, rtol=1e-5, atol=1e-6)


def cell_reference(net, x, hx):
    """A fused nn.LSTM / nn.RNN as float64 cells with its weights: (output, h_n, c_n, {key: h_t of layer 0})."""
    lstm = isinstance(net, nn.LSTM)
    dirs = 2 if net.bidirectional else 1
    h0, c0 = hx if lstm else (hx, None)
    seq, hs, h_n, c_n = x, {}, [], []
    for layer in range(net.num_layers):
        outs = []
        for d in range(dirs):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            if lstm:
                cell = nn.LSTMCell(seq.shape[-1], net.hidden_size)
            else:
                cell = nn.RNNCell(seq.shape[-1], net.hidden_size, nonlinearity=net.nonlinearity)
            cell = cell.to(F64)
            for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                setattr(cell, n, nn.Parameter(getattr(net, n + sfx).detach().to(F64)))
            h, c = h0[layer * dirs + d], c0[layer * dirs + d] if lstm else None
            out = [None] * len(seq)
            for t in (range(len(seq)) if d == 0 else reversed(range(len(seq)))):
                h, c = cell(seq[t], (h, c)) if lstm else (cell(seq[t], h), None)
                if layer == 0:
                    h.retain_grad()
                    hs[t if d == 0 else (t, 1)] = h
                out[t] = h
            outs.append(torch.stack(out))
            h_n.append(h)
            c_n.append(c)
        seq = torch.cat(outs, -1)
    return seq, torch.stack(h_n), torch.stack(c_n) if lstm else None, hs


def _graph_has(fn, name: str) -> bool:
    """Whether a node named ``name`` is in the autograd graph below ``fn``."""
    seen, todo = set(), [fn]
    while todo:
        f = todo.pop()
        if f is None or f in seen:
            continue
        seen.add(f)
        if type(f).__name__ == name:
            return True
        todo += [g for g, _ in f.next_functions]
    return False


@pytest.mark.parametrize("cls,bidirectional,layers,path", [
    (nn.LSTM, False, 2, "steps"), (nn.LSTM, True, 2, "steps"), (nn.LSTM, True, 1, "steps"),
    (nn.LSTM, False, 2, "taps"), (nn.LSTM, True, 2, "taps"), (nn.RNN, False, 3, "taps"), (nn.RNN, True, 2, "taps")])
def test_the_fused_time_taps_get_the_total_derivative_of_every_h_t(cls, bidirectional, layers, path, monkeypatch):
    """The first layer's taps of a fused nn.LSTM / nn.RNN receive dL/dh_t through the readout, every
    later step and the final state (h_n and c_n in the loss too), as float64 cells unrolled by hand; and
    the weights' gradients are those of the plain fused layer. ``path``: an LSTM on the CPU goes through
    engine/lstm_steps.py ("steps", forced here on so small a layer) or is the fused kernel with zero taps
    ("taps": what a small LSTM gets, and any on a GPU or under autocast)."""
    from backprop_lab.engine import lstm_steps
    from backprop_lab.engine.custom import instrument
    monkeypatch.setattr(lstm_steps, "STEPS_FROM", 0 if path == "steps" else 10 ** 9)
    torch.manual_seed(0)
    net = cls(5, 6, layers, bidirectional=bidirectional)
    dirs = 2 if bidirectional else 1
    x = torch.randn(7, 4, 5)
    hx = torch.randn(layers * dirs, 4, 6)
    hx = (hx, torch.randn(layers * dirs, 4, 6)) if cls is nn.LSTM else hx
    wo, wh = torch.randn(7, 4, 6 * dirs), torch.randn(layers * dirs, 4, 6)

    def loss_of(out, h):
        h_n, c_n = h if cls is nn.LSTM else (h, None)
        loss = (out * wo.to(out.dtype)).sum() + (h_n.tanh() * wh.to(out.dtype)).sum()
        return loss + (c_n.square().sum() if c_n is not None else 0)

    plain = copy.deepcopy(net)
    loss_of(*plain(x, hx)).backward()
    model = instrument(net)
    seen = []   # (the time steps, a leaf tensor whose gradient holds theirs on its first axis)
    model.recurrent.on_hidden = lambda keys, s: seen.append((keys, s))
    model.tracer.start()
    try:
        out, h = net(x, hx)
    finally:
        model.tracer.stop()
    loss_of(out, h).backward()
    model.recurrent.remove()
    model.tracer.remove()
    hx64 = tuple(t.to(F64) for t in hx) if cls is nn.LSTM else hx.to(F64)
    out64, h_n64, c_n64, hs = cell_reference(net, x.to(F64), hx64)
    loss_of(out64, (h_n64, c_n64) if cls is nn.LSTM else h_n64).backward()
    assert len(seen) == dirs and all(s.is_leaf and s.shape == (7, 4, 6) for _, s in seen)
    assert _graph_has(out.grad_fn, "_LSTMLayerBackward") == (path == "steps")
    if path == "taps":   # zeros: the outputs are the fused ones
        assert not any(s.detach().any() for _, s in seen)
    taps = {key: s.grad[row] for keys, s in seen for row, key in enumerate(keys)}
    assert sorted(taps, key=str) == sorted(hs, key=str) and len(taps) == 7 * dirs
    for key, g in taps.items():
        torch.testing.assert_close(g.to(F64), hs[key].grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.to(F64), out64, rtol=1e-5, atol=1e-6)
    for (n, p), q in zip(net.named_parameters(), plain.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6, msg=n)
