"""The training process: torch, the data, the model, the Trainer and its probes, steered by messages.

The window (app.worker_client) starts ``main`` in a process of its own
(multiprocessing's spawn context, never fork) with two one-way pipes. This
module imports no torch at module level, so the window may import it for the
message names; ``main`` imports torch in the child while the window is already
on screen.

Window -> worker (``cmd``), each a tuple:
    ("start", build, steps, paused, budget, lr)  build: (spec, base_dir, hist_every) or None
                                                 to go on with the current model
    ("plan", token, spec, base_dir)              a custom model's plan, without training
    ("pause",) ("resume",) ("step", n) ("stop",) ("lr", value)   while a run goes on
    ("ping", token)                              answered by ("pong", token, steps made, torch threads)
    ("threads", n)                               torch's intra-op threads (also mid-run, between steps):
                                                 the window shares the cores among its workers
    ("spectrum", token, inputs)                  the Jacobian spectrum of the model as it is now
                                                 (between two steps, also mid-run)
    ("quit",)
Worker -> window (``out``):
    ("ready", pid)
    ("built", layout, infos, data_description)   layout: engine.plan.Layout
    ("build_failed", message)
    ("batch", packed_snapshots, steps_per_second)  at most ~30 a second, every step in one
    ("ended", reason, traceback_or_None, steps, seconds)
    ("plan", token, infos, layout_or_None, data_description, problem_or_None)
    ("fatal", cause, traceback)                  the model called sys.exit; the process ends
    ("pong", token, step_index, torch_threads)   after every batch of the steps made before it
    ("spectrum", token, result_or_None, problem_or_None)  result: engine.theory.spectrum.summary's
                                                 keys (numpy singular values) and "step", the steps
                                                 the weights have had

The worker checks its command pipe before every step, so Stop takes effect as
soon as the current step ends; while paused it waits on the pipe.
"""
from __future__ import annotations

import collections
import os
import sys
import threading
import time
import traceback

EMIT_INTERVAL = 1 / 30   # seconds between two batches sent to the window
CONTROL = ("pause", "resume", "step", "stop", "lr")
WORKER_NICE = 5   # added to the training process's niceness (BACKPROP_LAB_WORKER_NICE overrides): the
                  # window's GUI thread gets ~3/4 of a core it shares with a training thread


def main_fds(cmd_fd: int, out_fd: int) -> None:
    """Entry point of the spawned interpreter: the two pipe ends it inherited."""
    from multiprocessing.connection import Connection
    main(Connection(cmd_fd, writable=False), Connection(out_fd, readable=False))


def main(cmd, out) -> None:
    """Serve the window on two Connections until it says quit or goes away."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C in the terminal is the window's to handle
    passive_openmp()
    _lower_priority()
    from .allocator import keep_freed_memory
    keep_freed_memory()   # a step's freed tensors serve the next step (no page faults: engine/allocator.py)
    import torch  # noqa: F401  (the slow part of start-up, while the window is already drawn)
    from . import trainer  # noqa: F401
    out = _Out(out)
    out.send(("ready", os.getpid()))
    from . import lstm_steps, onepass
    onepass.warm()   # the probes' kernels, while the user looks at the window (a Run waits in the pipe)
    lstm_steps.warm()
    try:
        _Worker(cmd, out).serve()
    except (EOFError, BrokenPipeError, ConnectionResetError, KeyboardInterrupt):
        pass  # the window went away: nothing left to do
    # The last message is sent; end here rather than in the interpreter's teardown, where the
    # flusher thread and torch's thread pool are still being destroyed: that teardown aborted
    # the process once in a full test run under load ("terminate called without an active
    # exception", exit status -6 instead of 0). Nothing of the worker's needs atexit.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def passive_openmp() -> None:
    """Idle OpenMP threads sleep instead of spinning (unless the user's environment says otherwise).

    Must run before torch is imported (libgomp reads it once). With GNU OpenMP's default
    (spin, then sleep), a team's idle thread burns the core that the window's GUI thread, a
    second worker or any other program wants, and a team whose second thread is descheduled
    waits a whole time slice at every barrier: on a 2-core machine with one other busy
    process, 2 spinning threads ran the deep sigmoid preset at 10-28 steps/s against
    140-240 with 1 thread, and 2 passive threads at 155-246 (docs/performance.md)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _lower_priority() -> None:
    """The window's GUI thread goes first when both want a core (the trainer takes the rest)."""
    try:
        os.nice(int(os.environ.get("BACKPROP_LAB_WORKER_NICE", WORKER_NICE)))
    except (OSError, ValueError, AttributeError):   # pragma: no cover  (not allowed, or not POSIX)
        pass


def set_threads(n) -> None:
    import torch
    n = max(1, int(n))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def _threads() -> int:
    import torch
    return torch.get_num_threads()


class _Out:
    """The pipe to the window, shared by the loop and the flusher thread (one message at a time)."""

    def __init__(self, conn):
        self.conn, self.lock = conn, threading.RLock()

    def send(self, msg) -> None:
        with self.lock:
            self.conn.send(msg)


class _Worker:
    def __init__(self, cmd, out):
        self.cmd, self.out = cmd, out
        self.pending = collections.deque()
        self.trainer = None

    def serve(self) -> None:
        while True:
            msg = self.pending.popleft() if self.pending else self.cmd.recv()
            kind = msg[0]
            if kind == "quit":
                return
            if kind == "start":
                self.start(*msg[1:])
            elif kind == "plan":
                self.plan(*msg[1:])
            elif kind == "lr" and self.trainer is not None:
                self.trainer.set_lr(msg[1])
            elif kind == "threads":
                set_threads(msg[1])
            elif kind == "ping":
                self.out.send(("pong", msg[1], self.trainer.step_index if self.trainer else 0, _threads()))
            elif kind == "spectrum":
                self.spectrum(*msg[1:])
            # a pause/stop/step that arrived after its run ended: nothing to do

    # ------------------------------------------------------------------ building
    def _build(self, spec, base_dir, hist_every):
        from .experiment import build
        from .trainer import Trainer
        exp = build(spec, base_dir)
        return exp, Trainer(exp, hist_every=hist_every)

    def start(self, build, steps, paused, budget, lr) -> None:
        from .spec import SpecError
        if build is not None:
            self.trainer = None
            try:
                exp, self.trainer = self._build(*build)
            except SpecError as e:
                self.out.send(("build_failed", str(e)))
                return
            except (Exception, SystemExit) as e:  # a user's module that fails to build
                from .custom import user_error
                self.out.send(("build_failed", f"cannot set up the run: {user_error(e)}"))
                return
            self.out.send(("built", layout_of(self.trainer), exp.model.infos, exp.data.describe()))
        if self.trainer is None:
            self.out.send(("build_failed", "no model was built"))
            return
        if lr is not None:
            self.trainer.set_lr(lr)
        self.run(steps, paused, budget)

    def plan(self, token, spec, base_dir) -> None:
        from .spec import SpecError
        try:
            exp, tr = self._build(spec, base_dir, 0)
        except SpecError as e:
            self.out.send(("plan", token, [], None, "—", str(e)))
            return
        except (Exception, SystemExit) as e:
            from .custom import user_error
            self.out.send(("plan", token, [], None, "—", f"cannot set up the model: {user_error(e)}"))
            return
        self.out.send(("plan", token, exp.model.infos, layout_of(tr), exp.data.describe(), None))

    def spectrum(self, token, inputs) -> None:
        """Singular values of the current model's input-output Jacobian, at its current weights."""
        tr = self.trainer
        if tr is None:
            self.out.send(("spectrum", token, None, "no model yet: Run or Step builds it"))
            return
        from .theory import spectrum
        try:
            r = spectrum.of_module(tr.module, tr.exp.data.x_train, inputs, tr.exp.data.n_outputs)
        except Exception as e:  # a user's module whose input cannot be differentiated (token ids, say)
            from .custom import user_error
            self.out.send(("spectrum", token, None, f"cannot differentiate the model by its input: {user_error(e)}"))
            return
        r["step"] = int(tr.step_index)
        self.out.send(("spectrum", token, r, None))

    # ------------------------------------------------------------------ running
    def run(self, total_steps, paused, budget) -> None:
        from .snapshot import pack
        tr = self.trainer
        control = PipeControl(self)
        if paused:
            control.step(budget or 1)
        remaining = total_steps - tr.step_index
        n = remaining if remaining > 0 else total_steps
        first, t0 = tr.step_index, time.perf_counter()
        buf, last = [], [t0 - EMIT_INTERVAL]  # the first step is sent at once
        lock, done = self.out.lock, threading.Event()

        def flush():
            with lock:
                if buf:
                    rate = (tr.step_index - first) / max(time.perf_counter() - t0, 1e-9)
                    self.out.send(("batch", pack(buf), rate))
                    buf.clear()
                last[0] = time.perf_counter()

        def on_snapshot(snap):
            with lock:
                buf.append(snap)
                if time.perf_counter() - last[0] >= EMIT_INTERVAL or (control.paused and control.budget == 0):
                    flush()

        def flusher():  # steps made before a step that never returns (or is slow) still reach the window
            try:
                while not done.wait(EMIT_INTERVAL):
                    with lock:
                        if buf and time.perf_counter() - last[0] >= EMIT_INTERVAL:
                            flush()
            except OSError:
                pass

        control.flush = flush
        threading.Thread(target=flusher, name="flush", daemon=True).start()
        tb = None
        try:
            reason = tr.run(n, control, on_snapshot)
        except SystemExit as e:  # sys.exit in a user's model: the process ends, and says why
            flush()
            self.out.send(("fatal", f"the model called sys.exit({e.code!r}) at step {tr.step_index}",
                           traceback.format_exc()))
            code = e.code if isinstance(e.code, int) else 1
            os._exit(code or 0)
        except Exception as e:  # a user's model failing mid-run: the worker lives on
            from .custom import user_error
            reason = f"failed at step {tr.step_index}: {user_error(e)}"
            tb = traceback.format_exc()
        done.set()
        flush()
        # as text: the window parses it (engine.run_end.RunEnd.parse), no class of ours crosses the pipe
        self.out.send(("ended", str(reason), tb, tr.step_index - first, time.perf_counter() - t0))
        from .allocator import give_back_memory
        give_back_memory()   # (what the run kept for its steps and has freed)


def layout_of(trainer):
    """The Layout of a built Trainer's probes (what the window's History needs)."""
    from .experiment import time_steps
    from .plan import Layout
    exp, probe = trainer.exp, trainer.probe
    acts = []
    for _, _, a in exp.model.act_layers:
        acts.append({"type": a.name, "slope": a.slope} if a.name == "leaky_relu" else {"type": a.name})
    return Layout(list(probe.layer_names), list(probe.act_names), [int(u) for u in probe.units], acts,
                  exp.model.recurrent is not None, time_steps(exp))


def _make_control():
    from .trainer import Control

    class _PipeControl(Control):
        """A Control fed from the command pipe, read between steps (one thread: no waiting on locks)."""

        def __init__(self, worker):
            super().__init__()
            self.worker, self.flush = worker, None

        @property
        def budget(self) -> int:
            return self._budget

        def _handle(self, msg) -> None:
            kind = msg[0]
            if kind == "pause":
                self.pause()
            elif kind == "resume":
                self.resume()
            elif kind == "step":
                self.step(int(msg[1]))
            elif kind == "stop":
                self.stop()
            elif kind == "lr":
                self.set_lr(msg[1])
            elif kind == "threads":
                set_threads(msg[1])
            elif kind == "ping":  # every step made so far is sent before the answer
                if self.flush is not None:
                    self.flush()
                self.worker.out.send(("pong", msg[1], self.worker.trainer.step_index, _threads()))
            elif kind == "spectrum":   # between two steps: the weights of the steps made so far
                if self.flush is not None:
                    self.flush()
                self.worker.spectrum(*msg[1:])
            else:  # quit, or a new start/plan: this run ends first, then the message is served
                self.stop()
                self.worker.pending.append(msg)

        def _drain(self, timeout: float = 0.0) -> None:
            cmd = self.worker.cmd
            try:
                if cmd.poll(timeout):
                    self._handle(cmd.recv())
                    while cmd.poll():
                        self._handle(cmd.recv())
            except (EOFError, OSError):
                os._exit(0)  # the window is gone (killed): so is the reason to train

        def wait_turn(self) -> bool:
            self._drain()
            while not self._stop and self._paused and self._budget == 0:
                if self.flush is not None:
                    self.flush()
                self._drain(0.1)
            if self._stop:
                return False
            if self._paused:
                self._budget -= 1
            return True

    return _PipeControl


def PipeControl(worker):  # noqa: N802  (a class made on first use: trainer imports torch)
    global _PIPE_CONTROL
    if _PIPE_CONTROL is None:
        _PIPE_CONTROL = _make_control()
    return _PIPE_CONTROL(worker)


_PIPE_CONTROL = None

if __name__ == "__main__":  # pragma: no cover
    sys.exit("engine.worker is started by the window (app.worker_client)")
