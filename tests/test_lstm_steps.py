"""engine/lstm_steps.py: one LSTM layer whose backward hands out every dL/dh_t, against float64 autograd."""
import numpy as np
import pytest
import torch
from torch import nn

from backprop_lab.engine import lstm_steps
from backprop_lab.engine.lstm_steps import lstm_layer, pays, usable

F64 = torch.float64


def reference(x, h0, c0, w_ih, w_hh, b_ih, b_hh):
    """nn.LSTMCell-style steps in float64 autograd: (output, h_n, c_n, [h_t, each retaining its grad])."""
    h, c, hs = h0, c0, []
    for t in range(len(x)):
        gates = x[t] @ w_ih.t() + h @ w_hh.t() + (0 if b_ih is None else b_ih + b_hh)
        i, f, g, o = gates.chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        h.retain_grad()
        hs.append(h)
    return torch.stack(hs), h, c, hs


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("x_grad", [True, False])
@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("shape", [(9, 3, 5, 4), (30, 4, 1, 8), (6, 2, 12, 3)])
def test_outputs_gradients_and_every_time_gradient_are_those_of_autograd(dtype, bias, x_grad, compiled, shape):
    """Output, final states, the gradients of the input, the initial states, the weights and the
    biases, and the tap's gradient (row t = the total dL/dh_t, through the readout, every later step
    and h_n, c_n) equal float64 autograd on the same weights; loss terms in out, h_n and c_n. Both
    ways of the steps (compiled: engine/lstm_loops.py for float32 where numba is there; the torch
    calls), one input feature (the compiled steps add a few features' input part themselves) or 12
    (one product for the whole sequence), gates driven far into saturation on the longer sequence
    (weights x 3)."""
    torch.manual_seed(0)
    T, B, I, H = shape
    cell = nn.LSTM(I, H, bias=bias).to(dtype)
    scale = 1.0 if T < 30 else 3.0
    w = [(p.detach() * scale).requires_grad_() for p in cell.parameters()]
    w_ih, w_hh, b_ih, b_hh = w if bias else (*w, None, None)
    x = torch.randn(T, B, I, dtype=dtype, requires_grad=x_grad)
    h0 = torch.randn(B, H, dtype=dtype, requires_grad=True)
    c0 = torch.randn(B, H, dtype=dtype, requires_grad=True)
    wo, wh, wc = torch.randn(T, B, H, dtype=F64), torch.randn(B, H, dtype=F64), torch.randn(B, H, dtype=F64)

    def loss_of(out, h, c):
        return (out * wo).sum() + (h.tanh() * wh).sum() + (c * wc).square().sum()

    tap = x.new_empty(T, B, H).requires_grad_()
    out, h, c = lstm_layer(x, h0, c0, w_ih, w_hh, b_ih, b_hh, tap, compiled=compiled)
    loss_of(out.double(), h.double(), c.double()).backward()

    leaves = [x, h0, c0, w_ih, w_hh, b_ih, b_hh]
    leaves64 = [None if t is None else t.detach().to(F64).requires_grad_(t.requires_grad) for t in leaves]
    out64, h64, c64, hs64 = reference(*leaves64)
    loss_of(out64, h64, c64).backward()
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-13)
    for got, want in ((out, out64), (h, h64), (c, c64)):
        torch.testing.assert_close(got.to(F64), want.detach(), **tol)
    for name, a, b in zip(("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh"), leaves, leaves64):
        if a is None or not a.requires_grad:
            assert a is None or a.grad is None, name
            continue
        torch.testing.assert_close(a.grad.to(F64), b.grad, **tol, msg=name)
        assert a.grad.dtype == dtype
    torch.testing.assert_close(tap.grad.to(F64), torch.stack([g.grad for g in hs64]), **tol)


def test_without_a_tap_and_with_frozen_weights():
    """No tap: the layer is an LSTM layer as any other; weights that need no gradient get none."""
    torch.manual_seed(1)
    cell = nn.LSTM(3, 5)
    for p in cell.parameters():
        p.requires_grad_(False)
    x = torch.randn(6, 2, 3, requires_grad=True)
    h0 = c0 = torch.zeros(2, 5)
    out, h, c = lstm_layer(x, h0, c0, *cell.parameters())
    want, (h_ref, c_ref) = cell(x, (h0[None], c0[None]))
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h, h_ref[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(c, c_ref[0], rtol=1e-5, atol=1e-6)
    out.sum().backward()
    x_grad = x.grad.clone()
    x.grad = None
    want.sum().backward()
    torch.testing.assert_close(x_grad, x.grad, rtol=1e-5, atol=1e-6)
    assert all(p.grad is None for p in cell.parameters())


def test_a_second_derivative_is_refused_plainly():
    x = torch.randn(4, 2, 3, requires_grad=True)
    cell = nn.LSTM(3, 2)
    out, _, _ = lstm_layer(x, torch.zeros(2, 2), torch.zeros(2, 2), *cell.parameters())
    (g,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError):
        g.sum().backward()


def test_it_takes_only_what_it_computes_exactly():
    x, w = torch.randn(2, 2, 3), torch.randn(8, 3)
    assert usable(x, [w]) and usable(x.double(), [w.double()])
    assert not usable(x.half(), [w.half()]) and not usable(x, [w.double()])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not usable(x, [w])


def test_the_cheaper_way_is_chosen_by_the_layer_size():
    """The benchmarks' layers (docs/performance.md): with the compiled steps both the LSTM LM's
    (batch 20, 256 units) and the memory task's (batch 64, 64 units) go step by step, a small one
    (batch 8, 32 units) keeps the fused kernel with taps; with the torch calls alone (float64) only
    the LM's."""
    assert pays(20, 256, F64) and not pays(64, 64, F64) and not pays(8, 32)
    if lstm_steps.is_compiled(torch.float32):
        assert pays(20, 256) and pays(64, 64)
    assert not lstm_steps.is_compiled(F64)


def test_the_output_is_a_tensor_of_its_own_as_the_fused_kernels():
    """Not a view of a buffer: a change in place is allowed as on the fused kernel's output, and the
    backward through it is refused as there (both keep the output for their backward)."""
    torch.manual_seed(2)
    cell = nn.LSTM(3, 4)
    x = torch.randn(5, 2, 3)
    for run in (lambda: cell(x)[0], lambda: lstm_layer(x, torch.zeros(2, 4), torch.zeros(2, 4), *cell.parameters())[0]):
        out = run()
        assert out._base is None
        out.mul_(2)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            out.sum().backward()


# ----------------------------------------------------------------------------- the compiled loops
def _ulps(got, want):
    """|got - want| in units of float32's spacing at want (float64 arrays)."""
    return np.abs(got - want) / np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)


def test_the_compiled_sigmoid_and_tanh_are_within_two_ulp_of_float64():
    """engine/lstm_loops.py writes exp out (numba has no vector maths here): sigmoid and tanh over
    float32's range, near 0 and at the branch of tanh (|x| = 0.625), within 2.5 ulp of float64 (as
    torch's own sigmoid, 2.47 here); saturated ends exact (1 above), or below 2e-38."""
    k = pytest.importorskip("backprop_lab.engine.lstm_loops")
    x = np.concatenate([np.linspace(-120, 120, 400_001), np.linspace(-1, 1, 200_001),
                        10.0 ** np.linspace(-30, 1.5, 20_001), [0.625, np.nextafter(0.625, 0), 0.0]])
    x = np.concatenate([x, -x]).astype(np.float32)
    s, th = np.empty_like(x), np.empty_like(x)
    k.sigmoid_tanh(x, s, th)
    x64 = x.astype(np.float64)
    want_s, want_t = 1 / (1 + np.exp(-x64)), np.tanh(x64)
    inside = x >= -87   # below, exp(-x) is clamped at e^87: sigmoid 1.6e-38 (float32's smallest normal)
    assert _ulps(s, want_s)[inside].max() <= 2.5
    assert np.abs(s - want_s).max() < 1e-7 and s[x > 17].min() == 1.0 and s[x < -88].max() < 2e-38
    assert _ulps(th, want_t).max() <= 2.5
    assert th[x > 9.1].min() == 1.0 and th[x < -9.1].max() == -1.0 and th[x == 0].max() == 0.0


def test_the_compiled_sigmoid_and_tanh_pass_nan_on_and_take_infinities_to_their_limits():
    k = pytest.importorskip("backprop_lab.engine.lstm_loops")
    x = np.array([np.nan, np.inf, -np.inf, -0.0], dtype=np.float32)
    s, th = np.empty_like(x), np.empty_like(x)
    k.sigmoid_tanh(x, s, th)
    assert np.isnan(s[0]) and np.isnan(th[0])
    assert s[1] == 1.0 and 0 <= s[2] < 2e-38 and th[1] == 1.0 and th[2] == -1.0
    assert s[3] == 0.5 and th[3] == 0.0


def test_one_compiled_step_is_the_float64_step():
    """forward_step and backward_step (one time step each, in place) against the same formulas in
    float64 torch: the gates, c_t, tanh(c_t), h_t; then dL/dc_t, the four gate gradients and the
    bias sum, with and without the next step's forget gate."""
    k = pytest.importorskip("backprop_lab.engine.lstm_loops")
    rng = np.random.default_rng(0)
    B, H = 5, 12
    z = (rng.standard_normal((B, 4 * H)) * 4).astype(np.float32)
    c_prev = rng.standard_normal((B, H)).astype(np.float32)
    gates, c, tc, h = z.copy(), *(np.empty((B, H), np.float32) for _ in range(3))
    k.forward_step(gates, c_prev, c, tc, h)
    z64, cp64 = torch.from_numpy(z).double(), torch.from_numpy(c_prev).double()
    i, f, g, o = z64.chunk(4, 1)
    i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
    c64 = f * cp64 + i * g
    tol = dict(rtol=1e-6, atol=1e-7)
    for got, want in ((gates, torch.cat([i, f, g, o], 1)), (c, c64), (tc, c64.tanh()), (h, o * c64.tanh())):
        torch.testing.assert_close(torch.from_numpy(got).double(), want, **tol)
    dh = rng.standard_normal((B, H)).astype(np.float32)
    dc_next = rng.standard_normal((B, H)).astype(np.float32)
    f_next = rng.random((B, 4 * H)).astype(np.float32)
    for nxt in (f_next, None):
        dc, grads, db = dc_next.copy(), np.empty((B, 4 * H), np.float32), np.ones(4 * H)
        k.backward_step(gates, nxt, c_prev, tc, dh, dc, grads, db)
        i, f, g, o = torch.from_numpy(gates).double().chunk(4, 1)
        t64, dh64 = torch.from_numpy(tc).double(), torch.from_numpy(dh).double()
        dc64 = torch.from_numpy(dc_next).double()
        if nxt is not None:
            dc64 = dc64 * torch.from_numpy(nxt).double()[:, H:2 * H]
        dc64 = dc64 + dh64 * o * (1 - t64 ** 2)
        want = torch.cat([dc64 * g * i * (1 - i), dc64 * cp64 * f * (1 - f), dc64 * i * (1 - g ** 2),
                          dh64 * t64 * o * (1 - o)], 1)
        torch.testing.assert_close(torch.from_numpy(dc).double(), dc64, **tol)
        torch.testing.assert_close(torch.from_numpy(grads).double(), want, **tol)
        torch.testing.assert_close(torch.from_numpy(db), 1 + want.sum(0), **tol)


def test_the_compiled_steps_are_taken_where_numba_is_and_the_torch_calls_give_the_same():
    """float32 with numba: the compiled steps (and the two ways agree to float32 rounding); float64
    and compiled=False: the torch calls."""
    pytest.importorskip("backprop_lab.engine.lstm_loops")
    assert lstm_steps.is_compiled(torch.float32)
    lstm_steps.warm()   # (the worker's: both ways of the compiled steps loaded)
    torch.manual_seed(3)
    cell = nn.LSTM(2, 16)
    x = torch.randn(40, 8, 2)
    h0, c0 = torch.randn(8, 16), torch.randn(8, 16)
    got = []
    for compiled in (True, False):
        tap = x.new_empty(40, 8, 16).requires_grad_()
        out, h, c = lstm_layer(x, h0, c0, *cell.parameters(), tap, compiled=compiled)
        (out.sum() + h.square().sum() + c.sum()).backward()
        got.append([out, h, c, tap.grad] + [p.grad.clone() for p in cell.parameters()])
        cell.zero_grad()
    for a, b in zip(*got):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_buffers_come_back_only_when_the_graph_that_holds_them_is_freed():
    """The forward's buffers are kept for the next call of the same shape once nothing can use
    them again: a graph still held (a second backward through it with retain_graph) keeps its
    own, and gives the same gradients twice; a second forward meanwhile gets fresh buffers."""
    torch.manual_seed(4)
    cell = nn.LSTM(2, 5)
    x = torch.randn(6, 3, 2, requires_grad=True)
    h0 = c0 = torch.zeros(3, 5)
    key = (6, 3, 5, torch.float32)
    lstm_steps._FREE.clear()
    first = lstm_layer(x, h0, c0, *cell.parameters())   # (output, h_n, c_n): one graph node
    (g1,) = torch.autograd.grad(first[0].square().sum(), x, retain_graph=True)
    other = lstm_layer(x * 2, h0, c0, *cell.parameters())   # must not take first's buffers
    other[0].sum().backward()
    (g2,) = torch.autograd.grad(first[0].square().sum(), x)
    torch.testing.assert_close(g1, g2, rtol=0, atol=0)
    assert key not in lstm_steps._FREE
    del other
    assert len(lstm_steps._FREE[key]) == 1   # other's graph is gone: its buffers are back
    del first
    assert len(lstm_steps._FREE[key]) == 2
    again = lstm_layer(x, h0, c0, *cell.parameters())
    assert len(lstm_steps._FREE[key]) == 1 and again[0].shape == (6, 3, 5)
