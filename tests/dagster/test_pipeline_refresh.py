"""The main job skips what Dagster reports up to date, and re-runs what a changed source feeds.

``run_pipeline`` in process (the function `make run` calls) on a curation-only config: a local
file source, a reasoning-gym source and a benchmark.
"""

from __future__ import annotations

import io
import json

from dagster_project.pipeline import Console, run_pipeline
from tests.paths import open_data

CURATION = ["raw_problems", "benchmark_problems", "unique_problems", "clean_problems"]


def _run(tmp_path) -> dict[str, str]:
    """Run the curation steps; returns each step's console line by its label."""
    out = io.StringIO()
    assert run_pipeline(CURATION, Console(out, tmp_path / "pipeline.log")) == 0, out.getvalue()
    lines = [line.strip() for line in out.getvalue().splitlines() if line.startswith("  ")]
    return {step: line for line in lines for step in ["raw_problems gsm", "raw_problems gym", *CURATION[1:]]
            if line.startswith(step + " ")}


def test_second_run_skips_fresh_steps_and_a_changed_file_refreshes_its_descendants(tmp_path, r1_home, write_config):
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"q": f"What is {i} plus {i + 7}?", "a": str(2 * i + 7)}) + "\n" for i in range(12)))
    write_config({
        "sources": [
            {"name": "gsm", "kind": "file", "path": str(pool), "problem": "q", "answer": "a"},
            {"name": "gym", "kind": "reasoning_gym", "task": "basic_arithmetic", "size": 8, "seed": 1},
        ],
        "benchmarks": [{"name": "copy", "kind": "file", "path": str(pool), "problem": "q", "answer": "a", "limit": 2}],
    })

    first = _run(tmp_path)
    assert all("up to date" not in line for line in first.values()), first
    with open_data(r1_home) as con:
        assert con.execute("SELECT count(*) FROM clean_problems").fetchone()[0] == 12 + 8 - 2

    # Nothing changed: collection runs (it reads the files), everything after it is fresh.
    second = _run(tmp_path)
    assert "up to date" not in second["raw_problems gsm"]
    assert "up to date" in second["unique_problems"] and "up to date" in second["clean_problems"], second

    # A new row in the file: its digest changes, so dedupe and decontamination run again.
    with pool.open("a") as f:
        f.write(json.dumps({"q": "What is 100 plus 1?", "a": "101"}) + "\n")
    third = _run(tmp_path)
    assert "up to date" not in third["unique_problems"] and "up to date" not in third["clean_problems"], third
    with open_data(r1_home) as con:
        assert con.execute("SELECT count(*) FROM clean_problems").fetchone()[0] == 12 + 8 - 2 + 1
