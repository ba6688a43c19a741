"""raw_problems through real Dagster runs: the CLI, the shared pools, idempotent re-runs."""

import re
import subprocess
import sys

import dagster as dg
import duckdb

from tests.conftest import REPO_ROOT

POOLS = {
    "gsm8k_train": ("pools/gsm8k_train.jsonl", "question", "answer", 7473),
    "dapo": ("pools/dapo_math_17k.parquet", "prompt[0].content", "reward_model.ground_truth", 17917),
    "math_train": ("pools/math_train.json", "problem", "answer", 7470),
}


def _pools_config(shared_data):
    return {"sources": [{"name": n, "kind": "file", "path": str(shared_data / p), "problem": q, "answer": a}
                        for n, (p, q, a, _) in POOLS.items()]}


def _db(r1_home):
    return duckdb.connect(str(r1_home / "r1.duckdb"), read_only=True)


def test_cli_materializes_each_shared_pool_partition(shared_data, r1_home, write_config, dagster_materialize):
    write_config(_pools_config(shared_data))
    run_ids = {}
    for name in POOLS:
        out = dagster_materialize("raw_problems", partition=name)
        run_ids[name] = re.search(r"- ([0-9a-f-]{36}) - .*RUN_SUCCESS", out).group(1)
    with _db(r1_home) as con:
        counts = dict(con.execute("SELECT source, count(*) FROM raw_problems GROUP BY source").fetchall())
        assert counts == {n: spec[3] for n, spec in POOLS.items()}
        lineage = con.execute("SELECT partition, run_id, row_count FROM lineage WHERE table_name='raw_problems' ORDER BY created_at").fetchall()
        assert lineage == [(f"source={n}", run_ids[n], POOLS[n][3]) for n in POOLS]
        rejected = con.execute("SELECT source, reason, count(*) FROM rejected_rows GROUP BY ALL").fetchall()
        assert rejected == [("math_train", "missing_answer", 4)]
        # every row carries the run that wrote it
        assert con.execute("SELECT count(*) FROM raw_problems r JOIN lineage l USING (run_id)").fetchone()[0] == sum(s[3] for s in POOLS.values())


def test_rematerializing_a_partition_replaces_it_without_duplicates(shared_data, r1_home, write_config, dagster_materialize):
    write_config(_pools_config(shared_data))
    dagster_materialize("raw_problems", partition="math_train")
    dagster_materialize("raw_problems", partition="gsm8k_train")
    with _db(r1_home) as con:
        first = con.execute("SELECT problem_id, source_row, problem, answer FROM raw_problems WHERE source='math_train' ORDER BY source_row").fetchall()
    dagster_materialize("raw_problems", partition="math_train")
    with _db(r1_home) as con:
        again = con.execute("SELECT problem_id, source_row, problem, answer FROM raw_problems WHERE source='math_train' ORDER BY source_row").fetchall()
        assert again == first and len(first) == 7470
        assert con.execute("SELECT count(*) FROM raw_problems WHERE source='gsm8k_train'").fetchone()[0] == 7473
        assert con.execute("SELECT count(*) FROM rejected_rows").fetchone()[0] == 4
        assert con.execute("SELECT count(DISTINCT run_id) FROM lineage WHERE partition='source=math_train'").fetchone()[0] == 2


def test_in_process_materialization_reports_metadata(r1_home):
    # The packaged embedded default (reasoning-gym), materialized in process.
    from dagster_project.definitions import all_assets, resources

    result = dg.materialize(all_assets, selection=["raw_problems"], partition_key="chain_sum",
                            resources=resources, instance=dg.DagsterInstance.get())
    assert result.success
    (mat,) = result.asset_materializations_for_node("raw_problems")
    meta = mat.metadata
    assert meta["dagster/row_count"].value == 30  # chain_sum's size in embedded_default.yaml
    assert [c.name for c in meta["dagster/column_schema"].schema.columns][:5] == ["problem_id", "source", "source_row", "problem", "answer"]
    assert "| problem_id |" in meta["preview"].value
    assert meta["rows_rejected"].value == 0


def test_bad_rows_in_a_dagster_run_go_to_rejected_rows(tmp_path, r1_home, write_config, dagster_materialize):
    path = tmp_path / "broken.jsonl"
    path.write_bytes(b'{"problem": "1+1?", "answer": "2"}\n{broken\n{"problem": "", "answer": "3"}\n\xff\xfe\n{"problem": "2+2?", "answer": "4"}\n')
    write_config({"sources": [{"name": "broken", "kind": "file", "path": str(path)}]})
    dagster_materialize("raw_problems", partition="broken")
    with _db(r1_home) as con:
        assert con.execute("SELECT problem FROM raw_problems ORDER BY source_row").fetchall() == [("1+1?",), ("2+2?",)]
        assert con.execute("SELECT source_row, reason FROM rejected_rows ORDER BY source_row").fetchall() == [
            (1, "invalid_json"), (2, "empty_problem"), (3, "invalid_utf8")]


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
