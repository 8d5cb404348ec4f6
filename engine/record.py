"""The run record (Contract 2): a History and its spec in an .npz, no pickles."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .history import History
from .run_end import RunEnd
from .snapshot import PER_ACT, PER_LAYER

FORMAT, VERSION = "backprop-lab/run", 1


class RecordError(ValueError):
    pass


def to_arrays(history: History, spec: dict) -> dict:
    """Contract 2 keys (plus neuron_grad, lr, stop_reason) as plain numpy arrays."""
    spec = dict(spec)
    end = RunEnd.parse(history.stop_reason)
    if end is not None and end.early:
        spec["stopped"] = history.stop_reason  # a run that ended early says why, in its spec
    out = {"format": np.array(FORMAT), "version": np.array(VERSION),
           "spec": np.array(json.dumps(spec)),
           "step": history.steps.astype(np.int64),
           "layer_names": np.array(history.layer_names, dtype=str).reshape(-1),
           "act_names": np.array(history.act_names, dtype=str).reshape(-1),
           "layer_units": np.array(history.units, dtype=np.int64),
           "stop_reason": np.array(history.stop_reason or "")}
    for k in ("loss", "accuracy", "test_loss", "test_accuracy", "lr", *PER_LAYER, *PER_ACT, "neuron_grad"):
        out[k] = np.array(history.series(k))
    if history.has("time_grad_norm"):
        out["time_grad_norm"] = np.array(history.series("time_grad_norm"))
    return out


def save(path, history: History, spec: dict) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f:  # write then rename: a crash never leaves half a record
        np.savez_compressed(f, **to_arrays(history, spec))
    tmp.replace(path)


def load(path) -> tuple[History, dict]:
    """Read a record (or a watched run directory's record) into a History; returns (history, spec)."""
    if Path(path).is_dir():
        path = Path(path) / "record.npz"
    try:
        f = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise RecordError(f"{path}: no such file") from None
    except Exception as e:
        raise RecordError(f"{path}: not a run record ({e})") from None
    with f:
        if "format" not in f.files or str(f["format"]) != FORMAT:
            raise RecordError(f"{path}: not a backprop-lab run record")
        a = {k: f[k] for k in f.files}
    spec = json.loads(str(a["spec"]))
    T = len(a["step"])
    units = a["layer_units"].tolist() if "layer_units" in a else [0] * len(a["layer_names"])
    S = a["time_grad_norm"].shape[1] if "time_grad_norm" in a else 0
    h = History(a["layer_names"].tolist(), a["act_names"].tolist(), units, S, min_capacity=max(T, 512))
    h.n = T
    for k in h.widths:
        if k in a:
            h._data[k][:T] = a[k]
    h.version += 1
    h.stop_reason = RunEnd.parse(str(a.get("stop_reason", "")) or spec.get("stopped"))
    return h, spec
