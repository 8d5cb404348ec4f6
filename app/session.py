"""The session: owns the current spec, the training thread and the recorded History.

The engine's Trainer runs in a QThread worker. The worker never touches a
widget: it collects the numpy Snapshots of every step and hands them to the GUI
thread in batches, at most ~30 batches a second however fast training goes
(no step is dropped; only the number of signals is bounded). The GUI thread
appends them to the History and the views redraw from it.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path

from PySide6.QtCore import QObject, QThread, Signal, Slot

from backprop_lab.engine import experiment, record, spec as specmod
from backprop_lab.engine.activations import ACTIVATIONS, activation, kind_of_name
from backprop_lab.engine.build import plan
from backprop_lab.engine.history import History
from backprop_lab.engine.run_end import EndKind, RunEnd
from backprop_lab.engine.trainer import FINISHED, Control, Trainer  # noqa: F401

def activation_from_name(name: str):
    """Activation of a recorded layer name: "2 sigmoid", "act1 (LeakyReLU)", "fc1 -> relu (functional)"
    (default parameters)."""
    kind = kind_of_name(name)
    return activation({"type": kind if kind in ACTIVATIONS else "identity"})


EMIT_INTERVAL = 1 / 30  # seconds between batches sent to the GUI thread
HIST_EVERY = 4          # a histogram of z every few steps is plenty for the live panel


class TrainingWorker(QObject):
    """Runs Trainer.run in its thread; emits coalesced batches of snapshots."""

    snapshots_ready = Signal(object)   # (the History they belong to, [Snapshot, ...])
    finished = Signal(str)

    def __init__(self, trainer: Trainer, control: Control, steps: int):
        super().__init__()
        self.trainer, self.control, self.steps = trainer, control, steps
        self.history = None   # the History these snapshots are for (set by the session)
        self._pending: list = []
        self._last_emit = 0.0

    def _on_snapshot(self, snap) -> None:
        self._pending.append(snap)
        now = time.perf_counter()
        if now - self._last_emit >= EMIT_INTERVAL or self.control.paused:
            self._flush(now)

    def _flush(self, now: float) -> None:
        if self._pending:
            batch, self._pending = self._pending, []
            self.snapshots_ready.emit((self.history, batch))
        self._last_emit = now

    @Slot()
    def run(self) -> None:
        try:
            reason = self.trainer.run(self.steps, self.control, self._on_snapshot)
        except Exception as e:  # a user's model failing mid-run must not kill the app
            reason = f"failed at step {self.trainer.step_index}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        self._flush(time.perf_counter())
        self.finished.emit(reason)


class Session(QObject):
    """Spec + experiment + training thread + History, with thread-safe controls."""

    spec_changed = Signal()           # a new or edited spec (the model was rebuilt)
    history_reset = Signal()          # a new, empty History (or a loaded record)
    history_updated = Signal()        # new rows in the History
    state_changed = Signal(str)       # "idle", "running", "paused", "finished", "viewing"
    run_ended = Signal(str)           # the reason a run ended
    error = Signal(str)               # a problem to show the user (bad spec, bad file...)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.spec: dict = specmod.validate(specmod.new_spec())
        self.base_dir: Path | None = None
        self.path: Path | None = None       # the spec file, when one was opened or saved
        self.exp = None
        self.trainer: Trainer | None = None
        self.history: History | None = None
        self.infos: list = []               # plan of the stack: shapes and problems per layer
        self.problem: str | None = None     # why the current spec cannot be built
        self.state = "idle"
        self._control: Control | None = None
        self._thread: QThread | None = None
        self._worker: TrainingWorker | None = None
        self._steps_at_start, self._t_start = 0, 0.0
        self.steps_per_second = 0.0

    # ------------------------------------------------------------------ spec
    def set_spec(self, spec: dict, base_dir=None, path=None) -> bool:
        """Adopt a spec (validated) and rebuild; False (with error emitted) if unusable.

        A spec that validates but does not build (a shape that does not fit) is
        kept, so the user can fix it in the editor; Run is refused until then.
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
        self._rebuild()
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

    def plan_layers(self, layers: list) -> list:
        """Shapes and problems of a candidate stack against the current data."""
        if self.exp is None:
            return []
        return plan(layers, self.exp.data.input_shape, self.exp.data.n_outputs)

    def _rebuild(self) -> None:
        self.problem = None
        self.exp = self.trainer = None
        try:
            self.exp = experiment.build(self.spec, self.base_dir)
            self.trainer = Trainer(self.exp, hist_every=HIST_EVERY)
            self.infos = self.exp.model.infos
        except specmod.SpecError as e:
            self.problem = str(e)
            self.infos = self._plan_without_model()
            self.error.emit(self.problem)
        self._new_history()
        self._set_state("idle")

    def _plan_without_model(self) -> list:
        if "layers" not in self.spec["model"]:
            return []
        try:
            from backprop_lab.engine.data import make_dataset
            d = make_dataset(self.spec["data"], self.base_dir)
            return plan(self.spec["model"]["layers"], d.input_shape, d.n_outputs)
        except specmod.SpecError:
            return []

    def _new_history(self) -> None:
        if self.trainer is None:
            self.history = None
        else:
            steps = experiment.time_steps(self.exp)
            self.history = History.for_probe(self.trainer.probe, time_steps=steps)
        self.history_reset.emit()

    # ------------------------------------------------------------------ controls
    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        """Run (or resume) training."""
        if self._control is not None:
            self._control.resume()
            self._set_state("running")
            return
        self._launch(paused=False)

    def pause(self) -> None:
        if self._control is not None:
            self._control.pause()
            self._set_state("paused")

    def step(self, n: int = 1) -> None:
        if self._control is not None:
            self._control.step(n)
            self._set_state("paused")
        else:
            self._launch(paused=True, steps=n)

    def set_lr(self, lr: float) -> None:
        self.spec["train"]["lr"] = float(lr)
        if self._control is not None:
            self._control.set_lr(lr)
        elif self.trainer is not None:
            self.trainer.set_lr(lr)

    def stop(self, timeout_ms: int = 2000) -> None:
        """Stop the worker and wait for it (prompt: the loop checks between steps)."""
        if self._control is not None:
            self._control.stop()
        if self._thread is not None:
            self._thread.quit()
            self._thread.wait(timeout_ms)
            self._on_thread_done()

    def reset(self) -> None:
        """Stop and start over from freshly drawn weights."""
        self.stop()
        self._rebuild()

    def _launch(self, paused: bool, steps: int | None = None) -> None:
        if self.trainer is None:
            self.error.emit(self.problem or "nothing to train")
            return
        if self.state == "viewing":
            self._new_history()
        self._control = Control()
        if paused:
            self._control.step(steps or 1)
        total = self.spec["train"]["steps"]
        remaining = total - self.trainer.step_index
        n = remaining if remaining > 0 else total
        self._thread = QThread()
        self._worker = TrainingWorker(self.trainer, self._control, n)
        self._worker.history = self.history   # its snapshots belong to this History only
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._worker.snapshots_ready.connect(self._on_snapshots)
        self._worker.finished.connect(self._on_worker_finished)
        self._steps_at_start, self._t_start = self.trainer.step_index, time.perf_counter()
        self._thread.start()
        self._set_state("paused" if paused else "running")

    @Slot(object)
    def _on_snapshots(self, payload) -> None:
        owner, snaps = payload
        if self.history is None or owner is not self.history:
            return   # a stopped worker's last batch, queued before the History was replaced
        self.history.extend(snaps)
        dt = time.perf_counter() - self._t_start
        if dt > 0 and self.trainer is not None:
            self.steps_per_second = (self.trainer.step_index - self._steps_at_start) / dt
        self.history_updated.emit()

    @Slot(str)
    def _on_worker_finished(self, reason: str) -> None:
        sender = self.sender()
        if sender is not None and sender is not self._worker:
            return   # a worker already stopped and replaced: its end is not this run's
        if self._thread is not None:
            self._thread.quit()
            self._thread.wait()
        self._on_thread_done()
        if self.history is not None:
            self.history.stop_reason = reason
        end = RunEnd.parse(reason)
        self._set_state("finished" if end is not None and end.kind in (EndKind.FINISHED, EndKind.NON_FINITE)
                        else "idle")
        self.run_ended.emit(reason)

    def _on_thread_done(self) -> None:
        if self._worker is not None:
            try:
                self._worker.snapshots_ready.disconnect(self._on_snapshots)
                self._worker.finished.disconnect(self._on_worker_finished)
            except (RuntimeError, TypeError):
                pass
            self._worker.deleteLater()
        if self._thread is not None:
            self._thread.deleteLater()
        self._thread = self._worker = self._control = None
        if self.state in ("running", "paused"):
            self._set_state("idle")

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
            self.exp = experiment.build(self.spec, Path(path).parent)
            self.trainer = Trainer(self.exp, hist_every=HIST_EVERY)
            self.infos, self.problem = self.exp.model.infos, None
        except specmod.SpecError as e:  # e.g. the record's data file is gone: still viewable
            self.exp = self.trainer = None
            self.problem = f"the record's spec cannot be rebuilt here: {e}"
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
        self.exp = self.trainer = None
        self.problem = None
        self.spec_name = spec.get("name", "")
        self.history_reset.emit()
        self._set_state(state)

    def layer_activations(self) -> list:
        """The Activation of each activation layer (for the f, f' panel), input side first."""
        if self.exp is not None:
            return [a for _, _, a in self.exp.model.act_layers]
        return [activation_from_name(n) for n in (self.history.act_names if self.history else [])]

    def copy_spec(self) -> dict:
        return copy.deepcopy(self.spec)
