"""Open a user's model file in a child process and say what it holds, as one JSON object.

    python -m backprop_lab.engine.model_check SPEC_JSON_TEXT BASE_DIR

The window runs this before it adopts a custom model: importing the file runs its
code, so a file that raises, crashes or hangs takes only this process with it.
Prints ``{"ok": true, "layers": [{"path", "type", "params"}], "params": N,
"activations": [...]}`` or ``{"ok": false, "error": one line, "traceback": text}``.
"""
from __future__ import annotations

import json
import sys
import traceback


def check(spec: dict, base_dir) -> dict:
    from backprop_lab.engine import experiment, spec as specmod
    from backprop_lab.engine.custom import _own_params, load_module
    try:
        spec = specmod.validate(spec)
        net = load_module(spec["model"], base_dir)   # every layer, also those not watched
        layers = [{"path": path, "type": type(m).__name__, "params": int(sum(p.numel() for p in ps))}
                  for path, m, ps in _own_params(net)]
        exp = experiment.build(spec, base_dir)        # fits the data, builds as training will
    except Exception as e:   # the user's code may raise anything
        tb = getattr(e, "details", None) or traceback.format_exc()
        return {"ok": False, "error": " ".join(str(e).split()) or type(e).__name__, "traceback": tb}
    return {"ok": True, "layers": layers, "params": sum(x["params"] for x in layers),
            "watched": [n for n, _ in exp.model.weight_layers],
            "activations": [n for n, _, _ in exp.model.act_layers]}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = check(json.loads(argv[0]), argv[1] if len(argv) > 1 and argv[1] else None)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
