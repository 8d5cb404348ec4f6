"""Every bad input ends in one clear line (issue 12's examples, each a test), never a
traceback, a hang or an allocation the machine cannot give."""
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from backprop_lab.app import cli
from backprop_lab.engine import experiment, limits, record
from backprop_lab.engine import spec as S
from backprop_lab.engine.history import History
from tests.conftest import ROOT, train


def base(**over):
    s = {"data": {"kind": "spirals", "n": 60, "test_fraction": 0},
         "model": {"layers": [{"type": "linear", "units": 6}, {"type": "tanh"}]},
         "train": {"steps": 2, "batch_size": 20}}
    s.update(over)
    return s


def refused(spec, match, base_dir=None):
    with pytest.raises(S.SpecError, match=match) as e:
        experiment.build(spec, base_dir)
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 400, msg
    return msg


def run_cli(capsys, *args):
    code = cli.main(list(map(str, args)))
    err = capsys.readouterr().err.strip()
    return code, err


# ----------------------------------------------------------------------------- specs
def test_a_layer_whose_type_is_a_list_names_the_layer():
    s = base()
    s["model"]["layers"].append({"type": []})
    assert refused(s, "type") == "layer 3: type: must be text (a name), got []"


def test_a_400_digit_learning_rate_is_refused_with_a_short_message():
    msg = refused(base(train={"lr": 10 ** 400}), r"train\.lr")
    assert "401 digits" in msg and len(msg) < 120


def test_json_nested_1000_deep_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(S.SpecError, match="nested too deep"):
        S.loads("[" * 1000 + "]" * 1000)
    deep = {"data": {"kind": "spirals"}, "model": {"layers": []}, "name": "x", "train": {}}
    inner = deep
    for _ in range(200):     # deep but within Python's parser: the tree check catches it
        inner["description"] = {"description": {}}
        inner = inner["description"]
    with pytest.raises(S.SpecError, match="nested too deep"):
        S.validate(deep)
    p = tmp_path / "deep.json"
    p.write_text('{"data": ' + "[" * 100_000 + "]" * 100_000 + "}")
    code, err = run_cli(capsys, "run", p, "--out", tmp_path / "r.npz")
    assert code == 2 and "nested too deep" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("where", ["train", "data"])
def test_a_negative_seed_is_refused(where):
    s = base()
    s[where]["seed"] = -1
    refused(s, rf"{where}\.seed: must be in \[0, {limits.MAX_SEED}\], got -1")


def test_a_billion_units_is_refused_before_any_allocation():
    s = base()
    s["model"]["layers"][0]["units"] = 10 ** 9
    refused(s, rf"layer 1 \(linear\): units must be at most {limits.MAX_UNITS}")


def test_a_stack_too_large_for_the_machine_is_refused_from_an_estimate(monkeypatch):
    s = base()
    s["model"]["layers"] = [{"type": "linear", "units": limits.MAX_UNITS}, {"type": "relu"},
                            {"type": "linear", "units": limits.MAX_UNITS}]
    msg = refused(s, "GiB needed to train")   # 1e12 parameters, whatever the machine
    assert "parameters" in msg and "this machine allows" in msg
    need, params = limits.estimate_run_bytes(s["model"]["layers"], (2,), 3, 20)
    assert params == 2 * 10**6 + 10**6 + 10**12 + 10**6 + 3 * 10**6 + 3 and need > 24 * 10**12


def test_the_memory_estimate_counts_parameters_as_torch_does():
    from backprop_lab.engine import build
    layers = S.validate(base(model={"layers": [
        {"type": "linear", "units": 7}, {"type": "batchnorm"}, {"type": "relu"},
        {"type": "residual", "layers": [{"type": "linear", "units": 5}, {"type": "tanh"}]},
        {"type": "linear", "units": 3}]}))["model"]["layers"]
    m = build.build_stack(layers, (4,), 3, 0)
    assert limits.estimate_run_bytes(layers, (4,), 3, 8)[1] == sum(p.numel() for p in m.module.parameters())
    rec = S.validate(base(model={"layers": [{"type": "lstm", "units": 6}]}))["model"]["layers"]
    m = build.build_stack(rec, (9, 2), 3, 0)
    assert limits.estimate_run_bytes(rec, (9, 2), 3, 8)[1] == sum(p.numel() for p in m.module.parameters())


def test_the_adding_task_with_three_million_samples_is_refused_at_once_and_a_large_one_is_fast():
    refused(base(data={"kind": "adding", "n": 3_000_000, "length": 20}), rf"data\.n: must be at most")
    from backprop_lab.engine.data import make_dataset
    s = S.validate(base(data={"kind": "adding", "n": 200_000, "length": 20, "test_fraction": 0}))
    d = make_dataset(s["data"])   # vectorised: ~0.1 s (the Python loop took ~4 s)
    marks = d.x_train[:, :, 1]
    assert (marks.sum(1) == 2).all()
    first = marks.argmax(1)
    assert np.abs(np.bincount(first, minlength=20) / len(first) - (19 - np.arange(20)) / 190).max() < 0.01


@pytest.mark.parametrize("key,value,match", [
    ("units", 1e9, "units must be a positive integer"),
    ("units", True, "units must be a positive integer"),
])
def test_units_must_be_a_true_integer(key, value, match):
    s = base()
    s["model"]["layers"][0][key] = value
    refused(s, match)


def test_a_huge_value_in_a_message_is_shortened():
    s = base()
    s["model"]["layers"][0]["units"] = ["x" * 10_000]
    msg = refused(s, "characters")
    assert len(msg) < 200


def test_too_many_layers_and_too_deep_residuals_are_refused():
    refused(base(model={"layers": [{"type": "relu"}] * (limits.MAX_LAYERS + 1)}), "at most")
    inner = [{"type": "tanh"}]
    for _ in range(limits.MAX_NESTING + 1):
        inner = [{"type": "residual", "layers": inner}]
    refused(base(model={"layers": inner}), "nested too deep")


# ----------------------------------------------------------------------------- data files
def write_csv(path, text):
    path.write_text(text)
    return {"kind": "csv", "path": path.name, "test_fraction": 0}


def test_a_csv_target_given_by_column_name(tmp_path):
    rows = "\n".join(f"{i % 3},{i * 0.1},{i % 2}" for i in range(30))
    d = write_csv(tmp_path / "t.csv", "a,b,label\n" + rows + "\n")
    exp = experiment.build(base(data={**d, "target": "label"}), tmp_path)
    assert exp.data.n_outputs == 2 and exp.data.input_shape == (2,)
    np.testing.assert_array_equal(np.sort(exp.data.y_train), np.sort([i % 2 for i in range(30)]))
    refused(base(data={**d, "target": "price"}), "has no column \"price\" \\(its columns: \\[\"a\", \"b\", \"label\"\\]\\)", tmp_path)
    d2 = write_csv(tmp_path / "n.csv", rows + "\n")
    refused(base(data={**d2, "target": "label"}), "has no header row", tmp_path)
    refused(base(data={**d2, "target": 3.5}), "column number", tmp_path)


def test_x_with_zero_features_is_refused(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((20, 0)), y=np.arange(20) % 2)
    refused(base(data={"kind": "npz", "path": "d.npz"}), r"at least one feature.*\(20, 0\)", tmp_path)
    d = write_csv(tmp_path / "one.csv", "\n".join(f"{i % 2}" for i in range(20)) + "\n")
    refused(base(data={**d, "target": 0}), "at least one feature", tmp_path)


def test_sparse_labels_are_refused_instead_of_making_1000_outputs(tmp_path):
    y = np.array([0, 1, 999] * 10)
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).normal(size=(30, 2)), y=y)
    msg = refused(base(data={"kind": "npz", "path": "d.npz"}), "997 of 1000 classes would have no sample",
                  tmp_path)
    assert "renumber" in msg


@pytest.mark.parametrize("arrays,match", [
    ({"x": np.array(["a", "b"] * 5), "y": np.arange(10) % 2}, "must hold numbers"),
    ({"x": np.zeros((10, 2)), "y": np.full(10, np.nan)}, "class indices|NaN"),
    ({"x": np.full((10, 2), 1e300), "y": np.arange(10) % 2}, "too large for float32"),
    ({"x": np.zeros((10, 2))}, "must hold arrays 'x' and 'y'"),
    ({"x": np.zeros((10, 2)), "y": np.float64(3)}, "single value"),
    ({"x": np.zeros((2, 2)), "y": np.zeros((2, 0), np.int64)}, "a target for every sample"),   # found by the fuzz
])
def test_bad_npz_arrays_get_one_line(tmp_path, arrays, match):
    np.savez(tmp_path / "d.npz", **arrays)
    refused(base(data={"kind": "npz", "path": "d.npz"}), match, tmp_path)


def test_a_pickled_or_damaged_npz_is_refused(tmp_path):
    np.savez(tmp_path / "p.npz", x=np.array([{"a": 1}] * 4, dtype=object), y=np.arange(4))
    refused(base(data={"kind": "npz", "path": "p.npz"}), "Python objects", tmp_path)
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04" + os.urandom(200))
    refused(base(data={"kind": "npz", "path": "junk.npz"}), "damaged", tmp_path)


@pytest.mark.parametrize("text,match", [
    ("", "no rows"), ("a,b\n", "no rows"), ("1,2\n3\n", "not a numeric CSV"),
    ("\xff\xfe1,2\n", "not a numeric CSV|no rows"), ("1,x\n2,y\n", "not a numeric CSV"),
])
def test_bad_csv_files_get_one_line(tmp_path, text, match):
    (tmp_path / "t.csv").write_bytes(text.encode("latin-1"))
    refused(base(data={"kind": "csv", "path": "t.csv"}), match, tmp_path)


# ----------------------------------------------------------------------------- model files
def test_a_model_file_calling_sys_exit_is_reported_not_obeyed(tmp_path):
    (tmp_path / "net.py").write_text("import sys\nsys.exit(3)\n")
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps(base(model={"python": "net.py", "class": "Net"})))
    exe = os.path.join(os.path.dirname(sys.executable), "backprop-lab")
    r = subprocess.run([exe, "run", str(spec), "--out", str(tmp_path / "r.npz")], capture_output=True,
                       text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.strip() == "backprop-lab: model.python: net.py failed to import: it called sys.exit(3)"


@pytest.mark.parametrize("body,match", [
    ("raise KeyboardInterrupt", "KeyboardInterrupt"),
    ("class Net:\n    def __init__(self):\n        raise SystemExit('bye')", "sys.exit\\(\"bye\"\\)"),
    ("import torch\nclass Net(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
     "        self.fc = torch.nn.Linear(2, 3)\n    def forward(self, x):\n        raise KeyboardInterrupt",
     "does not fit the data.*KeyboardInterrupt"),
])
def test_a_model_file_that_interrupts_or_exits_is_a_spec_error(tmp_path, body, match):
    (tmp_path / "net.py").write_text(body + "\n")
    refused(base(model={"python": "net.py", "class": "Net"}), match, tmp_path)


MIDRUN = '''
import torch
from torch import nn
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 3)
        self.calls = 0
    def forward(self, x):
        self.calls += 1
        if self.calls > 4:
            raise TypeError("unsupported operand type(s) for +: 'Tensor' and 'str'")
        return self.fc(x)
'''


def test_a_custom_model_raising_type_error_mid_run_gives_one_line_and_keeps_the_record(tmp_path, capsys):
    (tmp_path / "net.py").write_text(MIDRUN)
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps(base(model={"python": "net.py", "class": "Net"},
                                    train={"steps": 50, "batch_size": 20, "eval_every": 1000})))
    out = tmp_path / "r.npz"
    code, err = run_cli(capsys, "run", spec, "--out", out)
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "failed at step" in err and "TypeError: unsupported operand" in err
    h, _ = record.load(out)
    assert 0 < len(h) < 50   # the steps before the failure are kept


# ----------------------------------------------------------------------------- run records
@pytest.fixture(scope="module")
def good_record(tmp_path_factory):
    _, _, h = train(base(train={"steps": 6, "batch_size": 20}), 6)
    p = tmp_path_factory.mktemp("rec") / "good.npz"
    record.save(p, h, S.validate(base()))
    return p


def arrays_of(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize("damage,match", [
    (lambda a: a.pop("loss"), "missing 'loss'"),
    (lambda a: a.update(loss=a["loss"][:-1]), "'loss' must be numbers of shape"),
    (lambda a: a.update(delta_norm=a["delta_norm"].T), "'delta_norm' must be numbers"),
    (lambda a: a.update(step=a["step"].astype(float)), "'step' must be integers"),
    (lambda a: a.update(step=a["step"][::-1].copy()), "count up"),
    (lambda a: a.update(spec=np.array("{not json")), "not valid JSON"),
    (lambda a: a.update(spec=np.array("[" * 5000 + "]" * 5000)), "not valid JSON|JSON object"),
    (lambda a: a.update(spec=np.array("[1]")), "JSON object"),
    (lambda a: a.update(version=np.array(7)), "unsupported record version 7"),
    (lambda a: a.update(layer_names=np.zeros(3)), "list of names"),
    (lambda a: a.update(layer_units=np.array([-1, 2])), "'layer_units'"),
    (lambda a: a.update(neuron_grad=a["neuron_grad"][:, :1]), "'neuron_grad'"),
    (lambda a: a.update(format=np.array("other")), "not a backprop-lab run record"),
])
def test_a_record_with_wrong_or_missing_arrays_is_refused(good_record, tmp_path, damage, match, capsys):
    a = arrays_of(good_record)
    damage(a)
    p = tmp_path / "bad.npz"
    np.savez_compressed(p, **a)
    with pytest.raises(record.RecordError, match=match):
        record.load(p)
    code, err = run_cli(capsys, "diagnose", p)
    assert code == 2 and len(err.splitlines()) == 1


def test_a_deflate_bomb_is_refused_from_its_headers(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "MAX_RECORD_ARRAY_BYTES", 2**20)   # 64 MiB of zeros: ~64 kB compressed
    p = tmp_path / "bomb.npz"
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("step.npy", "w") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False,
                                                     "shape": (64 * 2**20 // 8,)})
            chunk = bytes(2**22)
            for _ in range(16):
                f.write(chunk)
    assert p.stat().st_size < 2**20
    with pytest.raises(record.RecordError, match="64 MiB decompressed, more than the limit of 1 MiB"):
        record.load(p)


def test_a_header_promising_more_than_is_stored_is_refused(tmp_path):
    p = tmp_path / "lie.npz"
    with zipfile.ZipFile(p, "w") as z:
        with z.open("step.npy", "w") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False,
                                                     "shape": (10**12,)})
            f.write(bytes(64))
    with pytest.raises(record.RecordError, match="damaged"):
        record.load(p)


def test_a_member_with_a_cut_npy_header_is_refused(tmp_path):   # found by the fuzz: IndexError in numpy
    p = tmp_path / "cut.npz"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("a.npy", b"\x93NUMPY\x01\x00" + b'"a"')
    with pytest.raises(record.RecordError, match="damaged"):
        record.load(p)


def test_every_bit_flip_and_truncation_of_a_record_is_refused_or_read_whole(good_record, tmp_path):
    raw = good_record.read_bytes()
    good = arrays_of(good_record)
    rng = np.random.default_rng(0)
    p = tmp_path / "flip.npz"
    outcomes = {"refused": 0, "read": 0}
    cuts = [int(c) for c in rng.integers(0, len(raw), 20)]
    flips = [(int(i), int(b)) for i, b in zip(rng.integers(0, len(raw), 60), rng.integers(0, 8, 60))]
    for kind, arg in [("cut", c) for c in cuts] + [("flip", f) for f in flips]:
        data = bytearray(raw[:arg] if kind == "cut" else raw)
        if kind == "flip":
            data[arg[0]] ^= 1 << arg[1]
        p.write_bytes(bytes(data))
        try:
            h, _ = record.load(p)
        except record.RecordError as e:
            assert "\n" not in str(e)
            outcomes["refused"] += 1
            continue
        outcomes["read"] += 1   # read: every Contract 2 array is there, with the values written
        assert len(h) == len(good["step"])
        for k in ("loss", "weight_grad_norm", "dead_frac"):
            np.testing.assert_array_equal(h.series(k), good[k])
    assert outcomes["refused"] > 40


# ----------------------------------------------------------------------------- history
def test_history_of_a_very_wide_layer_stays_small_and_pools_its_units():
    units = [30_000_000, 5]
    h = History(["wide", "out"], [], units)
    assert h.nbytes() < 256 * 2**20 and h.stored_units == [limits.MAX_HISTORY_UNITS, 5]
    assert h.pooled(0) and not h.pooled(1)
    small = History(["a", "b"], [], [1000, 3], min_capacity=16)
    from backprop_lab.engine.snapshot import Snapshot
    v = np.arange(1003, dtype=np.float32)
    nan2 = np.full(2, np.nan)
    small.append(Snapshot(0, 1.0, 0.5, np.nan, np.nan, 0.1, nan2, nan2, nan2, nan2,
                          np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0), v))
    row = small.neuron_grad(0)[0]
    assert row.shape == (512,)
    # group j covers units [j*1000//512, (j+1)*1000//512): its mean, independently computed
    edges = (np.arange(513) * 1000) // 512
    np.testing.assert_allclose(row, [v[a:b].mean() for a, b in zip(edges[:-1], edges[1:])], rtol=1e-6)
    np.testing.assert_array_equal(small.neuron_grad(1)[0], [1000, 1001, 1002])


# ----------------------------------------------------------------------------- live run directories
def test_a_run_directory_with_a_wide_layer_loads_pooled(tmp_path):
    from backprop_lab.engine import rundir
    from backprop_lab.engine.snapshot import Snapshot
    units = [1000, 3]
    w = rundir.RunWriter(tmp_path / "run", {"name": "wide"}, ["a", "b"], [], units, flush_seconds=0)
    rng = np.random.default_rng(0)
    rows = [rng.random(1003).astype(np.float32) for _ in range(4)]
    nan2 = np.full(2, np.nan)
    for k, v in enumerate(rows):
        w.add(Snapshot(k, 1.0, 0.5, np.nan, np.nan, 0.1, nan2, nan2, nan2, nan2,
                       *(np.zeros(0) for _ in range(5)), v))
    w.close()
    h, _ = record.load(tmp_path / "run")
    assert len(h) == 4 and h.neuron_grad(0).shape == (4, limits.MAX_HISTORY_UNITS)
    edges = (np.arange(513) * 1000) // 512
    np.testing.assert_allclose(h.neuron_grad(0)[2], [rows[2][a:b].mean() for a, b in zip(edges[:-1], edges[1:])],
                               rtol=1e-6)
    np.testing.assert_array_equal(h.neuron_grad(1)[3], rows[3][1000:])


@pytest.mark.parametrize("damage", [
    lambda h: h.update(layer_names=5),
    lambda h: h.pop("layer_units"),
    lambda h: h.update(layer_units=["x", 2]),
    lambda h: h.update(row_layout=[["step", "<i8", None]] * 2),
    lambda h: h.update(spec=[1, 2]),
])
def test_a_damaged_run_directory_header_is_one_line(tmp_path, damage, capsys):
    from backprop_lab.engine import rundir
    from backprop_lab.engine.snapshot import Snapshot
    w = rundir.RunWriter(tmp_path / "run", {"name": "t"}, ["a"], [], [2], flush_seconds=0)
    nan1 = np.full(1, np.nan)
    w.add(Snapshot(0, 1.0, 0.5, np.nan, np.nan, 0.1, nan1, nan1, nan1, nan1, *(np.zeros(0) for _ in range(5)),
                   np.zeros(2, np.float32)))
    w.close()
    head = tmp_path / "run" / "main.json"
    h = json.loads(head.read_text())
    damage(h)
    head.write_text(json.dumps(h))
    try:
        record.load(tmp_path / "run")
    except record.RecordError as e:
        assert "\n" not in str(e)
    code, err = run_cli(capsys, "diagnose", tmp_path / "run")
    assert code in (0, 2) and "Traceback" not in err and len(err.splitlines()) <= 1
