"""The `backprop-lab` command (Contract 3).

    backprop-lab [SPEC.json] [--run]           open the app
    backprop-lab --model my_net.py:Net [--kwargs JSON] [--data KIND]   ... on your own module
    backprop-lab run SPEC.json --steps N --out RUN.npz [--seed S]
    backprop-lab diagnose RUN.npz [--json]
    backprop-lab export SPEC.json --torch OUT.py
    backprop-lab export RUN --csv OUT.csv | --tensorboard DIR   (RUN: a record or a run directory)
    backprop-lab watch RUN_DIR
    backprop-lab theory chain|paths|phase|spectrum ... [--json]   (Contract 4)

Headless commands never import Qt. A bad spec or record gives one line on
stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

SUBCOMMANDS = ("run", "diagnose", "export", "watch", "theory")


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
    from backprop_lab.engine.allocator import keep_freed_memory
    from backprop_lab.engine.worker import passive_openmp
    passive_openmp()   # before torch: idle OpenMP threads sleep, as in the window's training process
    keep_freed_memory()   # and a step's freed tensors serve the next step (engine/allocator.py)
    from backprop_lab.engine import experiment, record, spec as specmod
    from backprop_lab.engine.history import History
    from backprop_lab.engine.trainer import Trainer
    from backprop_lab.engine.custom import user_error
    try:
        spec, base = specmod.load(args.spec)
        exp = experiment.build(spec, base, seed=args.seed)
        trainer = Trainer(exp)
    except specmod.SpecError as e:
        return _fail(str(e))
    except (Exception, SystemExit) as e:   # a user's module that fails while it is instrumented
        return _fail(f"cannot set up the run: {user_error(e)}")
    steps = args.steps or exp.spec["train"]["steps"]
    history = History.for_probe(trainer.probe, time_steps=_time_steps(exp))
    progress = _Progress()
    t0 = time.perf_counter()
    failed = False
    try:
        reason = trainer.run(steps, on_snapshot=history.append, on_progress=progress)
    except KeyboardInterrupt:
        reason = "interrupted (Ctrl+C)"
    except (Exception, SystemExit) as e:  # a custom model that fails mid-run: reported, never obeyed
        reason, failed = f"failed at step {trainer.step_index}: {user_error(e)}", True
    elapsed = time.perf_counter() - t0
    history.stop_reason = reason
    sys.stderr.write("\n")
    try:
        record.save(args.out, history, exp.spec)
    except OSError as e:
        return _fail(f"cannot write {args.out}: {e}")
    done = len(history)
    if failed:
        return _fail(f"{reason} (the record of the {done} steps before is in {args.out})")
    print(f"{reason}: {done} steps in {elapsed:.2f} s, {done / max(elapsed, 1e-9):.1f} steps/s; "
          f"record written to {args.out}")
    return 0


def _time_steps(exp) -> int:
    from backprop_lab.engine.experiment import time_steps
    return time_steps(exp)


def cmd_diagnose(args) -> int:
    import json
    from backprop_lab.engine import diagnosis, record
    try:
        history, spec = record.load(args.record)
    except record.RecordError as e:
        return _fail(str(e))
    try:
        findings = diagnosis.diagnose(history, spec=spec)
        limits = diagnosis.unchecked(history)
    except (ArithmeticError, ValueError, IndexError, TypeError) as e:   # values no run can give
        return _fail(f"{args.record}: cannot diagnose this record ({type(e).__name__}: {str(e)[:120]})")
    if args.json:   # stdout holds the findings (Contract 3); what was not checked goes to stderr
        print(json.dumps([f.to_json() for f in findings], indent=2))
        for line in limits:
            print(f"not checked: {line}", file=sys.stderr)
        return 0
    if not findings:
        print("healthy: no finding" + (" (of what could be checked)" if limits else ""))
    else:
        for f in findings:
            print(f.describe())
    for line in limits:
        print(f"not checked: {line}")
    return 0


def cmd_export(args) -> int:
    if args.torch:
        return _export_torch(args)
    if not (args.csv or args.tensorboard):
        return _fail("export: say what to write: --torch OUT.py (a spec), --csv OUT.csv or --tensorboard DIR (a run)")
    from backprop_lab.engine import record, rundir, run_export
    try:
        if args.stream:
            history, _ = rundir.load(args.source, args.stream)
        else:
            history, _ = record.load(args.source)
    except (record.RecordError, rundir.RunDirError) as e:
        return _fail(str(e))
    try:
        if args.csv:
            n = run_export.write_csv(history, args.csv)
            print(f"wrote {args.csv} ({n} rows)")
        if args.tensorboard:
            path = run_export.write_tensorboard(history, args.tensorboard)
            print(f"wrote {path} (tensorboard --logdir {args.tensorboard})")
    except OSError as e:
        return _fail(f"cannot write: {e}")
    return 0


def _export_torch(args) -> int:
    from backprop_lab.engine import export, spec as specmod
    try:
        spec, base = specmod.load(args.source)
        export.write(spec, base, args.torch)
    except specmod.SpecError as e:
        return _fail(str(e))
    except OSError as e:
        return _fail(f"cannot write {args.torch}: {e}")
    print(f"wrote {args.torch}")
    return 0


def cmd_gui(argv) -> int:
    import json
    p = argparse.ArgumentParser(prog="backprop-lab", description="Watch gradients vanish and explode.")
    p.add_argument("spec", nargs="?", help="a spec file to open")
    p.add_argument("--run", action="store_true", help="start training at once")
    p.add_argument("--quit-when-done", action="store_true",
                   help="with --run: quit when the run ends, printing steps per second on stderr")
    p.add_argument("--watch", metavar="RUN_DIR", help=argparse.SUPPRESS)
    p.add_argument("--model", metavar="FILE.py:Class", help="open the app on your own nn.Module (runs the file)")
    p.add_argument("--kwargs", metavar="JSON", default="{}", help="the class's keyword arguments (--model)")
    p.add_argument("--data", metavar="KIND", default="digits", help="data set for --model (default digits, or an .npz)")
    args = p.parse_args(argv)
    try:
        kwargs = json.loads(args.kwargs)
        assert isinstance(kwargs, dict)
    except (ValueError, AssertionError):
        return _fail(f"--kwargs must be a JSON object, got {args.kwargs!r}")
    from backprop_lab.app.main import main as gui_main
    return gui_main(spec=args.spec, run=args.run, watch=args.watch, model=args.model, model_kwargs=kwargs,
                    data=args.data, quit_when_done=args.quit_when_done)


def main(argv=None) -> int:
    """The command; any failure is one line on stderr and exit status 2, never a traceback."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("backprop-lab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:   # the reader went away (`... --json | head`): nothing to say to it
        try:   # Python's advice: point stdout at devnull so the flush at exit does not fail again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 0
    except MemoryError:
        return _fail("out of memory (a limit in backprop_lab.engine.limits let too much through: please report)")
    except RecursionError:
        return _fail("input nested too deep")
    except Exception as e:  # a bug of ours: still one line, with what to report
        msg = str(e).splitlines()[0][:200] if str(e) else ""
        return _fail(f"internal error ({type(e).__name__}: {msg}); please report it with the input")


def _main(argv=None) -> int:
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
    e = sub.add_parser("export", help="a spec's model as a PyTorch file, or a run as CSV / TensorBoard events")
    e.add_argument("source", metavar="SPEC_OR_RUN")
    e.add_argument("--torch", metavar="OUT.py", help="a runnable PyTorch file of the spec's model")
    e.add_argument("--csv", metavar="OUT.csv", help="the run as one table: step, layer, statistic, value")
    e.add_argument("--tensorboard", metavar="DIR", help="the run as TensorBoard event files")
    e.add_argument("--stream", metavar="NAME", help="a run directory's stream (rank0, rank1, ...)")
    w = sub.add_parser("watch", help="open the app on a live run directory")
    w.add_argument("run_dir")
    from backprop_lab.app import theory_cli
    theory_cli.add_parser(sub)
    args = p.parse_args(argv)
    if args.cmd == "theory":
        return theory_cli.run(args)
    if args.cmd == "watch":
        return cmd_gui(["--watch", args.run_dir])
    if args.cmd == "run" and args.steps is not None and args.steps <= 0:
        return _fail("--steps must be a positive integer")
    return {"run": cmd_run, "diagnose": cmd_diagnose, "export": cmd_export}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
