"""The Qt-free experiment document: editing, events, validation and plan with no QApplication."""
from __future__ import annotations

import subprocess
import sys

import pytest

from backprop_lab.engine.document import OUT, ExperimentDocument, StackDocument, parse_path, path_text, top_paths

STACK = [{"type": "linear", "units": 8}, {"type": "tanh"},
         {"type": "residual", "layers": [{"type": "linear", "units": 8}, {"type": "relu"}]},
         {"type": "linear", "units": 3}]


def types(layers):
    return [l["type"] if l["type"] != "residual" else ("residual", types(l["layers"])) for l in layers]


@pytest.fixture
def doc():
    d = StackDocument(STACK)
    d.log = []
    for name in ("inserting", "inserted", "removing", "removed", "resetting", "reset", "edited", "planned"):
        d.events.connect(name, lambda *a, n=name: d.log.append((n, *[x for x in a if not hasattr(x, "layer")])))
    return d


def test_insert_remove_restore_are_exact(doc):
    paths = doc.insert((3, 2), [{"type": "dropout", "p": 0.1}, {"type": "sigmoid"}])
    assert paths == [(3, 2), (3, 3)]
    assert types(doc.layers())[2] == ("residual", ["linear", "dropout", "sigmoid", "relu"])
    assert doc.log == [("inserting", 1, 2), ("inserted", 1, 2), ("edited", [(3, 2), (3, 3)])]
    removed = doc.remove([(3, 3), (1,), (3,)])        # (3, 3) is inside (3,): removed with it
    assert [p for p, _ in removed] == [(1,), (3,)]
    assert types(doc.layers()) == ["tanh", "linear"]
    doc.restore(removed)
    assert doc.layers() == StackDocument(STACK).layers()[:2] + [
        {"type": "residual", "layers": [{"type": "linear", "units": 8}, {"type": "dropout", "p": 0.1},
                                        {"type": "sigmoid"}, {"type": "relu"}]}, {"type": "linear", "units": 3}]
    assert doc.log[-1] == ("edited", [(1,), (3,)])      # one event for the batch


def test_move_into_block_and_back(doc):
    new, moved = doc.move([(2,)], (3, 1))
    assert new == [(2, 1)] and types(doc.layers()) == ["linear", ("residual", ["tanh", "linear", "relu"]), "linear"]
    assert sum(1 for e in doc.log if e[0] == "edited") == 1
    with doc.batch():
        doc.remove(new)
        doc.restore(moved)
    assert doc.layers() == STACK
    assert not doc.can_move([(3,)], (3, 1))            # a block into itself
    assert doc.is_noop_move([(2,)], (2,)) and doc.is_noop_move([(2,)], (3,))


def test_set_wrap_unwrap(doc):
    doc.set((1,), {"type": "linear", "units": 16})
    assert doc.layer((1,))["units"] == 16
    assert doc.wrap([(1,), (2,)]) == (1,)
    assert types(doc.layers()) == [("residual", ["linear", "tanh"]), ("residual", ["linear", "relu"]), "linear"]
    assert doc.wrap([(1,), (3,)]) is None               # not contiguous
    assert doc.unwrap((1,)) == [(1,), (2,)]
    assert types(doc.layers())[:2] == ["linear", "tanh"]
    assert doc.unwrap((1,)) is None                     # not a block


def test_spec_error_names_the_layer_by_path(doc):
    doc.set((3, 1), {"type": "linear", "units": -2})
    assert doc.spec_error is not None and doc.spec_error.path == (3, 1) and doc.spec_error.key == "units"
    assert doc.problem((3, 1)).endswith("units must be a positive integer, got -2")
    assert doc.problems() == [((3, 1), str(doc.spec_error))]
    assert doc.update_plan((2,), 3) == [] and not doc.plan_valid


def test_plan_without_torch(doc):
    infos = doc.update_plan((2,), 3)
    assert doc.plan_valid and ("planned",) in doc.log
    assert [i.path for i in infos] == ["1", "2", "3", "4"]         # ends with linear 3: no output layer added
    assert doc.info((3, 1)).in_shape == (8,) and doc.info((4,)).out_shape == (3,)
    assert doc.width_at((3, 2)) == 8 and doc.width_at((5,)) == 3
    doc.remove([(4,)])
    assert not doc.plan_valid and doc.info((1,)) is None           # stale until planned again
    doc.update_plan((2,), 3)
    assert doc.has_path(OUT) and doc.info(OUT).in_shape == (8,)
    assert ("inserting", 3, 1) in doc.log                          # the output row appears as a row


def test_recurrent_problem_in_the_plan():
    d = StackDocument([{"type": "lstm", "units": 4}])
    d.update_plan((2,), 3)
    assert "needs a sequence" in d.problem((1,))


def test_paths():
    assert parse_path("4.2") == (4, 2) and path_text((4, 2)) == "4.2" and parse_path("out") == OUT
    assert top_paths([(3, 1), (3,), (1,), OUT, (1,)]) == [(1,), (3,)]


def test_experiment_document_settings_and_spec():
    spec = {"name": "x", "data": {"kind": "xor"}, "model": {"layers": STACK}, "train": {"lr": 0.5}}
    exp = ExperimentDocument(spec)
    seen = []
    exp.events.connect("settings_changed", lambda d, t: seen.append((d, t)))
    exp.set_settings({"kind": "circles"}, {"lr": 0.1})
    exp.stack.remove([(2,)])
    out = exp.spec()
    assert seen == [({"kind": "circles"}, {"lr": 0.1})]
    assert out["name"] == "x" and out["data"] == {"kind": "circles"} and len(out["model"]["layers"]) == 3
    custom = ExperimentDocument({"data": {"kind": "xor"}, "model": {"python": "m.py", "class": "Net"}})
    assert custom.spec()["model"] == {"python": "m.py", "class": "Net"}


def test_document_imports_neither_qt_nor_torch():
    code = ("import sys, backprop_lab.engine.document, backprop_lab.engine.catalog; "
            "print(any(m.split('.')[0] in ('torch', 'PySide6', 'pyqtgraph') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_plan_rows_know_their_path_and_build_errors_carry_it():
    from backprop_lab.engine.build import build_stack
    from backprop_lab.engine.plan import plan
    from backprop_lab.engine.spec import SpecError, validate_layers

    layers = validate_layers([{"type": "linear", "units": 4},
                              {"type": "residual", "layers": [{"type": "lstm", "units": 4}]}])
    infos = plan(layers, (2,), 3)
    assert [i.at for i in infos] == [(1,), (2,), OUT] and infos[1].children[0].at == (2, 1)
    with pytest.raises(SpecError) as e:
        build_stack(layers, (2,), 3, seed=0)
    assert e.value.path == (2,)
