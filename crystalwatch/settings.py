"""The settings of the Monitor and the callback: one dataclass, checked when made (no model needed).

Every field is documented in docs/callback.md; recipes read their ``crystalwatch_*`` YAML keys from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from crystalwatch.actions import ALERT_STATES
from crystalwatch.errors import CrystalwatchError, check_choice, check_int, check_number, did_you_mean
from crystalwatch.phases import STATES, PhaseConfig
from crystalwatch.scoring.backend import check_settings
from crystalwatch.sinks.base import tracker_names

IMAGES = ("transitions", "all", "none")


def setting(default: Any, help: str) -> Any:
    """A settings field with its one-line help (read by docs/callback.md and the recipes' YAML keys)."""
    return field(default=default, metadata={"help": help})


@dataclass
class CrystalWatchConfig:
    """Settings of the :class:`Monitor` and the callback (all JSON-serialisable; logged to the trackers).

    Each field's ``metadata["help"]`` is its one description: docs/callback.md and the recipes' generated
    ``crystalwatch_*`` YAML keys read it.
    """

    seeds: str | None = setting(None, "seed library file; None: build one from the starting model when the run starts")
    tasks: list[str] | None = setting(
        None, "task ids or YAML paths; None: the library's tasks (all 15 when built here)"
    )
    every_n_steps: int | None = setting(
        None, "measure every N optimizer steps; None: adaptive (budget); 0: begin/end only"
    )
    budget: float = setting(
        0.01, "adaptive cadence: the monitor's whole time (setup, measuring, logging, saves) / training time so far"
    )
    kind: str | None = setting(None, '"chat" | "completion"; None: chat when the tokenizer has a chat template')
    estimator: str = setting("exact", 'a scorer backend: "exact" | "sampled" (crystalwatch.scoring.backend)')
    terminators: str = setting("boundary", '"eot" | "line" | "boundary" (docs/scoring.md)')
    samples: int = setting(200, "generations per prompt for the sampled estimator")
    batch_tokens: int = setting(4096, "tokens per scorer forward (memory vs speed)")
    label: str = setting("", 'stage label stored in every record (e.g. "sft", "dpo")')
    step_offset: int = setting(
        0, "added to the trainer's step in the records: stage 2 of a chain continues stage 1's axis"
    )
    run_name: str | None = setting(None, "default: the tracker run's name, else the output folder's name")
    model: str | None = setting(None, "the model's name in the records; default: the reference it was loaded by")
    trajectory: str | None = setting(None, "default: <output_dir>/crystalwatch/trajectory.jsonl")
    report_to: str | list[str] | None = setting(None, "trackers; None: the Trainer's args.report_to (Monitor: none)")
    alerts: bool = setting(True, "alerts on transitions into alert_states: W&B and trackio alerts, and a log line")
    alert_states: tuple[str, ...] = setting(ALERT_STATES,
                                            "states whose transitions raise a tracker alert ('warning': the early "
                                            "warning)")
    alert_min_interval_s: float = setting(300.0, "seconds between two alerts of the same (task, state)")
    save_on: tuple[str, ...] = setting((), "states whose entry saves a checkpoint (a Trainer checkpoint with the "
                                           "monitor's state; 'warning': the early warning); Monitor: Reading.save")
    stop_on: tuple[str, ...] = setting((), "states whose entry stops training, the reason logged and alerted "
                                           "(Trainer: should_training_stop; Monitor: Reading.stop)")
    images: str = setting(
        "transitions", 'consensus-vs-seed bar charts (W&B native chart, TensorBoard image): "transitions" (a task\'s '
        'first measurement and each transition), "all" (every measurement) or "none"'
    )
    console: bool = setting(True, "one line per transition on the console")
    strict: bool = setting(False, "raise errors instead of reporting them")
    phases: PhaseConfig = field(
        default_factory=PhaseConfig,
        metadata={"help": "thresholds of the phase model (PhaseConfig; docs/phase-model.md)"},
    )

    def __post_init__(self) -> None:
        """Check every setting that needs no model; errors name the setting and say what is allowed."""
        if isinstance(self.phases, dict):
            _known_keys("phases", self.phases, PhaseConfig)
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
        for name in ("alert_states", "save_on", "stop_on"):
            given = getattr(self, name)
            given = [x.strip() for x in given.split(",") if x.strip()] if isinstance(given, str) else given
            setattr(self, name, tuple(check_choice(name, s, (*STATES, "warning")) for s in given))
        tracker_names(self.report_to)  # unknown trackers fail here
        if isinstance(self.images, bool):
            self.images = "all" if self.images else "none"
        check_choice("images", self.images, IMAGES)

    @classmethod
    def from_settings(cls, settings: dict[str, Any], where: str = "CrystalWatchConfig") -> CrystalWatchConfig:
        """A config from keyword settings; an unknown setting is an error that names ``where`` (the class the
        user called) and suggests the closest setting."""
        _known_keys(where, settings, cls)
        return cls(**settings)


def _known_keys(where: str, given: dict[str, Any], cls: type) -> None:
    known = [f.name for f in fields(cls)]
    for key in given:
        if key not in known:
            raise CrystalwatchError(f"{where}: unknown setting {key!r}{did_you_mean(key, known)} "
                                    f"(the settings: {', '.join(known)}; docs/callback.md)")  # fmt: skip
