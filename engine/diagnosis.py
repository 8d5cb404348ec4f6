"""Diagnosis: findings about a run, read from its History (numpy only, no torch, no Qt).

Each finding names its layers and steps, carries the numbers it rests on, says
what it means in plain words, and lists remedies (ids of ``engine.remedies.REMEDIES``,
which one click applies to the spec). ``diagnose`` is cheap (vectorised numpy
over a recent window, about a millisecond for 10k steps x 30 layers), so the
app calls it a few times a second while training; it works the same on a
finished record.

Which number measures a layer's "speed of learning": the bias gradient
||dL/db|| (Nielsen, NNDL ch. 5), except where it says nothing: a layer without
bias, or a linear layer right before BatchNorm (BatchNorm subtracts the batch
mean, so dL/db is 0 there); then the delta ||dL/dz|| is used. Weight-gradient
norms are not used for depth comparisons: in a ReLU/Xavier net they stay flat
while the deltas vanish (SCIENCE.md, "weight-gradient norms hide vanishing").

Vanishing compares the first hidden layer with the last hidden one (the output
layer excluded), never a constant factor per layer: with N(0,1) weights a
sigmoid net's gradient drops steeply just below the output and is then about
flat (SCIENCE.md), while with small init it drops by the same factor per layer.

(Over 400 lines with a reason: the eight finding kinds share their thresholds, the
reading of layer names and the speed measure; one rule per kind, each tested on
synthetic and real histories.)
"""
from __future__ import annotations

import json
import math
import warnings
from functools import lru_cache
from dataclasses import dataclass, field

import numpy as np

from .activations import kind_of_name
from .advice import advice, is_custom
from .catalog import RECURRENT_TYPES, RELU_FAMILY, SATURATING

# ---- thresholds, and where each comes from ----------------------------------------------
# Vanishing across depth: speed of the first hidden layer / speed of the last hidden one,
# median over the recent window. Reference values (SCIENCE.md and our presets at step 0):
# He-init ReLU ~1 (0.98; 30 x 64 preset 0.3), Xavier tanh 0.86, Nielsen's 4 x 30 N(0,1) sigmoid
# 1/2.5 to 1/14 (an order of magnitude: worth a note, trains fine), tanh with PyTorch's default
# init 0.018 over 8 layers, ReLU + Xavier 0.0026 over 17 layers, default-init sigmoid 2.5e-10.
VANISHING_INFO = 1e-1     # one order of magnitude (Nielsen's "order of magnitude" slower)
VANISHING_WARNING = 1e-2  # two orders: the early layers' steps are 1 % of the late layers'
VANISHING_ERROR = 1e-4    # four orders: with plain SGD the early layers are frozen
# Exploding across depth: the mirror image, first / last > 100 (N(0,1) ReLU nets: about
# sqrt(fan_in / 2) per layer, ~1e5 over 7 layers of 64 in our preset; He init keeps ~1).
EXPLODING_WARNING = 1e2
EXPLODING_ERROR = 1e4
# Exploding in time: the total gradient norm 100x above its robust baseline (the rolling median
# of the JUMP_BASELINE rows before it) for JUMP_PERSIST rows in a row (or until the run blew up),
# or its recent median 1000x above its median at the start of the run. A healthy run's gradient
# is largest near initialisation and then shrinks or stays level; a net escaping a vanishing
# plateau can raise it 10-100x, hence 3 decades (clipping's usual trigger: Pascanu et al. 2013).
# Against the previous step alone, one near-zero gradient followed by a normal one read as a
# 125x "jump": a 12-layer default-init sigmoid net on its plateau got an error (issue 12).
JUMP_DECADES = 2.0
GROWTH_DECADES = 3.0
JUMP_BASELINE = 20     # rows of the rolling median a jump is measured against
JUMP_MIN_BASELINE = 5  # rows needed before any jump is judged
JUMP_PERSIST = 3       # rows the norm must stay 100x above that baseline
# Vanishing by update size (CS231n, Karpathy: a healthy update is ~1e-3 of the weight per step):
# while the loss plateaus, an early layer whose updates are 100x below that is frozen.
UPDATE_RATIO_LOW = 1e-5
# Saturation (sigmoid/tanh): share of (sample, unit) entries with f'(z) < 1 % of max f'
# (sigmoid: |z| > 6, tanh: |z| > 3). "Most samples" (the issue) = more than half; 90 % is a
# layer that passes almost no gradient at all (an N(0,1) sigmoid net of width 30 has ~5-10 %).
SATURATION_WARNING = 0.5
SATURATION_ERROR = 0.9
# Dead ReLUs: share of units with f'(z) = 0 for every sample of the batch, taken as the minimum
# over the last DEAD_PERSIST rows (a unit that is silent on one batch by chance is not dead).
# Deep narrow ReLU nets lose units at initialisation already (Lu et al. 2019, "Dying ReLU and
# initialization"): our 30 x 64 He-init preset has up to ~40 % dead units in its deepest
# layers at step 0 and trains fine. So a layer is flagged when training killed units (its dead
# share rose by DEAD_GROWTH to at least DEAD_WARNING) or when most of it is dead (DEAD_ERROR).
DEAD_WARNING = 0.2
DEAD_GROWTH = 0.15
DEAD_ERROR = 0.5
DEAD_PERSIST = 50
DEAD_MIN_ROWS = 20  # judge only after this many rows (a few batches can all miss a live unit)
# Bad init: std of the pre-activations changing by more than 10x from the first activation
# layer to the last at step 0 (variance-preserving inits keep ~1x: Glorot and Bengio 2010,
# He et al. 2015; ReLU + Xavier over 29 layers: (1/sqrt 2)^28 = 6e-5; N(0,1) ReLU: ~5.7 per layer).
BAD_INIT_FACTOR = 10.0
# Plateau: after PLATEAU_MIN_STEPS steps, the median training loss of the two halves of the
# last PLATEAU_WINDOW steps differs by less than 2 % and is still above 90 % of the starting
# loss (the textbook vanishing net sits at ln(classes) for hundreds of steps; SCIENCE.md).
PLATEAU_MIN_STEPS = 200
PLATEAU_WINDOW = 100
PLATEAU_CHANGE = 0.02
PLATEAU_STILL_HIGH = 0.9
# Overfitting: the test loss (rolling median over OVERFIT_SMOOTH evaluations) 25 % above its best
# for OVERFIT_SMOOTH evaluations in a row, while the training loss kept falling and the train/test
# gap widened (the U-shaped test curve of early stopping, Prechelt 1998). Unstable SGD makes train
# and test loss spike together, and BatchNorm's running statistics make eval-mode test numbers jump
# (our BatchNorm preset: test accuracy 0.7-0.9 in eval mode while its training batches are at 0.95):
# neither widens the gap for long, neither is overfitting, so a bare accuracy gap is not used.
OVERFIT_RISE = 1.25
OVERFIT_SMOOTH = 5
OVERFIT_MIN_EVALS = 10
OVERFIT_GAP_GROWTH = 2.0   # ... and the test - train gap at least doubled
OVERFIT_MIN_GAP = 0.05     # ... and is now at least 0.05 nats (noise at tiny losses is not overfitting)
WINDOW = 20  # recent rows a finding about "now" looks at

SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}
KIND_ORDER = {k: i for i, k in enumerate(
    ("non_finite", "exploding", "vanishing", "dead_units", "saturation", "bad_init", "plateau", "overfitting"))}
KINDS = tuple(KIND_ORDER)


@dataclass
class Finding:
    kind: str       # one of KINDS
    severity: str   # "info", "warning", "error"
    layers: list    # layer names, input side first
    steps: list     # [first, last]
    evidence: dict = field(default_factory=dict)
    message: str = ""
    remedies: list = field(default_factory=list)  # ids of engine.remedies.REMEDIES
    # a user's own module: the remedies as the code to change (engine/advice.py); remedies is
    # then empty, as no button can rewrite the user's code
    advice: list = field(default_factory=list)

    def to_json(self) -> dict:
        """Contract 3: plain JSON (numpy numbers made Python numbers, NaN and inf made null)."""
        out = {"kind": self.kind, "severity": self.severity, "layers": [str(n) for n in self.layers],
               "steps": [int(s) for s in self.steps], "evidence": _clean(self.evidence),
               "message": self.message, "remedies": list(self.remedies)}
        if self.advice:
            out["advice"] = list(self.advice)
        return out

    def describe(self) -> str:
        """Several lines of text for a terminal: what, where, the numbers, what to try."""
        where = ", ".join(self.layers[:4]) + (f" … ({len(self.layers)} layers)" if len(self.layers) > 4 else "")
        lines = [f"[{self.severity}] {self.kind}" + (f" in {where}" if where else "")
                 + f" (steps {self.steps[0]}-{self.steps[1]})", f"  {self.message}"]
        for k, v in _clean(self.evidence).items():
            lines.append(f"    {k}: {_short(v)}")
        if self.remedies:
            try:
                from .remedies import REMEDIES
            except ImportError:  # pragma: no cover
                REMEDIES = {}
            labels = [REMEDIES.get(r, {}).get("label", r) for r in self.remedies]
            lines.append("  try: " + "; ".join(labels))
        for a in self.advice:
            lines.append(f"  try: {a}")
        return "\n".join(lines)


def _short(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, list):
        items = [_short(x) for x in v[:8]]
        return "[" + ", ".join(items) + (", …" if len(v) > 8 else "") + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_short(x)}" for k, x in list(v.items())[:8]) + "}"
    return str(v)


def _clean(v):
    """JSON-safe: numpy to Python, NaN/inf to None."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_clean(x) for x in v]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, (int, np.integer)):
        return int(v)
    return v


def _g(x: float) -> str:
    """A number as a student reads it, two significant digits: 0.012, 4.5e-07, 1e+05."""
    return f"{x:.2g}"


# ---- reading layer names ------------------------------------------------------------------
@lru_cache(maxsize=4096)
def _kind(name: str) -> str:
    """Layer type from a recorded name: "3 linear" -> linear, "fc (Linear)" -> linear,
    "relu#2 (ReLU)" -> relu, "fc1 -> relu (functional)" -> relu, "act (LeakyReLU)" -> leaky_relu."""
    return kind_of_name(name)


def _is_norm(name: str) -> bool:
    k = _kind(name)
    return "batchnorm" in k or "layernorm" in k or "groupnorm" in k


def _hidden(names: list) -> list[int]:
    """Indices of hidden layers that transform (linear/recurrent/conv): no norm layers, no
    residual projections, no output layer."""
    out = []
    for i, n in enumerate(names):
        k = _kind(n)
        if n.startswith("out") or k.endswith("proj") or _is_norm(n):
            continue
        if k in RECURRENT_TYPES or "linear" in k or "conv" in k:
            out.append(i)
    if len(out) >= 2 and out[-1] == len(names) - 1:
        out = out[:-1]  # a stack or custom model whose last linear layer is its output layer
    return out


def _before_batchnorm(names: list) -> np.ndarray:
    """True for a layer directly followed by a BatchNorm layer (its bias gradient is ~0)."""
    return np.array([i + 1 < len(names) and "batchnorm" in _kind(names[i + 1]) for i in range(len(names))],
                    dtype=bool)


def speed(history, rows) -> tuple[np.ndarray, np.ndarray]:
    """Per-layer speed of learning over some rows: the median bias-grad norm, or the median
    delta norm where the bias gradient is undefined, zero, or zeroed by a following BatchNorm.
    Returns (speeds, used_delta)."""
    names = history.layer_names
    b = _nanmedian(history.series("bias_grad_norm")[rows])
    d = _nanmedian(history.series("delta_norm")[rows])
    use_delta = ~np.isfinite(b) | (b <= 0) | _before_batchnorm(names)
    return np.where(use_delta, d, b), use_delta


def _nanmedian(a, axis=0):
    """Median along axis 0 ignoring NaN (NaN where a column has no number); without
    np.nanmedian's slow masked-array path and its all-NaN warnings."""
    a = np.sort(np.asarray(a, dtype=float), axis=0)  # NaN sorts last
    if a.shape[0] == 0:
        return np.full(a.shape[1:], np.nan) if a.ndim > 1 else float("nan")
    n = (~np.isnan(a)).sum(axis=0)
    lo, hi = np.maximum((n - 1) // 2, 0), np.maximum(n // 2, 0)
    if a.ndim == 1:
        return float(0.5 * (a[lo] + a[hi])) if n else float("nan")
    m = 0.5 * (np.take_along_axis(a, lo[None], 0)[0] + np.take_along_axis(a, hi[None], 0)[0])
    return np.where(n > 0, m, np.nan)


def _act_kinds(history) -> list[str]:
    return [_kind(n) for n in history.act_names]


# ---- the checks ---------------------------------------------------------------------------
def _grad_columns(h):
    """Weight-gradient columns to watch for blow-ups: those with a number in the first row (a
    layer that never had a gradient, unused in the loss, is NaN from the start and says nothing)."""
    g = h.series("weight_grad_norm")
    cols = np.isfinite(g[0])
    return g if cols.all() else g[:, cols], np.flatnonzero(cols)


def _row_sq_norms(g):
    """Per row, the sum of squared per-layer norms (NaN or inf where any is), in one pass."""
    return np.einsum("ij,ij->i", g, g)


def _non_finite(h, last_step, sq):
    """The first step whose loss or gradient stopped being finite, and where it happened."""
    loss = h.series("loss")
    bad = ~np.isfinite(loss) | ~np.isfinite(sq)
    if not bad.any():
        return []
    g = h.series("weight_grad_norm")
    rows = np.flatnonzero(bad)
    r = int(rows[0])
    step = int(h.steps[r])
    watched = np.isfinite(g[0])
    bad_layers = [h.layer_names[i] for i in np.flatnonzero(~np.isfinite(g[r]) & watched)]
    ev = {"step": step, "loss": float(loss[r]), "non_finite_layers": bad_layers}
    if r > 0:
        ev["loss_before"] = float(loss[r - 1])
        ev["grad_norm_before"] = float(np.sqrt(np.nansum(g[r - 1] ** 2)))
    where = ""
    std = h.series("preact_std")[r] if h.act_names else np.zeros(0)
    blown = np.flatnonzero(~np.isfinite(std) & np.isfinite(h.series("preact_std")[0])) if std.size else []
    if len(blown):
        ev["first_activation"] = h.act_names[int(blown[0])]
        where = f" The forward signal overflowed first at {h.act_names[int(blown[0])]}."
    elif bad_layers and np.isfinite(loss[r]):
        # the loss was fine, the backward pass overflowed: backprop starts at the output side
        ev["first_layer"] = bad_layers[-1]
        where = f" The loss was still finite; the gradient overflowed first at {bad_layers[-1]} on its way back."
    elif bad_layers:
        ev["first_layer"] = bad_layers[0]
    located = _located(h, step)
    if located:   # the trainer re-ran that step with checks (engine/non_finite.py): no guess
        what_, layer = located
        ev["first_non_finite"] = f"{what_} of {layer}" if layer else what_
        if layer:
            ev["first_layer"] = layer
            bad_layers = [layer] + [n for n in bad_layers if n != layer]
        where = f" Re-running the step showed the first non-finite number in {ev['first_non_finite']}."
    before = (f" One step earlier the loss was {_g(ev['loss_before'])} and the gradient norm "
              f"{_g(ev['grad_norm_before'])}." if r > 0 else "")
    what = f"the loss became {loss[r]}" if not np.isfinite(loss[r]) else "a gradient became NaN or infinite"
    msg = (f"At step {step} {what}.{where}{before} Numbers this large overflow float32; once a weight is "
           "NaN every later step is NaN too, so training cannot go on.")
    return [Finding("non_finite", "error", bad_layers or list(h.layer_names[:1]), [step, last_step], ev, msg,
                    ["clip_norm", "lower_lr", "he_init", "weight_decay"])]


def _located(h, step: int):
    """(what, layer) from a stop reason "loss became nan at step 12; first non-finite: the output of
    5 linear" of this step, or None; layer is None for "the loss"."""
    reason = str(h.stop_reason or "")
    marker = "; first non-finite: "
    if marker not in reason or f" at step {step};" not in reason:
        return None
    text = reason.split(marker, 1)[1]
    for what in ("the weights", "the output"):
        if text.startswith(what + " of "):
            layer = text[len(what) + 4:]
            if layer in h.layer_names or layer in h.act_names:
                return what, layer
    return ("the loss (every layer's output was finite)", None) if text.startswith("the loss") else None


def _steepest_drop(names, hid, s):
    """Where the gradient drops most between neighbouring hidden layers (log10 steps)."""
    v = np.log10(np.maximum(s[hid], 1e-300))
    d = np.diff(v)  # late minus early per neighbour pair: > 0 where the gradient drops toward the input
    d = np.where(np.isfinite(d), d, -np.inf)
    if not d.size or not np.isfinite(d.max()):
        return None
    k = int(np.argmax(d))
    total = v[-1] - v[0]
    return {"between": [names[hid[k]], names[hid[k + 1]]], "factor": float(10 ** d[k]),
            "share_of_drop": float(d[k] / total) if total > 0 else None}


def _depth(h, rows, w0, last_step, plateau):
    hid = _hidden(h.layer_names)
    if len(hid) < 2:
        return []
    s, used_delta = speed(h, rows)
    first, last = s[hid[0]], s[hid[-1]]
    names = h.layer_names
    if not (np.isfinite(first) and np.isfinite(last)) or last <= 0 or first < 0:
        return []
    ratio = first / last
    measure = "delta" if used_delta[hid[0]] else "bias_grad"
    ev = {"first_layer": names[hid[0]], "last_layer": names[hid[-1]], "measure": measure,
          "first": float(first), "last": float(last), "ratio": float(ratio),
          "per_layer": {names[i]: float(s[i]) for i in hid}}
    saturating = any(k in SATURATING for k in _act_kinds(h))
    relu_like = any(k in RELU_FAMILY for k in _act_kinds(h))
    out = []
    ur = h.series("update_ratio")[rows][:, hid[0]]
    ur_first = float(_nanmedian(ur)) if ur.size else float("nan")
    if ratio < VANISHING_INFO:
        sev = "error" if ratio < VANISHING_ERROR else "warning" if ratio < VANISHING_WARNING else "info"
        decades = -math.log10(max(ratio, 1e-300))
        drop = _steepest_drop(names, hid, s)
        if drop:
            ev["steepest_drop"] = drop
        if np.isfinite(ur_first):
            ev["first_update_ratio"] = ur_first
        what = "bias gradient" if measure == "bias_grad" else "backpropagated gradient (delta)"
        if ratio > 0:
            msg = (f"The first hidden layer {names[hid[0]]} learns {_g(1 / ratio)} times slower than the last "
                   f"hidden layer {names[hid[-1]]}: its {what} is {_g(first)} against {_g(last)}, "
                   f"{decades:.1f} orders of magnitude smaller. ")
        else:
            msg = (f"The first hidden layer {names[hid[0]]} gets no gradient at all: its {what} is 0 (too small "
                   f"for a float) against {_g(last)} in the last hidden layer {names[hid[-1]]}. ")
        if drop and drop["share_of_drop"] and drop["share_of_drop"] > 0.6 and len(hid) > 3:
            msg += (f"Most of the drop ({_g(drop['factor'])}x) happens between {drop['between'][0]} and "
                    f"{drop['between'][1]}; elsewhere the gradient is about flat. ")
        else:
            msg += ("Backprop multiplies one factor (weight x f'(z)) per layer; when these factors are below 1 "
                    "the gradient shrinks layer after layer on its way back. ")
        msg += ("The early layers barely change, so they stay close to random features."
                if sev != "info" else "The early layers learn more slowly, but they do learn.")
        if saturating:
            rem = ["relu_he", "leaky_relu_he", "elu_he", "batchnorm", "residual", "xavier_init", "adam", "auxiliary"]
        elif relu_like:
            rem = ["he_init", "batchnorm", "residual", "adam"]
        else:
            rem = ["he_init", "xavier_init", "batchnorm", "residual", "adam"]
        out.append(Finding("vanishing", sev, [names[i] for i in hid], [w0, last_step], ev, msg, rem))
    elif ratio > EXPLODING_WARNING:
        sev = "error" if ratio > EXPLODING_ERROR else "warning"
        msg = (f"The first hidden layer {names[hid[0]]} gets a gradient {_g(ratio)} times larger than the last "
               f"hidden layer {names[hid[-1]]} ({_g(first)} against {_g(last)}): each layer multiplies the "
               "gradient by a factor above 1 on its way back, so the early layers take huge steps and "
               "plain SGD overshoots.")
        out.append(Finding("exploding", sev, [names[i] for i in hid], [w0, last_step], ev, msg,
                           ["clip_norm", "he_init", "lower_lr", "weight_decay", "batchnorm"]))
    elif plateau and np.isfinite(ur_first) and ur_first < UPDATE_RATIO_LOW:
        # no steep gradient ratio, but the first layer does not move while the loss is stuck
        ev["first_update_ratio"] = ur_first
        msg = (f"The loss is stuck and the first hidden layer {names[hid[0]]} changes by only {_g(ur_first)} of "
               f"its size per step (a healthy step is about 1e-3): it is frozen.")
        out.append(Finding("vanishing", "warning", [names[hid[0]]], [w0, last_step], ev, msg,
                           ["adam", "he_init", "batchnorm", "residual"]))
    return out


def _time(h, rows, w0, last_step):
    """Vanishing through time in a recurrent layer: ||dL/dh_t|| at t = 0 over the last step."""
    if not h.has("time_grad_norm") or not h.time_steps or len(rows) == 0:
        return []
    tg = _nanmedian(h.series("time_grad_norm")[rows], axis=0)
    last, first = tg[-1], tg[0]
    if not (np.isfinite(last) and last > 0 and np.isfinite(first)):
        return []
    ratio = first / last
    rec = next((n for n in h.layer_names if any(r in _kind(n) for r in RECURRENT_TYPES)), h.layer_names[0])
    mid = len(tg) // 2
    ev = {"layer": rec, "time_steps": int(len(tg)), "first": float(first), "last": float(last),
          "ratio": float(ratio), "ratio_middle": float(tg[mid] / last), "middle_step": int(mid)}
    if ratio >= VANISHING_INFO:
        return []
    sev = "error" if ratio < VANISHING_ERROR else "warning" if ratio < VANISHING_WARNING else "info"
    underflow = first == 0
    msg = (f"In {rec} the gradient that reaches the first time step is "
           + ("exactly 0 (it underflowed)" if underflow else f"{_g(ratio)} of the last step's")
           + f" (t = {mid}: {_g(tg[mid] / last)}). Backprop through time multiplies one Jacobian per step, "
           "so the net cannot learn what its early inputs meant.")
    rem = ["lstm", "clip_norm", "adam"] if _kind(rec) != "lstm" else ["lstm", "adam"]
    return [Finding("vanishing", sev, [rec], [w0, last_step], ev, msg, rem)]


def _trailing_median(x, k):
    """out[i] = median of x[max(0, i - k):i] (NaN for i = 0): the baseline each row is judged by."""
    n = len(x)
    out = np.full(n, np.nan)
    if n < 2:
        return out
    pad = np.concatenate([np.full(k - 1, np.nan), x[:-1]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # all-NaN windows at the very start
        out[1:] = np.nanmedian(np.lib.stride_tricks.sliding_window_view(pad, k), axis=1)
    return out


def _jump(lg, blew_up: bool):
    """The first row whose log norm is JUMP_DECADES above its baseline (the median of the
    JUMP_BASELINE rows before it) and stays so for JUMP_PERSIST rows (or until a run that then
    blew up ended); returns (row, decades above the baseline) or None."""
    base = _trailing_median(lg, JUMP_BASELINE)
    n = len(lg)
    idx = np.arange(n)
    cand = np.flatnonzero((idx >= JUMP_MIN_BASELINE) & (lg - base >= JUMP_DECADES))
    for i in cand:
        after = lg[i:i + JUMP_PERSIST] - base[i]
        if (after >= JUMP_DECADES).all() and (len(after) == JUMP_PERSIST or blew_up):
            return int(i), float(lg[i] - base[i])
    return None


def _growth(h, first_step, last_step, window, sq):
    g = h.series("weight_grad_norm")
    with np.errstate(invalid="ignore", divide="ignore"):
        logs = 0.5 * np.log10(sq)
    ok = np.isfinite(logs) & np.isfinite(h.series("loss"))
    if ok.sum() < 3:
        return []
    okr = np.flatnonzero(ok)
    lg, steps = logs[okr], h.steps[okr]
    blew_up = okr[-1] < len(ok) - 1   # rows after the last sound one: the run went non-finite
    jump = _jump(lg, blew_up)
    n0 = min(window, max(len(lg) // 4, 1))
    start = float(np.median(lg[:n0]))
    recent = float(np.median(lg[-n0:])) if len(lg) >= 2 * n0 else start
    grew = recent - start
    if jump is None and grew < GROWTH_DECADES:
        return []
    big_jump = jump is not None
    k, jump_decades = (jump[0] - 1, jump[1]) if big_jump else (int(np.argmax(np.diff(lg))), 0.0)
    ev = {"jump_factor": float(10 ** jump_decades), "jump_steps": [int(steps[k]), int(steps[k + 1])],
          "growth_factor": float(10 ** grew), "grad_norm_start": float(10 ** start),
          "grad_norm_now": float(10 ** recent)}
    # the layer whose own gradient grew most over the same span
    if big_jump:
        i0, i1 = okr[k], okr[k + 1]
        with np.errstate(all="ignore"):
            per = np.log10(g[i1]) - np.log10(g[i0])
        span = [int(steps[k]), int(steps[k + 1])]
        msg = (f"The total gradient norm jumped to {_g(10 ** jump_decades)}x its recent median between steps "
               f"{span[0]} and {span[1]}, and stayed there.")
    else:
        with np.errstate(all="ignore"):
            per = np.log10(_nanmedian(g[okr[-n0:]])) - np.log10(_nanmedian(g[okr[:n0]]))
        span = [first_step, last_step]
        msg = (f"The total gradient norm grew {_g(10 ** grew)}x since the start of the run "
               f"({_g(10 ** start)} to {_g(10 ** recent)}).")
    per = np.where(np.isfinite(per), per, -np.inf)
    layers = list(h.layer_names)
    if per.size and np.isfinite(per.max()):
        ev["fastest_growing_layer"] = layers[int(np.argmax(per))]
    msg += (" Large gradients make large steps, large steps make larger weights and larger gradients: "
            "the weights run away, and the loss soon becomes NaN.")
    return [Finding("exploding", "error", layers, span, ev, msg, ["clip_norm", "lower_lr", "weight_decay"])]


def _saturation(h, rows, w0, last_step):
    if not h.act_names:
        return []
    sat = _nanmedian(h.series("saturated_frac")[rows], axis=0)
    md = _nanmedian(h.series("mean_derivative")[rows], axis=0)
    kinds = _act_kinds(h)
    idx = [i for i, k in enumerate(kinds) if k in ("sigmoid", "tanh") and np.isfinite(sat[i])
           and sat[i] > SATURATION_WARNING]
    if not idx:
        return []
    worst = max(idx, key=lambda i: sat[i])
    sev = "error" if sat[worst] > SATURATION_ERROR else "warning"
    bound = "6" if kinds[worst] == "sigmoid" else "3"
    msg = (f"In {len(idx)} activation layer(s) most pre-activations sit in the flat tails of {kinds[worst]}: "
           f"in {h.act_names[worst]} {100 * sat[worst]:.0f} % of the (sample, unit) pairs have |z| > {bound}, "
           f"where f'(z) is almost 0 (mean f'(z) = {_g(md[worst])}). A saturated unit passes no gradient back, "
           "and its weights stop changing.")
    return [Finding("saturation", sev, [h.act_names[i] for i in idx], [w0, last_step],
                    {"saturated_frac": {h.act_names[i]: float(sat[i]) for i in idx},
                     "mean_derivative": {h.act_names[i]: float(md[i]) for i in idx}},
                    msg, ["xavier_init", "batchnorm", "relu_he", "lower_lr"])]


def _dead(h, last_step):
    cols = [i for i, k in enumerate(_act_kinds(h)) if k == "relu"]
    loss = h.series("loss")
    first = int(np.argmax(np.isfinite(loss)))
    if not cols or not np.isfinite(loss[first]):
        return []
    tail = np.arange(max(len(loss) - 2 * DEAD_PERSIST, 0), len(loss))
    recent = tail[np.isfinite(loss[tail])][-DEAD_PERSIST:]
    if len(recent) < DEAD_MIN_ROWS:
        return []
    dead = h.series("dead_frac")
    d = dead[recent][:, cols]
    now = np.where(np.isnan(d), np.inf, d).min(axis=0)  # dead on every batch of the recent rows
    now[np.isinf(now)] = np.nan
    start = dead[first, cols]
    start = np.where(np.isfinite(start), start, 0.0)
    grew = now - start
    flag = np.isfinite(now) & (((now >= DEAD_WARNING) & (grew >= DEAD_GROWTH)) | (now >= DEAD_ERROR))
    if not flag.any():
        return []
    j = int(np.argmax(np.where(flag, now, -1.0)))
    name = h.act_names[cols[j]]
    sev = "error" if now[j] >= DEAD_ERROR else "warning"
    msg = (f"{100 * now[j]:.0f} % of the units of {name} are dead (at step {int(h.steps[first])}: "
           f"{100 * start[j]:.0f} %): their input z is negative for every sample, so ReLU's slope is 0 and no "
           "gradient reaches their weights; unless the layers below them change a lot, they stay dead. ")
    msg += ("Training killed them: large steps pushed their weights and bias to where z < 0 for all inputs."
            if grew[j] >= DEAD_GROWTH else "They were dead from the start: the init or the data puts z below 0.")
    flagged = [c for c, f in zip(cols, flag) if f]
    return [Finding("dead_units", sev, [h.act_names[c] for c in flagged], [int(h.steps[recent[0]]), last_step],
                    {"dead_frac": {h.act_names[c]: float(x) for c, x, f in zip(cols, now, flag) if f},
                     "dead_frac_start": {h.act_names[c]: float(x) for c, x, f in zip(cols, start, flag) if f},
                     "rows": int(len(recent))},
                    msg, ["leaky_relu_he", "elu_he", "lower_lr", "he_init"])]


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
    per = factor ** (1 / (len(s) - 1))
    msg = (f"At initialisation the spread of the pre-activations {'grows' if grows else 'shrinks'} "
           f"{_g(max(factor, 1 / factor))}x from {names[0]} to {names[-1]} (std {_g(s[0])} to {_g(s[-1])}, "
           f"about {per:.2f}x per layer): the initialisation does not keep the signal's size through depth, "
           + ("so activations blow up and gradients with them." if grows
              else "so the deep layers see almost nothing and their gradients shrink the same way."))
    return [Finding("bad_init", "warning", [names[0], names[-1]], [0, 0],
                    {"preact_std_first": float(s[0]), "preact_std_last": float(s[-1]), "factor": float(factor),
                     "per_layer_factor": float(per), "preact_std": {n: float(x) for n, x in zip(names, s)}},
                    msg, ["he_init", "xavier_init", "batchnorm"])]


def _plateau_info(h):
    """(is_plateau, evidence) from the training loss; cheap."""
    loss, steps = h.series("loss"), h.steps
    if len(loss) < 10 or int(steps[-1]) < PLATEAU_MIN_STEPS:
        return False, {}
    r0 = int(np.searchsorted(steps, steps[-1] - PLATEAU_WINDOW))  # steps are sorted
    l = loss[r0:]
    recent = np.flatnonzero(np.isfinite(l))
    head = loss[:10][np.isfinite(loss[:10])]
    if len(recent) < 6 or not head.size:
        return False, {}
    half = len(recent) // 2
    earlier, now = float(np.median(l[recent[:half]])), float(np.median(l[recent[half:]]))
    start = float(np.median(head))
    recent = recent + r0
    change = abs(earlier - now) / max(abs(earlier), 1e-12)
    ev = {"loss_start": start, "loss_now": now, "relative_change": change,
          "window": [int(steps[recent[0]]), int(steps[-1])]}
    return bool(change < PLATEAU_CHANGE and now >= PLATEAU_STILL_HIGH * start), ev


def _plateau(h, is_plateau, ev):
    if not is_plateau:
        return []
    n_steps = ev["window"][1] - ev["window"][0]
    msg = (f"The training loss has stayed at {_g(ev['loss_now'])} for the last {n_steps} steps (it started at "
           f"{_g(ev['loss_start'])}, and moved by {100 * ev['relative_change']:.1f} %): the net is not learning. "
           "Look for vanishing gradients, dead or saturated units, or a learning rate that is too small.")
    acts = _act_kinds(h)
    rem = (["adam", "relu_he", "batchnorm", "residual"] if any(k in ("sigmoid", "tanh") for k in acts)
           else ["adam", "he_init", "batchnorm", "lower_lr"])
    return [Finding("plateau", "warning", [], list(ev["window"]), ev, msg, rem)]


def _rolling_median(x, k):
    k = max(1, min(k, len(x)))
    return np.median(np.lib.stride_tricks.sliding_window_view(x, k), axis=1)


def _overfitting(h, last_step):
    """Test loss rising above its best while the training loss keeps falling and the gap between
    them widens. Both curves are smoothed by a rolling median over OVERFIT_SMOOTH evaluations, so
    one unlucky batch or one spike of SGD says nothing."""
    tl = h.series("test_loss")
    ev_rows = np.flatnonzero(np.isfinite(tl) & np.isfinite(h.series("loss")))
    if len(ev_rows) < OVERFIT_MIN_EVALS:
        return []
    k = OVERFIT_SMOOTH
    test = _rolling_median(tl[ev_rows], k)
    train = _rolling_median(h.series("loss")[ev_rows], k)
    steps = h.steps[ev_rows[k - 1:]]  # each smoothed value stands at the end of its window
    best = int(np.argmin(test))
    gap_then, gap_now = test[best] - train[best], test[-1] - train[-1]
    risen = test[-k:] >= OVERFIT_RISE * test[best]  # the rise has lasted, not one bad evaluation
    if (best < len(test) - k and risen.all() and train[-1] < train[best]
            and gap_now >= OVERFIT_GAP_GROWTH * max(gap_then, 0.0) + OVERFIT_MIN_GAP):
        ev = {"test_loss_best": float(test[best]), "best_step": int(steps[best]), "test_loss_now": float(test[-1]),
              "train_loss_then": float(train[best]), "train_loss_now": float(train[-1]),
              "gap_then": float(gap_then), "gap_now": float(gap_now)}
        msg = (f"The test loss rose from {_g(test[best])} (step {int(steps[best])}) to {_g(test[-1])} while the "
               f"training loss kept falling ({_g(train[best])} to {_g(train[-1])}): the net is memorising its "
               "training samples instead of learning the rule, and does worse on data it has not seen.")
        return [Finding("overfitting", "warning", [], [int(steps[best]), last_step], ev, msg,
                        ["weight_decay"])]
    return []


def diagnose(history, window: int = WINDOW, spec: dict | None = None) -> list[Finding]:
    """Every finding about a History, most severe first, at most one per kind; a healthy run gives [].

    Statistics about "now" are medians over the last ``window`` rows with a finite loss, so a
    live History can be diagnosed a few times a second and a finished record the same way.
    With the run's ``spec``: a user's own module gets its remedies as advice (the code to
    change) instead of one-click remedies that only a layer stack can take.
    """
    findings = _diagnose(history, window)
    if is_custom(spec):
        for f in findings:
            f.advice = [a for a in (advice(r, f.layers) for r in f.remedies) if a]
            f.remedies = []
    return findings


def unchecked(history) -> list[str]:
    """What this record cannot tell: each a line naming the missing statistic and the checks it
    leaves out (a healthy diagnosis says nothing about these)."""
    out = []
    if len(history) == 0:
        return out
    std = history.series("preact_std")
    if not history.act_names or not np.isfinite(std).any():
        out.append("no activation statistics: saturation and dead units not checked")
    elif not any(_kind(n) in ("sigmoid", "tanh", "softplus", "relu", "leaky_relu") for n in history.act_names):
        out.append("no sigmoid/tanh/ReLU activations: saturation and dead units not checked")
    recurrent = [n for n in history.layer_names if _kind(n) in RECURRENT_TYPES]
    if recurrent and not (history.has("time_grad_norm") and np.isfinite(history.series("time_grad_norm")).any()):
        out.append(f"no gradient through time for {recurrent[0]}: vanishing and exploding in time not checked")
    delta = history.series("delta_norm")
    missing = [n for j, n in enumerate(history.layer_names) if not np.isfinite(delta[:, j]).any()]
    if missing:
        out.append(f"no delta (dL/d output) for {', '.join(missing[:4])}"
                   + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
                   + ": their speed of learning is read from the bias gradient only")
    if not np.isfinite(history.series("test_loss")).any():
        out.append("no test loss: overfitting not checked")
    return out


def _diagnose(history, window: int) -> list[Finding]:
    n = len(history)
    if n == 0 or not history.layer_names:
        return []
    last_step = int(history.steps[-1])
    g, _ = _grad_columns(history)
    sq = _row_sq_norms(g)
    findings = _non_finite(history, last_step, sq)
    finite_rows = np.flatnonzero(np.isfinite(history.series("loss")))
    if finite_rows.size:
        rows = finite_rows[-max(int(window), 1):]
        w0 = int(history.steps[rows[0]])
        is_plateau, pev = _plateau_info(history)
        findings += _depth(history, rows, w0, last_step, is_plateau)
        findings += _time(history, rows, w0, last_step)
        findings += _growth(history, int(history.steps[0]), last_step, window, sq)
        findings += _saturation(history, rows, w0, last_step)
        findings += _dead(history, last_step)
        findings += _bad_init(history)
        findings += _plateau(history, is_plateau, pev)
        findings += _overfitting(history, last_step)
    best: dict[str, Finding] = {}
    for f in findings:  # one finding per kind: the most severe (the first of equals)
        if f.kind not in best or SEVERITY_ORDER[f.severity] < SEVERITY_ORDER[best[f.kind].severity]:
            best[f.kind] = f
    return sorted(best.values(), key=lambda f: (SEVERITY_ORDER[f.severity], KIND_ORDER[f.kind]))


def to_json(findings) -> str:
    return json.dumps([f.to_json() for f in findings], indent=2)
