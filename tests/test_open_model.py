"""File > Open model... / --model: a user's module, checked in a child process, layers chosen, trained."""
import pytest
from PySide6.QtCore import Qt

from backprop_lab.widgets.open_model_dialog import OpenModelDialog, RUNS_CODE, classes_in, model_spec
from tests.conftest import ROOT

EXAMPLE = ROOT / "resources" / "examples" / "my_net.py"


def test_the_dialog_lists_classes_without_running_the_file_and_says_it_will(qtbot, tmp_path):
    f = tmp_path / "net.py"
    f.write_text("raise SystemExit('ran!')\nclass A: pass\nclass Net(A): pass\n")
    assert classes_in(f) == ["A", "Net"]              # read with ast: the SystemExit never ran
    d = OpenModelDialog(path=str(f), class_name="Net", kwargs={"hidden": 3})
    qtbot.addWidget(d)
    assert d.findChild(type(d.problem), "runs_code_note").text() == RUNS_CODE
    spec = d.spec()
    assert spec["model"]["class"] == "Net" and spec["model"]["kwargs"] == {"hidden": 3}
    d.kwargs.setText("{oops")
    with pytest.raises(ValueError, match="not JSON"):
        d.spec()


def test_open_model_shows_the_module_tree_and_trains_only_the_checked_layers(qtbot, window):
    opener = window.model_opener()
    with qtbot.waitSignal(opener.checked, timeout=120_000) as got:
        opener.open_path(f"{EXAMPLE}:Net", {"depth": 2}, "digits")
    assert got.args[0]["ok"], got.args[0]
    qtbot.waitUntil(lambda: opener.layer_dialog is not None and opener.layer_dialog.isVisible(), timeout=5000)
    items = opener.layer_dialog.items
    assert list(items) == ["conv1", "conv2", "hidden.0", "hidden.1", "out"]
    items["conv2"].setCheckState(0, Qt.CheckState.Unchecked)
    with qtbot.waitSignal(opener.opened, timeout=60_000) as spec:
        opener.layer_dialog.accept()
    assert spec.args[0]["model"]["watch"] == ["conv1", "hidden.0", "hidden.1", "out"]
    s = window.session
    s.spec["train"]["steps"] = 5
    with qtbot.waitSignal(s.run_ended, timeout=120_000):
        s.start()
    assert len(s.history) == 5 and s.history.layer_names == ["conv1 (Conv2d)", "hidden.0 (Linear)",
                                                              "hidden.1 (Linear)", "out (Linear)"]
    assert any("functional" in n for n in s.history.act_names)


@pytest.mark.parametrize("source, expect", [
    ("import no_such_module_here\nclass Net: pass\n", "ModuleNotFoundError"),
    ("import torch\nclass Net(torch.nn.Module):\n    def __init__(self):\n        raise RuntimeError('bad init')\n",
     "bad init"),
    ("import os\nclass Net: pass\nos._exit(3)\n", "exit status 3"),
])
def test_a_model_that_fails_shows_its_traceback_and_the_app_keeps_running(qtbot, window, tmp_path, source, expect):
    f = tmp_path / "broken.py"
    f.write_text(source)
    opener = window.model_opener()
    with qtbot.waitSignal(opener.checked, timeout=120_000):
        opener.open(model_spec(f, "Net", {}, "digits"))
    box = opener.error_box
    assert box is not None and box.isVisible()
    assert expect in box.text() + box.detailedText()
    box.close()
    assert window.isVisible() and window.session.spec["model"].get("python") is None


def test_model_watch_is_checked_and_bad_cli_kwargs_are_one_line(tmp_path):
    from backprop_lab.app import cli
    from backprop_lab.engine import experiment, spec as specmod
    with pytest.raises(specmod.SpecError, match="model.watch"):
        specmod.validate(model_spec(EXAMPLE, "Net", {}, "digits") | {"model": {"python": str(EXAMPLE),
                                                                              "class": "Net", "watch": []}})
    bad = model_spec(EXAMPLE, "Net", {}, "digits")
    bad["model"]["watch"] = ["conv9"]
    with pytest.raises(specmod.SpecError, match="no layer 'conv9'"):
        experiment.build(specmod.validate(bad), EXAMPLE.parent)
    assert cli.main(["--model", f"{EXAMPLE}:Net", "--kwargs", "[1]"]) == 2
