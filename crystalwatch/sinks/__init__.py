"""Sinks: where measurements go (JSONL trajectory files; W&B and the console come with the callback)."""

from crystalwatch.sinks.jsonl import SCHEMA, TrajectoryError, TrajectoryWriter, read_trajectory

__all__ = ["SCHEMA", "TrajectoryError", "TrajectoryWriter", "read_trajectory"]
