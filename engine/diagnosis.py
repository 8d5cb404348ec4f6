"""Diagnosis: findings about a run, read from its History (numpy only).

Each finding names its layers and steps, carries the numbers it rests on, says
what it means in plain words, and lists remedies (ids of engine.remedies).
``diagnose`` is cheap (vectorised over a recent window), so the app calls it
a few times a second while training.

Which number measures a layer's "speed of learning": the bias gradient
||dL/db|| (Nielsen), except where it says nothing: a layer with no bias, or a
linear layer right before BatchNorm (BatchNorm subtracts the batch mean, so
dL/db is 0 there); then the delta ||dL/dz|| is used. Weight-gradient norms are
not used: in a ReLU/Xavier net they stay flat while the deltas vanish
(SCIENCE.md, "weight-gradient norms hide vanishing").
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

# ---- thresholds (where each comes from) -----------------------------------------
# Vanishing: first hidden layer's speed over the last hidden layer's. He-init
# ReLU nets sit near 1 (SCIENCE.md: 0.98), Nielsen's 4-hidden-layer sigmoid net
# at about 1/5-1/14 (an order of magnitude: worth a note), default-init deep
# sigmoid nets at 1e-9 (SCIENCE.md: 2.5e-10).
VANISHING_INFO = 0.1
VANISHING_WARNING = 1e-2
VANISHING_ERROR = 1e-4
# Exploding across depth: the mirror image (large-init ReLU: ~1e5 in our preset).
EXPLODING_RATIO = 1e2
# Exploding in time: the total gradient norm jumping 100x within one step, or
# growing 1000x over the window (clipping's usual trigger, Pascanu et al. 2013).
JUMP_DECADES = 2.0
GROWTH_DECADES = 3.0
# Saturation: share of (sample, unit) entries with f'(z) < 1 % of max f'.
SATURATION_WARNING = 0.5
# Dead ReLUs: share of units with f'(z) = 0 on the whole batch, at every step of
# the window (one batch of 64 can miss a live unit by chance; a dead one stays dead).
DEAD_WARNING = 0.2
DEAD_ERROR = 0.5
# Bad init: pre-activation std changing by more than 10x from the first
# activation layer to the last at step 0 (variance-preserving inits keep ~1x).
BAD_INIT_FACTOR = 10.0
# Plateau: over the last PLATEAU_WINDOW steps the loss moved by less than 1 %
# and is still above 90 % of where it started.
PLATEAU_MIN_STEPS = 200
PLATEAU_WINDOW = 100
PLATEAU_CHANGE = 0.01
PLATEAU_STILL_HIGH = 0.9
# Overfitting: test loss 20 % above its own minimum while training loss kept falling.
OVERFIT_RISE = 1.2
WINDOW = 20  # recent steps a finding about "now" looks at
UPDATE_RATIO_LOW = 1e-5  # Karpathy's rule of thumb is ~1e-3 per step; far below it a layer is frozen


@dataclass
class Finding:
    kind: str
    severity: str  # "info", "warning", "error"
    layers: list
    steps: list    # [first, last]
    evidence: dict = field(default_factory=dict)
    message: str = ""
    remedies: list = field(default_factory=list)

    def to_json(self) -> dict:
        return {"kind": self.kind, "severity": self.severity, "layers": list(self.layers),
                "steps": [int(s) for s in self.steps], "evidence": _clean(self.evidence),
                "message": self.message, "remedies": list(self.remedies)}

    def describe(self) -> str:
        where = ", ".join(self.layers[:3]) + (" …" if len(self.layers) > 3 else "")
        lines = [f"[{self.severity}] {self.kind}: {where} (steps {self.steps[0]}–{self.steps[1]})",
                 f"  {self.message}"]
        if self.remedies:
            lines.append("  remedies: " + ", ".join(self.remedies))
        return "\n".join(lines)


def _clean(v):
    """JSON-safe: numpy to Python, NaN/inf to None."""
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_clean(x) for x in v]
    if isinstance(v, (np.floating, float)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, (np.integer,)):
        return int(v)
    return v


def _kind(name: str) -> str:
    """Layer type from a recorded name: "3 linear" -> linear, "fc (Linear)" -> linear."""
    word = name.split(" ", 1)[-1].strip("()").lower()
    return word


def _hidden(names: list) -> list[int]:
    """Indices of hidden layers that transform (linear/recurrent), the output layer excluded."""
    out = []
    for i, n in enumerate(names):
        k = _kind(n)
        if n.startswith("out") or k.endswith("proj") or "norm" in k:
            continue
        if k in ("linear", "rnn", "lstm", "gru", "conv1d", "conv2d") or "linear" in k or "conv" in k:
            out.append(i)
    if len(out) >= 2 and out[-1] == len(names) - 1:
        out = out[:-1]  # a custom model's last linear layer is its output layer
    return out


def speed(history, rows: slice | np.ndarray) -> np.ndarray:
    """Per-layer speed of learning over some rows: median bias-grad norm, or delta norm where
    the bias gradient is undefined or zeroed by a following BatchNorm."""
    names = history.layer_names
    b = np.nanmedian(history.series("bias_grad_norm")[rows], axis=0) if len(names) else np.zeros(0)
    d = np.nanmedian(history.series("delta_norm")[rows], axis=0) if len(names) else np.zeros(0)
    before_norm = np.array([i + 1 < len(names) and "batchnorm" in _kind(names[i + 1]) for i in range(len(names))],
                           dtype=bool)
    use_delta = ~np.isfinite(b) | before_norm | (b <= 0)
    return np.where(use_delta, d, b)


def _layers_word(history, idx) -> list:
    return [history.layer_names[i] for i in idx]


def _act_kinds(history) -> list[str]:
    return [_kind(n) for n in history.act_names]


# ---- the checks ---------------------------------------------------------------------
def _non_finite(h, first_step, last_step):
    loss = h.series("loss")
    bad = ~np.isfinite(loss)
    grads = h.series("weight_grad_norm")
    gbad = ~np.isfinite(grads) & ~np.isnan(grads) | (np.isnan(grads) & np.isfinite(loss)[:, None] & False)
    rows = np.flatnonzero(bad | gbad.any(1))
    if not rows.size:
        return []
    r = int(rows[0])
    step = int(h.steps[r])
    bad_layers = np.flatnonzero(~np.isfinite(grads[r]))
    layer = [h.layer_names[int(bad_layers[0])]] if bad_layers.size else []
    return [Finding("non_finite", "error", layer, [step, last_step],
                    {"loss": float(loss[r]), "step": step, "first_layer": layer[0] if layer else None},
                    f"The loss became {loss[r]} at step {step}"
                    + (f"; the first non-finite gradient is in layer {layer[0]}" if layer else "")
                    + ". Training cannot continue from NaN or infinite weights.",
                    ["clip_norm", "lower_lr", "he_init"])]


def _depth_ratio(h, rows, first_step, last_step):
    hid = _hidden(h.layer_names)
    if len(hid) < 2:
        return []
    s = speed(h, rows)
    first, last = s[hid[0]], s[hid[-1]]
    if not (np.isfinite(first) and np.isfinite(last)) or first <= 0 or last <= 0:
        return []
    ratio = first / last
    ev = {"first_layer": h.layer_names[hid[0]], "last_layer": h.layer_names[hid[-1]],
          "first": float(first), "last": float(last), "ratio": float(ratio),
          "per_layer": [float(s[i]) for i in hid]}
    acts = _act_kinds(h)
    saturating = any(k in ("sigmoid", "tanh") for k in acts)
    if ratio < VANISHING_INFO:
        sev = "error" if ratio < VANISHING_ERROR else "warning" if ratio < VANISHING_WARNING else "info"
        decades = -math.log10(ratio)
        msg = (f"The first hidden layer learns {1 / ratio:.3g} times slower than the last one "
               f"({first:.2g} vs {last:.2g}, {decades:.1f} orders of magnitude). Backprop multiplies one factor "
               "w · f'(z) per layer, and these factors are below 1, so the early layers barely change.")
        rem = (["relu_he", "batchnorm", "residual", "xavier_init", "adam"] if saturating
               else ["he_init", "batchnorm", "residual", "adam"])
        return [Finding("vanishing", sev, _layers_word(h, hid), [first_step, last_step], ev, msg, rem)]
    if ratio > EXPLODING_RATIO:
        msg = (f"The first hidden layer's gradient is {ratio:.3g} times the last one's ({first:.2g} vs {last:.2g}): "
               "each layer multiplies the gradient by a factor above 1, so it grows toward the input "
               "and a step of plain SGD overshoots.")
        return [Finding("exploding", "error" if ratio > EXPLODING_RATIO ** 2 else "warning",
                        _layers_word(h, hid), [first_step, last_step], ev, msg,
                        ["clip_norm", "he_init", "lower_lr", "weight_decay", "batchnorm"])]
    return []


def _growth(h, first_step, last_step):
    g = h.series("weight_grad_norm")
    with np.errstate(invalid="ignore", divide="ignore"):
        total = np.sqrt(np.nansum(g ** 2, axis=1))
        logs = np.log10(total)
    ok = np.isfinite(logs)
    if ok.sum() < 3:
        return []
    lg, steps = logs[ok], h.steps[ok]
    jumps = np.diff(lg)
    k = int(np.argmax(jumps))
    grew = lg[-1] - lg[:max(len(lg) // 4, 1)].min()
    if jumps[k] < JUMP_DECADES and grew < GROWTH_DECADES:
        return []
    big_jump = jumps[k] >= JUMP_DECADES
    msg = (f"The total gradient norm jumped {10 ** jumps[k]:.3g}x between steps {steps[k]} and {steps[k + 1]}."
           if big_jump else f"The total gradient norm grew {10 ** grew:.3g}x during the run.")
    msg += " Large gradients make large steps, which make larger gradients: the weights run away."
    return [Finding("exploding", "error", list(h.layer_names), [int(steps[k]) if big_jump else first_step,
                                                                int(steps[k + 1]) if big_jump else last_step],
                    {"jump_factor": float(10 ** jumps[k]), "growth_factor": float(10 ** grew),
                     "total_grad_norm_last": float(10 ** lg[-1])},
                    msg, ["clip_norm", "lower_lr", "weight_decay"])]


def _saturation(h, rows, first_step, last_step):
    out = []
    sat = np.nanmedian(h.series("saturated_frac")[rows], axis=0)
    kinds = _act_kinds(h)
    idx = [i for i, k in enumerate(kinds) if k in ("sigmoid", "tanh") and sat[i] > SATURATION_WARNING]
    if idx:
        worst = max(idx, key=lambda i: sat[i])
        out.append(Finding("saturation", "warning", [h.act_names[i] for i in idx], [first_step, last_step],
                           {"saturated_frac": {h.act_names[i]: float(sat[i]) for i in idx}},
                           f"In {len(idx)} activation layer(s) most units sit in the flat tails of "
                           f"{kinds[worst]} ({100 * sat[worst]:.0f} % in {h.act_names[worst]}): there f'(z) is "
                           "almost 0 and no gradient passes.",
                           ["xavier_init", "batchnorm", "relu_he"]))
    return out


def _dead(h, rows, first_step, last_step):
    dead = np.min(h.series("dead_frac")[rows], axis=0)
    kinds = _act_kinds(h)
    idx = [i for i, k in enumerate(kinds) if k == "relu" and np.isfinite(dead[i]) and dead[i] > DEAD_WARNING]
    if not idx:
        return []
    worst = max(idx, key=lambda i: dead[i])
    return [Finding("dead_units", "error" if dead[worst] > DEAD_ERROR else "warning",
                    [h.act_names[i] for i in idx], [first_step, last_step],
                    {"dead_frac": {h.act_names[i]: float(dead[i]) for i in idx}},
                    f"{100 * dead[worst]:.0f} % of the units of {h.act_names[worst]} are dead: their input is "
                    "negative for every sample, so ReLU passes no gradient and they can never recover.",
                    ["leaky_relu_he", "lower_lr", "he_init"])]


def _bad_init(h):
    if len(h) == 0 or int(h.steps[0]) != 0 or len(h.act_names) < 3:
        return []
    std = h.series("preact_std")[0]
    ok = np.isfinite(std) & (std > 0)
    if ok.sum() < 3:
        return []
    s = std[ok]
    names = [n for n, k in zip(h.act_names, ok) if k]
    factor = s[-1] / s[0]
    if 1 / BAD_INIT_FACTOR <= factor <= BAD_INIT_FACTOR:
        return []
    grows = factor > 1
    return [Finding("bad_init", "warning", [names[0], names[-1]], [0, 0],
                    {"preact_std_first": float(s[0]), "preact_std_last": float(s[-1]), "factor": float(factor)},
                    f"At initialisation the spread of the pre-activations {'grows' if grows else 'shrinks'} "
                    f"{max(factor, 1 / factor):.3g}x from {names[0]} to {names[-1]} (std {s[0]:.2g} → {s[-1]:.2g}): "
                    "the init does not preserve the signal's variance through depth.",
                    ["he_init", "xavier_init", "batchnorm"])]


def _plateau(h, first_step, last_step):
    loss = h.series("loss")
    ok = np.isfinite(loss)
    if int(h.steps[-1]) < PLATEAU_MIN_STEPS or ok.sum() < 10:
        return []
    steps, l = h.steps[ok], loss[ok]
    recent = steps >= steps[-1] - PLATEAU_WINDOW
    start = np.median(l[: min(10, len(l))])
    now = np.median(l[recent][-10:])
    earlier = np.median(l[recent][:10])
    change = abs(earlier - now) / max(abs(earlier), 1e-12)
    if change > PLATEAU_CHANGE or now < PLATEAU_STILL_HIGH * start:
        return []
    return [Finding("plateau", "warning", [], [int(steps[recent][0]), int(steps[-1])],
                    {"loss_start": float(start), "loss_now": float(now), "relative_change": float(change)},
                    f"The loss has stayed near {now:.3g} (it started at {start:.3g}) for the last "
                    f"{PLATEAU_WINDOW} steps: the net is not learning.",
                    ["adam", "relu_he", "batchnorm"])]


def _overfitting(h, first_step, last_step):
    tl = h.series("test_loss")
    ok = np.isfinite(tl)
    if ok.sum() < 5:
        return []
    steps, t = h.steps[ok], tl[ok]
    best = int(np.argmin(t))
    train = h.series("loss")
    if t[-1] < OVERFIT_RISE * t[best] or best == len(t) - 1:
        return []
    tr_best, tr_now = np.nanmedian(train[h.steps <= steps[best]][-5:]), np.nanmedian(train[-5:])
    if not tr_now < tr_best:
        return []
    return [Finding("overfitting", "warning", [], [int(steps[best]), int(steps[-1])],
                    {"test_loss_best": float(t[best]), "test_loss_now": float(t[-1]),
                     "train_loss_now": float(tr_now)},
                    f"The test loss rose from {t[best]:.3g} (step {steps[best]}) to {t[-1]:.3g} while the "
                    f"training loss kept falling ({tr_now:.3g}): the net memorises the training set.",
                    ["weight_decay"])]


def diagnose(history, window: int = WINDOW) -> list[Finding]:
    """Every finding about a History, most severe first; a healthy run gives []."""
    n = len(history)
    if n == 0 or not history.layer_names:
        return []
    first_step, last_step = int(history.steps[0]), int(history.steps[-1])
    loss = history.series("loss")
    finite_rows = np.flatnonzero(np.isfinite(loss))
    findings = _non_finite(history, first_step, last_step)
    if finite_rows.size:
        rows = finite_rows[-window:]
        w0 = int(history.steps[rows[0]])
        findings += _depth_ratio(history, rows, w0, last_step)
        findings += _growth(history, first_step, last_step)
        findings += _saturation(history, rows, w0, last_step)
        findings += _dead(history, rows, w0, last_step)
        findings += _bad_init(history)
        findings += _plateau(history, first_step, last_step)
        findings += _overfitting(history, first_step, last_step)
    order = {"error": 0, "warning": 1, "info": 2}
    kinds = set()
    unique = []
    for f in sorted(findings, key=lambda f: order[f.severity]):
        if f.kind not in kinds:  # one finding per kind: the most severe
            kinds.add(f.kind)
            unique.append(f)
    return unique


def to_json(findings) -> str:
    return json.dumps([f.to_json() for f in findings], indent=2)
