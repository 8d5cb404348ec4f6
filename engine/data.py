"""Data sets: 2-D toy tasks, the 8x8 digits, sequence tasks, and user files.

Every kind returns a DataSet of float32 inputs (int64 where a file's x holds
integers: token ids) and integer class labels (classification: one per sample,
or one per sample and time step) or float32 targets (regression), samples
first, split into train and test by ``test_fraction`` with the data ``seed``.
User data (npz/csv) is used as given unless the spec asks for ``standardize``;
``time_major`` files are read as [time, samples, ...] (and the trainer feeds
the model [time, batch, ...]).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import warnings

import numpy as np

from . import limits, npzfile
from .spec import SpecError


@dataclass(frozen=True)
class DataSet:
    name: str
    task: str  # "classification" or "regression"
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_outputs: int  # classes, or regression target width
    time_major: bool = False  # the model takes [time, batch, ...] (arrays here are samples first)

    @property
    def input_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])

    def describe(self) -> str:
        return f"{self.name} ({len(self.x_train)}/{len(self.x_test)})"


# ----------------------------------------------------------------------------- generators
def _spirals(rng, n, classes, noise, turns, **_):
    per = np.full(classes, n // classes)
    per[: n % classes] += 1
    xs, ys = [], []
    for c in range(classes):
        r = np.linspace(0.05, 1.0, per[c])
        t = r * turns * 2 * np.pi + 2 * np.pi * c / classes
        pts = np.stack([r * np.sin(t), r * np.cos(t)], 1) + rng.normal(0, noise * 0.1, (per[c], 2))
        xs.append(pts)
        ys.append(np.full(per[c], c))
    return np.concatenate(xs), np.concatenate(ys)


def _circles(rng, n, noise, factor, **_):
    y = rng.integers(0, 2, n)
    t = rng.uniform(0, 2 * np.pi, n)
    r = np.where(y == 1, factor, 1.0)
    x = np.stack([r * np.cos(t), r * np.sin(t)], 1) + rng.normal(0, noise, (n, 2))
    return x, y


def _xor(rng, n, noise, **_):
    x = rng.uniform(-1, 1, (n, 2))
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(int)
    return x + rng.normal(0, noise, x.shape), y


def _blobs(rng, n, classes, std, dim, **_):
    centres = rng.uniform(-4, 4, (classes, dim))
    y = rng.integers(0, classes, n)
    return centres[y] + rng.normal(0, std, (n, dim)), y


def _gaussian(rng, n, classes, dim, **_):
    # N(0, 1) inputs with random labels: the setting of SCIENCE.md's init table.
    return rng.normal(0, 1, (n, dim)), rng.integers(0, classes, n)


def _digits(rng, **_):
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SpecError("data.kind 'digits' needs scikit-learn (pip install 'backprop-lab[digits]')") from None
    d = load_digits()
    return d.data / 16.0, d.target  # pixel values 0..16 scaled to [0, 1]


def _memory(rng, n, length, features, **_):
    # Remember the sign of the first element through `length` steps of noise:
    # the label depends only on t = 0, so the gradient must travel back in time.
    x = rng.normal(0, 1, (n, length, features))
    y = (x[:, 0, 0] > 0).astype(int)
    return x, y


def _adding(rng, n, length, **_):
    # Hochreiter's adding problem: sum the two values marked with a 1.
    if length < 2:
        raise SpecError("data.length: the adding task needs length >= 2 (two values are marked)")
    vals = rng.uniform(0, 1, (n, length))
    marks = np.zeros((n, length))
    # two distinct positions per sample, uniform over pairs, without a Python loop (n = 3e6
    # took minutes one row at a time): a in [0, L), b in [0, L - 1) shifted past a
    a = rng.integers(0, length, n)
    b = rng.integers(0, length - 1, n)
    b += b >= a
    rows = np.arange(n)
    marks[rows, a] = 1
    marks[rows, b] = 1
    return np.stack([vals, marks], -1), (vals * marks).sum(1, keepdims=True)


_GENERATED = {"spirals": _spirals, "circles": _circles, "xor": _xor, "blobs": _blobs,
              "gaussian": _gaussian, "digits": _digits, "memory": _memory, "adding": _adding}
_REGRESSION = {"adding"}


# ----------------------------------------------------------------------------- files
def _resolve(path: str, base_dir) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() or base_dir is None else Path(base_dir) / p


def _check_file(p: Path) -> None:
    if not p.is_file():
        raise SpecError(f"data.path: no such file {str(p)!r}")
    size = p.stat().st_size
    if size > limits.MAX_DATA_FILE_BYTES:
        raise SpecError(f"data.path: {p.name} is {limits.gib(size)}, more than the limit of "
                        f"{limits.gib(limits.MAX_DATA_FILE_BYTES)}")


def _load_npz(data, base_dir):
    p = _resolve(data["path"], base_dir)
    _check_file(p)
    try:
        f = npzfile.read(p, SpecError, limits.MAX_DATA_FILE_BYTES, limits.MAX_DATA_BYTES, "an .npz data file")
    except SpecError as e:
        why = str(e)[len(str(p)) + 2:] if str(e).startswith(str(p)) else str(e)
        raise SpecError(f"data.path: cannot read {p.name} as .npz ({why})") from None
    if "x" not in f or "y" not in f:
        names = sorted(f)
        raise SpecError(f"data.path: {p.name} must hold arrays 'x' and 'y', has "
                        f"{names if len(str(names)) < 100 else limits.shorten(names)}")
    return f["x"], f["y"]


def _load_csv(data, base_dir):
    p = _resolve(data["path"], base_dir)
    _check_file(p)
    try:
        with open(p, encoding="utf-8") as fh:
            first = fh.readline(1 << 20)
        header = None if _is_numeric_row(first) else [_unquote(c) for c in first.strip().split(",")]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # an empty table is reported below, not warned about
            table = np.loadtxt(p, delimiter=",", skiprows=0 if header is None else 1, ndmin=2,
                               dtype=np.float64)
    except (ValueError, OSError) as e:   # UnicodeDecodeError is a ValueError
        why = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise SpecError(f"data.path: {p.name} is not a numeric CSV table ({why})") from None
    if table.shape[0] == 0:
        raise SpecError(f"data.path: {p.name} holds no rows of numbers")
    col = data["target"]
    if isinstance(col, str):
        if header is None:
            raise SpecError(f"data.target: {limits.shorten(col)} names a column, but {p.name} has no header row")
        if col not in header:
            raise SpecError(f"data.target: {p.name} has no column {limits.shorten(col)} "
                            f"(its columns: {limits.shorten(header, 120)})")
        col = header.index(col)
    if not -table.shape[1] <= col < table.shape[1]:
        raise SpecError(f"data.target: column {col} does not exist in {p.name} ({table.shape[1]} columns)")
    y = table[:, col]
    x = np.delete(table, col % table.shape[1], axis=1)
    return x, y


def _unquote(cell: str) -> str:
    cell = cell.strip()
    return cell[1:-1] if len(cell) >= 2 and cell[0] == cell[-1] and cell[0] in "\"'" else cell


def _is_numeric_row(line: str) -> bool:
    try:
        [float(v) for v in line.strip().split(",")]
        return True
    except ValueError:
        return False


def _as_labels(y: np.ndarray, where: str, declared: bool = False) -> np.ndarray:
    if y.ndim < 1 or y.size == 0 or not np.all(np.isfinite(y)) or not np.all(y == np.round(y)) or y.min() < 0:
        raise SpecError(f"{where}: classification needs y as class indices 0, 1, 2, ... (one per sample, "
                        "or one per sample and time step)")
    top = int(y.max())
    if top >= limits.MAX_CLASSES:
        raise SpecError(f"{where}: at most {limits.MAX_CLASSES} classes, got a label {top}")
    y = y.astype(np.int64)
    present = np.flatnonzero(np.bincount(y.ravel(), minlength=top + 1))   # the labels that occur (np.unique imports numpy.ma: 20 ms at start-up)
    # labels {0, 1, 999} would make 1000 outputs, 997 of them for classes with no sample
    if not declared and top + 1 > 2 * len(present) and top + 1 - len(present) > 1:
        raise SpecError(f"{where}: class labels must be 0, 1, ..., K-1; got {len(present)} distinct labels up "
                        f"to {top}, so {top + 1 - len(present)} of {top + 1} classes would have no sample "
                        f"(renumber them, or declare data.classes)")
    return y


def _check_arrays(x, y) -> None:
    """A user's x and y before any conversion: numbers, samples first, within the limits."""
    for name, a in (("x", x), ("y", y)):
        if a.dtype.kind not in "biuf":
            raise SpecError(f"data.{name}: must hold numbers, got {a.dtype}")
        if a.ndim == 0:
            raise SpecError(f"data.{name}: must have one row per sample, got a single value")
    if y.ndim > 1 and int(np.prod(y.shape[1:])) == 0:
        raise SpecError(f"data.y: needs a target for every sample, got shape {y.shape}")
    if len(x) > limits.MAX_SAMPLES:
        raise SpecError(f"data.x: at most {limits.MAX_SAMPLES} samples, got {len(x)}")
    if x.ndim > 1 and int(np.prod(x.shape[1:])) == 0:
        raise SpecError(f"data.x: needs at least one feature per sample, got shape {x.shape}")
    if x.ndim == 3 and x.shape[1] > limits.MAX_SEQUENCE_LENGTH:
        raise SpecError(f"data.x: sequences of at most {limits.MAX_SEQUENCE_LENGTH} steps, got {x.shape[1]}")
    if x.ndim > 1 and int(np.prod(x.shape[1:] if x.ndim == 2 else x.shape[2:])) > limits.MAX_FEATURES:
        raise SpecError(f"data.x: at most {limits.MAX_FEATURES} features, got shape {x.shape}")
    if 4 * x.size > limits.MAX_DATA_BYTES:
        raise SpecError(f"data.x: {limits.gib(4 * x.size)} as float32, more than the limit of "
                        f"{limits.gib(limits.MAX_DATA_BYTES)}")


# ----------------------------------------------------------------------------- entry point
def make_dataset(data: dict, base_dir=None) -> DataSet:
    """Build the data set of a validated spec's ``data`` section."""
    kind = data["kind"]
    rng = np.random.default_rng(data["seed"])
    if kind in _GENERATED:
        x, y = _GENERATED[kind](rng, **{k: v for k, v in data.items() if k not in ("kind", "seed")})
        task = "regression" if kind in _REGRESSION else "classification"
    else:
        x, y = (_load_npz if kind == "npz" else _load_csv)(data, base_dir)
        task = data.get("task") or ("classification" if np.issubdtype(y.dtype, np.integer) else "regression")
        if kind == "npz" and data.get("time_major"):   # stored [time, samples, ...]: samples first here
            x, y = np.swapaxes(np.asarray(x), 0, 1) if np.ndim(x) > 1 else x, np.asarray(y)
            y = np.swapaxes(y, 0, 1) if y.ndim > 1 else y
        _check_arrays(np.asarray(x), np.asarray(y))
    x = np.asarray(x)
    # integer inputs (token ids) stay integers: an embedding needs them as int64
    with np.errstate(over="ignore", invalid="ignore"):   # too large for float32: inf, refused below
        x = x.astype(np.int64) if np.issubdtype(x.dtype, np.integer) else x.astype(np.float32)
    if x.ndim == 1:
        x = x[:, None]
    if len(x) != len(y):
        raise SpecError(f"data: x has {len(x)} samples but y has {len(y)}")
    if len(x) < 2:
        raise SpecError(f"data: needs at least 2 samples, got {len(x)}")
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        raise SpecError("data: x holds NaN or infinite values (or numbers too large for float32)")
    if task == "classification":
        y = _as_labels(np.asarray(y), "data.y", declared=data.get("classes") is not None and kind in ("npz", "csv"))
        n_out = int(y.max()) + 1
        if kind in ("npz", "csv") and data.get("classes") is not None:
            if n_out > data["classes"]:
                raise SpecError(f"data.classes: y holds class {n_out - 1}, more than {data['classes']} classes")
            n_out = data["classes"]
        if n_out < 2:
            raise SpecError("data.y: classification needs at least 2 classes")
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            y = np.asarray(y, dtype=np.float32)
        y = y[:, None] if y.ndim == 1 else y.reshape(len(y), -1)
        n_out = y.shape[1]
        if n_out == 0 or n_out > limits.MAX_FEATURES:
            raise SpecError(f"data.y: regression needs 1 to {limits.MAX_FEATURES} targets per sample, got {n_out}")
        if not np.all(np.isfinite(y)):
            raise SpecError("data.y: y holds NaN or infinite values (or numbers too large for float32)")
    if data.get("standardize") and x.dtype.kind == "f":
        x64 = x.astype(np.float64)   # float32 sums overflow for large inputs
        mu, sd = x64.mean(0), x64.std(0)
        x = ((x64 - mu) / np.where(sd > 0, sd, 1)).astype(np.float32)
    order = rng.permutation(len(x))
    n_test = int(round(data["test_fraction"] * len(x)))
    if n_test >= len(x):
        raise SpecError("data.test_fraction leaves no training samples")
    test, train = order[:n_test], order[n_test:]
    return DataSet(kind, task, np.ascontiguousarray(x[train]), np.ascontiguousarray(y[train]),
                   np.ascontiguousarray(x[test]), np.ascontiguousarray(y[test]), n_out,
                   bool(data.get("time_major")))
