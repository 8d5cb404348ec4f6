"""Backprop Lab: watch gradients vanish and explode, layer by layer.

Installed, the project is this one package. Its parts live in the repository's
top-level folders (DESIGN.md fixes that layout) and are mapped under this name by
pyproject.toml's ``package-dir``:

    backprop_lab.engine     spec, catalogue, plan, probes, trainer, records (no Qt)
    backprop_lab.widgets    Qt views (no torch)
    backprop_lab.app        the window, the session, the CLI
    backprop_lab.resources  presets, style sheets

The public API for a user's own training script is ``Watch``:

    from backprop_lab import Watch
"""
from __future__ import annotations

__all__ = ["Watch"]


def __getattr__(name):
    # Lazy: `import backprop_lab` (and the GUI process) must not import torch.
    if name == "Watch":
        from .engine.watch import Watch
        return Watch
    raise AttributeError(f"module 'backprop_lab' has no attribute {name!r}")
