"""The MLflow sink: ``crystal/*`` metrics at the global step, the settings as parameters, the trajectory as
an artifact at the end.

The Trainer's MLflow callback starts the run (``report_to="mlflow"``); in a loop of your own, start one
with ``mlflow.start_run`` first, or the sink starts one named after the crystalwatch run and ends it when
closed. The tracking URI is MLflow's own (``$MLFLOW_TRACKING_URI``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow

from crystalwatch.sinks.base import RunInfo
from crystalwatch.sinks.scalars import Scalars

if TYPE_CHECKING:  # the type of what write() receives; nothing of it runs here
    from crystalwatch.actions import Reading

PARAM_LIMIT = 500  # MLflow parameter values are short strings


class MLflowSink:
    """Logs every measurement's scalars to the active MLflow run; see the module docstring."""

    name = "mlflow"

    def __init__(self, **_: Any) -> None:
        self._owned = False
        self._scalars = Scalars()
        self._trajectory: Path | None = None

    def start(self, run: RunInfo) -> None:
        if mlflow.active_run() is None:
            mlflow.start_run(run_name=run.name)
            self._owned = True
        self._trajectory = run.trajectory
        params = {f"crystalwatch.{k}": str(v)[:PARAM_LIMIT] for k, v in run.config.items() if v not in (None, "")}
        params["crystalwatch.seed_library_digest"] = str(run.library_digest)
        mlflow.log_params(params)

    def write(self, reading: Reading, step: int, extra: dict[str, float]) -> None:
        if mlflow.active_run() is None:  # the run ended (its owner closed it): log_metrics would start a stray one
            return
        mlflow.log_metrics({k: float(v) for k, v in self._scalars(reading, extra).items()}, step=int(step))

    def close(self) -> None:
        if mlflow.active_run() is not None and self._trajectory is not None and self._trajectory.is_file():
            mlflow.log_artifact(str(self._trajectory), artifact_path="crystalwatch")
        if self._owned:
            mlflow.end_run()
            self._owned = False
