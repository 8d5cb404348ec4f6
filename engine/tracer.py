"""Seeing inside a user's module during its watched forward pass.

Module hooks see modules; a user's ``F.relu(self.fc1(x))`` is no module. While the
probe measures a step, a ``TorchFunctionMode`` (PyTorch's supported way to
intercept torch functions) sees every call of an activation function, functional
(``F.relu``, ``torch.tanh``, ``x.sigmoid()``, ``F.gelu``, ``F.leaky_relu``,
``F.elu``, ``F.silu``, ``F.softplus``, and their in-place forms) or made by an
activation module's own forward (``nn.ReLU`` calls ``F.relu``). Module pre/post
hooks keep the stack of the modules being called, so each call is placed:

* a call site is (innermost module being called, op, ordinal of that pair in this
  forward pass). A module called k times per forward gives k sites, each with its
  own z; names are given once, when a site is first seen, and are the same at
  every step: ``relu (ReLU)``, ``relu#2 (ReLU)`` (the second call of one
  ``nn.ReLU``), ``fc1 -> relu (functional)`` (z is fc1's output), ``block ->
  tanh (functional)`` (z made by some other op inside ``block``).
* z is taken before the call, so an in-place activation cannot overwrite it
  (a copy is made for in-place calls only).

Sites are found on a first watched forward pass (the spec path runs one on zeros
when the model is built; ``Watch`` finds them on its first step) and then
sealed: a call site seen only later is not measured. Calls made while no module
of the model is being called (a loss's ``torch.sigmoid``) are not the model's.
"""
from __future__ import annotations

import warnings

import torch
from torch import _VF
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import PackedSequence
from torch.overrides import TorchFunctionMode

from . import lstm_steps
from .activations import activation
from .catalog import EXTRA_TORCH_CLASSES, TORCH_CLASS_TYPES

_T = torch.Tensor


def _arg(args, kwargs, i, name, default):
    return args[i] if len(args) > i else kwargs.get(name, default)


def _plain(kind):
    return lambda a, k: {"type": kind}


def _flag(i):
    return lambda a, k: bool(_arg(a, k, i, "inplace", False))


def _never(a, k):
    return False


def _always(a, k):
    return True


def _gelu(a, k):
    return {"type": "gelu"} if _arg(a, k, 1, "approximate", "none") == "none" else None


def _leaky(a, k):
    return {"type": "leaky_relu", "slope": float(_arg(a, k, 1, "negative_slope", 0.01))}


def _elu(a, k):
    return {"type": "elu", "alpha": float(_arg(a, k, 1, "alpha", 1.0))}


def _softplus(a, k):
    plain = _arg(a, k, 1, "beta", 1) == 1 and _arg(a, k, 2, "threshold", 20) == 20
    return {"type": "softplus"} if plain else None  # the probes know f' of beta 1, threshold 20


# torch function -> (op, spec layer of its activation (None: parameters not covered), in place?)
ACT_FUNCS = {
    F.relu: ("relu", _plain("relu"), _flag(1)), torch.relu: ("relu", _plain("relu"), _never),
    _T.relu: ("relu", _plain("relu"), _never), torch.relu_: ("relu", _plain("relu"), _always),
    _T.relu_: ("relu", _plain("relu"), _always),
    torch.sigmoid: ("sigmoid", _plain("sigmoid"), _never), _T.sigmoid: ("sigmoid", _plain("sigmoid"), _never),
    torch.sigmoid_: ("sigmoid", _plain("sigmoid"), _always),
    _T.sigmoid_: ("sigmoid", _plain("sigmoid"), _always),
    torch.tanh: ("tanh", _plain("tanh"), _never), _T.tanh: ("tanh", _plain("tanh"), _never),
    torch.tanh_: ("tanh", _plain("tanh"), _always), _T.tanh_: ("tanh", _plain("tanh"), _always),
    F.gelu: ("gelu", _gelu, _never),
    F.leaky_relu: ("leaky_relu", _leaky, _flag(2)), F.leaky_relu_: ("leaky_relu", _leaky, _always),
    F.elu: ("elu", _elu, _flag(2)), F.elu_: ("elu", _elu, _always),
    F.silu: ("silu", _plain("silu"), _flag(1)),
    F.softplus: ("softplus", _softplus, _never),
}
# activation modules: a call made by their forward is named after the module
ACT_MODULES = tuple(getattr(nn, cls) for cls in (*TORCH_CLASS_TYPES, *EXTRA_TORCH_CLASSES))   # the catalogue's


class Tracer(TorchFunctionMode):
    """The module stack and the activation call sites of one user's module (see the module doc).

    ``act_layers`` is the Model's list [(name, module, Activation)], extended as sites are
    found; ``on_act(i, z, a)`` (set by the probe) gets each measured call."""

    def __init__(self, net: nn.Module, act_layers: list, weight_modules: dict):
        super().__init__()
        self.net, self.act_layers = net, act_layers
        self.weight_modules = weight_modules      # id(module) -> its path, for names
        self.sites: dict = {}                     # (path, op, ordinal) -> index in act_layers
        self.names: set = {n for n, _, _ in act_layers}
        self.sealed = False
        self.on_act = None
        self.recording = False
        self.muted = 0            # > 0 inside a probe's own computation (an unrolled RNN)
        self.forwards = 0         # watched forward passes started
        self._entered = False
        self._stack: list = []
        self._count: dict = {}
        self._made_by: dict = {}  # id(tensor) -> (tensor, path of the weight layer that output it)
        self._handles = []
        for path, m in net.named_modules():
            self._handles.append(m.register_forward_pre_hook(self._push(path)))
            self._handles.append(m.register_forward_hook(self._pop(path), always_call=True))

    # ------------------------------------------------------------------ module stack
    def _push(self, path):
        def hook(m, inputs):
            if self.recording:
                self._stack.append((path, m))
        return hook

    def _pop(self, path):
        def hook(m, inputs, output):
            if not self.recording:
                return
            if self._stack and self._stack[-1][1] is m:
                self._stack.pop()
            if not self.sealed and id(m) in self.weight_modules:
                out = output[0] if isinstance(output, (tuple, list)) and output else output
                if isinstance(out, torch.Tensor):
                    self._made_by[id(out)] = (out, path)
        return hook

    def start(self) -> None:
        """Record from now on (the watched forward pass begins): ordinals count from 1 again."""
        self._stack.clear()
        self._count.clear()
        self.forwards += 1
        self.recording = True
        if not self._entered:
            self.__enter__()
            self._entered = True

    def pause(self) -> None:
        """Record no more calls, by flag only (safe inside a backward pass, on any thread); the
        function mode is left at the next ``stop``, on the thread that entered it."""
        self.recording = False

    def stop(self) -> None:
        self.recording = False
        self._stack.clear()
        self._made_by.clear()
        if self._entered:
            self._entered = False
            self.__exit__(None, None, None)

    def remove(self) -> None:
        self.stop()
        for h in self._handles:
            h.remove()

    # ------------------------------------------------------------------ interception
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        try:
            spec = ACT_FUNCS.get(func) if self._stack and not self.muted else None
        except TypeError:   # an unhashable callable: not one of ours
            spec = None
        if spec is None:
            return func(*args, **kwargs)
        op, layer_of, in_place = spec
        z = args[0] if args else kwargs.get("input")
        layer = layer_of(args, kwargs)
        if layer is None or not isinstance(z, torch.Tensor) or not z.is_floating_point():
            return func(*args, **kwargs)
        path, top = self._stack[-1]
        base = (path, "module" if isinstance(top, ACT_MODULES) else op)
        k = self._count[base] = self._count.get(base, 0) + 1
        i = self.sites.get((*base, k))
        if i is None:
            if self.sealed:
                return func(*args, **kwargs)
            i = self._add((*base, k), top, op, layer, z)
        z = z.detach().clone() if in_place(args, kwargs) else z.detach()
        out = func(*args, **kwargs)
        if self.on_act is not None and isinstance(out, torch.Tensor):
            self.on_act(i, z, out.detach())
        return out

    def _add(self, key, module, op, layer, z) -> int:
        path, how, _ = key
        if how == "module":
            stem, tail = path or type(self.net).__name__, f" ({type(module).__name__})"
        else:
            made = self._made_by.get(id(z))
            where = made[1] if made is not None and made[0] is z else (path or type(self.net).__name__)
            stem, tail = f"{where} -> {op}", " (functional)"
        name, n = stem + tail, 1
        while name in self.names:
            n += 1
            name = f"{stem}#{n}{tail}"
        self.names.add(name)
        self.sites[key] = len(self.act_layers)
        self.act_layers.append((name, module, activation(layer)))
        return self.sites[key]


# ----------------------------------------------------------------------------- fused recurrent layers
class Unrolled:
    """A fused nn.RNN / nn.LSTM / nn.GRU whose first layer's h_t are seen while a step is watched.

    The fused kernel hides h_t of the inner steps, so dL/dh_t through every later step
    (Contract 2's time_grad_norm) cannot be read from its output gradient, which holds only
    the direct (readout) part. While the tracer records, ``on_hidden(key, s)`` gets, for each
    time step of the first layer (key t for the forward direction, (t, 1) for the reverse one
    of a bidirectional layer), a tensor s_t whose gradient is exactly that total derivative (a
    fused layer's: ``on_hidden([keys], s)``, one tensor whose first axis holds these steps):

    * nn.LSTM on the CPU (float32 / float64, no autocast) where that is the cheaper way (batch x
      H^2 large: lstm_steps.pays): the first layer (each direction) is engine/lstm_steps.py's
      autograd function, whose backward computes every dL/dh_t anyway and hands them out as the
      gradient of one tap tensor (T, batch, H) a direction; the other layers stay fused.
    * nn.RNN, and nn.LSTM otherwise (small, a GPU, autocast): still the fused kernels. A zero tap
      s_t (one leaf (T, batch, H) a direction) is added to the first layer's output h_t and
      to its final state, and enters step t+1's gates through an extra input column block
      whose input weight is W_hh (the layer's own recurrent weight): the fused backward then
      gives dL/ds_t = dL/dout_t (direct) + W_hh^T dL/dgates_(t+1) (through the recurrence)
      [+ dL/dh_n at the last step], the total derivative, with no step-by-step re-run. The
      values are the fused ones (s = 0; the extra input block adds W_hh 0), the gradients of
      the weights too (the extra block's weight gradient is dL/dgates 0^T = 0). Cost: the
      first layer's input product is wider by H per direction.
    * nn.GRU (whose recurrent term sits inside the reset gate, r * (W_hn h + b_hn), and which
      also passes h on as z * h): the same recurrence written with torch ops, one time step at
      a time, every layer and direction with the layer's own weights; autograd goes through
      each h_t (a hook on it sees the summed gradient). Cost: T x layers x directions small steps.

    Outputs equal the fused ones to float rounding (on the CPU with the same dropout draws
    between layers: the same at::dropout calls on the same shapes).
    """

    def __init__(self, module: nn.RNNBase, tracer: Tracer):
        self.module, self.tracer = module, tracer
        self.on_hidden = None
        self.measure = True       # False: this watched step keeps the plain fused kernel (no time gradient)
        self.time_steps = 0       # the sequence length of the last unrolled call
        self._fused = module.forward
        module.forward = self.forward

    def remove(self) -> None:
        if self.module.__dict__.get("forward") == self.forward:
            del self.module.forward

    @property
    def description(self) -> str:
        """How time_grad_norm is measured, for the record."""
        m = self.module
        weights = list(m.parameters())
        if isinstance(m, nn.GRU):
            how = "the layer run one time step at a time with its own weights"
        elif isinstance(m, nn.LSTM) and weights and lstm_steps.usable(weights[0], weights):
            how = (f"where the batch x {m.hidden_size}^2 is at least {lstm_steps.steps_from(weights[0].dtype):,}, "
                   "its first layer "
                   "as an autograd function of its own, one time step at a time, whose backward hands out "
                   "every dL/dh_t; else its fused kernel with a zero tap on each h_t (exact either way)")
        else:
            how = "its fused kernel with a zero tap on each h_t (exact)"
        return (f"||dL/dh_t|| of the first layer of the {type(self.module).__name__}, the total derivative "
                f"through every later step, on every recorded step: {how}")

    def forward(self, input, hx=None):
        if not (self.tracer.recording and self.measure) or isinstance(input, PackedSequence):
            return self._fused(input, hx)
        self.tracer.muted += 1
        try:
            return self._unrolled(input, hx)
        finally:
            self.tracer.muted -= 1

    def _unrolled(self, x, hx):
        m = self.module
        lstm, gru = isinstance(m, nn.LSTM), isinstance(m, nn.GRU)
        batched = x.dim() == 3
        if not batched:
            x = x.unsqueeze(1)
            if hx is not None:
                hx = tuple(h.unsqueeze(1) for h in hx) if lstm else hx.unsqueeze(1)
        if m.batch_first and batched:
            x = x.transpose(0, 1)          # (time, batch, features) from here on
        steps, b = x.shape[0], x.shape[1]
        dirs, H = 2 if m.bidirectional else 1, m.hidden_size
        if hx is None:
            h0 = x.new_zeros(m.num_layers * dirs, b, H)
            c0 = h0 if lstm else None
        else:
            h0, c0 = hx if lstm else (hx, None)
        self.time_steps = steps
        if gru:
            out, h_n, c_n = self._step_by_step(x, h0, c0)
        else:
            out, h_n, c_n = self._fused_with_taps(x, h0, c0)
        if m.batch_first and batched:
            out = out.transpose(0, 1)
        if not batched:
            out, h_n = out.squeeze(1), h_n.squeeze(1)
            c_n = c_n.squeeze(1) if lstm else None
        return (out, (h_n, c_n)) if lstm else (out, h_n)

    def _kernel(self):
        m = self.module
        if isinstance(m, nn.LSTM):
            return _VF.lstm
        return _VF.rnn_tanh if m.nonlinearity == "tanh" else _VF.rnn_relu

    def _call(self, x, h0, c0, weights, layers, dropout):
        """The fused kernel on (time, batch, features) x: (output, h_n, c_n or None)."""
        m = self.module
        lstm = isinstance(m, nn.LSTM)
        with warnings.catch_warnings():   # cuDNN: these weights are not one flat buffer (a copy, fine)
            warnings.filterwarnings("ignore", "RNN module weights are not part")
            got = self._kernel()(x, (h0, c0) if lstm else h0, weights, m.bias, layers, dropout, m.training,
                                 m.bidirectional, False)
        return (got[0], got[1], got[2]) if lstm else (got[0], got[1], None)

    def _fused_with_taps(self, x, h0, c0):
        """nn.LSTM / nn.RNN: the first layer fused with its time-gradient taps s_t (see the class
        doc), or (an LSTM on the CPU where lstm_steps.pays) run by engine/lstm_steps.py, the other layers fused
        as they are."""
        m = self.module
        lstm = isinstance(m, nn.LSTM)
        dirs = 2 if m.bidirectional else 1
        per = len(m._flat_weights_names) // (m.num_layers * dirs)   # w_ih, w_hh[, b_ih, b_hh]
        weights = [getattr(m, n) for n in m._flat_weights_names]
        if lstm and lstm_steps.pays(x.shape[1], m.hidden_size, x.dtype) and lstm_steps.usable(
                x, weights[:dirs * per] + [h0, c0]):
            out, h_n, c_n = self._first_lstm_layer(x, h0, c0, weights[:dirs * per], per)
        else:
            out, h_n, c_n = self._first_layer_with_taps(x, h0, c0, weights[:dirs * per], per)
        if m.num_layers > 1:
            if m.dropout and m.training:
                out = F.dropout(out, m.dropout, True)
            out, h_rest, c_rest = self._call(out, h0[dirs:], None if c0 is None else c0[dirs:],
                                             weights[dirs * per:], m.num_layers - 1, m.dropout)
            h_n = torch.cat([h_n, h_rest])
            c_n = torch.cat([c_n, c_rest]) if lstm else None
        return out, h_n, c_n

    def _first_lstm_layer(self, x, h0, c0, weights, per):
        """An LSTM's first layer by engine/lstm_steps.py (each direction; the reverse one on the
        time-reversed sequence): the gradient of its tap holds every dL/dh_t."""
        m = self.module
        steps, b, dirs, H = x.shape[0], x.shape[1], 2 if m.bidirectional else 1, m.hidden_size
        outs, hs, cs = [], [], []
        for d in range(dirs):
            w_ih, w_hh, *bias = weights[d * per:(d + 1) * per]
            tap = None
            if self.on_hidden is not None and torch.is_grad_enabled():
                tap = x.new_empty(steps, b, H).requires_grad_()   # its values are never read
                # row s of the reverse direction's tap is time step T-1-s
                self.on_hidden([t if d == 0 else (steps - 1 - t, 1) for t in range(steps)], tap)
            xd = x if d == 0 else x.flip(0)
            out, h, c = lstm_steps.lstm_layer(xd, h0[d], c0[d], w_ih, w_hh, *(bias or (None, None)), tap)
            outs.append(out if d == 0 else out.flip(0))
            hs.append(h)
            cs.append(c)
        out = outs[0] if dirs == 1 else torch.cat(outs, 2)
        return out, torch.stack(hs), torch.stack(cs)

    def _first_layer_with_taps(self, x, h0, c0, weights, per):
        """The first layer fused, with its time-gradient taps s_t (see the class doc)."""
        m = self.module
        steps, b, dirs, H = x.shape[0], x.shape[1], 2 if m.bidirectional else 1, m.hidden_size
        taps, extra, first = [], [], []
        for d in range(dirs):
            seq = x.new_zeros(steps, b, H).requires_grad_()   # s_t = seq[t]
            if self.on_hidden is not None:
                self.on_hidden([t if d == 0 else (t, 1) for t in range(steps)], seq)
            taps.append(seq)
            zero = x.new_zeros(1, b, H)
            # step t's gates see h_(t-1) (forward) or h_(t+1) (reverse): that step's tap enters them
            extra.append(torch.cat([zero, seq[:-1]]) if d == 0 else torch.cat([seq[1:], zero]))
        for d in range(dirs):
            w_ih, w_hh, *rest = weights[d * per:(d + 1) * per]
            blocks = [w_hh if k == d else w_hh.new_zeros(w_hh.shape) for k in range(dirs)]
            first += [torch.cat([w_ih, *blocks], 1), w_hh, *rest]
        out, h_n, c_n = self._call(torch.cat([x, *extra], 2), h0[:dirs], None if c0 is None else c0[:dirs],
                                   first, 1, 0.0)
        out = out + (taps[0] if dirs == 1 else torch.cat(taps, 2))   # the direct (readout) part
        last = [taps[0][-1]] + ([taps[1][0]] if dirs == 2 else [])    # h_n: h_(T-1), reverse h_0
        return out, h_n + torch.stack(last), c_n

    def _step_by_step(self, x, h0, c0):
        """The recurrence as torch ops, one time step at a time (nn.GRU): (output, h_n, c_n)."""
        m = self.module
        lstm, gru = isinstance(m, nn.LSTM), isinstance(m, nn.GRU)
        steps = x.shape[0]
        dirs = 2 if m.bidirectional else 1
        layer_in, h_n, c_n = x, [], []
        for layer in range(m.num_layers):
            outs = []
            for d in range(dirs):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                w_ih, w_hh = getattr(m, "weight_ih" + sfx), getattr(m, "weight_hh" + sfx)
                b_ih = getattr(m, "bias_ih" + sfx) if m.bias else None
                b_hh = getattr(m, "bias_hh" + sfx) if m.bias else None
                h = h0[layer * dirs + d]
                c = c0[layer * dirs + d] if lstm else None
                seq = [None] * steps
                gis = F.linear(layer_in, w_ih, b_ih)   # the input side of every step in one product
                for t in (range(steps) if d == 0 else range(steps - 1, -1, -1)):
                    gi, gh = gis[t], F.linear(h, w_hh, b_hh)
                    if lstm:   # gates i, f, g, o
                        i, f, g, o = (gi + gh).chunk(4, 1)
                        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                        h = torch.sigmoid(o) * torch.tanh(c)
                    elif gru:  # gates r, z, n
                        ir, iz, i_n = gi.chunk(3, 1)
                        hr, hz, h_n_ = gh.chunk(3, 1)
                        r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
                        h = (1 - z) * torch.tanh(i_n + r * h_n_) + z * h
                    else:
                        h = torch.tanh(gi + gh) if m.nonlinearity == "tanh" else torch.relu(gi + gh)
                    if layer == 0 and self.on_hidden is not None:
                        self.on_hidden(t if d == 0 else (t, 1), h)
                    seq[t] = h
                outs.append(torch.stack(seq))
                h_n.append(h)
                if lstm:
                    c_n.append(c)
            layer_in = outs[0] if dirs == 1 else torch.cat(outs, -1)
            if layer < m.num_layers - 1 and m.dropout and m.training:
                layer_in = F.dropout(layer_in, m.dropout, True)
        return layer_in, torch.stack(h_n), torch.stack(c_n) if lstm else None


class CellSteps:
    """A recurrent cell (nn.RNNCell / nn.LSTMCell / nn.GRUCell) that the user's forward calls once
    per time step: each call's output h is h_t (t = the call's ordinal in the forward pass), and
    the gradient that reaches it is the total derivative dL/dh_t. No extra cost."""

    def __init__(self, module: nn.RNNCellBase, tracer: Tracer):
        self.module, self.tracer = module, tracer
        self.on_hidden = None
        self.time_steps = 0
        self._calls, self._forward = 0, -1
        self._handle = module.register_forward_hook(self._hook)

    def remove(self) -> None:
        self._handle.remove()

    @property
    def description(self) -> str:
        return (f"||dL/dh_t|| of the output of the {type(self.module).__name__}'s t-th call in the forward pass, "
                "the total derivative, on every recorded step")

    def _hook(self, m, inputs, output):
        if not self.tracer.recording:
            return
        if self._forward != self.tracer.forwards:   # a new watched forward pass: t from 0
            self._forward, self._calls = self.tracer.forwards, 0
        h = output[0] if isinstance(output, tuple) else output
        if self.on_hidden is not None and isinstance(h, torch.Tensor):
            self.on_hidden(self._calls, h)
        self._calls += 1
        self.time_steps = self._calls


def first_recurrent(net: nn.Module, tracer: Tracer):
    """What follows the first recurrent layer's hidden states: the first fused layer that can be
    unrolled (an LSTM with proj_size cannot, yet), else the first recurrent cell; or None."""
    for m in net.modules():
        if isinstance(m, (nn.RNN, nn.LSTM, nn.GRU)) and getattr(m, "proj_size", 0) == 0:
            return Unrolled(m, tracer)
    for m in net.modules():
        if isinstance(m, nn.RNNCellBase):
            return CellSteps(m, tracer)
    return None
