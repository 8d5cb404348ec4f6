"""The run record (Contract 2): a History and its spec in an .npz, no pickles."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import limits, npzfile
from .atomic import open_atomic
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
    # temporary file + rename: a crash or kill never leaves half a record, nor a .part file
    with open_atomic(path, "wb") as f:
        np.savez_compressed(f, **to_arrays(history, spec))


# Contract 2's arrays: every record has them (a missing one is damage, not an old format)
REQUIRED = ("format", "version", "spec", "step", "loss", "accuracy", "test_loss", "test_accuracy",
            "layer_names", "act_names", *PER_LAYER, *PER_ACT)


def load(path) -> tuple[History, dict]:
    """Read a record (or a watched run directory's record) into a History; returns (history, spec).

    Anything that is not a sound record gives RecordError with one line (never a
    traceback): a missing or oversized file, a damaged archive, an array that is
    missing, of the wrong shape or type, or that would decompress beyond
    limits.MAX_RECORD_ARRAY_BYTES (checked from the headers, before reading)."""
    path = Path(path)
    if path.is_dir():
        from . import rundir
        if rundir.is_run_dir(path):   # a live run directory (Watch): its main stream
            try:
                return rundir.load(path)
            except rundir.RunDirError as e:
                raise RecordError(str(e)) from None
            except (KeyError, TypeError, ValueError, IndexError, AttributeError, RecursionError,
                    OSError, MemoryError) as e:   # a damaged header or rows file: one line
                raise RecordError(f"{path}: not a sound run directory ({npzfile.why(e)})") from None
        path = path / "record.npz"   # a directory an older Watch wrote
    return from_arrays(read_npz(path), path)


def read_npz(path) -> dict:
    """The arrays of an .npz as a dict, read without pickles and within the size limits."""
    return npzfile.read(path, RecordError, limits.MAX_RECORD_FILE_BYTES, limits.MAX_RECORD_ARRAY_BYTES,
                        "a run record")


def _text(a: dict, key: str, where) -> str:
    v = a[key]
    if v.ndim != 0 or v.dtype.kind != "U":
        raise RecordError(f"{where}: {key!r} must be text, got {v.dtype} of shape {v.shape}")
    return str(v)


def _check_shape(a: dict, key: str, shape: tuple, kinds: str, where) -> None:
    v = a[key]
    if v.shape != shape or v.dtype.kind not in kinds:
        want = "integers" if kinds == "iu" else "numbers" if kinds != "U" else "text"
        raise RecordError(f"{where}: {key!r} must be {want} of shape {shape}, got {v.dtype} of shape {v.shape}")


def from_arrays(a: dict, where="record") -> tuple[History, dict]:
    """Check a record's arrays (Contract 2) and turn them into (History, spec)."""
    if "format" not in a:
        raise RecordError(f"{where}: not a backprop-lab run record (no 'format' array)")
    missing = [k for k in REQUIRED if k not in a]
    if missing:
        raise RecordError(f"{where}: not a complete run record (missing {', '.join(map(repr, missing[:5]))})")
    if _text(a, "format", where) != FORMAT:
        raise RecordError(f"{where}: not a backprop-lab run record")
    ver = a["version"]
    if ver.ndim != 0 or ver.dtype.kind not in "iu" or int(ver) != VERSION:
        raise RecordError(f"{where}: unsupported record version {limits.shorten(ver.tolist())} "
                          f"(this build reads version {VERSION})")
    text = _text(a, "spec", where)
    if len(text) > limits.MAX_RECORD_TEXT:
        raise RecordError(f"{where}: its spec text is {len(text)} characters, more than {limits.MAX_RECORD_TEXT}")
    try:
        spec = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise RecordError(f"{where}: its spec is not valid JSON ({npzfile.why(e)})") from None
    if not isinstance(spec, dict):
        raise RecordError(f"{where}: its spec must be a JSON object, got {type(spec).__name__}")
    for key in ("layer_names", "act_names"):
        if a[key].ndim != 1 or (a[key].dtype.kind != "U" and len(a[key])):
            raise RecordError(f"{where}: {key!r} must be a list of names, got {a[key].dtype} of shape {a[key].shape}")
    L, A = len(a["layer_names"]), len(a["act_names"])
    step = a["step"]
    if step.ndim != 1 or step.dtype.kind not in "iu":
        raise RecordError(f"{where}: 'step' must be integers of shape [T], got {step.dtype} of shape {step.shape}")
    T = len(step)
    if T and (step[0] < 0 or np.any(np.diff(step) <= 0)):
        raise RecordError(f"{where}: 'step' must count up from 0 or more, row by row")
    for k in ("loss", "accuracy", "test_loss", "test_accuracy", "lr"):
        if k in a:
            _check_shape(a, k, (T,), "fiu", where)
    for k in PER_LAYER:
        _check_shape(a, k, (T, L), "fiu", where)
    for k in PER_ACT:
        _check_shape(a, k, (T, A), "fiu", where)
    if "layer_units" in a:
        _check_shape(a, "layer_units", (L,), "iu", where)
        units = a["layer_units"].tolist()
        if any(u < 0 or u > limits.MAX_INT for u in units):
            raise RecordError(f"{where}: 'layer_units' must be counts >= 0")
    else:
        units = [0] * L
    S = 0
    if "time_grad_norm" in a:
        v = a["time_grad_norm"]
        if v.ndim != 2 or v.shape[0] != T or v.dtype.kind not in "fiu":
            raise RecordError(f"{where}: 'time_grad_norm' must be numbers of shape [T, S], got {v.dtype} "
                              f"of shape {v.shape}")
        S = v.shape[1]
    h = History(a["layer_names"].tolist(), a["act_names"].tolist(), units, S, min_capacity=max(T, 512))
    if "neuron_grad" in a:
        _check_shape(a, "neuron_grad", (T, int(sum(h.stored_units))), "fiu", where)
    h.n = T
    with np.errstate(over="ignore", invalid="ignore"):   # neuron_grad is float32: 1e300 shows as inf
        for k in h.widths:
            if k in a:
                h._data[k][:T] = a[k]
    h.version += 1
    stop = a.get("stop_reason")
    h.stop_reason = RunEnd.parse((str(stop) if stop is not None and stop.ndim == 0 else "") or
                                 (str(spec["stopped"]) if "stopped" in spec else None))
    return h, spec
