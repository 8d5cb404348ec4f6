"""The session: owns the current spec, the training process and the recorded History.

Training runs in a process of its own (engine.worker, started by
app.worker_client): this process never imports torch, so drawing and training
never share an interpreter lock, and a user's model that crashes or hangs
cannot take the window with it. The worker is started in the background as
soon as the window asks (``warm_up``); Run before it is ready is sent at once
and served when it is.

A built-in stack's plan (shapes, problems, the layers the History will hold)
is made here without torch; a custom model's comes back from the worker. The
model and data are built in the worker when a run starts (Run, Step), not on
every edit. The worker hands batches of numpy snapshots, at most ~30 a second,
every step in one; they are appended to the History and the views redraw
from it.

(Over 400 lines with a reason: the session is the state machine of one run
across two processes: spec, plan, history, the worker's messages and its faults,
and the controls. Splitting it would spread that one state over several objects.)
"""
from __future__ import annotations

import copy
import json
import logging
import math
import weakref
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from backprop_lab.engine import record, spec as specmod
from backprop_lab.engine.activations import ACTIVATIONS, activation, kind_of_name
from backprop_lab.engine.data import make_dataset
from backprop_lab.engine.history import History
from backprop_lab.engine.plan import Layout, layout, plan
from backprop_lab.engine.run_end import STOPPED, EndKind, RunEnd
from backprop_lab.app.pacing import worker_threads

log = logging.getLogger(__name__)

def activation_from_name(name: str):
    """Activation of a recorded layer name: "2 sigmoid", "act1 (LeakyReLU)", "fc1 -> relu (functional)"
    (default parameters)."""
    kind = kind_of_name(name)
    return activation({"type": kind if kind in ACTIVATIONS else "identity"})


HIST_EVERY = 4      # a histogram of z every few steps is plenty for the live panel
STOP_GRACE = 2.0    # seconds Stop waits for the current step to end before it terminates the worker
QUIT_GRACE = 0.5    # ... and quitting


class Session(QObject):
    """Spec + plan + training process + History; every control is a message to the worker."""

    _running: "weakref.WeakSet[Session]" = weakref.WeakSet()   # sessions with a run going on (any window)

    spec_changed = Signal()           # a new or edited spec (its plan is known)
    history_reset = Signal()          # a new, empty History (or a loaded record)
    history_updated = Signal()        # new rows in the History
    state_changed = Signal(str)       # "idle", "running", "paused", "finished", "viewing", "watching"
    run_ended = Signal(str)           # the reason a run ended
    error = Signal(str)               # a problem to show the user (bad spec, bad file, a dead worker...)
    worker_ready = Signal()           # the training process has imported torch and waits
    spectrum_ready = Signal(int, object, object)  # token, result (numpy singular values) or None, problem

    def __init__(self, parent=None):
        super().__init__(parent)
        self.spec: dict = specmod.validate(specmod.new_spec())
        self.base_dir: Path | None = None
        self.path: Path | None = None       # the spec file, when one was opened or saved
        self.history: History | None = None
        self.infos: list = []               # plan of the stack: shapes and problems per layer
        self.problem: str | None = None     # why the current spec cannot be built
        self.data_description = "—"
        self.state = "idle"
        self.steps_per_second = 0.0
        self.last_traceback: str | None = None  # of the last failure in the worker (shown on request)
        self.last_run = (0, 0.0)            # (steps, seconds in the worker) of the last run that ended
        self._layout: Layout | None = None
        self._acts: list = []               # layer dicts of the activation layers, input side first
        self._trainable = True              # False while showing a record that cannot be rebuilt
        self._needs_build = True            # the worker's model is not the spec's (an edit, a reset)
        self._run_active = False            # a run was sent and has not ended
        self._client = None
        self._threads_sent = None           # the torch thread count this session's worker was told
        self._plan_token = 0
        self._data_cache: tuple | None = None
        self._replan()
        self._new_history()

    # ------------------------------------------------------------------ the worker
    @property
    def worker_pid(self) -> int | None:
        return self._client.pid if self._client is not None else None

    def warm_up(self) -> None:
        """Start the training process now (it imports torch in the background)."""
        self._worker()

    def _worker(self):
        if self._client is None or not self._client.alive:
            from backprop_lab.app.worker_client import WorkerClient
            self._drop_client()
            self._client = WorkerClient(self)
            self._client.received.connect(self._on_message)
            self._client.died.connect(self._on_worker_died)
            self._needs_build = True  # a new process has no model yet
            self._threads_sent = None
        return self._client

    def _drop_client(self) -> None:
        c, self._client = self._client, None
        if c is not None:
            try:
                c.received.disconnect(self._on_message)
                c.died.disconnect(self._on_worker_died)
            except (RuntimeError, TypeError):
                pass
            c.close(QUIT_GRACE)
            c.deleteLater()

    @classmethod
    def _share_cores(cls) -> None:
        """Tell every running worker its share of the cores (when the number of runs changed)."""
        running = [s for s in cls._running if s._run_active and s._client is not None and s._client.alive]
        n = worker_threads(len(running))
        for s in running:
            if n is not None and s._threads_sent != n and s._client.send(("threads", n)):
                s._threads_sent = n

    def _running_changed(self) -> None:
        if self._run_active:
            Session._running.add(self)
        else:
            Session._running.discard(self)
        Session._share_cores()

    def _send(self, msg: tuple) -> None:
        self._worker().send(msg)

    def _on_message(self, msg: tuple) -> None:
        kind = msg[0]
        if kind == "batch":
            self._on_batch(msg[1], msg[2])
        elif kind == "built":
            self._on_built(*msg[1:])
        elif kind == "build_failed":
            self._run_active = False
            self.problem = msg[1]
            self.error.emit(msg[1])
            self._set_state("idle")
            self.run_ended.emit(f"cannot build: {msg[1]}")
        elif kind == "ended":
            self._on_ended(*msg[1:])
        elif kind == "plan":
            self._on_plan(*msg[1:])
        elif kind == "fatal":
            self.last_traceback = msg[2]
            log.error("the training process ended itself: %s\n%s", msg[1], msg[2])
        elif kind == "ready":
            self.worker_ready.emit()
        elif kind == "spectrum":
            self.spectrum_ready.emit(*msg[1:])

    # ------------------------------------------------------------------ spec
    def set_spec(self, spec: dict, base_dir=None, path=None) -> bool:
        """Adopt a spec (validated) and plan it; False (with error emitted) if unusable.

        A spec that validates but does not fit (a shape) is kept, so the user can
        fix it in the editor; Run is refused until then.
        """
        try:
            spec = specmod.validate(spec)
        except specmod.SpecError as e:
            self.error.emit(str(e))
            return False
        self.stop()
        self.spec = spec
        if base_dir is not None or path is not None:
            self.base_dir = Path(base_dir) if base_dir else (Path(path).parent if path else None)
        if path is not None:
            self.path = Path(path)
        self._trainable = True
        self._needs_build = True
        self._replan()
        self._new_history()
        self._set_state("idle")
        self.spec_changed.emit()
        return True

    def open_spec(self, path) -> bool:
        try:
            spec, base = specmod.load(path)
        except specmod.SpecError as e:
            self.error.emit(str(e))
            return False
        return self.set_spec(spec, base, path)

    def save_spec(self, path) -> bool:
        try:
            specmod.save(self.spec, path)
        except OSError as e:
            self.error.emit(f"cannot save {path}: {e}")
            return False
        self.path, self.base_dir = Path(path), Path(path).parent
        return True

    def _dataset(self):
        key = (json.dumps(self.spec["data"], sort_keys=True), str(self.base_dir))
        if self._data_cache is None or self._data_cache[0] != key:
            self._data_cache = (key, make_dataset(self.spec["data"], self.base_dir))
        return self._data_cache[1]

    def plan_layers(self, layers: list) -> list:
        """Shapes and problems of a candidate stack against the current data."""
        try:
            d = self._dataset()
        except specmod.SpecError:
            return []
        return plan(layers, d.input_shape, d.n_outputs)

    def _replan(self) -> None:
        """The plan of the spec, without torch for a stack; a custom model's is asked of the worker."""
        self.problem, self._layout, self._acts, self.infos = None, None, [], []
        try:
            d = self._dataset()
        except specmod.SpecError as e:
            self.problem, self.data_description = str(e), "—"
            self.error.emit(self.problem)
            return
        self.data_description = d.describe()
        m = self.spec["model"]
        if "layers" not in m:
            self._plan_token += 1
            self._send(("plan", self._plan_token, self.copy_spec(), self.base_dir))
            return
        if self.spec["train"]["loss"] == "cross_entropy" and d.task != "classification":
            self.problem = "train.loss: cross_entropy needs class labels; this data is regression (use mse)"
        self.infos = plan(m["layers"], d.input_shape, d.n_outputs)
        bad = next((i for i in self.infos if i.problem), None)
        if bad:
            where = "output layer" if bad.added else f"layer {bad.path} ({bad.type})"
            self.problem = f"{where}: {bad.problem}"
        if self.problem:
            self.error.emit(self.problem)
            return
        self._layout = layout(m["layers"], self.infos, d.x_train.shape)
        self._acts = self._layout.act_layers

    def _on_plan(self, token, infos, lay, description, problem) -> None:
        if token != self._plan_token:
            return  # the answer to a spec since replaced
        self.infos, self.data_description, self.problem = infos, description, problem
        if problem:
            self.error.emit(problem)
        if lay is not None:
            self._layout, self._acts = lay, lay.act_layers
            if not self._run_active and (self.history is None or len(self.history) == 0):
                self._new_history()
        self.spec_changed.emit()

    def _new_history(self) -> None:
        lay = self._layout
        self.history = None if lay is None else History(lay.layer_names, lay.act_names, lay.units, lay.time_steps)
        self.history_reset.emit()

    # ------------------------------------------------------------------ controls
    @property
    def running(self) -> bool:
        """A run is going on in the worker (running or paused)."""
        return self._run_active

    @property
    def can_train(self) -> bool:
        return self._trainable

    def start(self) -> None:
        """Run (or resume) training."""
        if self._run_active:
            self._send(("resume",))
            self._set_state("running")
            return
        self._launch(paused=False)

    def pause(self) -> None:
        if self._run_active:
            self._send(("pause",))
            self._set_state("paused")

    def step(self, n: int = 1) -> None:
        if self._run_active:
            self._send(("step", int(n)))
            self._set_state("paused")
        else:
            self._launch(paused=True, steps=n)

    def set_lr(self, lr: float) -> bool:
        """Change the learning rate, also mid-run; refused (with a message) unless positive and finite."""
        try:
            lr = float(lr)
        except (TypeError, ValueError):
            lr = math.nan
        if not (math.isfinite(lr) and lr > 0):
            self.error.emit(f"learning rate must be a positive, finite number (got {lr})")
            return False
        self.spec["train"]["lr"] = lr
        if self._client is not None and self._client.alive:
            self._client.send(("lr", lr))
        return True

    def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop the run: prompt (the worker checks between steps). A step that does not end
        within ``grace`` seconds gets the worker terminated, and the session says so."""
        if not self._run_active:
            return
        c = self._client
        if not c.ready:  # still importing torch: nothing ran yet; a fresh process starts behind
            self._drop_client()
            self._needs_build = True
            self._end_run(STOPPED)
            self.warm_up()
            return
        c.send(("stop",))
        if c.wait_for(lambda: not self._run_active, grace):
            return
        reason = (f"stopped: the current step did not end within {grace:g} s, so the training "
                  f"process was terminated (last step received: {self._last_step()})")
        self._drop_client()
        self._needs_build = True
        self._end_run(reason)
        self.error.emit(reason)

    def reset(self) -> None:
        """Stop and start over from freshly drawn weights."""
        self.stop()
        self._needs_build = True
        if self.state == "viewing":
            self._replan()
        self._new_history()
        self._set_state("idle")

    def _launch(self, paused: bool, steps: int | None = None) -> None:
        if not self._trainable or self.problem is not None:
            self.error.emit(self.problem or "nothing to train")
            return
        c = self._worker()
        build = None
        if self._needs_build:
            if self.state == "viewing" or self.history is None or len(self.history):
                self._new_history()
            build = (self.copy_spec(), self.base_dir, HIST_EVERY)
            self._needs_build = False
        self._run_active = True
        self._running_changed()   # before "start": the run begins with its share of the cores
        self.steps_per_second = 0.0
        c.send(("start", build, self.spec["train"]["steps"], paused, steps or 1, self.spec["train"]["lr"]))
        self._set_state("paused" if paused else "running")

    def request_spectrum(self, inputs: int = 32) -> int:
        """Ask the worker for the Jacobian spectrum of its model at the current step; ``spectrum_ready``
        answers with the returned token (at once, with a problem, when no model of this spec is built)."""
        self._spectrum_token = getattr(self, "_spectrum_token", 0) + 1
        token = self._spectrum_token
        if self._needs_build or self._client is None or not self._client.alive or not self._trainable:
            # answered after the token is returned
            QTimer.singleShot(0, lambda: self.spectrum_ready.emit(
                token, None, "no run of this stack yet: Run or Step first (an edit or Reset starts from new weights)"))
        else:
            self._client.send(("spectrum", token, int(inputs)))
        return token

    # ------------------------------------------------------------------ from the worker
    def _on_built(self, lay: Layout, infos, description) -> None:
        self.data_description = description
        if "layers" not in self.spec["model"]:
            self.infos = infos
        if self._layout is None or lay.key() != self._layout.key() or self.history is None:
            self._layout, self._acts = lay, lay.act_layers
            self._new_history()
            self.spec_changed.emit()

    def _on_batch(self, batch: dict, rate: float) -> None:
        if self.history is None:
            return
        self.history.extend_packed(batch)
        self.steps_per_second = rate
        self.history_updated.emit()

    def _on_ended(self, reason: str, tb, steps: int, seconds: float) -> None:
        self.last_run = (steps, seconds)
        if tb:
            self.last_traceback = tb
            log.error("training failed: %s\n%s", reason, tb)
        self._end_run(reason)

    def _on_worker_died(self, cause: str) -> None:
        self._needs_build = True
        c, self._client = self._client, None
        if c is not None:
            if c.fatal_traceback:
                self.last_traceback = c.fatal_traceback
            c.close(0.0)
            c.deleteLater()
        message = f"the training process died: {cause}; last step received: {self._last_step()}"
        if self._run_active:
            self._end_run(message)
        self.error.emit(message + ". The history is kept (File > Save run); Run starts a new process.")

    def _last_step(self) -> str:
        h = self.history
        return str(int(h.steps[-1])) if h is not None and len(h) else "none"

    def _end_run(self, reason: str) -> None:
        self._run_active = False
        self._running_changed()
        if self.history is not None:
            self.history.stop_reason = reason
        end = RunEnd.parse(reason)
        self._set_state("finished" if end is not None and end.kind in (EndKind.FINISHED, EndKind.NON_FINITE)
                        else "idle")
        self.run_ended.emit(reason)

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.state_changed.emit(state)

    # ------------------------------------------------------------------ records
    def save_run(self, path) -> bool:
        if self.history is None or len(self.history) == 0:
            self.error.emit("no run to save yet: press Run first")
            return False
        try:
            record.save(path, self.history, self.spec)
        except OSError as e:
            self.error.emit(f"cannot save {path}: {e}")
            return False
        return True

    def open_run(self, path) -> bool:
        """Show a saved record (its spec becomes the current spec when it is a stack)."""
        try:
            history, spec = record.load(path)
        except record.RecordError as e:
            self.error.emit(str(e))
            return False
        self.stop()
        spec = dict(spec)
        spec.pop("stopped", None)
        try:
            self.spec = specmod.validate(spec)
            self.base_dir = Path(path).parent
            self._trainable = True
            self._replan()
            if self.problem:  # e.g. the record's data file is gone: still viewable
                self.problem = f"the record's spec cannot be rebuilt here: {self.problem}"
        except specmod.SpecError as e:
            self._trainable = False
            self.problem = f"the record's spec cannot be rebuilt here: {e}"
        self._needs_build = True
        self.path = None
        self.history = history
        self.spec_changed.emit()
        self.history_reset.emit()
        self._set_state("viewing")
        return True

    def show_history(self, history: History, spec: dict, state: str = "viewing") -> None:
        """Show a History that was not trained here (a followed run directory)."""
        self.stop()
        self.history = history
        self._trainable = False
        self._layout, self._acts = None, []
        self.problem = None
        self.spec_name = spec.get("name", "")
        self.history_reset.emit()
        self._set_state(state)

    def layer_activations(self) -> list:
        """The Activation of each activation layer (for the f, f' panel), input side first."""
        names = self.history.act_names if self.history else []
        if self._acts and len(self._acts) == len(names):
            out = []
            for layer, name in zip(self._acts, names):
                try:
                    out.append(activation(layer))
                except (KeyError, ValueError):
                    out.append(activation_from_name(name))
            return out
        return [activation_from_name(n) for n in names]

    def copy_spec(self) -> dict:
        return copy.deepcopy(self.spec)

    def shutdown(self, grace: float = QUIT_GRACE) -> None:
        """Stop any run and end the training process (terminated if it must be); safe to call twice."""
        if self._run_active and self._client is not None:
            self._client.send(("stop",))
            self._client.wait_for(lambda: not self._run_active, min(grace, 0.3))
        self._drop_client()
        self._run_active = False
        self._running_changed()
