"""The layer catalogue: one record per layer type (no torch, no Qt).

Everything the project knows about a layer type lives here: its palette group,
its parameters (type, default, range or choices, label, tip), a one-line
explanation, and how it builds (its role and PyTorch class). Spec validation
(engine.spec), the palette and the generated property form (widgets/), the
remedies, the diagnosis, the PyTorch builder and exporter and the map from
torch class names back to layer types all read it, so adding a layer type or
a parameter is an edit of this file (plus, for a new role, the builder).

The init schemes of a weight or a bias are records too, with the std(W) each
gives (``weight_std``), which the property form shows and the builder uses.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

from . import limits

GROUPS = ("Dense", "Activations", "Normalisation", "Structure", "Recurrent")


# ----------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class Param:
    """One parameter of a layer type.

    ``kind``: "int", "float", "bool", "init" (a weight init object), "bias_init",
    "layers" (a nested stack). Numbers lie in [low, high) (``low_open``: low
    excluded; None: no bound); ``optional`` admits null. ``short`` labels the
    value in a stack row ("slope 0.01"; "" shows the bare value), ``off`` is the
    row's text for a switched-off bool ("no bias"). ``torch_arg`` names the
    PyTorch constructor argument (and attribute) the value becomes."""

    name: str
    kind: str
    default: object
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    optional: bool = False
    label: str = ""
    tip: str = ""
    check_text: str = ""   # a bool's check box text
    short: str = ""
    off: str = ""
    rule_text: str = ""    # overrides the derived rule ("must be ...")
    empty_text: str = ""   # what an empty optional value means ("PyTorch's init")
    needs: str | None = None   # shown only while this bool parameter is on (bias_init needs bias)
    limit: float | None = None  # the resource limit (engine.limits, checked after validation): an editor's end
    torch_arg: str | None = None

    @property
    def rule(self) -> str:
        """What a value must be, as the spec's messages say it: "a positive integer"."""
        if self.rule_text:
            return self.rule_text
        if self.kind == "bool":
            return "true or false"
        if self.kind == "int":
            if self.low == 1 and self.high is None:
                return "a positive integer"
            return f"an integer in [{self.low:g}, {self.high:g})" if self.high is not None else \
                f"an integer >= {self.low:g}"
        if self.kind == "float":
            if self.high is not None:
                return f"in [{self.low:g}, {self.high:g})"
            if self.low == 0:
                return "a positive number" if self.low_open else "a number >= 0"
            return "a number"
        return ""

    def problem(self, value) -> str | None:
        """None when ``value`` is allowed, else the reason: "units must be a positive integer"."""
        if self.optional and value is None:
            return None
        ok = True
        if self.kind == "bool":
            ok = isinstance(value, bool)
        elif self.kind in ("int", "float"):
            ok = is_int(value) if self.kind == "int" else is_number(value)
            if ok and self.low is not None:
                ok = value > self.low if self.low_open else value >= self.low
            if ok and self.high is not None:
                ok = value < self.high
        return None if ok else f"{self.name} must be {self.rule}"

    @property
    def minimum(self):
        """The smallest value allowed (an editor's lower end)."""
        return self.low + (1 if self.kind == "int" and self.low_open else 0) if self.low is not None else None

    @property
    def maximum(self):
        """The largest value allowed: below ``high``, else the resource ``limit`` (None: no bound)."""
        if self.high is None:
            return self.limit
        return self.high - 1 if self.kind == "int" else self.high


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# ----------------------------------------------------------------------------- init schemes
@dataclass(frozen=True)
class InitScheme:
    name: str
    params: tuple = ()   # names among INIT_PARAMS
    tip: str = ""


INIT_PARAMS = {  # name: (value when left out, tip)
    "std": (1.0, "Standard deviation"), "mean": (0.0, "Mean"), "a": (1.0, "Half-width: U(−a, a)"),
    "gain": (1.0, "Scale factor")}

_SCHEMES = (
    InitScheme("default", (), "PyTorch's own: U(−1/√fan_in, 1/√fan_in) for linear layers"),
    InitScheme("normal", ("std", "mean"), "N(mean, std²) for every weight, whatever the width"),
    InitScheme("uniform", ("a",), "U(−a, a) for every weight, whatever the width"),
    InitScheme("xavier_normal", ("gain",),
               "N(0, gain² · 2 / (fan_in + fan_out)): keeps the variance for tanh / sigmoid"),
    InitScheme("xavier_uniform", ("gain",), "U(−b, b), b = gain · √(6 / (fan_in + fan_out))"),
    InitScheme("kaiming_normal", ("gain",), "N(0, gain² / fan_in), gain √2 by default: keeps the variance for ReLU"),
    InitScheme("kaiming_uniform", ("gain",), "U(−b, b), b = gain · √(3 / fan_in), gain √2 by default"),
    InitScheme("orthogonal", ("gain",), "A (semi-)orthogonal matrix times gain: all singular values equal"),
    InitScheme("zeros", (), "b = 0"),
)
SCHEMES: dict[str, InitScheme] = {s.name: s for s in _SCHEMES}
INIT_SCHEMES = ("default", "normal", "uniform", "xavier_normal", "xavier_uniform",
                "kaiming_normal", "kaiming_uniform", "orthogonal")
BIAS_SCHEMES = ("zeros", "default", "normal", "uniform")


def param_default(scheme: str, name: str) -> float:
    """The value an init parameter takes when the spec leaves it out (gain √2 for He init)."""
    if name == "gain" and scheme.startswith("kaiming"):
        return math.sqrt(2)
    return INIT_PARAMS[name][0]


def weight_std(init: dict, fan_in: int, fan_out: int) -> float | None:
    """std(W) of a linear layer's weights under ``init`` (None for an unknown scheme).

    default U(±1/√fan_in): 1/√(3 fan_in); uniform U(±a): a/√3; Xavier: gain √(2/(fan_in+fan_out));
    He (kaiming): gain/√fan_in; orthogonal: gain/√max(fan_in, fan_out)."""
    s = init.get("scheme", "default")
    if s not in SCHEMES:
        return None
    gain = init.get("gain", param_default(s, "gain"))
    return {"default": 1 / math.sqrt(3 * fan_in), "normal": init.get("std", 1.0),
            "uniform": init.get("a", 1.0) / math.sqrt(3),
            "xavier_normal": gain * math.sqrt(2 / (fan_in + fan_out)),
            "xavier_uniform": gain * math.sqrt(2 / (fan_in + fan_out)),
            "kaiming_normal": gain / math.sqrt(fan_in), "kaiming_uniform": gain / math.sqrt(fan_in),
            "orthogonal": gain / math.sqrt(max(fan_in, fan_out))}.get(s)


# ----------------------------------------------------------------------------- layer types
@dataclass(frozen=True)
class LayerType:
    """One layer type. ``role`` says how engine.build makes it: "dense" (nn.Linear),
    "activation" (``torch_class`` with the params' ``torch_arg``s), "norm"
    (``torch_class`` over the feature width), "dropout", "block" (a residual
    block), "recurrent" (a cell unrolled over time). ``tags``: "saturating",
    "relu_family" (read by the remedies and the diagnosis). ``torch_match``: the
    attributes a torch module must have to count as this type (a custom model's
    GELU with the tanh approximation is not ours)."""

    name: str
    group: str
    role: str
    description: str
    params: tuple = ()
    torch_class: str | None = None
    tags: frozenset = frozenset()
    torch_match: dict = field(default_factory=dict)
    from_torch: bool = True   # a torch module of this class in a user's model is this type

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    @property
    def param_names(self) -> tuple:
        return tuple(p.name for p in self.params)

    def defaults(self) -> dict:
        return {p.name: copy.deepcopy(p.default) for p in self.params}

    def torch_kwargs(self, layer: dict) -> dict:
        """The constructor arguments of ``torch_class`` for a validated layer."""
        return {p.torch_arg: layer[p.name] for p in self.params if p.torch_arg}


_UNITS = Param("units", "int", 32, low=1, label="units", tip="Number of units (outputs) of the layer",
               limit=limits.MAX_UNITS)
_INIT = Param("init", "init", {"scheme": "default"}, label="weight init", tip="Initialisation of the weights")


def _affine(torch_arg: str) -> Param:
    return Param("affine", "bool", True, label="affine", tip="Whether the normalised values get a learned "
                 "scale γ and shift β per feature (off: the layer has no weight)",
                 check_text="learn a scale γ and shift β", off="no affine", torch_arg=torch_arg)


def _act(name, description, *params, tags=(), torch_class=None, torch_match=None, from_torch=True):
    return LayerType(name, "Activations", "activation", description, tuple(params), torch_class,
                     frozenset(tags), torch_match or {}, from_torch)


_TYPES = (
    LayerType("linear", "Dense", "dense",
              "Fully connected: y = W x + b. The init sets the scale of W, and with it whether "
              "the signal and the gradient shrink or grow from layer to layer.",
              (_UNITS,
               Param("bias", "bool", True, label="bias", tip="Whether the layer has a bias vector",
                     check_text="add a bias b", off="no bias"),
               _INIT,
               Param("bias_init", "bias_init", {"scheme": "default"}, label="bias init",
                     tip="Initialisation of the biases", needs="bias")), "Linear"),
    _act("sigmoid", "σ(z) = 1 / (1 + e^−z). Its slope is at most 1/4, so every sigmoid layer can "
                    "shrink the gradient fourfold: the classic vanishing gradient.",
         tags=("saturating",), torch_class="Sigmoid"),
    _act("tanh", "tanh(z): slope at most 1 (at z = 0), near 0 once |z| > 2 (saturation).",
         tags=("saturating",), torch_class="Tanh"),
    _act("relu", "max(0, z): slope 1 where active, so no shrinking; a unit whose z stays "
                 "negative has slope 0 and stops learning (dead unit).",
         tags=("relu_family",), torch_class="ReLU"),
    _act("leaky_relu", "z for z > 0, slope · z otherwise: a small gradient survives for negative z.",
         Param("slope", "float", 0.01, low=0, label="slope", tip="Slope for z < 0 (≥ 0)", short="slope",
               torch_arg="negative_slope"),
         tags=("relu_family",), torch_class="LeakyReLU"),
    _act("elu", "z for z > 0, α (e^z − 1) otherwise: smooth, with negative outputs.",
         Param("alpha", "float", 1.0, low=0, low_open=True, label="alpha",
               tip="Saturation value −α for z → −∞ (> 0)", short="α", torch_arg="alpha"),
         tags=("relu_family",), torch_class="ELU"),
    _act("gelu", "z Φ(z): a smooth ReLU (transformers); slope up to 1.13.",
         tags=("relu_family",), torch_class="GELU", torch_match={"approximate": "none"}),
    _act("softplus", "log(1 + e^z): a smooth ReLU whose slope σ(z) is always below 1.",
         tags=("saturating",), torch_class="Softplus", torch_match={"beta": 1, "threshold": 20}),
    _act("identity", "f(z) = z: no non-linearity; stacked linear layers collapse into one.",
         torch_class="Identity", from_torch=False),
    LayerType("batchnorm", "Normalisation", "norm",
              "Normalises each feature over the batch, then scales and shifts: keeps "
              "pre-activations away from saturation.", (_affine("affine"),), "BatchNorm1d"),
    LayerType("layernorm", "Normalisation", "norm",
              "Normalises each sample over its features, then scales and shifts.",
              (_affine("elementwise_affine"),), "LayerNorm"),
    LayerType("dropout", "Normalisation", "dropout",
              "Zeroes each unit with probability p while training (the rest scaled by 1/(1−p)).",
              (Param("p", "float", 0.5, low=0, high=1, label="p",
                     tip="Probability of zeroing a unit while training, in [0, 1)", short="p", torch_arg="p"),),
              "Dropout"),
    LayerType("residual", "Structure", "block",
              "y = x + f(x): the gradient also reaches earlier layers through the identity "
              "path. A projection is added where the widths differ.",
              (Param("layers", "layers", []),)),
    LayerType("auxiliary", "Structure", "auxiliary",
              "Auxiliary classifier (Inception's side head): a linear readout to the classes at this "
              "depth whose loss, times a weight, is added while training, so a gradient enters the "
              "stack here and not only at the output. The main path passes through unchanged; the "
              "head is dropped at evaluation.",
              (Param("weight", "float", 0.3, low=0, label="loss weight",
                     tip="Weight of the side head's loss in the training loss (≥ 0)", short="weight"),),
              from_torch=False),
    LayerType("rnn", "Recurrent", "recurrent",
              "Elman RNN: h_t = tanh(W x_t + U h_(t−1) + b). The gradient through time is a "
              "product of Jacobians, one per step.", (_UNITS, _INIT), "RNNCell"),
    LayerType("lstm", "Recurrent", "recurrent",
              "Long short-term memory: the additive cell update lets the gradient cross many steps.",
              (_UNITS, _INIT,
               Param("forget_bias", "float", None, optional=True, label="forget bias",
                     tip="Bias of the forget gate; empty: PyTorch's init. "
                         "1 or more helps the LSTM remember early in training",
                     short="forget bias", rule_text="null (PyTorch's init) or a number",
                     empty_text="PyTorch's init")), "LSTMCell"),
    LayerType("gru", "Recurrent", "recurrent",
              "Gated recurrent unit: gates decide how much of h_(t−1) passes on.", (_UNITS, _INIT), "GRUCell"),
)

CATALOG: dict[str, LayerType] = {t.name: t for t in _TYPES}


def layer_type(kind: str) -> LayerType | None:
    return CATALOG.get(kind)


def types_with(role: str | None = None, tag: str | None = None) -> tuple:
    """Names of the layer types of a role and/or carrying a tag, in catalogue order."""
    return tuple(t.name for t in _TYPES if (role is None or t.role == role) and (tag is None or tag in t.tags))


def form_params() -> tuple:
    """Every parameter name's record, first occurrence in catalogue order (one form row each)."""
    seen: dict[str, Param] = {}
    for t in _TYPES:
        for p in t.params:
            seen.setdefault(p.name, p)
    return tuple(seen.values())


def types_in(group: str) -> tuple:
    """Names of a palette group's layer types, in catalogue order."""
    return tuple(t.name for t in _TYPES if t.group == group)


ACTIVATION_TYPES = types_with(role="activation")
RECURRENT_TYPES = types_with(role="recurrent")
NORM_TYPES = types_with(role="norm")
SATURATING = types_with(tag="saturating")
RELU_FAMILY = types_with(tag="relu_family")
WIDTH_TYPES = tuple(t.name for t in _TYPES if t.param("units"))   # types that set the feature width


def default_layer(kind: str) -> dict:
    """A new layer of this type with every parameter at its default."""
    return {"type": kind, **CATALOG[kind].defaults()}


def new_layer(kind: str, width: int | None = None) -> dict:
    """A layer for a palette type id. A residual block comes with a body (linear of
    ``width`` units + relu) so that the stack stays valid (an empty block is not)."""
    layer = default_layer(kind)
    if kind == "residual":
        body = default_layer("linear")
        if width:
            body["units"] = int(width)
        layer["layers"] = [body, default_layer("relu")]
    return layer


# ----------------------------------------------------------------------------- torch class names
# The one map from a torch module's class name to a layer type (custom models, watched
# runs, recorded names such as "act1 (LeakyReLU)"), torch-free: matched by name.
TORCH_CLASS_TYPES: dict[str, str] = {t.torch_class: t.name for t in _TYPES
                                     if t.role == "activation" and t.from_torch}
# activations measured in users' modules that the spec has no layer type for
# (engine.activations.EXTRA_ACTIVATIONS)
EXTRA_TORCH_CLASSES: dict[str, str] = {"SiLU": "silu"}


def type_of_class_name(name: str) -> str | None:
    """"LeakyReLU" / "leakyrelu" -> "leaky_relu"; an unknown class name -> None."""
    low = name.lower()
    return next((k for cls, k in {**TORCH_CLASS_TYPES, **EXTRA_TORCH_CLASSES}.items() if cls.lower() == low), None)


def layer_of_module(module) -> dict | None:
    """The spec layer of a torch activation module ({"type": "leaky_relu", "slope": 0.2}), or None.

    Matched by exact class (a subclass may compute anything) and by ``torch_match``
    (GELU's tanh approximation, a Softplus with another beta, are not ours)."""
    cls = type(module)
    kind = TORCH_CLASS_TYPES.get(cls.__name__)
    if kind is None or not cls.__module__.startswith("torch.nn"):
        return None
    t = CATALOG[kind]
    if any(getattr(module, a, None) != v for a, v in t.torch_match.items()):
        return None
    return {"type": kind, **{p.name: getattr(module, p.torch_arg) for p in t.params if p.torch_arg}}
