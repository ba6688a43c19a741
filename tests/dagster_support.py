"""Dagster runs for tests (a conftest plugin): in-process against the definitions factory, or the CLI.

``materialize`` builds the definitions from the test's own R1_CONFIG/R1_HOME (see the
``r1_home`` and ``write_config`` fixtures) in this process, so a test that writes a config
needs no subprocess. ``dagster_materialize`` runs the real ``dagster asset materialize`` CLI,
for the tests of the command line itself.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from collections.abc import Sequence

import dagster as dg
import pytest

from dagster_project.definitions import build_definitions

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def dagster_instance(r1_home):
    """The test's Dagster instance (DAGSTER_HOME inside its R1_HOME, with the project's dagster.yaml)."""
    with dg.DagsterInstance.get() as instance:
        yield instance


@pytest.fixture
def materialize(dagster_instance):
    """``materialize(selection, partition=None)``: one in-process run of the current config's definitions."""

    def _materialize(selection: Sequence[str], partition: str | None = None, *, raise_on_error: bool = True,
                     tags: dict | None = None) -> dg.ExecuteInProcessResult:
        defs = build_definitions()
        return dg.materialize(
            [*defs.assets, *defs.asset_checks], selection=list(selection), partition_key=partition,
            instance=dagster_instance, resources=defs.resources, raise_on_error=raise_on_error, tags=tags,
        )

    return _materialize


def run_dagster_materialize(select: str, partition: str | None = None, timeout: float = 900) -> str:
    """A real headless Dagster run through the CLI, in a subprocess, with the test's env.

    Returns combined output; raises on failure.
    """
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
