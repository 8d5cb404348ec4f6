"""The per-layer statistics a view can show, and how each is labelled."""
from __future__ import annotations

STATISTICS = [
    ("bias_grad_norm", "bias gradient ‖∂L/∂b‖ (speed of learning)"),
    ("delta_norm", "delta ‖∂L/∂z‖"),
    ("weight_grad_norm", "weight gradient ‖∂L/∂W‖"),
    ("update_ratio", "update ratio ‖ΔW‖ / ‖W‖"),
]
LABELS = dict(STATISTICS)
SHORT = {"bias_grad_norm": "‖∂L/∂b‖", "delta_norm": "‖∂L/∂z‖", "weight_grad_norm": "‖∂L/∂W‖",
         "update_ratio": "‖ΔW‖/‖W‖"}
DEFAULT = "bias_grad_norm"
