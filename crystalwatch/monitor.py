"""The Monitor: crystalwatch's engine, for any training loop (no ``transformers`` import).

It holds the tasks, the seed library, the phase tracker, the sinks, the cadence and the error policy::

    monitor = Monitor("base.seeds.json.gz", report_to="tensorboard")
    monitor.start(model, tokenizer, output_dir="out")   # set up; measures the starting model (step 0)
    for step, batch in enumerate(loader, 1):
        loss = model(**batch).loss
        loss.backward(); optimizer.step(); optimizer.zero_grad()
        monitor.log({"loss": loss.item()})      # optional: the records keep it beside the readings
        monitor.step(model, step)               # counts training time; measures when due
    monitor.close(model, step)                  # the final measurement; flushes and closes the sinks

A measurement flows one way: the scorer backend (``measure.run``) -> metrics and the seed comparison
(``trajectory.observe``) -> the :class:`~crystalwatch.phases.PhaseTracker` -> :class:`~crystalwatch.records.Record`
-> every sink. Its helpers: ``cadence.Cadence`` (when to measure; its own time against training time),
``guard.Guard`` (errors are reported, never raised unless strict; ranks agree on every stage), the JSONL sink
(the trajectory file: append, count, cut back on resume, replay to continue a run). With several processes every
rank measures in lockstep and the main process decides the adaptive cadence and writes. See docs/distributed.md.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from crystalwatch.actions import Actions, Reading, Transition
from crystalwatch.cadence import Cadence
from crystalwatch.errors import CrystalwatchError
from crystalwatch.files import write_atomic
from crystalwatch.guard import Guard
from crystalwatch.measure import Plan, plan, restored, run
from crystalwatch.models import display_name
from crystalwatch.phases import PhaseTracker
from crystalwatch.records import Record, json_safe, number, run_files
from crystalwatch.scoring.sharded import broadcast, check_engine, context, lockstep
from crystalwatch.seeds import SeedLibrary, load_or_build
from crystalwatch.settings import CrystalWatchConfig
from crystalwatch.sinks import default_sinks
from crystalwatch.sinks.base import RunInfo, Sink
from crystalwatch.sinks.jsonl import JsonlSink, RunSoFar
from crystalwatch.tasks import load_tasks
from crystalwatch.trajectory import observe

logger = logging.getLogger("crystalwatch")


def _own_time(method: Callable[..., Any]) -> Callable[..., Any]:
    """Count a Monitor method's wall time as the monitor's own (``Cadence.own``), never as training time."""

    @functools.wraps(method)
    def timed(self: Monitor, *args: Any, **kwargs: Any) -> Any:
        with self.cadence.own():
            return method(self, *args, **kwargs)

    return timed


STATE_FILE = "crystalwatch_state.json"  # the monitor's state in a checkpoint folder (resume continues the run)
# The training loop's signals a record keeps (``Monitor.log``): TRL's SFT, DPO and GRPO logs, and any loop's loss.
TRAINER_SIGNALS = ("loss", "grad_norm", "entropy", "mean_token_accuracy", "rewards/margins", "rewards/accuracies",
                   "rewards/chosen", "rewards/rejected", "reward", "reward_std", "frac_reward_zero_std", "kl",
                   "completions/mean_length")  # fmt: skip


class Monitor:
    """Measures a model's phases during training; see the module docstring and docs/architecture.md."""

    def __init__(self, seeds: str | Path | SeedLibrary | None = None, *, config: CrystalWatchConfig | None = None,
                 sinks: Sequence[Sink] | None = None, on_transition: Callable[[Transition], Any] | None = None,
                 clock: Callable[[], float] = time.perf_counter, **settings: Any) -> None:  # fmt: skip
        made = clock()
        where = type(self).__name__
        self.config, self.library, self.tasks, self._deferred = _configured(seeds, config, settings, where)
        self.tracker = PhaseTracker(self.config.phases)
        self.sinks: list[Sink] = list(sinks) if sinks is not None else []
        self._explicit_sinks = sinks is not None
        self.cadence = Cadence(clock, self.config.every_n_steps, self.config.budget)
        self.cadence.seconds = clock() - made  # loading the library and the tasks is the monitor's own time too
        self.guard = Guard(self.config.strict)
        cfg = self.config
        self.actions = Actions(cfg.save_on, cfg.stop_on, on_transition, cfg.alert_states if cfg.alerts else (),
                               cfg.alert_min_interval_s, guard=self.guard)  # fmt: skip
        self.index = 0  # the next measurement's index in the run
        self.last_step: int | None = None  # the last step measured (trainer steps, without step_offset)
        self.active = False  # set up and measuring
        self.main = True
        self.run_name = ""
        self.model_name = ""
        self.trajectory: Path | None = None
        self.resumed: RunSoFar | None = None  # what the trajectory held for this run when it was continued
        self._plan: Plan | None = None
        self._tokenizer: Any = None
        self._closed = False
        self._logged: dict[str, tuple[float, int]] = {}  # per signal since the last measurement: (sum, count)

    # -- the loop ---------------------------------------------------------------------------------------------
    @_own_time
    def start(self, model: Any, tokenizer: Any, *, step: int = 0, output_dir: str | Path = ".",
              report_to: str | Sequence[str] | None = None, run_name: str | None = None,
              state: dict[str, Any] | None = None, measure: bool = True,
              total_steps: int | None = None) -> bool:  # fmt: skip
        """Set up for a run and (``measure=True``) measure ``step`` unless it is measured already.

        ``total_steps`` (the run's last step, when known) lets the adaptive cadence front-load its measurements
        (``cadence.py``).
        ``state`` is a :meth:`state_dict` saved with the checkpoint the run resumes from: the trajectory is
        cut back to it. ``report_to`` names the trackers (the config's ``report_to`` wins when set). Every
        rank must call it; returns whether measuring is on (off when setup failed on any rank).
        """
        rank, _ = context()
        self.main = rank == 0
        self._closed = False
        self.cadence.new_run(step, total_steps)  # a new run: its training time counts from the end of this call
        out = Path(output_dir)
        # Each stage ends with every rank agreeing (one collective), so a failure on one rank turns measuring
        # off everywhere instead of leaving the others waiting in a collective it never joins.
        self.active = self.guard.agreed("setting up", lambda: self._setup(model, tokenizer, out, run_name))
        if self.active and self.library is None:
            path = run_files(out)[0]
            exists = bool(broadcast(path.is_file()))  # the main process decides: load it, or all ranks build
            with lockstep():
                self.active = self.guard.agreed("building the seed library",
                                                lambda: self._library_for(model, path, exists))  # fmt: skip
        if self.active:
            if self.main and not self._explicit_sinks:
                with self.guard("choosing the sinks"):  # a tracker that fails to start never stops the run
                    self.sinks = default_sinks(self.trajectory, self.config, report_to)
                if not self.sinks:  # the trajectory at least
                    with self.guard("opening the trajectory"):
                        self.sinks = [JsonlSink(self.trajectory)]
            with self.guard("finding the run's position in its trajectory"):
                self._position(step, state)
            self.index, self.last_step = broadcast((self.index, self.last_step))  # every rank decides alike
            if self.main:
                self._start_sinks(out)
        if self.active and measure and step != self.last_step:
            self.measure(model, step)
        return self.active

    @_own_time
    def step(self, model: Any, step: int, *, seconds: float | None = None) -> Reading:
        """Count ``seconds`` of training (default: the time since the monitor last returned) and measure
        ``step`` if it is due: every ``every_n_steps``, or adaptively within the time ``budget``. Returns the
        measurement's :class:`~crystalwatch.actions.Reading` (empty when nothing was measured)."""
        self.cadence.trained(seconds)
        if self.active and step != self.last_step and self._due(step):
            return self.measure(model, step)
        return Reading()

    def log(self, values: dict[str, Any]) -> None:
        """Keep the training loop's own signals (the ``TRAINER_SIGNALS`` keys of ``values``, e.g. a Trainer's logs):
        each measurement's records carry their means since the measurement before (``Record.trainer``), so that
        the readings can be read beside them."""
        for key in TRAINER_SIGNALS:
            value = number(values.get(key))
            if value is not None:
                total, count = self._logged.get(key, (0.0, 0))
                self._logged[key] = (total + value, count + 1)

    def _due(self, step: int) -> bool:
        """``Cadence.due``; the adaptive decision is the main process's, broadcast (ranks' clocks disagree)."""
        due = self.cadence.due(step, self.last_step)
        return due if self.cadence.fixed else bool(broadcast(due))

    @property
    def seconds(self) -> float:
        """The monitor's own wall time in this process: setup, measuring, logging, saves, close."""
        return self.cadence.seconds

    @property
    def train_seconds(self) -> float:
        """Training time counted by :meth:`step` (the time between the monitor's calls)."""
        return self.cadence.train_seconds

    @_own_time
    def measure(self, model: Any, step: int, *, tokenizer: Any = None, label: str | None = None,
                model_name: str | None = None) -> Reading:  # fmt: skip
        """Measure now, write to every sink, and return the :class:`~crystalwatch.actions.Reading`: the records
        (one per task; none after an error), their transitions, and whether to save or stop (every rank alike).

        ``tokenizer`` (a checkpoint with another tokenizer), ``label`` and ``model_name`` apply to this
        measurement only; a ladder of checkpoints passes them for each one.
        """
        if not self.active or self._plan is None or self.library is None:
            return Reading()
        clock = self.cadence.clock
        start = clock()
        records: list[Record] = []

        def work() -> None:
            nonlocal records
            if tokenizer is not None and tokenizer is not self._tokenizer:
                self._prepare(tokenizer)
            cfg = self.config
            assert self._plan is not None and self.library is not None
            with restored(model, self._tokenizer):
                m = run(model, self._tokenizer, self._plan, estimator=cfg.estimator, samples=cfg.samples,
                        batch_tokens=cfg.batch_tokens, model_name=model_name or self.model_name)  # fmt: skip
            records = observe(m, self.library, self.tracker, step=step + cfg.step_offset, index=self.index,
                              run=self.run_name, label=cfg.label if label is None else label,
                              model=model_name or self.model_name)  # fmt: skip

        with lockstep():
            ok = self.guard.agreed(f"measuring at step {step}", work)
        reading = Reading()
        if ok:
            self.index += 1
            self.last_step = step
            reading = self._decided(records)
            if self.main:
                self._emit(reading, step, clock() - start)  # trackers: the trainer's own step axis
        elif context()[1] > 1:  # the ranks agreed: measuring is off on every rank for the rest of the run
            self.active = False
        self.cadence.measure_seconds = clock() - start
        return reading

    def _decided(self, records: list[Record]) -> Reading:
        """The main process decides the alerts and actions; every rank gets its save, stop and reasons."""
        reading = Reading(records)
        if self.main:
            with self.guard("deciding on the measurement's transitions"):
                reading = self.actions.decide(records)
        reading.save, reading.stop, reading.reasons = broadcast((reading.save, reading.stop, reading.reasons))
        return reading

    @_own_time
    def close(self, model: Any = None, step: int | None = None) -> None:
        """Measure ``step`` if a model is given and it is not measured yet, then close every sink (once)."""
        if model is not None and step is not None and self.active and step != self.last_step:
            self.measure(model, step)
        if self._closed:
            return
        self._closed = True
        for sink in self.sinks:
            with self.guard(f"closing the {sink.name} sink"):
                sink.close()

    # -- state for checkpoints --------------------------------------------------------------------------------
    @property
    def errors(self) -> int:
        """Errors reported (not raised) so far."""
        return self.guard.errors

    def state_dict(self) -> dict[str, Any]:
        """Trajectory position (the records the file holds), tracker (hysteresis counters, last consensus) and
        error count."""
        journal = self._journal()
        return {"index": self.index, "last_step": self.last_step, "records_written": journal.count if journal else 0,
                "errors": self.errors, "tracker": self.tracker.state_dict(), "run": self.run_name}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (the trajectory file is cut back to it when the monitor starts)."""
        self.index, self.last_step, self.guard.errors = state["index"], state["last_step"], state["errors"]
        self.tracker = PhaseTracker.from_state_dict(state["tracker"])
        self.run_name = state.get("run") or self.run_name

    @_own_time
    def save_state(self, folder: str | Path, name: str = STATE_FILE) -> None:
        """Write :meth:`state_dict` into a checkpoint folder (main process; all or nothing)."""
        if self.main and self.active:
            with self.guard("saving the monitor state"):
                write_atomic(Path(folder) / name, json.dumps(self.state_dict()))

    # -- internals --------------------------------------------------------------------------------------------
    def _prepare(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        cfg = self.config
        self._plan = plan(tokenizer, self.tasks, kind=cfg.kind, terminators=cfg.terminators)
        if self.library is not None and self.library.provenance.get("tokenizer_hash"):
            self.library.check([], tokenizer)  # the tasks were checked when the monitor was made

    def _setup(self, model: Any, tokenizer: Any, output_dir: Path, run_name: str | None) -> None:
        """Everything local (no collective): checks, names, the tokenised plan, the trajectory path."""
        cfg = self.config
        if self._deferred is not None:
            raise self._deferred
        check_engine(model, cfg.estimator)  # FSDP v1, sampling sharded weights: refused here, on every rank alike
        self._tokenizer = getattr(tokenizer, "tokenizer", None) or tokenizer  # a processor: its tokenizer
        if self._tokenizer is None or model is None:
            raise CrystalwatchError("the monitor needs the model and its tokenizer: give the Trainer "
                                    "processing_class=tokenizer (Monitor.start: model and tokenizer)")  # fmt: skip
        self.model_name = cfg.model or display_name(str(getattr(getattr(model, "config", None), "_name_or_path", "")))
        self._prepare(self._tokenizer)
        self.run_name = cfg.run_name or run_name or self.run_name or output_dir.resolve().name
        self.trajectory = Path(cfg.trajectory) if cfg.trajectory else run_files(output_dir)[1]

    def _library_for(self, model: Any, path: Path, exists: bool) -> None:
        """No library given: the one an earlier start saved, or one built from the starting model (every rank
        scores, in lockstep; the main process saves it)."""
        if not exists:
            logger.warning("crystalwatch: no seed library given: building one from the starting model")
        with restored(model, self._tokenizer):
            self.library = load_or_build(path if (exists or self.main) else None, model, self._tokenizer, self.tasks,
                                         model_name=self.model_name or "starting model",
                                         terminators=self.config.terminators)  # fmt: skip
        self.config.seeds = self.library.provenance.get("path")

    def _journal(self) -> JsonlSink | None:
        """The sink that owns the trajectory file (main process; None when the sinks given have none)."""
        return next((s for s in self.sinks if isinstance(s, JsonlSink)), None)

    def _position(self, step: int, state: dict[str, Any] | None) -> None:
        """Where the run stands: a checkpoint's saved state (the file is cut back to it), a new segment, or a run
        the trajectory continues (its records are replayed: index, states, hysteresis and velocity go on)."""
        journal = self._journal()
        if state is not None:
            self.load_state_dict(state)
            if journal is not None:
                journal.cut_back(state["records_written"])
            return
        if journal is None:
            return
        so_far = self.resumed = journal.replay(self.run_name, self.tracker if step == 0 else None)
        if step > 0:
            logger.warning("crystalwatch: starting at step %d without a saved monitor state: a new trajectory "
                           "segment starts here", step)  # fmt: skip
        elif so_far.last_step is not None:
            self.index = so_far.next_index
            if so_far.last_step == self.config.step_offset:  # that step is measured already (the last stage's end)
                self.last_step = 0
            logger.warning("crystalwatch: continuing run %r of %s after step %d", self.run_name, journal.path,
                           so_far.last_step)  # fmt: skip

    def _start_sinks(self, output_dir: Path) -> None:
        cfg = self.config
        assert self.trajectory is not None and self._plan is not None and self.library is not None
        lib = self.library
        info = RunInfo(self.run_name, output_dir, json_safe(asdict(cfg)), lib.provenance.get("path"),
                       lib.digest or None, lib.provenance.get("model"), cfg.label, self.trajectory)  # fmt: skip
        for sink in self.sinks:
            with self.guard(f"starting the {sink.name} sink"):
                sink.start(info)
        if cfg.console:
            prompts = sum(len(r) for r in self._plan.requests.values())
            logger.warning("crystalwatch: %d tasks, %d %s prompts, measured %s -> %s (%s)", len(self._plan.tasks),
                           prompts, self._plan.kind, self.cadence, self.trajectory,
                           ", ".join(s.name for s in self.sinks))  # fmt: skip

    def _emit(self, reading: Reading, step: int, seconds: float) -> None:
        """Main process only: every sink in order, the trajectory first (so tracker trouble loses nothing)."""
        extra = {"errors": float(self.errors), "measure_seconds": seconds}
        signals = {key: total / count for key, (total, count) in self._logged.items()}
        self._logged = {}
        for r in reading:
            r.trainer = signals
        for sink in self.sinks:
            with self.guard(f"writing to the {sink.name} sink"):
                sink.write(reading, step, extra)


def _configured(
    seeds: str | Path | SeedLibrary | None, config: CrystalWatchConfig | None, settings: dict[str, Any], where: str
) -> tuple[CrystalWatchConfig, SeedLibrary | None, list[Any], CrystalwatchError | None]:
    """The settings, library and tasks a monitor is made with, all checked before training starts (the tasks,
    the library, their match). Under a multi-process launch a file may be missing on one node only: that error
    is returned (deferred), to be raised in ``start()`` where the ranks agree, so that no rank trains on alone
    and the others do not crash."""
    if config is not None and settings:
        raise CrystalwatchError(f"{where}: give config= or settings ({', '.join(settings)}), not both")
    config = config or CrystalWatchConfig.from_settings(settings, where=where)
    library = seeds if isinstance(seeds, SeedLibrary) else None
    if library is not None:
        config = replace(config, seeds=config.seeds or library.provenance.get("path"))
    elif seeds is not None:
        config = replace(config, seeds=str(seeds))
    tasks: list[Any] = []
    try:
        if library is None and config.seeds:
            library = SeedLibrary.load(config.seeds)
        tasks = load_tasks(config.tasks or (list(library.tasks) if library else None))
        if library is not None:
            library.check(tasks)
    except CrystalwatchError as err:
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            raise
        return config, library, tasks, err
    return config, library, tasks, None
