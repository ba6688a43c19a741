"""The command line as users and scripts call it: validation, the workspace, the contract command."""

import subprocess
import sys

from tests.dagster.test_collection import _db, _pools_config
from tests.paths import REPO_ROOT


def test_bad_config_fails_with_a_message_naming_source_and_key(r1_home, write_config):
    write_config({"sources": [{"name": "dapo", "kind": "file", "path": "x.parquet", "problme": "prompt"}]})
    proc = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-m", "dagster_project.definitions"],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert proc.returncode != 0
    assert "sources 'dapo': unknown key 'problme'" in proc.stdout + proc.stderr


def test_workspace_validates(r1_home):
    proc = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "All code locations passed validation" in proc.stdout + proc.stderr


def test_contract_command_collects_dedupes_and_decontaminates(shared_data, r1_home, write_config, dagster_materialize):
    """`--select '+clean_problems'` on a fresh R1_HOME runs collection too, then skips it when current."""
    config = _pools_config(shared_data)
    config["sources"] = [dict(s, limit=2000) for s in config["sources"] if s["name"] in ("dapo", "math_train")]
    config["benchmarks"] = [{"name": "math500", "kind": "file", "path": str(shared_data / "benchmarks/math500.jsonl")}]
    write_config(config)
    dagster_materialize("+clean_problems")
    with _db(r1_home) as con:
        raw = dict(con.execute("SELECT source, count(*) FROM raw_problems GROUP BY source").fetchall())
        assert raw == {"dapo": 2000, "math_train": 2000 - 2}  # two of math_train's first 2000 lack an answer
        unique = con.execute("SELECT count(*) FROM unique_problems").fetchone()[0]
        clean = con.execute("SELECT count(*) FROM clean_problems").fetchone()[0]
        hits = con.execute("SELECT count(DISTINCT problem_id) FROM contamination WHERE benchmark='math500'").fetchone()[0]
        assert 0 < clean < unique <= sum(raw.values())
        assert hits > 0 and clean == unique - hits
    # Up to date: a second run dedupes again but does not collect again.
    dagster_materialize("+clean_problems")
    with _db(r1_home) as con:
        collections = con.execute("SELECT count(*) FROM lineage WHERE table_name='raw_problems'").fetchone()[0]
        assert collections == 2
