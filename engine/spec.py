"""The experiment spec (Contract 1): load, validate, fill defaults, save.

A spec is plain JSON-compatible data (dicts and lists). ``validate`` checks it
and returns a normalised deep copy with every default filled in, or raises
SpecError with a message that names the offending key, e.g.
"layer 3 (linear): units must be a positive integer, got -4".

(Over 400 lines with a reason: Contract 1's validation, key by key, with one
clear message for each way a value can be wrong; the layer parameters come from
engine/catalog.py.)
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

from . import limits
from .activations import ACTIVATIONS
from .catalog import (BIAS_SCHEMES, CATALOG, INIT_SCHEMES, RECURRENT_TYPES, SCHEMES,  # noqa: F401
                      default_layer, is_int as _is_int, is_number as _is_num)

FORMAT = "backprop-lab/spec"
VERSION = 1


class SpecError(ValueError):
    """A spec that cannot be used; the message names the problem.

    ``path``: the layer it is about (a tuple of 1-based positions, as in
    engine.document; None when it is not about one layer); ``key``: the
    parameter or spec key ("units", "init", "data.seed"); ``detail``: the
    message without the layer's name, so that it can be re-addressed."""

    def __init__(self, message: str, path: tuple | None = None, key: str | None = None,
                 detail: str | None = None):
        super().__init__(message)
        self.path = tuple(path) if path is not None else None
        self.key = key
        self.detail = detail if detail is not None else message

    def __reduce__(self):   # keep the fields across processes
        return (SpecError, (str(self), self.path, self.key, self.detail))


# ----------------------------------------------------------------------------- catalogue views
# The layer types live in engine.catalog; these are views of it for the spec's readers.
LAYER_TYPES: dict[str, dict] = {k: {"group": t.group, "params": t.defaults()} for k, t in CATALOG.items()}
assert set(ACTIVATIONS) <= set(CATALOG)

DATA_KINDS: dict[str, dict] = {
    "spirals": {"n": 1000, "classes": 3, "noise": 0.2, "turns": 1.5},
    "circles": {"n": 1000, "noise": 0.1, "factor": 0.5},
    "xor": {"n": 1000, "noise": 0.1},
    "blobs": {"n": 1000, "classes": 3, "std": 1.0, "dim": 2},
    "gaussian": {"n": 1000, "classes": 3, "dim": 2},
    "digits": {},
    "memory": {"n": 1000, "length": 20, "features": 1},
    "adding": {"n": 1000, "length": 20},
    "npz": {"path": None, "standardize": False},
    "csv": {"path": None, "target": -1, "task": "classification", "standardize": False},
}
# keys a file kind takes only when given (no default is filled in): classes, the number of
# classes (else max(y) + 1: a vocabulary larger than the labels seen); time_major, the model
# takes sequences as [time, batch, ...] (nn.LSTM's default; a user's module only) and the
# file's x (and a per-step y) are stored [time, samples, ...] too
DATA_OPTIONAL = {"npz": ("classes", "time_major"), "csv": ("classes",)}
DATA_COMMON = {"test_fraction": 0.2, "seed": 0}

LOSSES = ("cross_entropy", "mse", "nll")  # nll: the model outputs log-probabilities (log_softmax)
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad")
DEVICES = ("cpu", "cuda", "auto")
TRAIN_DEFAULTS = {
    "loss": None,  # None: cross_entropy for classification data, mse for regression
    "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0,
    "clip_norm": None, "clip_value": None, "batch_size": 64, "steps": 500,
    "seed": 0, "device": "cpu", "eval_every": 10,
}
TOP_KEYS = {"format", "version", "name", "description", "data", "model", "train", "stopped"}


def new_spec(name: str = "untitled") -> dict:
    return {"format": FORMAT, "version": VERSION, "name": name,
            "data": {"kind": "spirals"}, "model": {"layers": []}, "train": {}}


# ----------------------------------------------------------------------------- checks
def _need(cond: bool, where: str, what: str, got, path=None, key=None, head: str = "") -> None:
    """Raise SpecError "where: what, got <json>" unless ``cond``; ``head`` is the layer's
    name at the start of ``where`` (the error's detail is the message without it)."""
    if not cond:
        msg = f"{where}: {what}, got {limits.shorten(got)}"
        raise SpecError(msg, path, key, msg[len(head) + 2:] if head else msg)


def _unknown(d: dict, allowed, where: str, path=None, head: str = "") -> None:
    extra = sorted(set(d) - set(allowed))
    if extra:
        msg = f"{where}: unknown key {_key_text(extra[0])} (allowed: {', '.join(sorted(allowed))})"
        raise SpecError(msg, path, extra[0], msg[len(head) + 2:] if head else msg)


def _check_init(init, where: str, schemes, path=None, key=None, head: str = "") -> dict:
    if isinstance(init, str):
        init = {"scheme": init}
    at = dict(path=path, key=key, head=head)
    _need(isinstance(init, dict) and "scheme" in init, where, "must be an object with a 'scheme'", init, **at)
    s = init["scheme"]
    _need(s in schemes, where, f"scheme must be one of {', '.join(schemes)}", s, **at)
    _unknown(init, {"scheme", *SCHEMES[s].params}, where, path, head)
    for k in ("std", "a", "gain"):
        if k in init:
            _need(_is_num(init[k]) and init[k] > 0, f"{where}.{k}", "must be a positive number", init[k], **at)
    if "mean" in init:
        _need(_is_num(init["mean"]), f"{where}.mean", "must be a number", init["mean"], **at)
    return dict(init)


def validate_layers(layers, where: str = "model", _path: tuple = (), start: int = 1) -> list[dict]:
    """Check a list of layers against the catalogue; each comes back with its defaults
    filled in. A SpecError names the layer in its message ("layer 4 (residual) > layer 2
    (linear): ...") and in its ``path`` and ``key``. ``where``/``_path``/``start`` place
    the list in a stack: the enclosing blocks' name and path, the first layer's number."""
    _need(isinstance(layers, list), f"{where}.layers", "must be a list of layers", layers, _path or None, "layers")
    out = []
    for i, layer in enumerate(layers, start):
        path = _path + (i,)
        kind = layer.get("type") if isinstance(layer, dict) else None
        lw = f"layer {i} ({kind})" if where == "model" else f"{where} > layer {i} ({kind})"
        if not isinstance(layer, dict) or kind not in CATALOG:
            detail = (f"type must be one of {', '.join(CATALOG)}, got "
                      f"{limits.shorten(kind if isinstance(layer, dict) else layer)}")
            raise SpecError(f"layer {i}: {detail}", path, "type", detail)
        t = CATALOG[kind]
        _unknown(layer, {"type", "name", *t.param_names}, lw, path, lw)
        full = {"type": kind, **t.defaults(), **copy.deepcopy(layer)}
        for p in t.params:
            if p.kind in ("init", "bias_init"):
                full[p.name] = _check_init(full[p.name], f"{lw}: {p.name}",
                                           INIT_SCHEMES if p.kind == "init" else BIAS_SCHEMES, path, p.name, lw)
            elif p.kind == "layers":
                full[p.name] = validate_layers(full[p.name], lw, path)
                _need(len(full[p.name]) > 0, lw, "a residual block needs at least one layer", [], path, p.name, lw)
            else:
                bad = p.problem(full[p.name])
                _need(bad is None, lw, bad, full[p.name], path, p.name, lw)
        if "name" in full:
            _need(isinstance(full["name"], str), lw, "name must be text", full["name"], path, "name", lw)
        out.append(full)
    return out


def where_of(path: tuple, kinds) -> str:
    """The ``where`` of validate_layers for the list holding ``path`` (``kinds``: the types of
    its enclosing blocks, outermost first): "model", "layer 4 (residual)"."""
    return " > ".join(f"layer {p} ({k})" for p, k in zip(path[:-1], kinds)) or "model"


def _check_data(data) -> dict:
    _need(isinstance(data, dict) and "kind" in data, "data", "must be an object with a 'kind'", data)
    kind = data["kind"]
    _need(kind in DATA_KINDS, "data.kind", f"must be one of {', '.join(DATA_KINDS)}", kind)
    allowed = {"kind", *DATA_COMMON, *DATA_KINDS[kind], *DATA_OPTIONAL.get(kind, ())}
    _unknown(data, allowed, "data")
    full = {"kind": kind, **DATA_COMMON, **DATA_KINDS[kind], **data}
    tf = full["test_fraction"]
    _need(_is_num(tf) and 0 <= tf < 1, "data.test_fraction", "must be in [0, 1)", tf)
    _need(_is_int(full["seed"]), "data.seed", "must be an integer", full["seed"])
    if "time_major" in full:
        _need(isinstance(full["time_major"], bool), "data.time_major", "must be true or false", full["time_major"])
    for k in ("n", "classes", "length", "features", "dim"):
        if k in full and not (k == "classes" and full[k] is None and kind in DATA_OPTIONAL):
            low = 2 if k == "classes" else 1
            _need(_is_int(full[k]) and full[k] >= low, f"data.{k}", f"must be an integer >= {low}", full[k])
    for k in ("noise", "std", "factor", "turns"):
        if k in full:
            _need(_is_num(full[k]) and full[k] >= 0, f"data.{k}", "must be a number >= 0", full[k])
    if kind in ("npz", "csv"):
        _need(isinstance(full["path"], str) and full["path"], "data.path", "must name a file", full["path"])
        _need(isinstance(full["standardize"], bool), "data.standardize", "must be true or false",
              full["standardize"])
    if kind == "csv":
        _need(full["task"] in ("classification", "regression"), "data.task",
              "must be classification or regression", full["task"])
    return full


def _check_model(model) -> dict:
    _need(isinstance(model, dict), "model", "must be an object", model)
    if "python" in model:
        _unknown(model, {"python", "class", "kwargs", "forward_args", "output", "watch"}, "model")
        _need(isinstance(model["python"], str), "model.python", "must be a file name", model["python"])
        _need(isinstance(model.get("class"), str), "model.class", "must name the module class",
              model.get("class"))
        kw = model.get("kwargs", {})
        _need(isinstance(kw, dict), "model.kwargs", "must be an object", kw)
        extra = model.get("forward_args", [])
        _need(isinstance(extra, list), "model.forward_args", "must be a list of arguments after x", extra)
        for i, a in enumerate(extra):
            _check_forward_arg(a, f"model.forward_args[{i}]")
        pick = model.get("output")
        _need(pick is None or _is_int(pick), "model.output",
              "must be null (the forward returns a tensor) or the index of the output to read", pick)
        watch = model.get("watch")   # module paths of the layers to watch (None: every layer)
        _need(watch is None or (isinstance(watch, list) and watch and all(isinstance(w, str) for w in watch)),
              "model.watch", "must be a non-empty list of module paths (or absent: every layer)", watch)
        out = {"python": model["python"], "class": model["class"], "kwargs": dict(kw),
               "forward_args": copy.deepcopy(extra), "output": pick}
        if watch is not None:
            out["watch"] = list(watch)
        return out
    _unknown(model, {"layers"}, "model")
    _need("layers" in model, "model", "needs 'layers' (a list) or 'python' (a file)", model)
    return {"layers": validate_layers(model["layers"])}


def _check_forward_arg(a, where: str) -> None:
    """A JSON value, {"zeros": [sizes, "batch" for the batch size]}, {"tuple": [args]} or
    {"call": "method"} (the module's method, called with the batch size: init_hidden)."""
    if not isinstance(a, dict):
        _need(a is None or isinstance(a, (bool, str)) or _is_num(a), where,
              "must be a number, text, true/false, null or an object zeros/tuple/call", a)
        return
    _need(len(a) == 1 and next(iter(a)) in ("zeros", "tuple", "call"), where,
          "must be {\"zeros\": [...]}, {\"tuple\": [...]} or {\"call\": \"method\"}", a)
    if "zeros" in a:
        _need(isinstance(a["zeros"], list) and all((_is_int(d) and d >= 0) or d == "batch" for d in a["zeros"]),
              f"{where}.zeros", "must list sizes (integers >= 0, \"batch\" for the batch size)", a["zeros"])
    elif "tuple" in a:
        _need(isinstance(a["tuple"], list), f"{where}.tuple", "must be a list of arguments", a["tuple"])
        for i, v in enumerate(a["tuple"]):
            _check_forward_arg(v, f"{where}.tuple[{i}]")
    else:
        _need(isinstance(a["call"], str) and a["call"].isidentifier(), f"{where}.call",
              "must name a method of the module", a["call"])


def _check_train(train) -> dict:
    _need(isinstance(train, dict), "train", "must be an object", train)
    _unknown(train, TRAIN_DEFAULTS, "train")
    t = {**TRAIN_DEFAULTS, **train}
    if t["loss"] is not None:
        _need(t["loss"] in LOSSES, "train.loss", f"must be one of {', '.join(LOSSES)}", t["loss"])
    _need(t["optimizer"] in OPTIMIZERS, "train.optimizer", f"must be one of {', '.join(OPTIMIZERS)}",
          t["optimizer"])
    _need(_is_num(t["lr"]) and t["lr"] > 0, "train.lr", "must be a positive number", t["lr"])
    _need(_is_num(t["momentum"]) and 0 <= t["momentum"] < 1, "train.momentum", "must be in [0, 1)",
          t["momentum"])
    _need(_is_num(t["weight_decay"]) and t["weight_decay"] >= 0, "train.weight_decay",
          "must be a number >= 0", t["weight_decay"])
    for k in ("clip_norm", "clip_value"):
        _need(t[k] is None or (_is_num(t[k]) and t[k] > 0), f"train.{k}", "must be null or a positive number",
              t[k])
    _need(t["batch_size"] is None or (_is_int(t["batch_size"]) and t["batch_size"] > 0),
          "train.batch_size", "must be null (full batch) or a positive integer", t["batch_size"])
    _need(_is_int(t["steps"]) and t["steps"] > 0, "train.steps", "must be a positive integer", t["steps"])
    _need(_is_int(t["seed"]), "train.seed", "must be an integer", t["seed"])
    _need(t["device"] in DEVICES, "train.device", f"must be one of {', '.join(DEVICES)}", t["device"])
    _need(_is_int(t["eval_every"]) and t["eval_every"] > 0, "train.eval_every", "must be a positive integer",
          t["eval_every"])
    return t


def validate(spec) -> dict:
    """Check a spec and return a normalised copy with all defaults filled in."""
    if not isinstance(spec, dict):
        raise SpecError(f"a spec must be a JSON object, got {type(spec).__name__}")
    check_tree(spec)
    _unknown(spec, TOP_KEYS, "spec")
    fmt = spec.get("format", FORMAT)
    _need(fmt == FORMAT, "format", f"must be {FORMAT!r}", fmt)
    ver = spec.get("version", VERSION)
    _need(ver == VERSION, "version", f"unsupported version (this build reads version {VERSION})", ver)
    name = spec.get("name", "untitled")
    _need(isinstance(name, str), "name", "must be text", name)
    for key in ("data", "model"):
        if key not in spec:
            raise SpecError(f"spec: missing key {key!r}")
    out = {"format": FORMAT, "version": VERSION, "name": name,
           "description": spec.get("description", ""),
           "data": _check_data(spec["data"]), "model": _check_model(spec["model"]),
           "train": _check_train(spec.get("train", {}))}
    if "stopped" in spec:
        out["stopped"] = str(spec["stopped"])
    _need(isinstance(out["description"], str), "description", "must be text", out["description"])
    check_limits(out)
    return out


def loads(text: str) -> dict:
    return validate(parse_json(text))


def parse_json(text: str):
    """JSON text to data, or SpecError: bad syntax, nesting beyond Python's reach, too long."""
    if len(text) > limits.MAX_SPEC_BYTES:
        raise SpecError(f"a spec must be at most {limits.MAX_SPEC_BYTES} characters, got {len(text)}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise SpecError(f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise SpecError(f"JSON nested too deep: at most {limits.MAX_JSON_DEPTH} levels of [ and {{") from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise SpecError(f"not valid JSON: {str(e).splitlines()[0][:120]}") from None


def load(path) -> tuple[dict, Path]:
    """Read and validate a spec file; returns (spec, folder that relative paths refer to)."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > limits.MAX_SPEC_BYTES:
            raise SpecError(f"{p}: a spec file must be at most {limits.gib(limits.MAX_SPEC_BYTES)}, "
                            f"this one is {limits.gib(size)}")
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{p}: cannot read ({e})") from None
    try:
        return loads(text), p.resolve().parent
    except SpecError as e:
        raise SpecError(f"{p.name}: {e}") from None


def dumps(spec: dict) -> str:
    return json.dumps(spec, indent=2)


def save(spec: dict, path) -> None:
    from .atomic import write_text
    write_text(path, dumps(spec) + "\n")


# ----------------------------------------------------------------------------- limits
_TEXT_KEYS = ("type", "kind", "scheme")  # looked up in tables: anything but text is a clear error


def check_tree(raw, where: str = "spec") -> None:
    """Check raw JSON data before reading it: nesting depth, integers that fit in 64 bits,
    and text where a name is looked up ("type", "kind", "scheme"). Iterative, so no
    RecursionError whatever the input."""
    stack = [(raw, where, 0)]
    while stack:
        v, at, depth = stack.pop()
        if isinstance(v, (dict, list)):
            if depth >= limits.MAX_JSON_DEPTH:
                raise SpecError(f"{at}: nested too deep (at most {limits.MAX_JSON_DEPTH} levels)")
            items = v.items() if isinstance(v, dict) else enumerate(v)
            for k, x in items:
                if isinstance(v, dict) and not isinstance(k, str):
                    raise SpecError(f"{at}: keys must be text, got {limits.shorten(k)}")
                key = _tree_key(at, k, isinstance(v, dict))
                if isinstance(v, dict) and k in _TEXT_KEYS and not isinstance(x, str):
                    raise SpecError(f"{key}: must be text (a name), got {limits.shorten(x)}")
                stack.append((x, key, depth + 1))
        elif isinstance(v, int) and not isinstance(v, bool) and abs(v) > limits.MAX_INT:
            raise SpecError(f"{at}: number out of range (at most {limits.MAX_INT:.3g} in size), "
                            f"got {limits.shorten(v)}")
        elif not (v is None or isinstance(v, (str, int, float, bool))):
            raise SpecError(f"{at}: not JSON data ({type(v).__name__})")


def _key_text(k: str) -> str:
    """A key as messages quote it: 'colour', or shortened when long or unprintable."""
    return repr(k) if len(k) <= 40 and k.isprintable() else limits.shorten(k, 40)


def _tree_key(at: str, k, in_dict: bool) -> str:
    """The name of a value in messages: "train.lr", "layer 3", "layer 2 > layer 1.units"."""
    if in_dict:
        if not (k.isprintable() and len(k) <= 40):
            k = limits.shorten(k, 40)
        return k if at == "spec" else f"{at}.{k}" if not at.startswith("layer") else f"{at}: {k}"
    if at == "model.layers":
        return f"layer {k + 1}"
    if at.endswith(": layers"):
        return f"{at[:-len(': layers')]} > layer {k + 1}"
    return f"{at}[{k}]"


def _walk_layers(layers, where: str, depth: int, count: list) -> None:
    if depth > limits.MAX_NESTING:
        raise SpecError(f"{where.split(' > ')[0]}: residual blocks nested too deep "
                        f"(at most {limits.MAX_NESTING} inside one another)")
    for i, layer in enumerate(layers, 1):
        count[0] += 1
        lw = f"layer {i} ({layer['type']})" if where == "model" else f"{where} > layer {i} ({layer['type']})"
        if "units" in layer:
            _need(layer["units"] <= limits.MAX_UNITS, lw, f"units must be at most {limits.MAX_UNITS}",
                  layer["units"])
        if layer["type"] == "residual":
            _walk_layers(layer["layers"], lw, depth + 1, count)
    if count[0] > limits.MAX_LAYERS:
        raise SpecError(f"model: at most {limits.MAX_LAYERS} layers (nested ones included), got {count[0]}")


def _at_most(value, high: int, key: str, low: int | None = None) -> None:
    if value is None:
        return
    if low is not None:
        _need(value >= low, key, f"must be in [{low}, {high}]", value)
    _need(value <= high, key, f"must be at most {high}", value)


def check_limits(spec: dict) -> None:
    """Resource limits (engine.limits) of a validated spec: sizes that would take the
    machine's memory or minutes of set-up are refused here, before anything is built."""
    d, t = spec["data"], spec["train"]
    if "layers" in spec["model"]:
        _walk_layers(spec["model"]["layers"], "model", 0, [0])
    _at_most(d["seed"], limits.MAX_SEED, "data.seed", 0)
    _at_most(t["seed"], limits.MAX_SEED, "train.seed", 0)
    _at_most(d.get("n"), limits.MAX_SAMPLES, "data.n")
    _at_most(d.get("classes"), limits.MAX_CLASSES, "data.classes")
    _at_most(d.get("dim"), limits.MAX_FEATURES, "data.dim")
    _at_most(d.get("features"), limits.MAX_FEATURES, "data.features")
    _at_most(d.get("length"), limits.MAX_SEQUENCE_LENGTH, "data.length")
    if "n" in d:
        per_sample = d.get("length", 1) * max(d.get("features", 2), d.get("dim", 2))
        need = 8 * d["n"] * per_sample   # generated in float64
        if need > limits.MAX_DATA_BYTES:
            raise SpecError(f"data: n x length x features = {d['n'] * per_sample} values "
                            f"({limits.gib(need)}) is more than the limit of {limits.gib(limits.MAX_DATA_BYTES)}")
    if d["kind"] == "csv":
        tg = d["target"]
        _need((_is_int(tg) and abs(tg) <= limits.MAX_FEATURES) or (isinstance(tg, str) and tg.strip() != ""),
              "data.target", "must be a column number (0 first, -1 last) or a column name", tg)
    _at_most(t["batch_size"], limits.MAX_SAMPLES, "train.batch_size")
    _at_most(t["steps"], limits.MAX_STEPS, "train.steps")
    _at_most(t["eval_every"], limits.MAX_EVAL_EVERY, "train.eval_every")
