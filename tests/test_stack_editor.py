"""The layer stack editor: palette drops through the real drop path, moves, blocks,
keys, clipboard, undo/redo, the property editor's refusals and the settings panel."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402
from PySide6.QtCore import QMimeData, QModelIndex, QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent, QGuiApplication  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from backprop_lab.engine.build import plan  # noqa: E402
from backprop_lab.engine.spec import LAYER_TYPES, validate_layers  # noqa: E402
from backprop_lab.widgets.layer_palette import LayerPalette  # noqa: E402
from backprop_lab.widgets.layer_stack import LayerStackView  # noqa: E402
from backprop_lab.widgets.property_editor import PropertyEditor  # noqa: E402
from backprop_lab.widgets.settings_panel import SettingsPanel  # noqa: E402
from backprop_lab.widgets.layer_catalog import GROUPS  # noqa: E402
from backprop_lab.widgets.stack_model import (ADDED_ROLE, MIME_TYPE, PROBLEM_ROLE, LayerStackModel, decode_mime,  # noqa: E402
                                 layers_mime)

ROOT = Path(__file__).resolve().parent.parent

STACK = [
    {"type": "linear", "units": 30},
    {"type": "sigmoid"},
    {"type": "residual", "layers": [{"type": "linear", "units": 30}, {"type": "sigmoid"}]},
    {"type": "linear", "units": 20},
    {"type": "tanh"},
]


@pytest.fixture
def palette(qtbot):
    p = LayerPalette()
    qtbot.addWidget(p)
    p.resize(260, 420)
    p.show()
    qtbot.waitExposed(p)
    return p


@pytest.fixture
def stack(qtbot):
    v = LayerStackView()
    qtbot.addWidget(v)
    v.set_layers(STACK)
    v.resize(360, 520)
    v.show()
    qtbot.waitExposed(v)
    return v


@pytest.fixture
def props(qtbot, stack):
    e = PropertyEditor(stack.model, stack.undo_stack)
    qtbot.addWidget(e)
    e.show()
    return e


def _palette_mime(palette, kind) -> QMimeData:
    md = palette.model.mimeData([palette.model.index_of(kind)])
    assert decode_mime(md) == {"new": kind}
    return md


def _row_point(view, path, where="center") -> QPoint:
    rect = view.tree.visualRect(view.model.index_of(path))
    x = rect.left() + 30
    y = {"above": rect.top() + 1, "below": rect.bottom() - 1, "center": rect.center().y()}[where]
    return QPoint(x, y)


def _drag_and_drop(view, mime, pos: QPoint, action=Qt.CopyAction, direct=False) -> QDropEvent:
    """Enter, move and drop on the tree's viewport the way a real drag does."""
    vp = view.tree.viewport()
    enter = QDragEnterEvent(pos, action, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(vp, enter)
    move = QDragMoveEvent(pos, action, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(vp, move)
    drop = QDropEvent(QPointF(pos), action, mime, Qt.LeftButton, Qt.NoModifier)
    if direct:
        view.tree.dropEvent(drop)
    else:
        QApplication.sendEvent(vp, drop)
    return drop


def _undo_redo_exact(view, before, after):
    assert view.layers() == after
    view.undo_stack.undo()
    assert view.layers() == before
    view.undo_stack.redo()
    assert view.layers() == after


# ----------------------------------------------------------------------------- palette
def test_palette_lists_every_type_in_its_group(palette):
    m = palette.model
    assert [m.item(r).text() for r in range(m.rowCount())] == list(GROUPS)
    seen = {}
    for r in range(m.rowCount()):
        g = m.item(r)
        for c in range(g.rowCount()):
            seen[g.child(c).text()] = g.text()
    assert seen == {k: v["group"] for k, v in LAYER_TYPES.items()}
    assert m.mimeTypes() == [MIME_TYPE]
    assert m.mimeData([m.index(0, 0)]) is None          # a group header does not drag


def test_palette_double_click_requests_the_layer(palette, qtbot):
    idx = palette.index_of("tanh")
    palette.view.scrollTo(idx)
    rect = palette.view.visualRect(idx)
    # a real double-click starts with a press: the view only activates the item it pressed
    qtbot.mouseClick(palette.view.viewport(), Qt.LeftButton, pos=rect.center())
    with qtbot.waitSignal(palette.layer_requested) as sig:
        qtbot.mouseDClick(palette.view.viewport(), Qt.LeftButton, pos=rect.center())
    assert sig.args == ["tanh"]


def test_palette_filter_keeps_matching_types(palette):
    palette.filter.setText("relu")
    shown = []
    for r in range(palette.proxy.rowCount()):
        g = palette.proxy.index(r, 0)
        shown += [palette.proxy.index(c, 0, g).data() for c in range(palette.proxy.rowCount(g))]
    assert shown == ["relu", "leaky_relu"]


# ----------------------------------------------------------------------------- drops from the palette
def test_palette_drop_through_model(palette, stack):
    before = stack.layers()
    md = _palette_mime(palette, "relu")
    m = stack.model
    assert m.canDropMimeData(md, Qt.CopyAction, 1, 0, QModelIndex())
    assert m.dropMimeData(md, Qt.CopyAction, 1, 0, QModelIndex())
    _undo_redo_exact(stack, before, before[:1] + [{"type": "relu"}] + before[1:])


def test_palette_drop_event_on_viewport_inserts_above_the_row(palette, stack):
    before = stack.layers()
    drop = _drag_and_drop(stack, _palette_mime(palette, "batchnorm"), _row_point(stack, (2,), "above"))
    assert drop.isAccepted()
    _undo_redo_exact(stack, before, before[:1] + [{"type": "batchnorm", "affine": True}] + before[1:])


def test_palette_drop_below_the_rows_appends(palette, stack):
    before = stack.layers()
    vp = stack.tree.viewport()
    _drag_and_drop(stack, _palette_mime(palette, "dropout"), QPoint(40, vp.height() - 5), direct=True)
    _undo_redo_exact(stack, before, before + [{"type": "dropout", "p": 0.5}])


def test_palette_drop_onto_residual_block_goes_inside(palette, stack):
    before = stack.layers()
    _drag_and_drop(stack, _palette_mime(palette, "layernorm"), _row_point(stack, (3,), "center"))
    after = stack.layers()
    assert after[2]["layers"] == before[2]["layers"] + [{"type": "layernorm", "affine": True}]
    _undo_redo_exact(stack, before, after)


def test_drop_between_block_children_and_through_model(palette, stack):
    before = stack.layers()
    m = stack.model
    md = _palette_mime(palette, "gelu")
    assert m.dropMimeData(md, Qt.CopyAction, 1, 0, m.index_of((3,)))
    after = stack.layers()
    assert [l["type"] for l in after[2]["layers"]] == ["linear", "gelu", "sigmoid"]
    _undo_redo_exact(stack, before, after)


def test_new_residual_block_has_a_body_of_the_current_width(palette, stack):
    stack.set_plan(plan(stack.layers(), (2,), 3))
    m = stack.model
    assert m.dropMimeData(_palette_mime(palette, "residual"), Qt.CopyAction, 4, 0, QModelIndex())
    block = stack.layers()[4]
    assert block["type"] == "residual" and block["layers"][0]["units"] == 20   # width after layer 4
    validate_layers(stack.layers())


# ----------------------------------------------------------------------------- moves inside the stack
def test_internal_move_through_model(stack):
    before = stack.layers()
    m = stack.model
    md = m.mimeData([m.index_of((4,)), m.index_of((4,), 1)])
    assert decode_mime(md)["move"] == [[4]]
    assert m.canDropMimeData(md, Qt.MoveAction, 0, 0, QModelIndex())
    assert m.dropMimeData(md, Qt.MoveAction, 0, 0, QModelIndex())
    _undo_redo_exact(stack, before, [before[3]] + before[:3] + before[4:])


def test_internal_move_by_drop_event(stack):
    before = stack.layers()
    md = stack.model.mimeData([stack.model.index_of((5,))])
    drop = _drag_and_drop(stack, md, _row_point(stack, (2,), "above"), action=Qt.MoveAction)
    assert drop.isAccepted() and drop.dropAction() == Qt.MoveAction
    _undo_redo_exact(stack, before, [before[0], before[4], *before[1:4]])


def test_move_into_and_out_of_a_block(stack):
    before = stack.layers()
    m = stack.model
    assert m.dropMimeData(m.mimeData([m.index_of((2,))]), Qt.MoveAction, 0, 0, m.index_of((3,)))
    inside = stack.layers()
    assert [l["type"] for l in inside] == ["linear", "residual", "linear", "tanh"]
    assert [l["type"] for l in inside[1]["layers"]] == ["sigmoid", "linear", "sigmoid"]
    _undo_redo_exact(stack, before, inside)
    assert m.dropMimeData(m.mimeData([m.index_of((2, 3))]), Qt.MoveAction, 4, 0, QModelIndex())
    out = stack.layers()
    assert [l["type"] for l in out] == ["linear", "residual", "linear", "tanh", "sigmoid"]
    _undo_redo_exact(stack, inside, out)


def test_block_cannot_be_dropped_into_itself_and_noop_moves_leave_no_step(stack):
    m = stack.model
    md = m.mimeData([m.index_of((3,))])
    assert not m.canDropMimeData(md, Qt.MoveAction, 0, 0, m.index_of((3,)))
    assert not m.dropMimeData(md, Qt.MoveAction, 0, 0, m.index_of((3,)))
    n = stack.undo_stack.count()
    assert not m.move_layers([(2,)], (3,))     # just below itself: nothing moves
    assert stack.undo_stack.count() == n


def test_move_up_and_down_keys(stack, qtbot):
    before = stack.layers()
    stack.select_path((4,))
    stack.tree.setFocus()
    qtbot.keyClick(stack.tree, Qt.Key_Up, Qt.AltModifier)
    _undo_redo_exact(stack, before, [before[0], before[1], before[3], before[2], before[4]])
    assert stack.current_path() == (3,)
    qtbot.keyClick(stack.tree, Qt.Key_Down, Qt.AltModifier)
    assert stack.layers() == before


# ----------------------------------------------------------------------------- keys and clipboard
def test_delete_key_removes_selection(stack, qtbot):
    before = stack.layers()
    stack.select_paths([(2,), (4,)])
    stack.tree.setFocus()
    qtbot.keyClick(stack.tree, Qt.Key_Delete)
    _undo_redo_exact(stack, before, [before[0], before[2], before[4]])
    assert stack.current_path() == (2,)       # the layer now at the first removed place


def test_delete_inside_block_and_the_added_output_row_stays(stack, qtbot):
    stack.set_plan(plan(stack.layers(), (2,), 3))
    before = stack.layers()
    stack.select_path((3, 2))
    qtbot.keyClick(stack.tree, Qt.Key_Delete)
    _undo_redo_exact(stack, before, before[:2] + [{"type": "residual", "layers": [before[2]["layers"][0]]}]
                     + before[3:])
    stack.select_path(("out",))
    n = stack.undo_stack.count()
    with qtbot.waitSignal(stack.edit_refused):
        qtbot.keyClick(stack.tree, Qt.Key_Delete)
    assert stack.undo_stack.count() == n


def test_copy_paste_duplicate_cut(stack, qtbot):
    before = stack.layers()
    stack.select_path((3,))
    stack.tree.setFocus()
    qtbot.keyClick(stack.tree, Qt.Key_C, Qt.ControlModifier)
    md = QGuiApplication.clipboard().mimeData()
    assert decode_mime(md)["layers"] == [before[2]]
    stack.select_path((5,))
    qtbot.keyClick(stack.tree, Qt.Key_V, Qt.ControlModifier)
    pasted = before + [before[2]]
    _undo_redo_exact(stack, before, pasted)
    assert stack.current_path() == (6,)

    stack.select_paths([(1,), (2,)])
    qtbot.keyClick(stack.tree, Qt.Key_D, Qt.ControlModifier)
    dup = pasted[:2] + pasted[:2] + pasted[2:]
    _undo_redo_exact(stack, pasted, dup)

    stack.select_path((1,))
    qtbot.keyClick(stack.tree, Qt.Key_X, Qt.ControlModifier)
    _undo_redo_exact(stack, dup, dup[1:])


def test_paste_json_text_and_refuse_garbage(stack, qtbot):
    before = stack.layers()
    md = QMimeData()
    md.setText('{"type": "elu", "alpha": 0.5}')
    QGuiApplication.clipboard().setMimeData(md)
    stack.select_path((1,))
    assert stack.paste()
    _undo_redo_exact(stack, before, before[:1] + [{"type": "elu", "alpha": 0.5}] + before[1:])
    QGuiApplication.clipboard().setMimeData(layers_mime([{"type": "linear", "units": -3}]))
    n = stack.undo_stack.count()
    with qtbot.waitSignal(stack.edit_refused) as sig:
        assert not stack.paste()
    assert "units must be a positive integer, got -3" in sig.args[0]
    assert stack.undo_stack.count() == n and "units must be" in stack.message()


def test_undo_all_steps_back_restores_each_state(palette, stack, qtbot):
    m = stack.model
    states = [stack.layers()]
    m.dropMimeData(_palette_mime(palette, "relu"), Qt.CopyAction, 0, 0, QModelIndex())
    states.append(stack.layers())
    m.dropMimeData(m.mimeData([m.index_of((5,))]), Qt.MoveAction, -1, 0, m.index_of((4,)))  # into the block
    states.append(stack.layers())
    assert len(stack.layers()[3]["layers"]) == 3
    stack.select_path((2,))
    stack.remove_selected()
    states.append(stack.layers())
    stack.select_paths([(3,), (4,)])
    stack.wrap_selected()
    states.append(stack.layers())
    assert stack.layers()[2]["type"] == "residual"
    stack.select_path((3,))
    stack.unwrap_selected()
    states.append(stack.layers())
    assert all(a != b for a, b in zip(states, states[1:]))
    for s in reversed(states[:-1]):
        stack.undo_stack.undo()
        assert stack.layers() == s
    for s in states[1:]:
        stack.undo_stack.redo()
        assert stack.layers() == s


def test_app_round_trip_keeps_undo_exact(palette, stack):
    """The app answers each edit with the normalised layers and a new plan; undo still works."""
    def app_answer():
        stack.set_layers(validate_layers(stack.layers()))
        stack.set_plan(plan(stack.layers(), (2,), 3))
    stack.model.layers_changed.connect(app_answer)
    app_answer()
    before = stack.layers()
    stack.model.dropMimeData(_palette_mime(palette, "linear"), Qt.CopyAction, 2, 0, QModelIndex())
    assert stack.model.index_of((3,), 1).data() == "32"
    stack.undo_stack.undo()
    assert stack.layers() == before
    assert stack.model.index_of((3,), 1).data() == "30"


# ----------------------------------------------------------------------------- plan, selection, lock
def test_plan_shows_shapes_output_row_and_problems(stack):
    layers = stack.layers() + [{"type": "rnn", "units": 8}]
    stack.set_layers(layers)
    stack.set_plan(plan(layers, (2,), 3))
    m = stack.model
    assert m.index_of((1,), 1).data() == "30"
    assert m.index_of((3, 1), 1).data() == "30"
    out = m.index_of(("out",))
    assert out.isValid() and out.data(ADDED_ROLE) and out.row() == len(layers)
    assert not (m.flags(out) & Qt.ItemIsDragEnabled)
    bad = m.index_of((6,))
    assert "rnn needs a sequence" in bad.data(PROBLEM_ROLE)
    assert bad.data(Qt.DecorationRole) is not None
    assert "rnn needs a sequence" in bad.data(Qt.ToolTipRole)
    assert "layer 6 (rnn)" in stack.message()
    assert m.index_of((1,)).data(PROBLEM_ROLE) is None


def test_invalid_layer_marked_from_validation(stack):
    stack.set_layers(STACK + [{"type": "dropout", "p": 1.5}])
    assert stack.model.index_of((6,)).data(PROBLEM_ROLE) == "layer 6 (dropout): p must be in [0, 1), got 1.5"
    assert "p must be in [0, 1)" in stack.message()


def test_selection_emits_paths(stack, qtbot):
    for path in ((2,), (3, 1)):
        stack.tree.scrollTo(stack.model.index_of(path))
        with qtbot.waitSignal(stack.layer_selected) as sig:
            qtbot.mouseClick(stack.tree.viewport(), Qt.LeftButton, pos=_row_point(stack, path))
        assert sig.args == [path]
        assert stack.model.current_path == path
    with qtbot.assertNotEmitted(stack.layer_selected):
        stack.select_path((1,))                  # from elsewhere in the app: no echo
    assert stack.current_path() == (1,)


def test_set_layers_is_silent_and_keeps_undo_free(stack, qtbot):
    with qtbot.assertNotEmitted(stack.model.layers_changed):
        stack.set_layers(STACK[:2])
    assert stack.layers() == STACK[:2] and stack.undo_stack.count() == 0


def test_locked_stack_refuses_edits_with_the_reason(palette, stack, props, qtbot):
    reason = "Training is running. Stop it or Reset to edit the stack."
    stack.set_locked(True, reason)
    before = stack.layers()
    assert reason in stack.message()
    stack.select_path((1,))
    with qtbot.waitSignal(stack.edit_refused) as sig:
        qtbot.keyClick(stack.tree, Qt.Key_Delete)
    assert sig.args == [reason]
    md = _palette_mime(palette, "relu")
    assert not stack.model.canDropMimeData(md, Qt.CopyAction, 0, 0, QModelIndex())
    drop = _drag_and_drop(stack, md, _row_point(stack, (2,), "above"))
    assert not drop.isAccepted()
    assert not stack.append_layer("relu")
    assert not props.set_value("units", 64)
    assert not props.form_widget.isEnabled()
    assert stack.layers() == before and stack.undo_stack.count() == 0
    stack.set_locked(False)
    assert stack.append_layer("relu") and stack.layers()[-1] == {"type": "relu"}


def test_replace_spec_is_one_undo_step(stack):
    calls = []
    old, new = {"name": "a", "model": {"layers": STACK}}, {"name": "b", "model": {"layers": STACK[:1]}}
    stack.replace_spec(old, new, "Apply: ReLU + He init", lambda spec: calls.append(spec["name"]) or True)
    assert calls == ["b"] and stack.undo_stack.undoText() == "Apply: ReLU + He init"
    stack.undo_stack.undo()
    stack.undo_stack.redo()
    assert calls == ["b", "a", "b"]


# ----------------------------------------------------------------------------- property editor
def test_property_invalid_units_refused_with_message(stack, props, qtbot):
    stack.select_path((4,), emit=True)
    assert props.path() == (4,)
    before, n = stack.layers(), stack.undo_stack.count()
    for bad in (-4, 0):
        assert not props.set_value("units", bad)
        assert props.error_text() == f"layer 4 (linear): units must be a positive integer, got {bad}"
        assert not props.error.isHidden()
        assert stack.layers() == before and stack.undo_stack.count() == n
    # typed into the spin box: it cannot take 0, and says why
    spin = props.fields["units"]
    spin.lineEdit().selectAll()
    qtbot.keyClicks(spin.lineEdit(), "0")
    assert props.error_text() == "layer 4 (linear): units must be a positive integer, got 0"
    assert stack.layers() == before


def test_property_invalid_float_typed_is_refused(stack, props, qtbot):
    layers = STACK + [{"type": "leaky_relu", "slope": 0.01}]
    stack.set_layers(layers)
    stack.select_path((6,), emit=True)
    edit = props.fields["slope"]
    assert edit.isVisibleTo(props) and not props.fields["units"].isVisibleTo(props)
    edit.selectAll()
    qtbot.keyClicks(edit, "-1")
    qtbot.keyClick(edit, Qt.Key_Return)
    assert props.error_text() == "layer 6 (leaky_relu): slope must be a number >= 0, got -1.0"
    assert stack.layers() == layers and stack.undo_stack.count() == 0
    edit.selectAll()
    qtbot.keyClicks(edit, "0.2")
    qtbot.keyClick(edit, Qt.Key_Return)
    assert stack.layers()[5]["slope"] == 0.2 and props.error_text() == ""


def test_nested_layer_message_names_the_block(stack, props):
    stack.select_path((3, 1), emit=True)
    assert not props.set_value("units", -4)
    assert props.error_text() == "layer 3 (residual) > layer 1 (linear): units must be a positive integer, got -4"


def test_property_valid_edit_is_undoable_and_merges(stack, props):
    stack.select_path((1,), emit=True)
    before = stack.layers()
    spin = props.fields["units"]
    for v in (40, 41, 64):
        spin.setValue(v)
    assert stack.layers()[0]["units"] == 64
    assert stack.undo_stack.count() == 1            # one field, one undo step
    stack.undo_stack.undo()
    assert stack.layers() == before and spin.value() == 30
    stack.undo_stack.redo()
    assert spin.value() == 64


def test_init_scheme_shows_only_its_parameters(stack, props, qtbot):
    stack.select_path((1,), emit=True)
    f = props.fields
    assert not f["init.std"].isVisibleTo(props) and not f["init.gain"].isVisibleTo(props)
    f["init.scheme"].setCurrentText("normal")
    assert stack.layers()[0]["init"] == {"scheme": "normal"}
    assert f["init.std"].isVisibleTo(props) and not f["init.gain"].isVisibleTo(props)
    f["init.std"].setText("0.05")
    f["init.std"].editingFinished.emit()
    assert stack.layers()[0]["init"] == {"scheme": "normal", "std": 0.05}
    f["init.scheme"].setCurrentText("kaiming_normal")
    assert f["init.gain"].isVisibleTo(props) and not f["init.std"].isVisibleTo(props)
    f["bias"].setChecked(False)
    assert not f["bias_init.scheme"].isVisibleTo(props)
    assert stack.undo_stack.count() == 4
    for _ in range(4):
        stack.undo_stack.undo()
    assert stack.layers() == STACK


def test_sync_from_model_pushes_nothing(stack, props, qtbot):
    with qtbot.assertNotEmitted(stack.model.layers_changed):
        for path in ((1,), (3,), (3, 1), (2,), (4,)):
            stack.select_path(path, emit=True)
            assert props.path() == path
    assert stack.undo_stack.count() == 0


def test_nothing_selected_shows_placeholder(qtbot):
    model = LayerStackModel(STACK)
    e = PropertyEditor(model)
    qtbot.addWidget(e)
    assert e.path() is None and not e.placeholder.isHidden() and e.form_widget.isHidden()


# ----------------------------------------------------------------------------- settings panel
DATA = {"kind": "spirals", "n": 1000, "classes": 3, "noise": 0.2, "turns": 1.5, "test_fraction": 0.2, "seed": 0}
TRAIN = {"loss": None, "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "clip_norm": None,
         "clip_value": None, "batch_size": 64, "steps": 500, "seed": 0, "device": "cpu", "eval_every": 10}


@pytest.fixture
def settings(qtbot, stack):
    p = SettingsPanel(stack.undo_stack)
    qtbot.addWidget(p)
    with qtbot.assertNotEmitted(p.settings_changed):
        p.set_spec_sections(DATA, TRAIN)
    p.show()
    return p


def test_settings_emit_complete_sections(settings, stack, qtbot):
    with qtbot.waitSignal(settings.settings_changed) as sig:
        settings.fields["train.lr"].setText("1e-3")
        settings.fields["train.lr"].editingFinished.emit()
    assert sig.args == [DATA, {**TRAIN, "lr": 0.001}]
    with qtbot.waitSignal(settings.settings_changed) as sig:
        settings.full_batch.setChecked(True)
    assert sig.args[1]["batch_size"] is None
    with qtbot.waitSignal(settings.settings_changed) as sig:
        settings.clip_norm_on.setChecked(True)
    assert sig.args[1]["clip_norm"] == 1.0
    with qtbot.waitSignal(settings.settings_changed) as sig:
        settings.fields["train.optimizer"].setCurrentText("adam")
    assert sig.args[1]["optimizer"] == "adam"
    with qtbot.waitSignal(settings.settings_changed) as sig:
        settings.fields["data.kind"].setCurrentText("circles")
    assert sig.args[0] == {"kind": "circles", "n": 1000, "noise": 0.1, "factor": 0.5, "test_fraction": 0.2,
                           "seed": 0}
    assert stack.undo_stack.count() == 5
    with qtbot.waitSignal(settings.settings_changed) as sig:
        stack.undo_stack.undo()
    assert sig.args[0] == DATA
    for _ in range(4):
        stack.undo_stack.undo()
    assert settings.settings() == (DATA, TRAIN)


def test_settings_refuse_invalid_and_wait_for_a_file(settings, qtbot, tmp_path):
    with qtbot.assertNotEmitted(settings.settings_changed):
        settings.fields["train.lr"].setText("-1")
        settings.fields["train.lr"].editingFinished.emit()
    assert settings.error_text() == "train.lr: must be a positive number, got -1.0"
    settings.fields["train.lr"].set_value(0.1)
    with qtbot.assertNotEmitted(settings.settings_changed):
        settings.fields["data.kind"].setCurrentText("npz")
    assert "Choose a file" in settings.error_text()
    f = str(tmp_path / "d.npz")
    with qtbot.waitSignal(settings.settings_changed) as sig:
        settings.path_edit.setText(f)
        settings.path_edit.editingFinished.emit()
    assert sig.args[0] == {"kind": "npz", "path": f, "standardize": False, "test_fraction": 0.2, "seed": 0}
    assert settings.error_text() == ""


def test_settings_keep_the_optional_keys_they_have_no_row_for(settings, stack):
    data = {"kind": "npz", "path": "d.npz", "standardize": False, "classes": 7, "time_major": True,
            "test_fraction": 0.2, "seed": 0}
    settings.set_spec_sections(data, TRAIN)
    settings.fields["train.steps"].setValue(600)
    assert settings.settings() == (data, {**TRAIN, "steps": 600})


def test_settings_spin_edits_merge(settings, stack):
    for v in (600, 700, 800):
        settings.fields["train.steps"].setValue(v)
    assert stack.undo_stack.count() == 1 and settings.settings()[1]["steps"] == 800
    stack.undo_stack.undo()
    assert settings.settings()[1]["steps"] == 500 and settings.fields["train.steps"].value() == 500


# ----------------------------------------------------------------------------- the split
def test_editor_widgets_do_not_load_torch():
    code = ("import sys; import backprop_lab.widgets.layer_stack, backprop_lab.widgets.layer_palette, backprop_lab.widgets.property_editor, "
            "backprop_lab.widgets.settings_panel, backprop_lab.widgets.undo_commands; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_property_form_follows_the_catalogue_ranges(stack, props):
    from backprop_lab.engine.limits import MAX_UNITS
    # no cap below the spec's: any positive number of units is taken
    stack.select_path((4,), emit=True)
    spin = props.fields["units"]
    assert spin.minimum() == 1 and spin.maximum() == MAX_UNITS
    assert props.set_value("units", 5000) and stack.layers()[3]["units"] == 5000


def test_property_form_has_the_catalogues_affine_switch(stack, props):
    layers = STACK + [{"type": "batchnorm"}]
    stack.set_layers(layers)
    stack.select_path((len(layers),), emit=True)
    box = props.fields["affine"]
    assert box.isVisibleTo(props) and box.isChecked() and not props.fields["units"].isVisibleTo(props)
    box.setChecked(False)
    assert stack.layers()[-1]["affine"] is False and stack.undo_stack.count() == 1
