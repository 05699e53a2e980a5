"""CrystalWatchCallback: the :class:`~crystalwatch.monitor.Monitor` inside a transformers / TRL training run.

Add it to any ``transformers.Trainer`` (TRL's SFT, DPO, GRPO, ... trainers included)::

    trainer = SFTTrainer(..., callbacks=[CrystalWatchCallback(seeds="gemma.seeds.json.gz", every_n_steps=50)])

It turns Trainer events into Monitor calls: train begin -> ``start`` (measures the starting model, or
resumes the checkpoint's state), each optimizer step -> ``step`` with the step's time (a reading that asks to
save or stop, by ``save_on``, ``stop_on`` or ``on_transition``, sets ``control.should_save`` /
``control.should_training_stop`` on every rank), each log -> ``log`` (the records keep the trainer's own signals,
loss, reward, entropy, DPO margins, beside the readings), save -> the monitor's state into ``checkpoint-N/``, the last
step (or train end) -> ``close``, before the Trainer's tracker callbacks end their runs. The trackers follow
``args.report_to`` (W&B, TensorBoard, trackio, MLflow; JSONL and console always). Settings: docs/callback.md.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from crystalwatch.actions import Transition
from crystalwatch.monitor import STATE_FILE, Monitor
from crystalwatch.records import Record, read_trajectory, run_files
from crystalwatch.seeds import SeedLibrary
from crystalwatch.settings import CrystalWatchConfig

logger = logging.getLogger("crystalwatch")

__all__ = ["STATE_FILE", "CrystalWatchCallback", "CrystalWatchConfig", "trajectory_of"]


class CrystalWatchCallback(TrainerCallback):
    """Live phase monitoring in a Trainer; see the module docstring and docs/callback.md."""

    def __init__(self, seeds: str | Path | SeedLibrary | None = None, *, config: CrystalWatchConfig | None = None,
                 on_transition: Callable[[Transition], Any] | None = None,
                 clock: Callable[[], float] = time.perf_counter, **settings: Any) -> None:  # fmt: skip
        if config is None:  # built here, so that a bad setting's error names this class
            config, settings = CrystalWatchConfig.from_settings(settings, where=type(self).__name__), {}
        self.monitor = Monitor(seeds, config=config, on_transition=on_transition, clock=clock, **settings)
        self._clock = clock
        self._step_started: float | None = None

    @property
    def config(self) -> CrystalWatchConfig:
        return self.monitor.config

    def __getattr__(self, name: str) -> Any:  # errors, index, seconds, library, tracker: the monitor's
        if name == "monitor":
            raise AttributeError(name)
        return getattr(self.monitor, name)

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, processing_class: Any = None,
                       **kwargs: Any) -> None:  # fmt: skip
        saved = _saved_state(args, state.global_step) if state.global_step > 0 else None
        self.monitor.start(model, processing_class, step=state.global_step, output_dir=args.output_dir,
                           report_to=args.report_to, run_name=_tracker_run_name(args), state=saved,
                           total_steps=state.max_steps)  # fmt: skip

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._step_started = self._clock()

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        seconds = 0.0 if self._step_started is None else self._clock() - self._step_started
        self._step_started = None
        reading = self.monitor.step(model, state.global_step, seconds=seconds)
        if reading.save:  # a normal Trainer checkpoint, at this step, with the monitor's state (on_save)
            control.should_save = True
        if reading.stop:
            control.should_training_stop = True
        if state.global_step >= state.max_steps or control.should_training_stop:
            # The last step: measure and close now, before the Trainer's own tracker callbacks end their runs
            # in on_train_end (they come first in the callback list).
            self.monitor.close(model, state.global_step)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if logs:
            self.monitor.log(logs)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            self.monitor.save_state(folder, STATE_FILE)

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        self.monitor.close(model, state.global_step)


def _saved_state(args: Any, step: int) -> dict[str, Any] | None:
    """The monitor state saved with the checkpoint a run resumes from (None: there is none)."""
    folders = [Path(args.output_dir) / f"checkpoint-{step}"]
    if isinstance(getattr(args, "resume_from_checkpoint", None), str):
        folders.insert(0, Path(args.resume_from_checkpoint))
    for folder in folders:
        if (folder / STATE_FILE).is_file():
            return json.loads((folder / STATE_FILE).read_text())
    return None


def _tracker_run_name(args: Any) -> str | None:
    """The name of the tracker run the Trainer started (W&B's, else ``args.run_name``)."""
    wandb = sys.modules.get("wandb")  # never imported here: without it there is no W&B run
    run = getattr(wandb, "run", None)
    if run is not None and not getattr(run, "disabled", False):
        return run.name
    name = getattr(args, "run_name", None)
    return None if not name or name == args.output_dir else name


def trajectory_of(output_dir: str | Path) -> list[Record]:
    """The records the callback wrote for a run in ``output_dir`` (default trajectory path)."""
    return read_trajectory(run_files(output_dir)[1])
