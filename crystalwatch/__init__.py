"""crystalwatch: watch a language model crystallize while it is post-trained."""

from crystalwatch.errors import CrystalwatchError
from crystalwatch.measure import Measurement, TaskResult, VariantResult, measure
from crystalwatch.metrics import consensus, diversity, entropy, jsd, normalized_entropy, velocity
from crystalwatch.models import load_model
from crystalwatch.phases import PhaseConfig, PhaseTracker
from crystalwatch.seeds import SeedLibrary, SeedLibraryError, build_seed_library
from crystalwatch.sinks.jsonl import read_trajectory
from crystalwatch.tasks import Task, TaskSpecError, builtin_task_ids, load_task, load_tasks

__version__ = "0.1.0"


def __getattr__(name: str):  # the callback imports transformers: load it only when asked for
    if name in ("CrystalWatchCallback", "CrystalWatchConfig"):
        from crystalwatch import callback

        return getattr(callback, name)
    raise AttributeError(f"module 'crystalwatch' has no attribute {name!r}")


__all__ = [
    "CrystalWatchCallback",
    "CrystalWatchConfig",
    "CrystalwatchError",
    "Measurement",
    "PhaseConfig",
    "PhaseTracker",
    "SeedLibrary",
    "SeedLibraryError",
    "Task",
    "TaskResult",
    "TaskSpecError",
    "VariantResult",
    "__version__",
    "build_seed_library",
    "builtin_task_ids",
    "consensus",
    "diversity",
    "entropy",
    "jsd",
    "load_model",
    "load_task",
    "load_tasks",
    "measure",
    "normalized_entropy",
    "read_trajectory",
    "velocity",
]
