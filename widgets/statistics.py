"""The per-layer statistics a view can show, how each is labelled, and its starting colour levels.

All are L2 norms over a layer for one training step (Contract 2), shown as log10:
bias gradient ‖∂L/∂b‖ (Nielsen's "speed of learning" of the layer), delta
‖∂L/∂z‖ (the gradient arriving at the layer's output), weight gradient
‖∂L/∂W‖, and the update ratio ‖ΔW‖ / ‖W‖ (how much one step changes W).
"""
from __future__ import annotations

STATISTICS = [
    ("bias_grad_norm", "bias gradient ‖∂L/∂b‖"),   # Nielsen's "speed of learning"
    ("delta_norm", "delta ‖∂L/∂z‖"),
    ("weight_grad_norm", "weight gradient ‖∂L/∂W‖"),
    ("update_ratio", "update ratio ‖ΔW‖ / ‖W‖"),
]
LABELS = dict(STATISTICS)
SHORT = {"bias_grad_norm": "‖∂L/∂b‖", "delta_norm": "‖∂L/∂z‖", "weight_grad_norm": "‖∂L/∂W‖",
         "update_ratio": "‖ΔW‖/‖W‖"}
UNITS: dict[str, str] = {}   # all are dimensionless norms; kept for statistics that have units
DEFAULT = "bias_grad_norm"
# log10 colour levels a heatmap starts with (they widen to take in the data, never shrink):
# gradients of healthy nets sit around 1e-3..1e-1, vanishing ones reach 1e-8 and below.
DEFAULT_LEVELS = {"bias_grad_norm": (-8.0, 0.0), "delta_norm": (-8.0, 0.0),
                  "weight_grad_norm": (-8.0, 0.0), "update_ratio": (-6.0, 0.0)}
