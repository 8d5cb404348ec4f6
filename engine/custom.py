"""A user's own torch.nn.Module, loaded from a Python file and instrumented.

Every module with parameters of its own is a layer, named by its module path
(each parameter belongs to exactly one layer). Activations, module or
functional, and the hidden states of the first fused recurrent layer are seen
by the tracer (engine/tracer.py). The spec's model section says how the module
is called: extra forward arguments (a zero hidden state) and which output to read.
"""
from __future__ import annotations

import importlib.util
import sys
import traceback
from pathlib import Path

import torch
from torch import nn

from . import limits
from .build import LayerInfo, Model
from .spec import SpecError
from .tracer import Tracer, first_recurrent


def _arg_value(a, net, x, batch: int):
    """One forward argument of the spec: a JSON value, {"zeros": [dims, "batch" for the batch
    size]}, {"tuple": [args]}, or {"call": "init_hidden"} (the module's method, given the batch size)."""
    if isinstance(a, dict) and "zeros" in a:
        dims = [batch if d == "batch" else d for d in a["zeros"]]
        return torch.zeros(dims, device=x.device)
    if isinstance(a, dict) and "tuple" in a:
        return tuple(_arg_value(v, net, x, batch) for v in a["tuple"])
    if isinstance(a, dict) and "call" in a:
        return getattr(net, a["call"])(batch)
    return a


def forward_of(model_spec: dict, batch_axis: int = 0):
    """How the spec calls the module: net(x, *forward_args), then output[output]; None: net(x)."""
    extra, pick = model_spec.get("forward_args") or [], model_spec.get("output")
    if not extra and pick is None:
        return None

    def call(net, x):
        out = net(x, *(_arg_value(a, net, x, x.shape[batch_axis]) for a in extra))
        if pick is not None:
            if not isinstance(out, (tuple, list)) or not -len(out) <= pick < len(out):
                n = len(out) if isinstance(out, (tuple, list)) else "not a tuple"
                raise SpecError(f"model.output: {pick} is not an output of the module's forward ({n})")
            out = out[pick]
        return out
    return call


def load_module(model_spec: dict, base_dir) -> nn.Module:
    path = Path(model_spec["python"])
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    if not path.is_file():
        raise SpecError(f"model.python: no such file {str(path)!r}")
    if path.stat().st_size > limits.MAX_MODEL_FILE_BYTES:
        raise SpecError(f"model.python: {path.name} is {limits.gib(path.stat().st_size)}, more than the "
                        f"limit of {limits.gib(limits.MAX_MODEL_FILE_BYTES)} for a model file")
    name = f"backprop_lab_user_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    try:
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    except BaseException as e:  # sys.exit, KeyboardInterrupt, anything: reported, never obeyed
        err = SpecError(f"model.python: {path.name} failed to import: {one_line(e)}")
        err.details = "".join(traceback.format_exception(e))   # the whole traceback, for the window
        raise err from None
    finally:
        sys.modules.pop(name, None)
    cls = getattr(mod, model_spec["class"], None)
    if cls is None:
        raise SpecError(f"model.class: {path.name} defines no {model_spec['class']!r}")
    try:
        net = cls(**model_spec.get("kwargs", {}))
    except BaseException as e:
        err = SpecError(f"model.class: {model_spec['class']}(**kwargs) failed: {one_line(e)}")
        err.details = "".join(traceback.format_exception(e))
        raise err from None
    if not isinstance(net, nn.Module):
        raise SpecError(f"model.class: {model_spec['class']} is not a torch.nn.Module")
    return net


def _own_params(net: nn.Module) -> list:
    """[(path, module, [its own parameters])] in module order; a parameter shared by two modules
    (tied weights) belongs to the first that holds it, so each belongs to exactly one layer."""
    seen, out = set(), []
    for path, m in net.named_modules():
        ps = [p for p in m.parameters(recurse=False) if id(p) not in seen]
        seen.update(id(p) for p in ps)
        if ps:
            out.append((path, m, ps))
    return out


def _label(path: str, m: nn.Module, net: nn.Module) -> str:
    return f"{path or type(net).__name__} ({type(m).__name__})"


def instrument(net: nn.Module, in_shape: tuple | None = None, n_out: int | None = None,
               forward=None, example=None, watch=None) -> Model:
    """Name the layers of a user's module and (given the data's shapes) check that it fits.

    Every module with parameters of its own is a layer (an attention module with its
    in_proj and children of its own included); activations, module or functional, are
    found by the tracer on a first forward pass: here on ``example`` (zeros of the data's
    shape, in eval mode with autograd on, so that no fused inference path hides them)
    when the data is known, else on the first watched step."""
    weight_layers, infos, outputs_of = [], [], {}
    found = _own_params(net)
    if watch is not None:   # the spec's model.watch: only these layers (module paths)
        missing = sorted(set(watch) - {path for path, _, _ in found})
        if missing:
            raise SpecError(f"model.watch: the module has no layer {missing[0]!r} with parameters of its own")
        found = [x for x in found if x[0] in set(watch)]
    for path, m, params in found:
        weight_layers.append((_label(path, m, net), m))
        infos.append(LayerInfo(path, type(m).__name__, (), ()))
    if not weight_layers:
        raise SpecError("model: the module has no layer with a parameter to watch")
    index = {id(m): i for i, (_, m) in enumerate(weight_layers)}
    for i, (_, m) in enumerate(weight_layers):
        # an attention module's out_proj is applied through F.linear inside its forward, never
        # called: its output is the attention's own output (reshaped), so it shares its delta
        if isinstance(m, nn.MultiheadAttention) and id(m.out_proj) in index:
            outputs_of[i] = [index[id(m.out_proj)]]
    act_layers = []
    tracer = Tracer(net, act_layers, {id(m): n for n, m in weight_layers})
    recurrent = first_recurrent(net, tracer)
    model = Model(net, weight_layers, act_layers, recurrent, infos, tracer=tracer, own_params=True,
                  outputs_of=outputs_of, forward=forward)
    if in_shape is None:
        return model
    out = _first_pass(model, in_shape if example is None else example)
    if isinstance(out, (tuple, list)):
        raise SpecError(f"model: the forward returns a {type(out).__name__} of {len(out)}; say which output "
                        "is the prediction with \"output\": 0 (its index)")
    if not isinstance(out, torch.Tensor) or out.shape[-1] != n_out:
        got = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else type(out).__name__
        raise SpecError(f"model: output has shape {got}, the data needs {n_out} outputs")
    tracer.sealed = True
    return model


def _first_pass(model: Model, example):
    net = model.module
    x = torch.zeros((2, *example)) if isinstance(example, tuple) else example
    was = net.training
    try:
        net.eval()
        model.tracer.start()
        out = model(x)
    except SpecError:
        raise
    except BaseException as e:
        raise SpecError(f"model: does not fit the data (input {tuple(x.shape)} {str(x.dtype).replace('torch.', '')}): "
                        f"{one_line(e)}") from None
    finally:
        model.tracer.stop()
        net.train(was)
    return out.detach() if isinstance(out, torch.Tensor) else out


def one_line(e: BaseException) -> str:
    """An exception as one line: its type and its message with line breaks folded, shortened;
    a user's sys.exit or KeyboardInterrupt is said as such."""
    if isinstance(e, SystemExit):
        return f"it called sys.exit({limits.shorten(e.code, 30)})"
    if isinstance(e, KeyboardInterrupt):
        return "it raised KeyboardInterrupt"
    text = " ".join(str(e).split())
    text = text if len(text) <= 200 else text[:180] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


user_error = one_line


def build_custom(model_spec: dict, base_dir, in_shape: tuple, n_out: int, seed: int, example=None,
                 batch_axis: int = 0) -> Model:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = load_module(model_spec, base_dir)
        return instrument(net, in_shape, n_out, forward_of(model_spec, batch_axis), example,
                          watch=model_spec.get("watch"))
