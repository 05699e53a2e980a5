"""CrystalWatchCallback: measure the model's phases during a transformers / TRL training run.

Add it to any ``transformers.Trainer`` (TRL's SFT, DPO, GRPO, ... trainers included)::

    trainer = SFTTrainer(..., callbacks=[CrystalWatchCallback(seeds="gemma.seeds.json.gz", every_n_steps=50)])

It measures at train begin (the starting model, step 0), then periodically, and at train end. By
default the cadence is adaptive: it measures as often as a time budget allows (measuring takes at most
``budget`` = 2% of the training time between measurements); ``every_n_steps=N`` fixes it instead.
Each measurement compares each task's distributions with the seed library, tracks phases, and goes to
the JSONL trajectory (always, in ``output_dir``), to the console (one line per transition) and to the
active W&B run. It never breaks training: errors are reported once and counted (``strict=True``
raises), the model's train mode and the tokenizer are restored, and its state is saved with every
checkpoint so that a resumed run continues the same trajectory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from crystalwatch.errors import CrystalwatchError, check_choice, check_int, check_number, did_you_mean
from crystalwatch.files import write_atomic
from crystalwatch.measure import Plan, check_settings, eval_mode, plan, run
from crystalwatch.models import display_name
from crystalwatch.phases import STATES, PhaseConfig, PhaseTracker
from crystalwatch.seeds import SeedLibrary, build_seed_library
from crystalwatch.sinks.jsonl import TrajectoryWriter, read_trajectory
from crystalwatch.tasks import load_tasks
from crystalwatch.trajectory import observe, resume_run

logger = logging.getLogger("crystalwatch")
STATE_FILE = "crystalwatch_state.json"
_TOKENIZER_ATTRS = ("padding_side", "truncation_side", "chat_template", "pad_token", "model_max_length")


@dataclass
class CrystalWatchConfig:
    """Settings of :class:`CrystalWatchCallback` (all JSON-serialisable; logged to the W&B run config)."""

    seeds: str | None = None  # seed library file; None: build one from the starting model at train begin
    tasks: list[str] | None = None  # task ids or YAML paths; None: the library's tasks (all 15 when built here)
    every_n_steps: int | None = None  # measure every N optimizer steps; None: adaptive (budget); 0: begin/end only
    budget: float = 0.02  # adaptive cadence: measuring time / training time between measurements
    kind: str | None = None  # "chat" | "completion"; None: chat when the tokenizer has a chat template
    estimator: str = "exact"  # "exact" | "sampled"
    terminators: str = "boundary"  # "eot" | "line" | "boundary" (docs/scoring.md)
    samples: int = 200  # generations per prompt for the sampled estimator
    batch_tokens: int = 4096  # tokens per scorer forward (memory vs speed)
    label: str = ""  # stage label stored in every record (e.g. "sft", "dpo")
    step_offset: int = 0  # added to the trainer's step in the records: stage 2 of a chain continues stage 1's axis
    run_name: str | None = None  # default: the W&B run name, else the output_dir's name
    model: str | None = None  # the model's name in the records; default: the reference it was loaded by
    trajectory: str | None = None  # default: <output_dir>/crystalwatch/trajectory.jsonl
    wandb: bool = True  # log to the active W&B run, if any
    alerts: bool = True  # wandb.alert on transitions into alert_states
    alert_states: tuple[str, ...] = ("nucleated", "foreign")
    alert_min_interval_s: float = 300.0
    images: bool = True  # consensus-vs-seed bar images in W&B
    console: bool = True  # one line per transition on the console
    strict: bool = False  # raise errors instead of reporting them
    phases: PhaseConfig = field(default_factory=PhaseConfig)

    def __post_init__(self) -> None:
        """Check every setting that needs no model; errors name the setting and say what is allowed."""
        if isinstance(self.phases, dict):
            known = [f.name for f in fields(PhaseConfig)]
            for key in self.phases:
                if key not in known:
                    raise CrystalwatchError(f"phases: unknown setting {key!r}{did_you_mean(key, known)}; "
                                            f"PhaseConfig has {', '.join(known)}")  # fmt: skip
            self.phases = PhaseConfig(**self.phases)
        if not isinstance(self.phases, PhaseConfig):
            raise CrystalwatchError(f"phases must be a PhaseConfig or a dict of its fields, got {self.phases!r}")
        if isinstance(self.tasks, str):
            self.tasks = [t.strip() for t in self.tasks.split(",") if t.strip()]
        if self.tasks is not None and not self.tasks:
            raise CrystalwatchError("tasks is empty: name task ids or YAML paths, or pass None for the library's")
        if self.every_n_steps is not None:
            check_int("every_n_steps", self.every_n_steps, 0)
        check_number("budget", self.budget, 0, 1, open_low=True, open_high=True)
        check_settings(kind=self.kind, estimator=self.estimator, terminators=self.terminators,
                       samples=self.samples, batch_tokens=self.batch_tokens)  # fmt: skip
        check_int("step_offset", self.step_offset, 0)
        check_number("alert_min_interval_s", self.alert_min_interval_s, 0, float("inf"))
        self.alert_states = tuple(check_choice("alert_states", s, STATES) for s in self.alert_states)


@contextlib.contextmanager
def restored(model: Any, tokenizer: Any) -> Iterator[None]:
    """Whatever happens inside, give back the model's train mode (``eval_mode``) and the tokenizer's settings."""
    saved = {a: getattr(tokenizer, a) for a in _TOKENIZER_ATTRS if hasattr(tokenizer, a)}
    try:
        with eval_mode(model):
            yield
    finally:
        for attr, value in saved.items():
            if getattr(tokenizer, attr, None) != value:
                setattr(tokenizer, attr, value)


def _tokenizer_of(processing_class: Any) -> Any:
    return getattr(processing_class, "tokenizer", None) or processing_class


class CrystalWatchCallback(TrainerCallback):
    """Live phase monitoring; see the module docstring and docs/callback.md."""

    def __init__(self, seeds: str | Path | SeedLibrary | None = None, *, config: CrystalWatchConfig | None = None,
                 clock: Callable[[], float] = time.perf_counter, **settings: Any) -> None:  # fmt: skip
        if isinstance(seeds, SeedLibrary):
            self.library: SeedLibrary | None = seeds
            settings.setdefault("seeds", seeds.provenance.get("path"))
        else:
            self.library = None
            if seeds is not None:
                settings["seeds"] = str(seeds)
        if config is None:
            known = [f.name for f in fields(CrystalWatchConfig)]
            for key in settings:
                if key not in known:
                    raise CrystalwatchError(f"CrystalWatchCallback: unknown setting {key!r}{did_you_mean(key, known)}"
                                            " (docs/callback.md lists them)")  # fmt: skip
        self.config = config or CrystalWatchConfig(**settings)
        # Everything that needs no model is checked now, before training starts: tasks, library, their match.
        if self.library is None and self.config.seeds:
            self.library = SeedLibrary.load(self.config.seeds)
        self._tasks = load_tasks(self.config.tasks or (list(self.library.tasks) if self.library else None))
        if self.library is not None:
            self.library.check(self._tasks)
        self._clock = clock  # seconds; the adaptive cadence's only source of time (a test passes a fake one)
        self.tracker = PhaseTracker(self.config.phases)
        self.errors = 0
        self.index = 0
        self.last_step: int | None = None
        self.records_written = 0
        self.seconds = 0.0  # wall time spent measuring, writing and logging in this process
        self._plan: Plan | None = None
        self._tokenizer: Any = None
        self._writer: TrajectoryWriter | None = None
        self._sink: Any = None
        self._main = True
        self._run_name = ""
        self._model_name = ""
        self._reported = False
        self._step_started: float | None = None
        self._train_seconds = 0.0  # optimizer-step time since the last measurement (adaptive cadence)
        self._measure_seconds = 0.0  # how long the last measurement took

    # --- transformers hooks -----------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, processing_class: Any = None,
                       **kwargs: Any) -> None:  # fmt: skip
        with self._guard("setting up"):
            self._setup(args, state, model, processing_class)
        if state.global_step != self.last_step:  # a resumed run already measured its checkpoint's step
            self._measure(state.global_step, model)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._step_started = self._clock()

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if self._step_started is not None:
            self._train_seconds += self._clock() - self._step_started
            self._step_started = None
        if state.global_step != self.last_step and self._due(state.global_step):
            self._measure(state.global_step, model)

    def _due(self, step: int) -> bool:
        """Fixed cadence, or adaptive: measure once the training time since the last measurement is large
        enough that the last measurement's cost is within ``budget`` of it. With several processes the main
        process decides and broadcasts, so that every rank measures at the same step."""
        n = self.config.every_n_steps
        if n is not None:
            return n > 0 and step % n == 0
        from crystalwatch.distributed import broadcast

        due = self._measure_seconds <= self.config.budget * self._train_seconds
        return bool(broadcast(due))

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if state.global_step != self.last_step:
            self._measure(state.global_step, model)
        if self._sink is not None:
            with self._guard("finishing the W&B log"):
                self._sink.finish()

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self._main or self._plan is None:
            return
        with self._guard("saving the callback state"):
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                write_atomic(folder / STATE_FILE, json.dumps(self.state_dict()))

    # --- state ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Trajectory position, tracker (hysteresis counters, last consensus) and error count."""
        return {"index": self.index, "last_step": self.last_step, "records_written": self.records_written,
                "errors": self.errors, "tracker": self.tracker.state_dict(), "run": self._run_name}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.index, self.last_step = state["index"], state["last_step"]
        self.records_written, self.errors = state["records_written"], state["errors"]
        self.tracker = PhaseTracker.from_state_dict(state["tracker"])
        self._run_name = state.get("run") or self._run_name

    # --- internals --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Report an error once with its traceback (then one line each), count it, and carry on."""
        try:
            yield
        except Exception as err:
            self.errors += 1
            if self.config.strict:
                raise
            if not self._reported:
                logger.warning("crystalwatch: error while %s (training continues; strict=True raises):\n%s",
                               what, traceback.format_exc())  # fmt: skip
                self._reported = True
            else:
                logger.warning("crystalwatch: error while %s: %s: %s", what, type(err).__name__, err)

    def _setup(self, args: Any, state: Any, model: Any, processing_class: Any) -> None:
        from crystalwatch.distributed import context

        cfg = self.config
        rank, _ = context()
        self._main = rank == 0
        self._tokenizer = _tokenizer_of(processing_class)
        if self._tokenizer is None or model is None:
            raise ValueError("the Trainer passed no model or processing_class to the callback")
        self._model_name = cfg.model or display_name(str(getattr(getattr(model, "config", None), "_name_or_path", "")))
        out = Path(args.output_dir) / "crystalwatch"
        with restored(model, self._tokenizer):
            self._plan = plan(self._tokenizer, self._tasks, kind=cfg.kind, terminators=cfg.terminators)
            if self.library is None:
                self.library = self._build_library(model, out)
            else:
                self.library.check([], self._tokenizer)  # the tasks were checked at construction
        self._run_name = cfg.run_name or self._run_name or _wandb_run_name() or Path(args.output_dir).name
        path = Path(cfg.trajectory) if cfg.trajectory else out / "trajectory.jsonl"
        self._writer = TrajectoryWriter(path) if self._main else None
        if state.global_step > 0:
            self._resume(args, state, path)
        elif self._main and path.is_file():
            self._continue(path)
        if self._main and cfg.wandb:
            self._start_wandb()
        if self._main and cfg.console:
            n = sum(len(r) for r in self._plan.requests.values())
            cadence = f"every {cfg.every_n_steps} steps" if cfg.every_n_steps else "at begin and end only"
            if cfg.every_n_steps is None:
                cadence = f"adaptively (measuring <= {cfg.budget:.0%} of training time)"
            logger.warning("crystalwatch: %d tasks, %d %s prompts, measured %s -> %s", len(self._plan.tasks), n,
                           self._plan.kind, cadence, path)  # fmt: skip

    def _build_library(self, model: Any, out: Path) -> SeedLibrary:
        logger.warning("crystalwatch: no seed library given: building one from the starting model (its own base)")
        library = build_seed_library(model, self._tokenizer, self._plan.tasks if self._plan else None,
                                     model_name=self._model_name or "starting model",
                                     terminators=self.config.terminators)  # fmt: skip
        if self._main:
            library.save(out / "seeds.json.gz")
            library.provenance["path"] = str(out / "seeds.json.gz")
            self.config.seeds = str(out / "seeds.json.gz")
        return library

    def _resume(self, args: Any, state: Any, path: Path) -> None:
        """Restore the state saved with the checkpoint and drop records written after it (an abandoned future)."""
        candidates = [Path(args.output_dir) / f"checkpoint-{state.global_step}"]
        if getattr(args, "resume_from_checkpoint", None):
            candidates.insert(0, Path(args.resume_from_checkpoint))
        saved = next((c / STATE_FILE for c in candidates if (c / STATE_FILE).is_file()), None)
        if saved is None:
            logger.warning("crystalwatch: resuming at step %d without a saved callback state: a new trajectory "
                           "segment starts here", state.global_step)  # fmt: skip
            return
        self.load_state_dict(json.loads(saved.read_text()))
        if self._main and path.is_file():
            keep = path.read_text(encoding="utf-8").splitlines(keepends=True)[: self.records_written]
            write_atomic(path, "".join(keep))

    def _continue(self, path: Path) -> None:
        """A new stage writing into an existing trajectory of the same run: replay its records so that the
        index, the tracker's states and hysteresis, and velocity continue where the last stage ended."""
        so_far = resume_run(path, self._run_name, self.tracker)
        self.records_written = so_far.records
        if so_far.last_step is not None:
            self.index = so_far.next_index
            if so_far.last_step == self.config.step_offset:  # that step is measured already (the last stage's end)
                self.last_step = 0
            logger.warning("crystalwatch: continuing run %r of %s after step %d", self._run_name, path,
                           so_far.last_step)  # fmt: skip

    def _start_wandb(self) -> None:
        from crystalwatch.sinks.wandb import WandbSink

        cfg = self.config
        sink = WandbSink(alerts=cfg.alerts, alert_states=cfg.alert_states,
                         alert_min_interval_s=cfg.alert_min_interval_s, images=cfg.images)  # fmt: skip
        if not sink.active:
            return
        with self._guard("starting the W&B log"):
            lib = self.library
            sink.start(asdict(cfg), lib.provenance.get("path") if lib else None, lib.digest if lib else None)
            self._sink = sink

    def _measure(self, step: int, model: Any) -> None:
        """Measure, then write and log; the whole cost counts against the adaptive cadence's budget."""
        if self._plan is None or self.library is None or model is None:
            return
        start = self._clock()
        records = self._observe(step, model)
        if records and self._main:
            self._emit(records, step, self._clock() - start)
        self._measure_seconds = self._clock() - start
        self._train_seconds = 0.0
        self.seconds += self._measure_seconds

    def _observe(self, step: int, model: Any) -> list[dict[str, Any]]:
        from crystalwatch.distributed import score_all

        assert self._plan is not None and self.library is not None
        records: list[dict[str, Any]] = []
        with self._guard(f"measuring at step {step}"):
            cfg = self.config
            with restored(model, self._tokenizer):
                m = run(model, self._tokenizer, self._plan, estimator=cfg.estimator,  # type: ignore[arg-type]
                        samples=cfg.samples, batch_tokens=cfg.batch_tokens, model_name=self._model_name,
                        scorer=score_all)  # fmt: skip
            records = observe(m, self.library, self.tracker, step=step + cfg.step_offset, index=self.index,
                              run=self._run_name, label=cfg.label, model=self._model_name)  # fmt: skip
            self.index += 1
            self.last_step = step
        return records

    def _emit(self, records: list[dict[str, Any]], step: int, seconds: float) -> None:
        """Main process only: the trajectory first (so W&B trouble loses nothing), then console and W&B."""
        with self._guard("writing the trajectory"):
            assert self._writer is not None
            self._writer.write(records)
            self.records_written += len(records)
        if self.config.console:
            _print_transitions(records)
        if self._sink is not None:
            with self._guard("logging to W&B"):
                self._sink.log(records, step, extra={"errors": float(self.errors), "measure_seconds": seconds})


def _print_transitions(records: list[dict[str, Any]]) -> None:
    from crystalwatch.sinks.console import print_events

    print_events(records)


def _wandb_run_name() -> str:
    try:
        import wandb

        return wandb.run.name if wandb.run is not None else ""
    except Exception:  # wandb missing or broken: no name
        return ""


def trajectory_of(output_dir: str | Path) -> list[dict[str, Any]]:
    """The records the callback wrote for a run in ``output_dir`` (default trajectory path)."""
    return read_trajectory(Path(output_dir) / "crystalwatch" / "trajectory.jsonl")
