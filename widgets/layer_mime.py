"""The stack editor's drag-and-drop and clipboard payloads: a custom MIME type.

A palette drag carries only the type id ({"new": "sigmoid"}); a drag or copy out of
the stack carries the layer dicts ({"layers": [...]}), and a move inside one stack
also the paths it came from and the model it came from ("move", "source").
"""
from __future__ import annotations

import json

from PySide6.QtCore import QMimeData

from backprop_lab.engine.catalog import CATALOG

MIME_TYPE = "application/x-backprop-lab-layer"


def layers_mime(layers: list[dict], move=None, source=None) -> QMimeData:
    """MIME data carrying layer dicts (copy/paste, drags out of the stack)."""
    payload = {"layers": layers}
    if move is not None:
        payload.update(move=[list(p) for p in move], source=source)
    md = QMimeData()
    md.setData(MIME_TYPE, json.dumps(payload).encode("utf-8"))
    md.setText(json.dumps(layers, indent=2))
    return md


def new_layer_mime(kind: str) -> QMimeData:
    """MIME data of a palette drag: only the type id travels."""
    md = QMimeData()
    md.setData(MIME_TYPE, json.dumps({"new": kind}).encode("utf-8"))
    md.setText(kind)
    return md


def decode_mime(data: QMimeData) -> dict | None:
    """The payload of our MIME type, checked: {"new": type} or {"layers": [...], "move"?: [...]}."""
    if data is None or not data.hasFormat(MIME_TYPE):
        return None
    try:
        payload = json.loads(bytes(data.data(MIME_TYPE)).decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(payload, dict):
        return None
    if "new" in payload:
        return payload if payload["new"] in CATALOG else None
    if isinstance(payload.get("layers"), list) and all(isinstance(l, dict) for l in payload["layers"]):
        return payload
    return None
