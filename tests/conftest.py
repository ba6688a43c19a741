"""Shared fixtures: a temp R1_HOME/DAGSTER_HOME per test, configs, and the shared real data.

Tiers: ``tests/unit`` (the plain library), ``tests/dagster`` (in-process Dagster runs against
the definitions factory), ``tests/integration`` (CLI, real model, servers, browser, daemon).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.paths import REPO_ROOT, SHARED_DATA

# Fixture plugins: Dagster runs (in-process and CLI), the real small model / vLLM server, and
# the split-stage world.
pytest_plugins = ["tests.dagster_support", "tests.model_support", "tests.splits_world"]

# The slowest files, slowest first (a clean-clone run on 2 cores, 2026-12-02: 130-400 s each).
# `make test` hands files to two xdist workers in collection order (--no-loadscope-reorder:
# xdist would otherwise start the files with the most tests first, and these one- to
# four-test files last), so starting these first keeps one worker from finishing the suite
# alone on a long file at the end.
SLOWEST_FIRST = [
    "tests/integration/test_reliability.py",
    "tests/integration/test_ui.py",
    "tests/integration/test_ray_cluster.py",
    "tests/integration/test_model_stages.py",
    "tests/integration/test_cli.py",
    "tests/unit/test_decontamination_labels.py",
    "tests/integration/test_engines.py",
    "tests/integration/test_pipeline.py",
    "tests/integration/test_served_vllm.py",
    "tests/integration/test_lake_concurrency.py",
    "tests/integration/test_batch_engine.py",
]


def pytest_collection_modifyitems(config, items):
    rank = {path: i for i, path in enumerate(SLOWEST_FIRST)}
    # Stable: within a file, and among the other files, the order stays as collected.
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))



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
