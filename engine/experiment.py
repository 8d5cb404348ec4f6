"""An experiment: a validated spec turned into data, a model and a device."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from . import limits
from .build import Model, build_stack
from .custom import build_custom
from .data import DataSet, make_dataset
from .spec import SpecError, validate


@dataclass
class Experiment:
    spec: dict          # validated, defaults filled in
    base_dir: Path | None
    data: DataSet
    model: Model
    device: torch.device


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise SpecError("train.device: 'cuda' asked for but no CUDA device is available (use 'auto')")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def build(spec: dict, base_dir=None, seed: int | None = None) -> Experiment:
    """Validate ``spec`` and build its data and model; ``seed`` overrides train.seed."""
    if seed is not None and isinstance(spec, dict) and isinstance(spec.get("train", {}), dict):
        spec = {**spec, "train": {**spec.get("train", {}), "seed": seed}}   # checked with the rest
    spec = validate(spec)
    data = make_dataset(spec["data"], base_dir)
    loss = spec["train"]["loss"]
    if loss in ("cross_entropy", "nll") and data.task != "classification":
        raise SpecError(f"train.loss: {loss} needs class labels; this data is regression (use mse)")
    m, s = spec["model"], spec["train"]["seed"]
    if data.time_major and "python" not in m:
        raise SpecError("data.time_major: a layer stack takes samples first; time_major is for your own module")
    if "python" in m:
        example = torch.zeros((2, *data.input_shape), dtype=torch.from_numpy(data.x_train[:0]).dtype)
        model = build_custom(m, base_dir, data.input_shape, data.n_outputs, s,
                             example.transpose(0, 1) if data.time_major else example,
                             batch_axis=1 if data.time_major else 0)
    else:
        batch = min(spec["train"]["batch_size"] or len(data.x_train), len(data.x_train))
        limits.check_run_memory(m["layers"], data.input_shape, data.n_outputs, batch, SpecError)
        model = build_stack(m["layers"], data.input_shape, data.n_outputs, s)
    return Experiment(spec, Path(base_dir) if base_dir else None, data, model, pick_device(spec["train"]["device"]))


def time_steps(exp: Experiment) -> int:
    """Length of the time_grad_norm rows of this experiment (0: no recurrent layer to follow)."""
    if exp.model.recurrent is None:
        return 0
    seen = getattr(exp.model.recurrent, "time_steps", 0)   # a user's fused layer, from its first pass
    if seen:
        return int(seen)
    x = exp.data.x_train
    return x.shape[1] if x.ndim == 3 else 0
