"""A ladder of checkpoints (base -> SFT -> DPO -> RLVR) measured in order, through the same Monitor as training."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from crystalwatch.monitor import Monitor
from crystalwatch.phases import PhaseConfig
from crystalwatch.records import Record, TrajectoryError
from crystalwatch.seeds import SeedLibrary
from crystalwatch.trajectory import check_ladder


def measure_ladder(
    models: Sequence[str],
    library: SeedLibrary,
    out: str | Path,
    *,
    labels: Sequence[str] | None = None,
    steps: Sequence[int] | None = None,
    tasks: Sequence[Any] | None = None,
    kind: str | None = None,
    run: str = "",
    config: PhaseConfig | None = None,
    dtype: str = "float32",
    device: str = "cpu",
    on_measured: Callable[[str, list[Record]], None] | None = None,
    **settings: Any,
) -> list[Record]:
    """Measure checkpoints in order, track their phases, append each one's records to ``out`` as it finishes.

    ``kind`` fixes the prompt family for every checkpoint (default: each model's own, i.e. chat when it
    has a chat template), so pass ``kind="chat"`` to compare a base with its post-trained versions on the
    same prompts. If ``out`` already holds records of ``run``, the ladder continues that run: its index,
    its phase history and, unless ``steps`` are given, its steps. ``settings`` are Monitor settings
    (estimator, terminators, samples, batch_tokens).
    """
    from crystalwatch.models import load_model

    check_ladder(models, labels, steps)
    out = Path(out)
    labels = list(labels) if labels is not None else [""] * len(models)
    monitor = Monitor(library, tasks=[t if isinstance(t, str) else t.source for t in tasks] if tasks else None,
                      kind=kind, run_name=run or out.stem, trajectory=str(out), phases=config or PhaseConfig(),
                      console=False, report_to="none", strict=True, **settings)  # fmt: skip
    records: list[Record] = []
    for i, (ref, label) in enumerate(zip(models, labels)):
        model, tokenizer = load_model(ref, dtype=dtype, device=device)
        if i == 0:
            monitor.start(model, tokenizer, output_dir=out.parent, measure=False)
            steps = _steps(monitor, library, out, steps, len(models))
        new = monitor.measure(model, steps[i], tokenizer=tokenizer, label=label, model_name=ref)
        records.extend(new)
        if on_measured is not None:
            on_measured(ref, new)
        del model
    monitor.close()
    return records


def _steps(monitor: Monitor, library: SeedLibrary, out: Path, steps: Sequence[int] | None, n: int) -> list[int]:
    """The ladder's steps: as given, or 0, 1, 2, ...; after the run's last step when it continues a run."""
    so_far = monitor.resumed
    if so_far is None or so_far.last_step is None:
        return list(steps) if steps is not None else list(range(n))
    run = monitor.run_name
    if so_far.library and library.digest and so_far.library != library.digest:
        raise TrajectoryError(f"{out}: run '{run}' was measured against seed library {so_far.library}, not "
                              f"{library.digest}; continue it with that library, or give this ladder another "
                              "run name")  # fmt: skip
    if steps is not None and min(steps) <= so_far.last_step:
        raise TrajectoryError(f"{out}: run '{run}' already ends at step {so_far.last_step}; continue it with steps "
                              f"after {so_far.last_step}, or give this ladder another run name")  # fmt: skip
    return list(steps) if steps is not None else [so_far.last_step + 1 + i for i in range(n)]
