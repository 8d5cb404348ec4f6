"""Typed data that crosses layers: run-end reasons and remedy records."""
from __future__ import annotations

import pickle

import pytest

from backprop_lab.engine import remedies
from backprop_lab.engine.run_end import FINISHED, STOPPED, EndKind, RunEnd


def test_run_end_is_its_message_with_a_kind():
    nan = RunEnd.non_finite(float("nan"), 12)
    assert nan == "loss became nan at step 12" and nan.kind is EndKind.NON_FINITE and nan.step == 12
    assert FINISHED == "finished" and not FINISHED.early and STOPPED == "stopped by the user" and STOPPED.early
    for end in (FINISHED, STOPPED, nan, RunEnd.failed("worker died: MemoryError")):
        back = RunEnd.parse(str(end))           # a record read back, a signal's plain str
        assert back == end and back.kind is end.kind and back.step == end.step
        again = pickle.loads(pickle.dumps(end))  # across processes
        assert again == end and again.kind is end.kind
    assert RunEnd.parse("") is None and RunEnd.parse(None) is None


def test_remedies_are_records_with_an_edit():
    spec = {"data": {"kind": "xor"}, "model": {"layers": [{"type": "linear", "units": 8}, {"type": "sigmoid"}]},
            "train": {}}
    for rid, r in remedies.REMEDIES.items():
        assert r.id == rid and r.label and r.explanation and callable(r.edit)
        assert r["label"] == r.label and r.get("explanation") == r.explanation
    new, text = remedies.apply("relu_he", spec)
    assert [l["type"] for l in new["model"]["layers"]] == ["linear", "relu"] and "relu" in text
    assert spec["model"]["layers"][1] == {"type": "sigmoid"}        # the input is not changed
    new, text = remedies.apply("adam", spec)
    assert new["train"]["optimizer"] == "adam" and new["train"]["lr"] == 1e-3
    custom = {"data": {"kind": "xor"}, "model": {"python": "m.py", "class": "Net"}, "train": {}}
    with pytest.raises(ValueError, match="custom Python module"):
        remedies.apply("batchnorm", custom)
    with pytest.raises(ValueError, match="unknown remedy"):
        remedies.apply("magic", spec)
