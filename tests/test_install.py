"""What an install gives: the wheel holds the package and the recipes (from the repository's top-level recipes/),
and the installed command runs them from outside the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).parent.parent


def test_the_package_list_names_every_package_folder():
    """pyproject.toml lists the packages by hand (recipes/ is mapped into crystalwatch.recipes): none forgotten."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "crystalwatch").rglob("__init__.py")}
    recipes = (ROOT / "recipes").rglob("__init__.py")
    folders |= {"crystalwatch." + ".".join(p.parent.relative_to(ROOT).parts) for p in recipes}
    assert set(tool["packages"]) == folders
    assert tool["package-dir"]["crystalwatch.recipes"] == "recipes"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    source = out / "source"  # a copy: setuptools builds in the source tree (build/), which must stay clean
    skip = shutil.ignore_patterns(".venv*", ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "wandb")
    shutil.copytree(ROOT, source, ignore=skip)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                           "-q", "-w", str(out)], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return next(out.glob("crystalwatch-*.whl"))


def test_the_wheel_holds_the_recipes_once(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for path in ("sft.py", "tulu3.py", "rewards/ifeval.py", "configs/smoke/chain.yaml", "configs/olmo2-1b/sft.yaml",
                 "accelerate_configs/zero3.yaml", "data/rlvr_smoke.jsonl"):  # fmt: skip
        assert f"crystalwatch/recipes/{path}" in names, path
    assert "crystalwatch/tasks/builtin/coin_flip.yaml" in names
    assert not [n for n in names if n.startswith("recipes/")]  # one copy: inside the package only


def test_the_installed_command_runs_recipes_outside_the_checkout(wheel, tmp_path):
    """The wheel unpacked on its own (the checkout nowhere on the path): `crystalwatch recipe --help` and the
    shipped configs are there."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("import sys, crystalwatch, crystalwatch.recipes.launch as launch; "
            f"assert crystalwatch.__file__.startswith({str(site)!r}), crystalwatch.__file__; "
            "print(len(launch.config_names())); "
            "from crystalwatch.cli import main; main(['recipe', '--help'])")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(site), "COLUMNS": "120"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert int(done.stdout.split()[0]) >= 12 and "Usage: crystalwatch recipe" in done.stdout


def test_a_recipe_script_runs_from_the_checkout():
    """As TRL's scripts run: `python recipes/sft.py --help` from the repository root."""
    done = subprocess.run([sys.executable, "recipes/sft.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0 and "usage: sft.py" in done.stdout, done.stderr[-2000:]


def test_the_core_install_script_runs_here_too(tmp_path):
    """tests/core_only.py, which .ci/run runs in a venv with no extras, also runs in the full environment."""
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "core_only.py"), str(tmp_path)], capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0 and "core install: " in done.stdout, done.stdout[-2000:] + done.stderr[-3000:]


def test_the_light_modules_import_no_torch():
    """What reads or checks files needs no torch: the settings (checked when made), records, seeds (reading a
    library), the report, the phase model; the scoring package loads torch only with its scorers."""
    code = ("import sys, crystalwatch.settings, crystalwatch.records, crystalwatch.seeds, crystalwatch.report, "
            "crystalwatch.phases, crystalwatch.scoring, crystalwatch.scoring.backend, crystalwatch.actions, "
            "crystalwatch.sinks; "
            "print(sorted({'torch', 'transformers'} & {*sys.modules}))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
