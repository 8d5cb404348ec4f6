"""`backprop-lab theory chain|paths|phase|spectrum ... [--json]` (Contract 4).

Each prints the numbers a theory view draws: with --json one JSON object on
stdout, else a short table. `phase` reports progress on stderr (one line per
cell when stderr is not a terminal: the window's background process reads it).
Bad arguments give one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import sys

from backprop_lab.engine.activations import ACTIVATIONS

DISTRIBUTION_ALIASES = {"log-normal": "lognormal", "log_normal": "lognormal", "lognormal": "lognormal",
                        "uniform": "uniform", "normal": "normal", "gaussian": "normal"}


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None


def add_parser(sub) -> None:
    t = sub.add_parser("theory", help="print the theory views' numbers (chain, paths, phase, spectrum)")
    ts = t.add_subparsers(dest="view", required=True)
    acts = sorted(ACTIVATIONS)

    c = ts.add_parser("chain", help="the chain of one-neuron layers, exact derivatives")
    c.add_argument("--activation", required=True, choices=acts)
    c.add_argument("--depth", type=int, required=True)
    g = c.add_mutually_exclusive_group()
    g.add_argument("--weight", type=float)
    g.add_argument("--weights", type=_floats)
    g = c.add_mutually_exclusive_group()
    g.add_argument("--bias", type=float)
    g.add_argument("--biases", type=_floats)
    c.add_argument("--input", type=float, default=1.0)
    c.add_argument("--target", type=float, default=0.0)
    c.add_argument("--json", action="store_true")

    p = ts.add_parser("paths", help="products of L random local derivatives")
    p.add_argument("--distribution", required=True, choices=sorted(DISTRIBUTION_ALIASES))
    p.add_argument("--mean", type=float, required=True)
    p.add_argument("--spread", type=float, required=True)
    p.add_argument("--depths", type=_ints, default=[1, 5, 10, 20, 50])
    p.add_argument("--draws", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")

    f = ts.add_parser("phase", help="the initialisation map on real random nets, with the critical line")
    f.add_argument("--activation", required=True, choices=acts)
    f.add_argument("--width", type=int, default=256)
    f.add_argument("--depth", type=int, default=20)
    f.add_argument("--sigma-w2", default="0.5:4:15", metavar="LO:HI:N")
    f.add_argument("--sigma-b2", default="0:1:6", metavar="LO:HI:N")
    f.add_argument("--seeds", type=int, default=3)
    f.add_argument("--inputs", choices=("fixed-point", "standard"), default="fixed-point",
                   help="fixed-point: every input starts the length map at its fixed point q* (default); "
                        "standard: N(0, 1) inputs")
    f.add_argument("--json", action="store_true")

    s = ts.add_parser("spectrum", help="singular values of a spec's input-output Jacobian at init")
    s.add_argument("spec")
    s.add_argument("--inputs", type=int, default=32)
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--json", action="store_true")


def _fail(msg: str) -> int:
    print(f"backprop-lab theory: {msg}", file=sys.stderr)
    return 2


def run(args) -> int:
    try:
        result = {"chain": _chain, "paths": _paths, "phase": _phase, "spectrum": _spectrum}[args.view](args)
    except ValueError as e:  # SpecError is a ValueError
        return _fail(str(e).splitlines()[0])
    if result is None:
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        _print_table(args.view, result)
    return 0


def _chain(args) -> dict:
    from backprop_lab.engine.theory import chain
    w = args.weights if args.weights is not None else (args.weight if args.weight is not None else 1.0)
    b = args.biases if args.biases is not None else (args.bias if args.bias is not None else 0.0)
    return chain.compute(args.activation, args.depth, w, b, args.input, args.target).to_json()


def _paths(args) -> dict:
    from backprop_lab.engine.theory import paths
    if args.draws < 1:
        raise ValueError("--draws must be a positive integer")
    return paths.compute(DISTRIBUTION_ALIASES[args.distribution], args.mean, args.spread,
                         args.depths, args.draws, args.seed)


def _phase(args) -> dict:
    import time
    from backprop_lab.engine.theory import phase
    sw, sb = phase.parse_range(args.sigma_w2), phase.parse_range(args.sigma_b2)
    if args.width < 1 or args.seeds < 1:
        raise ValueError("--width and --seeds must be positive integers")
    tty = sys.stderr.isatty()
    last = [0.0]

    def progress(done, total):
        now = time.perf_counter()
        if tty and now - last[0] < 0.1 and done < total:
            return
        last[0] = now
        sys.stderr.write(("\r" if tty else "") + f"progress {done}/{total}" + ("" if tty else "\n"))
        sys.stderr.flush()
    result = phase.compute(args.activation, args.width, args.depth, sw, sb, args.seeds, progress=progress,
                           inputs=args.inputs)
    if tty:
        sys.stderr.write("\n")
    return result


def _spectrum(args) -> dict:
    from backprop_lab.engine import spec as specmod
    from backprop_lab.engine.theory import spectrum
    spec, base = specmod.load(args.spec)
    return spectrum.compute(spec, base, args.inputs, args.seed)


def _print_table(view: str, r: dict) -> None:
    if view == "chain":
        print(" l        z        a    f'(z)        w   w f'(z)     dC/db_l  dC/db_l / dC/da_L")
        for l in range(len(r["z"])):
            print(f"{l + 1:2d} {r['z'][l]:8.4g} {r['a'][l]:8.4g} {r['f_prime'][l]:8.4g} {r['w'][l]:8.4g} "
                  f"{r['factors'][l]:9.4g} {r['dC_db'][l]:11.4g} {r['running_product'][l]:18.4g}")
        print(f"dC/da_L = {r['dC_daL']:.6g}")
    elif view == "paths":
        print("    L   5%    25%    50%    75%    95%  (log10 |product|)   mean product")
        for d, q, m in zip(r["depths"], r["log10_abs_quantiles"], r["mean_product"]):
            print(f"{d:5d} " + " ".join(f"{v:6.2f}" for v in q) + f"   {m:12.4g}")
    elif view == "phase":
        print("log10 ||dL/dz_1|| / ||dL/dz_L||; rows sigma_b^2, columns sigma_w^2")
        print("        " + " ".join(f"{v:6.2f}" for v in r["sigma_w2"]))
        for b, row in zip(r["sigma_b2"], r["log10_ratio"]):
            print(f"{b:6.3f}  " + " ".join("   nan" if v is None else f"{v:6.2f}" for v in row))
        print("critical (chi1 = 1): " + ", ".join(f"({b:.3g}, {w:.3g})" for b, w in r["critical"]))
    else:
        import numpy as np
        sv = np.asarray(r["singular_values"])
        print(f"{sv.size} singular values over {r['inputs']} inputs: min {sv.min():.4g}, "
              f"median {np.median(sv):.4g}, max {sv.max():.4g}")
