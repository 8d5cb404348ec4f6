"""Remedies for a user's own module: the line of code to change, as text (no torch, no Qt).

A spec built from a layer stack takes a remedy with one click (engine/remedies.py
rewrites the stack). A user's module (``model.python`` or a run recorded by
``Watch``) is code the app cannot rewrite, so its findings carry the same remedies
as advice: what to write, and where, in the user's own ``__init__``, ``forward`` or
training loop.
"""
from __future__ import annotations

# {layer}: the module path of the finding's first layer, as the user's code names it (self.fc1)
ADVICE = {
    "relu_he": "swap the saturating activation for ReLU: nn.Sigmoid() / nn.Tanh() -> nn.ReLU() (or "
               "torch.sigmoid(x) / torch.tanh(x) -> F.relu(x) in forward), and in __init__ give the layer "
               "before it He init: nn.init.kaiming_normal_({layer}.weight, nonlinearity=\"relu\")",
    "leaky_relu_he": "nn.ReLU() -> nn.LeakyReLU(0.01) (or F.relu(x) -> F.leaky_relu(x, 0.01) in forward), "
                     "with nn.init.kaiming_normal_({layer}.weight, a=0.01, nonlinearity=\"leaky_relu\")",
    "elu_he": "nn.ReLU() -> nn.ELU() (or F.relu(x) -> F.elu(x) in forward), with "
              "nn.init.kaiming_normal_({layer}.weight, nonlinearity=\"relu\")",
    "xavier_init": "in __init__, for each layer before a sigmoid/tanh: nn.init.xavier_normal_({layer}.weight)",
    "he_init": "in __init__, for each layer before a ReLU: nn.init.kaiming_normal_({layer}.weight, "
               "nonlinearity=\"relu\")",
    "batchnorm": "normalise each layer's output before its activation: nn.Linear(n, m) -> "
                 "nn.Sequential(nn.Linear(n, m), nn.BatchNorm1d(m)) (nn.BatchNorm2d(c) after a conv)",
    "residual": "add skip connections in forward: x = x + self.block(x) (the block keeps the width)",
    "weight_decay": "optimizer = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=1e-4) "
                    "(or AdamW(..., weight_decay=1e-2))",
    "clip_norm": "between loss.backward() and optimizer.step(): "
                 "torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)",
    "adam": "optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)",
    "auxiliary": "add a side classifier at mid-depth: in __init__ self.aux = nn.Linear(width, n_classes); in "
                 "forward keep aux_logits = self.aux(h) after the middle layer (training only); the loss "
                 "becomes loss_fn(out, y) + 0.3 * loss_fn(aux_logits, y)",
    "lstm": "nn.RNN(n, h) -> nn.LSTM(n, h), and in __init__ set the forget gate's bias to 1: "
            "{layer}.bias_ih_l0.data[h:2 * h].fill_(1.0); {layer}.bias_hh_l0.data[h:2 * h].zero_()",
    "lower_lr": "divide the learning rate by 10: torch.optim.SGD(model.parameters(), lr=lr / 10)",
}


def is_custom(spec: dict | None) -> bool:
    """A run of a user's own module: remedies are advice, not one-click edits of a stack."""
    if not spec:
        return False
    return "watched" in spec or "python" in (spec.get("model") or {})


def _code_path(layer_name: str) -> str:
    """The attribute path of a recorded layer name: "fc1 (Linear)" -> self.fc1, "layers.0 (Linear)" ->
    self.layers[0]."""
    path = layer_name.rsplit(" (", 1)[0].split(" -> ")[0].split("#")[0]
    if not path or " " in path:
        return "layer"
    parts = ["self"] + [f"[{p}]" if p.isdigit() else f".{p}" for p in path.split(".")]
    return "".join(parts)


def advice(remedy_id: str, layers: list) -> str:
    text = ADVICE.get(remedy_id)
    if text is None:
        return ""
    return text.replace("{layer}", _code_path(layers[0]) if layers else "layer")
