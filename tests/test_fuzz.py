"""Property-based tests (hypothesis): random and mutated specs, data files and run records.

Every input either works or ends in the module's own error with one line; nothing else
(no other exception, no hang, no huge allocation). `make test` runs a short pass;
`make fuzz` (FUZZ=1) runs thousands of cases and prints hypothesis' statistics.
"""
import copy
import io
import json
import os
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from backprop_lab.engine import data as datamod
from backprop_lab.engine import diagnosis, experiment, limits, record
from backprop_lab.engine import spec as S
from tests.conftest import train

FUZZ = bool(os.environ.get("FUZZ"))


def examples(short: int, long: int):
    return settings(max_examples=long if FUZZ else short, deadline=None, derandomize=not FUZZ,
                    suppress_health_check=list(HealthCheck), database=None)


def one_line(e: BaseException) -> None:
    msg = str(e)
    assert msg and "\n" not in msg and len(msg) < 600, msg
    assert "Traceback" not in msg


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """One folder per module: each example overwrites its file (thousands of folders are slow)."""
    return tmp_path_factory.mktemp("fuzz")


# ----------------------------------------------------------------------------- JSON values
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.sampled_from([0, 1, -1, 2, 3, 10**9, 10**400, 2**63, 2**32, 0.5, -0.0]),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                    st.sampled_from(["linear", "relu", "sigmoid", "residual", "lstm", "spirals", "npz", "csv",
                                     "adam", "normal", "kaiming_normal", "zeros", "cross_entropy", "mse"]))
JSON = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)

BASE = {"format": "backprop-lab/spec", "version": 1, "name": "fuzz",
        "data": {"kind": "spirals", "n": 40, "classes": 3, "test_fraction": 0.25, "seed": 1},
        "model": {"layers": [{"type": "linear", "units": 5, "init": {"scheme": "kaiming_normal"}},
                             {"type": "relu"},
                             {"type": "residual", "layers": [{"type": "linear", "units": 5}, {"type": "tanh"}]},
                             {"type": "dropout", "p": 0.1}, {"type": "batchnorm"}]},
        "train": {"optimizer": "adam", "lr": 0.01, "batch_size": 16, "steps": 3, "seed": 0}}
KEYS = ["type", "units", "init", "scheme", "std", "layers", "kind", "n", "classes", "length", "dim", "features",
        "seed", "lr", "steps", "batch_size", "optimizer", "loss", "p", "slope", "bias", "bias_init", "path",
        "target", "test_fraction", "momentum", "clip_norm", "device", "eval_every", "version", "format"]


def _containers(v, path=()):
    yield path, v
    items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ()
    for k, x in items:
        if isinstance(x, (dict, list)):
            yield from _containers(x, path + (k,))


@st.composite
def mutated_specs(draw):
    spec = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 4))):
        places = list(_containers(spec))
        _, box = places[draw(st.integers(0, len(places) - 1))]
        op = draw(st.sampled_from(["set", "delete", "add", "swap_type"]))
        keys = list(box) if isinstance(box, dict) else list(range(len(box)))
        if op == "delete" and keys:
            box.pop(draw(st.sampled_from(keys)))
        elif op == "add":
            v = draw(JSON)
            if isinstance(box, dict):
                box[draw(st.sampled_from(KEYS) | st.text(max_size=6))] = v
            else:
                box.insert(draw(st.integers(0, len(box))), v)
        elif keys:
            k = draw(st.sampled_from(keys))
            box[k] = draw(JSON) if op == "set" else draw(st.sampled_from(
                [{"type": t} for t in S.LAYER_TYPES] + [[], {}, None, 7, "x"]))
    return spec


def _small_enough(spec) -> bool:
    """Build and train only what takes a moment: the fuzz is about errors, not big nets."""
    d = spec["data"]
    if d["kind"] in ("digits", "npz", "csv"):
        return False
    n = d.get("n", 1000) * d.get("length", 1) * max(d.get("features", 1), d.get("dim", 2))
    if n > 200_000 or spec["train"]["steps"] < 1:
        return False
    if "layers" not in spec["model"]:
        return False
    need, params = limits.estimate_run_bytes(spec["model"]["layers"], (d.get("length", 1), 2)
                                             if "length" in d else (d.get("dim", 2),), d.get("classes", 3),
                                             spec["train"]["batch_size"] or 1000)
    return need < 64 * 2**20 and sum(1 for _ in _containers(spec["model"])) < 40


def check_spec(raw, build: bool = True):
    try:
        spec = S.validate(raw)
    except S.SpecError as e:
        one_line(e)
        return "refused"
    assert spec["data"]["seed"] >= 0 and spec["train"]["seed"] >= 0
    if not (build and _small_enough(spec)):
        return "valid"
    try:
        _, tr, h = train(spec, 2)
    except S.SpecError as e:
        one_line(e)
        return "refused at build"
    assert len(h) >= 1 and h.stop_reason
    diagnosis.diagnose(h)
    return "trained"


@examples(60, 3000)
@given(mutated_specs())
def test_mutated_specs_are_refused_in_one_line_or_train(raw):
    from hypothesis import event
    event(check_spec(raw))


@examples(60, 3000)
@given(JSON)
def test_any_json_value_as_a_spec_is_refused_in_one_line(raw):
    assert check_spec(raw, build=False) in ("refused", "valid")


@examples(40, 2000)
@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_any_text_as_a_spec_file_is_refused_in_one_line(text):
    try:
        S.loads(text)
    except S.SpecError as e:
        one_line(e)


@examples(20, 500)
@given(st.integers(1, 3000), st.sampled_from("[{"))
def test_deep_nesting_is_refused_without_recursion_error(depth, bracket):
    close = "]" if bracket == "[" else "}"
    inner = "1" if bracket == "[" else ""
    text = ('{"a": ' * depth + "1" + "}" * depth) if bracket == "{" else "[" * depth + inner + close * depth
    try:
        S.loads(text)
    except S.SpecError as e:
        one_line(e)


# ----------------------------------------------------------------------------- data files
ARRAYS = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64, np.int64, np.int8, np.uint8, np.bool_, np.complex64,
                           np.dtype("U3"), np.float16]),
    shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6),
    elements=None)


def check_data(d, tmp_path):
    try:
        ds = datamod.make_dataset(S.validate({"data": d, "model": {"layers": []}})["data"], tmp_path)
    except S.SpecError as e:
        one_line(e)
        return "refused"
    assert len(ds.x_train) + len(ds.x_test) >= 2 and len(ds.x_train) >= 1
    assert ds.n_outputs >= 1 and len(ds.x_train) == len(ds.y_train)
    if ds.x_train.dtype.kind == "f":
        assert np.isfinite(ds.x_train).all()
    return "loaded"


@examples(60, 3000)
@given(x=ARRAYS, y=ARRAYS, extra=st.booleans(), std=st.booleans())
def test_random_npz_arrays_load_or_are_refused_in_one_line(scratch, x, y, extra, std):
    from hypothesis import event
    tmp = scratch
    arrays = {"x": x, "y": y}
    if extra:
        arrays["z"] = x
    np.savez(tmp / "d.npz", **arrays)
    event(check_data({"kind": "npz", "path": "d.npz", "standardize": std, "test_fraction": 0.2}, tmp))


CELLS = st.one_of(st.integers(-5, 5).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                  st.sampled_from(["", "a", "label", "1e400", "nan", " 3 ", '"x"', "1,5"]), st.text(max_size=3))


@examples(60, 3000)
@given(rows=st.lists(st.lists(CELLS, min_size=1, max_size=4), max_size=8),
       target=st.one_of(st.integers(-6, 6), st.sampled_from(["label", "a", "", "zz"])),
       task=st.sampled_from(["classification", "regression"]))
def test_random_csv_files_load_or_are_refused_in_one_line(scratch, rows, target, task):
    from hypothesis import event
    tmp = scratch
    (tmp / "d.csv").write_text("\n".join(",".join(r) for r in rows) + "\n", encoding="utf-8")
    event(check_data({"kind": "csv", "path": "d.csv", "target": target, "task": task, "test_fraction": 0.2}, tmp))


# ----------------------------------------------------------------------------- run records
@pytest.fixture(scope="module")
def good(tmp_path_factory):
    spec = copy.deepcopy(BASE)
    _, _, h = train(spec, 5)
    p = tmp_path_factory.mktemp("good") / "good.npz"
    record.save(p, h, S.validate(spec))
    with np.load(p, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    return p.read_bytes(), arrays


def check_record(path, good_arrays=None):
    try:
        h, spec = record.load(path)
    except record.RecordError as e:
        one_line(e)
        return "refused"
    assert isinstance(spec, dict)
    diagnosis.diagnose(h)
    diagnosis.unchecked(h)
    if good_arrays is not None and len(h) == len(good_arrays["step"]):
        return "read"
    return "read (changed)"


@examples(80, 4000)
@given(data=st.data())
def test_damaged_record_bytes_are_refused_in_one_line_or_read(good, scratch, data):
    from hypothesis import event
    raw, arrays = good
    b = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "zero", "splice"]))
        i = data.draw(st.integers(0, max(len(b) - 1, 0)))
        if op == "flip" and b:
            b[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "cut":
            b = b[:i]
        elif op == "zero":
            b[i:i + data.draw(st.integers(1, 64))] = bytes(min(64, len(b) - i))
        else:
            b[i:i] = data.draw(st.binary(max_size=32))
    p = scratch / "r.npz"
    p.write_bytes(bytes(b))
    event(check_record(p, arrays))


@examples(60, 3000)
@given(data=st.data())
def test_records_with_mutated_arrays_are_refused_in_one_line_or_diagnosed(good, scratch, data):
    from hypothesis import event
    _, arrays = good
    a = dict(arrays)
    keys = sorted(a)
    for _ in range(data.draw(st.integers(1, 3))):
        k = data.draw(st.sampled_from(keys))
        op = data.draw(st.sampled_from(["drop", "random", "reshape", "dtype", "values"]))
        if op == "drop":
            a.pop(k, None)
        elif op == "random":
            a[k] = data.draw(ARRAYS)
        elif op == "reshape" and k in a and a[k].ndim == 2:
            a[k] = a[k].T.copy()
        elif op == "dtype" and k in a and a[k].dtype.kind in "fiu":
            with np.errstate(all="ignore"):
                a[k] = a[k].astype(data.draw(st.sampled_from([np.float16, np.int8, np.bool_, np.complex64])))
        elif op == "values" and k in a and a[k].dtype.kind == "f" and a[k].size:
            v = a[k].astype(np.float64)   # 1e300 does not fit a float32 array
            v.flat[data.draw(st.integers(0, v.size - 1))] = data.draw(st.sampled_from(
                [np.nan, np.inf, -np.inf, -1.0, 0.0, 1e300, 1e-300]))
            a[k] = v
    p = scratch / "m.npz"
    buf = io.BytesIO()
    np.savez(buf, **a)
    p.write_bytes(buf.getvalue())
    event(check_record(p))


@examples(10, 200)
@given(names=st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=3, unique=True))
def test_a_zip_of_other_members_is_refused_in_one_line(scratch, names):
    p = scratch / "z.npz"
    with zipfile.ZipFile(p, "w") as z:
        for n in names:
            z.writestr(n + ".npy", b"\x93NUMPY\x01\x00" + json.dumps(n).encode())
    assert check_record(p) == "refused"
