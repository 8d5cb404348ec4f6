"""Data sets: built-in tasks, user files used as given, train/test split by the data seed."""
import numpy as np
import pytest

from backprop_lab.engine.data import make_dataset
from backprop_lab.engine.spec import SpecError, validate


def data(kind, base_dir=None, **params):
    spec = validate({"data": {"kind": kind, **params}, "model": {"layers": []}})
    return make_dataset(spec["data"], base_dir)


@pytest.mark.parametrize("kind, params, in_shape, n_out, task", [
    ("spirals", {"classes": 4}, (2,), 4, "classification"),
    ("circles", {}, (2,), 2, "classification"),
    ("xor", {}, (2,), 2, "classification"),
    ("blobs", {"dim": 5, "classes": 6}, (5,), 6, "classification"),
    ("gaussian", {"dim": 3, "classes": 3}, (3,), 3, "classification"),
    ("memory", {"length": 9, "features": 2}, (9, 2), 2, "classification"),
    ("adding", {"length": 6}, (6, 2), 1, "regression"),
])
def test_generated_kinds_have_their_shapes_types_and_split(kind, params, in_shape, n_out, task):
    d = data(kind, n=300, test_fraction=0.2, **params)
    assert d.input_shape == in_shape and d.n_outputs == n_out and d.task == task
    assert len(d.x_train) == 240 and len(d.x_test) == 60
    assert d.x_train.dtype == np.float32 and d.x_train.flags.c_contiguous
    if task == "classification":
        assert d.y_train.dtype == np.int64 and set(np.unique(np.r_[d.y_train, d.y_test])) == set(range(n_out))
    else:
        assert d.y_train.dtype == np.float32 and d.y_train.shape == (240, 1)
    again = data(kind, n=300, test_fraction=0.2, **params)
    other = data(kind, n=300, test_fraction=0.2, seed=1, **params)
    assert np.array_equal(d.x_train, again.x_train) and np.array_equal(d.y_test, again.y_test)
    assert not np.array_equal(d.x_train, other.x_train)


def test_test_fraction_zero_means_no_test_split():
    d = data("xor", n=50, test_fraction=0)
    assert len(d.x_train) == 50 and d.x_test.shape == (0, 2) and len(d.y_test) == 0
    assert d.describe() == "xor (50/0)"


def test_gaussian_inputs_are_standard_normal_with_random_labels():
    d = data("gaussian", n=20_000, dim=2, classes=3, test_fraction=0)
    assert np.allclose(d.x_train.mean(0), 0, atol=0.03) and np.allclose(d.x_train.std(0), 1, atol=0.03)
    share = np.bincount(d.y_train) / len(d.y_train)
    assert np.allclose(share, 1 / 3, atol=0.02)
    assert abs(np.corrcoef(d.x_train[:, 0], d.y_train)[0, 1]) < 0.03   # labels carry no signal


def test_xor_labels_are_the_sign_product_and_circles_separate_by_radius():
    d = data("xor", n=400, noise=0.0, test_fraction=0)
    assert np.array_equal(d.y_train, ((d.x_train[:, 0] > 0) ^ (d.x_train[:, 1] > 0)).astype(int))
    c = data("circles", n=400, noise=0.0, factor=0.4, test_fraction=0)
    r = np.linalg.norm(c.x_train, axis=1)
    assert np.allclose(r[c.y_train == 1], 0.4, atol=1e-5) and np.allclose(r[c.y_train == 0], 1.0, atol=1e-5)


def test_spirals_are_balanced():
    d = data("spirals", n=301, classes=3, test_fraction=0)
    assert sorted(np.bincount(d.y_train)) == [100, 100, 101]


def test_memory_label_is_the_sign_of_the_first_step_and_adding_sums_the_marked_values():
    m = data("memory", n=200, length=8, test_fraction=0)
    assert np.array_equal(m.y_train, (m.x_train[:, 0, 0] > 0).astype(int))
    a = data("adding", n=200, length=8, test_fraction=0)
    marks = a.x_train[:, :, 1]
    assert np.all(marks.sum(1) == 2) and set(np.unique(marks)) == {0.0, 1.0}
    np.testing.assert_allclose(a.y_train[:, 0], (a.x_train[:, :, 0] * marks).sum(1), rtol=1e-6)


def test_digits_is_the_8x8_set_scaled_to_unit_range():
    d = data("digits", test_fraction=0)
    assert d.x_train.shape == (1797, 64) and d.n_outputs == 10
    assert d.x_train.min() == 0.0 and d.x_train.max() == 1.0


# ----------------------------------------------------------------------------- user files
def test_npz_is_used_as_given_relative_to_the_spec_folder(tmp_path):
    x = np.arange(60, dtype=np.float64).reshape(30, 2) * 100
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(30) % 3)
    d = data("npz", tmp_path, path="d.npz", test_fraction=0)
    assert d.task == "classification" and d.n_outputs == 3
    rows = {tuple(r) for r in d.x_train}
    assert rows == {tuple(r) for r in x.astype(np.float32)}      # same numbers: no normalisation
    same = data("npz", None, path=str(tmp_path / "d.npz"), test_fraction=0)   # absolute path
    assert np.array_equal(same.x_train, d.x_train)


def test_npz_split_is_a_partition_of_the_samples(tmp_path):
    x = np.arange(100, dtype=np.float32)[:, None]
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(100) % 2)
    d = data("npz", tmp_path, path="d.npz", test_fraction=0.25)
    assert len(d.x_test) == 25
    together = np.sort(np.r_[d.x_train[:, 0], d.x_test[:, 0]])
    assert np.array_equal(together, x[:, 0])                     # 1-D x became one feature column
    assert np.array_equal(d.y_train, d.x_train[:, 0].astype(int) % 2)   # labels stay with their rows


def test_npz_standardize_and_regression_targets(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(5, 3, (200, 4))
    np.savez(tmp_path / "r.npz", x=x, y=x[:, :2] * 2.0)
    d = data("npz", tmp_path, path="r.npz", standardize=True, test_fraction=0)
    assert d.task == "regression" and d.n_outputs == 2 and d.y_train.shape == (200, 2)
    assert np.allclose(d.x_train.mean(0), 0, atol=1e-5) and np.allclose(d.x_train.std(0), 1, atol=1e-4)


@pytest.mark.parametrize("x, y, message", [
    (np.zeros((6, 2)), np.array([0, 1, -1, 0, 1, 0]), "data.y: classification needs y as class indices"),
    (np.zeros((6, 2)), np.zeros(6, int), "data.y: classification needs at least 2 classes"),
    (np.full((6, 2), np.nan), np.arange(6) % 2, "data: x holds NaN or infinite values"),
    (np.zeros((1, 2)), np.array([1]), "data: needs at least 2 samples, got 1"),
])
def test_bad_npz_contents_are_named(tmp_path, x, y, message):
    np.savez(tmp_path / "d.npz", x=x, y=y)
    with pytest.raises(SpecError, match=message.replace("(", r"\(")):
        data("npz", tmp_path, path="d.npz", test_fraction=0)


def test_a_test_fraction_that_leaves_no_training_sample_is_refused(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 1)), y=np.array([0, 1]))
    with pytest.raises(SpecError, match="leaves no training samples"):
        data("npz", tmp_path, path="d.npz", test_fraction=0.9)


def test_csv_with_a_header_and_a_chosen_target_column(tmp_path):
    (tmp_path / "d.csv").write_text("label,a,b\n" + "\n".join(f"{i % 3},{i},{-i}" for i in range(30)))
    d = data("csv", tmp_path, path="d.csv", target=0, test_fraction=0)
    assert d.input_shape == (2,) and d.n_outputs == 3
    assert np.array_equal(d.y_train, d.x_train[:, 0].astype(int) % 3)
    (tmp_path / "r.csv").write_text("\n".join(f"{i},{i * 0.5}" for i in range(20)))   # no header
    r = data("csv", tmp_path, path="r.csv", task="regression", test_fraction=0)
    assert r.task == "regression" and len(r.x_train) == 20
    np.testing.assert_allclose(r.y_train[:, 0], r.x_train[:, 0] * 0.5)


def test_csv_errors_are_named(tmp_path):
    (tmp_path / "d.csv").write_text("1,2\n3,x\n")
    with pytest.raises(SpecError, match="d.csv is not a numeric CSV table"):
        data("csv", tmp_path, path="d.csv")
    (tmp_path / "e.csv").write_text("1,2\n3,4\n")
    with pytest.raises(SpecError, match="data.target: column 5 does not exist in e.csv"):
        data("csv", tmp_path, path="e.csv", target=5)
    with pytest.raises(SpecError, match="data.path: no such file"):
        data("csv", tmp_path, path="missing.csv")
