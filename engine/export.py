"""`backprop-lab export`: write a runnable PyTorch file that builds the same module.

The file draws the weights in the same order with the same seed as
engine.build, so `build_model().state_dict()` equals the app's, tensor for
tensor. Custom models are not exported (they are already the user's code).
"""
from __future__ import annotations

from pathlib import Path

from .catalog import ACTIVATION_TYPES, CATALOG, NORM_TYPES, RECURRENT_TYPES
from .data import make_dataset
from .plan import plan
from .spec import SpecError, validate

_HEADER = '''"""{name}: exported from Backprop Lab. Run it: python {file}"""
import math

import torch
from torch import nn

SEED = {seed}


class Auxiliary(nn.Module):
    """An auxiliary classifier: x passes on unchanged; while training, head(x) is kept in
    .logits, and the training loss adds loss_weight * loss(logits, y). Identity in eval mode."""

    def __init__(self, head, weight):
        super().__init__()
        self.head, self.loss_weight, self.logits = head, weight, None

    def forward(self, x):
        self.logits = self.head(x) if self.training else None
        return x


class Residual(nn.Module):
    """y = f(x) + P x, with P a bias-free linear projection only where widths differ."""

    def __init__(self, body, proj=None):
        super().__init__()
        self.body, self.proj = body, proj

    def forward(self, x):
        return self.body(x) + (x if self.proj is None else self.proj(x))


class Recurrent(nn.Module):
    """An RNN/LSTM/GRU layer unrolled over time (returns the last state or the sequence)."""

    CELLS = {{"rnn": nn.RNNCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}}

    def __init__(self, kind, n_in, units, return_sequences):
        super().__init__()
        self.kind, self.units, self.return_sequences = kind, units, return_sequences
        self.cell = self.CELLS[kind](n_in, units)

    def forward(self, x):
        h = x.new_zeros(x.shape[0], self.units)
        c = x.new_zeros(x.shape[0], self.units) if self.kind == "lstm" else None
        outs = []
        for t in range(x.shape[1]):
            if c is not None:
                h, c = self.cell(x[:, t], (h, c))
            else:
                h = self.cell(x[:, t], h)
            outs.append(h)
        return torch.stack(outs, 1) if self.return_sequences else h


def init_weight(w, scheme, mean=0.0, std=1.0, a=1.0, gain=None):
    fan_in = w[0].numel()
    with torch.no_grad():
        if scheme == "normal":
            nn.init.normal_(w, mean, std)
        elif scheme == "uniform":
            nn.init.uniform_(w, -a, a)
        elif scheme == "xavier_normal":
            nn.init.xavier_normal_(w, gain=1.0 if gain is None else gain)
        elif scheme == "xavier_uniform":
            nn.init.xavier_uniform_(w, gain=1.0 if gain is None else gain)
        elif scheme == "kaiming_normal":
            nn.init.normal_(w, 0.0, (math.sqrt(2) if gain is None else gain) / math.sqrt(fan_in))
        elif scheme == "kaiming_uniform":
            b = (math.sqrt(2) if gain is None else gain) * math.sqrt(3.0 / fan_in)
            nn.init.uniform_(w, -b, b)
        elif scheme == "orthogonal":
            nn.init.orthogonal_(w, gain=1.0 if gain is None else gain)


def init_bias(b, scheme, mean=0.0, std=1.0, a=1.0):
    with torch.no_grad():
        if scheme == "zeros":
            b.zero_()
        elif scheme == "normal":
            nn.init.normal_(b, mean, std)
        elif scheme == "uniform":
            nn.init.uniform_(b, -a, a)

'''

_FOOTER = '''

if __name__ == "__main__":
    model = build_model()
    print(model)
    x = torch.randn(4, {in_shape})
    print("output shape:", tuple(model(x).shape))
'''


def _kw(init: dict) -> str:
    args = [repr(init["scheme"])] + [f"{k}={init[k]!r}" for k in ("mean", "std", "a", "gain") if k in init]
    return ", ".join(args)


def _module(layer: dict, *first) -> str:
    """The torch constructor call of a catalogue layer: nn.LeakyReLU(negative_slope=0.01), nn.BatchNorm1d(30)."""
    t = CATALOG[layer["type"]]
    args = [repr(a) for a in first] + [f"{k}={v!r}" for k, v in t.torch_kwargs(layer).items()]
    return f"nn.{t.torch_class}({', '.join(args)})"


def _emit(layers, infos, out: list, var: str, indent: str, counter: list, n_out=None) -> None:
    """Append source lines that build each layer into list `var`, in engine.build's order."""
    for layer, info in zip(layers, infos):
        kind, n_in = layer["type"], info.in_shape[-1]
        counter[0] += 1
        m = f"m{counter[0]}"
        if kind == "linear":
            out.append(f"{indent}{m} = nn.Linear({n_in}, {layer['units']}, bias={layer['bias']})")
            if layer["init"]["scheme"] != "default":
                out.append(f"{indent}init_weight({m}.weight, {_kw(layer['init'])})")
            if layer["bias"] and layer["bias_init"]["scheme"] != "default":
                out.append(f"{indent}init_bias({m}.bias, {_kw(layer['bias_init'])})")
        elif kind in ACTIVATION_TYPES or kind == "dropout":
            out.append(f"{indent}{m} = {_module(layer)}")
        elif kind in NORM_TYPES:
            out.append(f"{indent}{m} = {_module(layer, n_in)}")
        elif kind == "auxiliary":
            out.append(f"{indent}{m} = Auxiliary(nn.Linear({n_in}, {n_out}), {layer['weight']!r})")
        elif kind == "residual":
            body = f"{m}_body"
            out.append(f"{indent}{body} = []")
            _emit(layer["layers"], info.children, out, body, indent, counter)
            proj = "None"
            if info.out_shape[-1] != n_in:
                proj = f"nn.Linear({n_in}, {info.out_shape[-1]}, bias=False)"
            out.append(f"{indent}{m} = Residual(nn.Sequential(*{body}), {proj})")
        elif kind in RECURRENT_TYPES:
            seq = len(info.out_shape) == 2
            out.append(f"{indent}{m} = Recurrent({kind!r}, {n_in}, {layer['units']}, {seq})")
            if layer["init"]["scheme"] != "default":
                out.append(f"{indent}for name, p in {m}.cell.named_parameters():")
                out.append(f"{indent}    if name.startswith('weight'):")
                out.append(f"{indent}        init_weight(p, {_kw(layer['init'])})")
            if kind == "lstm" and layer.get("forget_bias") is not None:
                u = layer["units"]
                out.append(f"{indent}with torch.no_grad():  # forget gate: total bias {layer['forget_bias']}")
                out.append(f"{indent}    {m}.cell.bias_ih[{u}:{2 * u}] = {layer['forget_bias']!r}")
                out.append(f"{indent}    {m}.cell.bias_hh[{u}:{2 * u}] = 0.0")
        out.append(f"{indent}{var}.append({m})")


def source(spec: dict, base_dir=None, file_name: str = "model.py") -> str:
    """The Python source of a module-building file for a layer-stack spec."""
    spec = validate(spec)
    if "python" in spec["model"]:
        raise SpecError("model: a custom Python model is already PyTorch code; nothing to export")
    data = make_dataset(spec["data"], base_dir)
    layers, n_out = spec["model"]["layers"], data.n_outputs
    infos = plan(layers, data.input_shape, n_out)
    bad = next((i for i in infos if i.problem), None)
    if bad:
        raise SpecError(f"layer {bad.path} ({bad.type}): {bad.problem}", bad.at)
    lines = ["def build_model(seed=SEED):",
             f'    """{spec["name"]}: input {data.input_shape}, {n_out} outputs."""',
             "    torch.manual_seed(seed)", "    layers = []"]
    _emit(layers, infos, lines, "layers", "    ", [0], n_out)
    if infos[-1].added:
        lines += [f"    layers.append(nn.Linear({infos[-1].in_shape[-1]}, {n_out}))  # output layer"]
    lines += ["    return nn.Sequential(*layers)"]
    head = _HEADER.format(name=spec["name"].replace('"', "'"), file=file_name, seed=spec["train"]["seed"])
    foot = _FOOTER.format(in_shape=", ".join(map(str, data.input_shape)))
    return head + "\n" + "\n".join(lines) + "\n" + foot


def write(spec: dict, base_dir, path) -> None:
    path = Path(path)
    path.write_text(source(spec, base_dir, path.name), encoding="utf-8")


