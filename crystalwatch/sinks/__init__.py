"""Sinks: where measurements go. JSONL and the console always; W&B, TensorBoard, trackio and MLflow when
``report_to`` names them (the protocol and the choice: ``crystalwatch.sinks.base``). Trackers are imported
only when chosen."""
