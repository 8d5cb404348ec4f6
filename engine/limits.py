"""Resource limits: every input the project reads is held to these, with a clear message.

A spec, a data file, a model file or a run record that asks for more than one of
these is refused before anything is allocated, with one line that names the key,
the limit and what was given ("layer 2 (linear): units must be at most 1000000,
got 1000000000"). No torch, no Qt: the GUI process checks specs with it too.
"""
from __future__ import annotations

import json
import math
import os

# ----------------------------------------------------------------------------- specs
MAX_SPEC_BYTES = 4 * 2**20        # a spec file (JSON text)
MAX_JSON_DEPTH = 64               # nesting of arrays and objects in any JSON we read
MAX_INT = 2**63 - 1               # any integer in a spec (a 400-digit lr is refused)
MAX_LAYERS = 2000                 # layers in a stack, nested ones included
MAX_NESTING = 16                  # residual blocks inside residual blocks
MAX_UNITS = 1_000_000             # units of one linear or recurrent layer
MAX_SEED = 2**32 - 1              # data and train seeds lie in [0, MAX_SEED]
MAX_STEPS = 10**9                 # train.steps
MAX_EVAL_EVERY = 10**9

# ----------------------------------------------------------------------------- data
MAX_SAMPLES = 1_000_000           # samples of a data set (generated or read)
MAX_FEATURES = 100_000            # input features (dim, features, columns)
MAX_SEQUENCE_LENGTH = 10_000      # time steps of a sequence task
MAX_CLASSES = 10_000              # classes of a classification task
MAX_DATA_FILE_BYTES = 2 * 2**30   # an .npz or .csv data file on disk
MAX_DATA_BYTES = 2 * 2**30        # a data set's arrays in memory (float32 inputs)
MAX_MODEL_FILE_BYTES = 10 * 2**20  # a user's model .py file

# ----------------------------------------------------------------------------- records
MAX_RECORD_FILE_BYTES = 2 * 2**30     # a run record on disk
MAX_RECORD_ARRAY_BYTES = 1 * 2**30    # all arrays of a record, decompressed
MAX_RECORD_TEXT = 4 * 2**20           # the spec text inside a record

# ----------------------------------------------------------------------------- memory
MEMORY_FRACTION = 0.5             # share of the machine's memory one run may ask for
MAX_HISTORY_UNITS = 512           # neuron columns History keeps per layer (wider: pooled)

SHORT = 60                        # characters of a quoted value in a message


def shorten(value, limit: int = SHORT) -> str:
    """A value as JSON text, cut in the middle when long: a 400-digit integer reads
    '1234567890123456789...0 (400 digits)'."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**limit:
        return f"an integer of {len(str(abs(value)))} digits"
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 20]}...{text[-10:]} ({len(text)} characters)"


def gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.3g} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.3g} MiB"


def machine_memory() -> int:
    """Physical memory of this machine in bytes (a large default where it is unknown)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 16 * 2**30


def memory_budget() -> int:
    """Bytes one run may plan to allocate: MEMORY_FRACTION of the machine's memory."""
    return int(MEMORY_FRACTION * machine_memory())


# ----------------------------------------------------------------------------- memory estimate
_GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def _walk(layers, width: int, counts: list) -> int:
    """Add the parameters and activation widths of a validated stack to counts = [params,
    activation values per sample and time step]; returns the output width."""
    for layer in layers:
        kind = layer["type"]
        if kind == "linear":
            counts[0] += width * layer["units"] + layer["units"]
            width = layer["units"]
        elif kind in _GATES:
            g, u = _GATES[kind], layer["units"]
            counts[0] += g * u * (width + u + 2)
            counts[1] += g * u
            width = u
        elif kind in ("batchnorm", "layernorm"):
            counts[0] += 2 * width
        elif kind == "residual":
            out = _walk(layer["layers"], width, counts)
            if out != width:
                counts[0] += width * out   # the skip projection
            width = out
        counts[1] += width
    return width


def estimate_run_bytes(layers, in_shape: tuple, n_out: int, batch: int) -> tuple[int, int]:
    """(bytes, parameters) a stack of layers will ask for while training, roughly: each
    parameter in float32 six times (weight, gradient, two optimiser states, the copy for the
    update ratio, probes), each activation value of a batch eight times (input and output,
    their gradients, probe buffers)."""
    time_steps = in_shape[0] if len(in_shape) == 2 else 1
    width = int(in_shape[-1]) if len(in_shape) == 2 else int(math.prod(in_shape) if in_shape else 1)
    counts = [0, width]
    out = _walk(layers, width, counts)
    if not (layers and layers[-1]["type"] == "linear" and out == n_out):
        counts[0] += out * n_out + n_out
        counts[1] += n_out
    params, acts = counts
    return 4 * (6 * params + 8 * batch * time_steps * acts), params


def check_run_memory(layers, in_shape: tuple, n_out: int, batch: int, error=ValueError) -> None:
    """Refuse, before anything is allocated, a stack that would ask for more memory than
    memory_budget() (MEMORY_FRACTION of this machine's)."""
    need, params = estimate_run_bytes(layers, in_shape, n_out, batch)
    budget = memory_budget()
    if need > budget:
        raise error(f"model: about {gib(need)} needed to train ({params:.3g} parameters, batch {batch}); "
                    f"this machine allows {gib(budget)} ({MEMORY_FRACTION:.0%} of its memory)")
