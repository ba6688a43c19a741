"""Shared fixtures: a temp R1_HOME/DAGSTER_HOME per test, configs, and the shared real data."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
# CI clones the project with ../shared beside it; R1_SHARED_DATA overrides.
SHARED_DATA = Path(os.environ.get("R1_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or a clean skip where it is absent."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def r1_home(tmp_path, monkeypatch) -> Path:
    """A fresh R1_HOME and DAGSTER_HOME (with the project's dagster.yaml) for one test."""
    home = tmp_path / "r1home"
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True)
    shutil.copy(REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    monkeypatch.setenv("R1_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    monkeypatch.delenv("R1_CONFIG", raising=False)
    return home


@pytest.fixture
def write_config(tmp_path, monkeypatch):
    """Write a YAML config into the test's temp dir and point R1_CONFIG at it."""

    def _write(config: dict, name: str = "r1.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        monkeypatch.setenv("R1_CONFIG", str(path))
        return path

    return _write


def run_dagster_materialize(select: str, partition: str | None = None, timeout: float = 900) -> str:
    """A real headless Dagster run through the CLI, in a subprocess, with the test's env.

    Partitions are read from R1_CONFIG when definitions load, so a test that writes its own
    config runs Dagster in a fresh process. Returns combined output; raises on failure.
    """
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "dagster_project.definitions", "--select", select]
    if partition is not None:
        cmd += ["--partition", partition]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0 or "RUN_SUCCESS" not in out:
        raise AssertionError(f"dagster materialize {select} {partition or ''} failed (rc={proc.returncode}):\n{out[-6000:]}")
    return out


@pytest.fixture
def dagster_materialize():
    return run_dagster_materialize


def open_data(home: Path):
    """A read-only connection on the tables in ``home`` on the configured backend (``R1_CONFIG``
    storage section), as ``r1_assets.analysis.connect`` gives notebooks."""
    from r1_assets.analysis import connect

    return connect(home)
