"""Run by .ci/run in the core-only venv after each ``pip install -e ".[EXTRA]"``, the extras in ``ORDER``: the
extra just installed gives what it names (its tracker's sink starts; ``[trl]``: a recipe trains), and each extra
not installed yet is still refused in one line that names it.

    python tests/extras.py EXTRA FOLDER
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from core_only import cli, one_line_error  # noqa: E402

from crystalwatch.errors import CrystalwatchError  # noqa: E402
from crystalwatch.sinks.base import TRACKERS, tracker_sink  # noqa: E402

ORDER = ("wandb", "tensorboard", "mlflow", "trackio", "trl")


def main(extra: str, folder: str) -> None:
    have = ORDER[: ORDER.index(extra) + 1]
    for name in TRACKERS:
        if name in have:
            assert tracker_sink(name).name == name
            continue
        try:
            tracker_sink(name)
            raise AssertionError(f"report_to {name} without its package was not refused")
        except CrystalwatchError as err:
            assert f"pip install 'crystalwatch[{name}]'" in str(err), err
    if "trl" in have:
        os.chdir(folder)  # the smoke config writes out/smoke/... under the working directory
        done = cli("recipe", "sft", "--config", "smoke", "--max_steps", "2", "--report_to", "none")
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        assert (Path(folder) / "out" / "smoke" / "sft" / "crystalwatch" / "trajectory.jsonl").is_file()
    else:
        one_line_error(cli("recipe", "sft", "--config", "smoke"), "crystalwatch[trl]")
    print(f"[{extra}] on the core install: {', '.join(have)} work, the rest refused in one line: ok")


if __name__ == "__main__":
    main(*sys.argv[1:])
