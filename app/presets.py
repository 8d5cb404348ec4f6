"""The lab-demo presets shipped in resources/presets/."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

PRESET_DIR = Path(__file__).resolve().parent.parent / "resources" / "presets"


@dataclass(frozen=True)
class Preset:
    path: Path
    name: str
    description: str


def presets() -> list[Preset]:
    out = []
    for p in sorted(PRESET_DIR.glob("*.json")):
        try:
            spec = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        out.append(Preset(p, spec.get("name", p.stem), spec.get("description", "")))
    return out
