"""A user's own torch.nn.Module, loaded from a Python file and instrumented.

Every leaf module with a parameter named ``weight*`` is a layer; every
activation module PyTorch ships (nn.Sigmoid, nn.ReLU, ...) is an activation
layer. Functional activations (F.relu) are invisible to module hooks, so the
panel lists them as absent; use the module form to see them.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch
from torch import nn

from . import limits
from .activations import activation
from .build import LayerInfo, Model
from .spec import SpecError


def user_error(e: BaseException) -> str:
    """One line for an exception raised by a user's code: its type and first line, shortened."""
    if isinstance(e, SystemExit):
        return f"it called sys.exit({limits.shorten(e.code, 30)})"
    if isinstance(e, KeyboardInterrupt):
        return "it raised KeyboardInterrupt"
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    text = text if len(text) <= 160 else text[:140] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def activation_of(module: nn.Module):
    """The Activation of a torch activation module, or None."""
    table = {nn.Sigmoid: lambda m: {"type": "sigmoid"}, nn.Tanh: lambda m: {"type": "tanh"},
             nn.ReLU: lambda m: {"type": "relu"}, nn.GELU: lambda m: {"type": "gelu"},
             nn.LeakyReLU: lambda m: {"type": "leaky_relu", "slope": m.negative_slope},
             nn.ELU: lambda m: {"type": "elu", "alpha": m.alpha},
             nn.Softplus: lambda m: {"type": "softplus"}}
    for cls, params in table.items():
        if type(module) is cls:
            if isinstance(module, nn.GELU) and module.approximate != "none":
                return None
            if isinstance(module, nn.Softplus) and (module.beta != 1 or module.threshold != 20):
                return None
            return activation(params(module))
    return None


def _has_weight(m: nn.Module) -> bool:
    return any(n.startswith("weight") for n, _ in m.named_parameters(recurse=False))


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
        raise SpecError(f"model.python: {path.name} failed to import: {user_error(e)}") from None
    finally:
        sys.modules.pop(name, None)
    cls = getattr(mod, model_spec["class"], None)
    if cls is None:
        raise SpecError(f"model.class: {path.name} defines no {model_spec['class']!r}")
    try:
        net = cls(**model_spec.get("kwargs", {}))
    except BaseException as e:
        raise SpecError(f"model.class: {model_spec['class']}(**kwargs) failed: {user_error(e)}") from None
    if not isinstance(net, nn.Module):
        raise SpecError(f"model.class: {model_spec['class']} is not a torch.nn.Module")
    return net


def instrument(net: nn.Module, in_shape: tuple | None = None, n_out: int | None = None) -> Model:
    """Name the layers of a user's module and (given the data's shapes) check that it fits."""
    weight_layers, act_layers, infos, recurrent = [], [], [], None
    for name, m in net.named_modules():
        if not name or list(m.children()):
            continue
        label = f"{name} ({type(m).__name__})"
        if _has_weight(m):
            weight_layers.append((label, m))
            infos.append(LayerInfo(name, type(m).__name__, (), ()))
        act = activation_of(m)
        if act is not None:
            act_layers.append((label, m, act))
            infos.append(LayerInfo(name, type(m).__name__, (), ()))
    if not weight_layers:
        raise SpecError("model: the module has no layer with a weight to watch")
    if in_shape is None:
        return Model(net, weight_layers, act_layers, recurrent, infos)
    with torch.no_grad():
        try:
            was = net.training
            net.eval()
            out = net(torch.zeros((2, *in_shape)))
            net.train(was)
        except BaseException as e:
            raise SpecError(f"model: does not fit the data (input {tuple(in_shape)}): {user_error(e)}") from None
    if not isinstance(out, torch.Tensor) or out.shape[-1] != n_out:
        got = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else type(out).__name__
        raise SpecError(f"model: output has shape {got}, the data needs {n_out} outputs")
    return Model(net, weight_layers, act_layers, recurrent, infos)


def build_custom(model_spec: dict, base_dir, in_shape: tuple, n_out: int, seed: int) -> Model:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = load_module(model_spec, base_dir)
    return instrument(net, in_shape, n_out)
