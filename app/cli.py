"""The `backprop-lab` command (Contract 3).

    backprop-lab [SPEC.json] [--run]           open the app
    backprop-lab run SPEC.json --steps N --out RUN.npz [--seed S]
    backprop-lab diagnose RUN.npz [--json]
    backprop-lab export SPEC.json --torch OUT.py
    backprop-lab watch RUN_DIR

Headless commands never import Qt. A bad spec or record gives one line on
stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import sys
import time

SUBCOMMANDS = ("run", "diagnose", "export", "watch")


def _fail(msg: str) -> int:
    print(f"backprop-lab: {msg}", file=sys.stderr)
    return 2


class _Progress:
    """A one-line progress bar on stderr, redrawn at most 10 times a second."""

    def __init__(self, stream=sys.stderr):
        self.stream, self.t0, self.last = stream, time.perf_counter(), 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if now - self.last < 0.1 and done < total:
            return
        self.last = now
        width = 30
        fill = int(width * done / max(total, 1))
        rate = done / max(now - self.t0, 1e-9)
        self.stream.write(f"\r[{'#' * fill}{'.' * (width - fill)}] {done}/{total} steps  {rate:7.1f} steps/s")
        self.stream.flush()


def cmd_run(args) -> int:
    from backprop_lab.engine import experiment, record, spec as specmod
    from backprop_lab.engine.history import History
    from backprop_lab.engine.trainer import Trainer
    try:
        spec, base = specmod.load(args.spec)
        exp = experiment.build(spec, base, seed=args.seed)
        trainer = Trainer(exp)
    except specmod.SpecError as e:
        return _fail(str(e))
    steps = args.steps or exp.spec["train"]["steps"]
    history = History.for_probe(trainer.probe, time_steps=_time_steps(exp))
    progress = _Progress()
    t0 = time.perf_counter()
    try:
        reason = trainer.run(steps, on_snapshot=history.append, on_progress=progress)
    except KeyboardInterrupt:
        reason = "interrupted (Ctrl+C)"
    except (RuntimeError, ValueError) as e:  # e.g. a custom model that fails mid-run
        reason = f"failed at step {trainer.step_index}: {str(e).splitlines()[0]}"
    elapsed = time.perf_counter() - t0
    history.stop_reason = reason
    sys.stderr.write("\n")
    try:
        record.save(args.out, history, exp.spec)
    except OSError as e:
        return _fail(f"cannot write {args.out}: {e}")
    done = len(history)
    print(f"{reason}: {done} steps in {elapsed:.2f} s, {done / max(elapsed, 1e-9):.1f} steps/s; "
          f"record written to {args.out}")
    return 0


def _time_steps(exp) -> int:
    x = exp.data.x_train
    return x.shape[1] if exp.model.recurrent is not None and x.ndim == 3 else 0


def cmd_diagnose(args) -> int:
    import json
    from backprop_lab.engine import diagnosis, record
    try:
        history, spec = record.load(args.record)
    except record.RecordError as e:
        return _fail(str(e))
    findings = diagnosis.diagnose(history)
    if args.json:
        print(json.dumps([f.to_json() for f in findings], indent=2))
    elif not findings:
        print("healthy: no finding")
    else:
        for f in findings:
            print(f.describe())
    return 0


def cmd_export(args) -> int:
    from backprop_lab.engine import export, spec as specmod
    try:
        spec, base = specmod.load(args.spec)
        export.write(spec, base, args.torch)
    except specmod.SpecError as e:
        return _fail(str(e))
    except OSError as e:
        return _fail(f"cannot write {args.torch}: {e}")
    print(f"wrote {args.torch}")
    return 0


def cmd_gui(argv) -> int:
    p = argparse.ArgumentParser(prog="backprop-lab", description="Watch gradients vanish and explode.")
    p.add_argument("spec", nargs="?", help="a spec file to open")
    p.add_argument("--run", action="store_true", help="start training at once")
    p.add_argument("--quit-when-done", action="store_true",
                   help="with --run: quit when the run ends, printing steps per second on stderr")
    p.add_argument("--watch", metavar="RUN_DIR", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    from backprop_lab.app.main import main as gui_main
    return gui_main(spec=args.spec, run=args.run, watch=args.watch, quit_when_done=args.quit_when_done)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in SUBCOMMANDS:
        return cmd_gui(argv)
    p = argparse.ArgumentParser(prog="backprop-lab")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train without a window and write a run record")
    r.add_argument("spec")
    r.add_argument("--steps", type=int, default=None)
    r.add_argument("--out", required=True)
    r.add_argument("--seed", type=int, default=None)
    d = sub.add_parser("diagnose", help="print the diagnosis of a run record")
    d.add_argument("record")
    d.add_argument("--json", action="store_true")
    e = sub.add_parser("export", help="write a runnable PyTorch file of a spec's model")
    e.add_argument("spec")
    e.add_argument("--torch", required=True, metavar="OUT.py")
    w = sub.add_parser("watch", help="open the app on a live run directory")
    w.add_argument("run_dir")
    args = p.parse_args(argv)
    if args.cmd == "watch":
        return cmd_gui(["--watch", args.run_dir])
    if args.cmd == "run" and args.steps is not None and args.steps <= 0:
        return _fail("--steps must be a positive integer")
    return {"run": cmd_run, "diagnose": cmd_diagnose, "export": cmd_export}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
