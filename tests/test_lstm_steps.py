"""engine/lstm_steps.py: one LSTM layer whose backward hands out every dL/dh_t, against float64 autograd."""
import pytest
import torch
from torch import nn

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
def test_outputs_gradients_and_every_time_gradient_are_those_of_autograd(dtype, bias, x_grad):
    """Output, final states, the gradients of the input, the initial states, the weights and the
    biases, and the tap's gradient (row t = the total dL/dh_t, through the readout, every later step
    and h_n, c_n) equal float64 autograd on the same weights; loss terms in out, h_n and c_n."""
    torch.manual_seed(0)
    T, B, I, H = 9, 3, 5, 4
    cell = nn.LSTM(I, H, bias=bias).to(dtype)
    w = [p.detach().clone().requires_grad_() for p in cell.parameters()]
    w_ih, w_hh, b_ih, b_hh = w if bias else (*w, None, None)
    x = torch.randn(T, B, I, dtype=dtype, requires_grad=x_grad)
    h0 = torch.randn(B, H, dtype=dtype, requires_grad=True)
    c0 = torch.randn(B, H, dtype=dtype, requires_grad=True)
    wo, wh, wc = torch.randn(T, B, H, dtype=F64), torch.randn(B, H, dtype=F64), torch.randn(B, H, dtype=F64)

    def loss_of(out, h, c):
        return (out * wo).sum() + (h.tanh() * wh).sum() + (c * wc).square().sum()

    tap = x.new_empty(T, B, H).requires_grad_()
    out, h, c = lstm_layer(x, h0, c0, w_ih, w_hh, b_ih, b_hh, tap)
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
    """The benchmarks' layers (docs/performance.md): the LSTM LM's (batch 20, 256 units) goes step by
    step, the memory task's (batch 64, 64 units) keeps the fused kernel with taps."""
    assert pays(20, 256) and not pays(64, 64)


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
