"""raw_problems through real Dagster runs: the CLI, the shared pools, idempotent re-runs."""



from r1_assets.config import load_config
from tests.paths import open_data

POOLS = {
    "gsm8k_train": ("pools/gsm8k_train.jsonl", "question", "answer", 7473),
    "dapo": ("pools/dapo_math_17k.parquet", "prompt[0].content", "reward_model.ground_truth", 17917),
    "math_train": ("pools/math_train.json", "problem", "answer", 7470),
}


def _pools_config(shared_data):
    return {"sources": [{"name": n, "kind": "file", "path": str(shared_data / p), "problem": q, "answer": a}
                        for n, (p, q, a, _) in POOLS.items()]}


def _db(r1_home):
    return open_data(r1_home)


def test_each_shared_pool_partition_materializes_with_lineage(shared_data, r1_home, write_config, materialize):
    write_config(_pools_config(shared_data))
    run_ids = {}
    for name in POOLS:
        run_ids[name] = materialize(["raw_problems"], name).run_id
    with _db(r1_home) as con:
        counts = dict(con.execute("SELECT source, count(*) FROM raw_problems GROUP BY source").fetchall())
        assert counts == {n: spec[3] for n, spec in POOLS.items()}
        lineage = con.execute("SELECT partition, run_id, row_count FROM lineage WHERE table_name='raw_problems' ORDER BY created_at").fetchall()
        assert lineage == [(f"source={n}", run_ids[n], POOLS[n][3]) for n in POOLS]
        rejected = con.execute("SELECT source, reason, count(*) FROM rejected_rows GROUP BY ALL").fetchall()
        assert rejected == [("math_train", "missing_answer", 4)]
        # every row carries the run that wrote it
        assert con.execute("SELECT count(*) FROM raw_problems r JOIN lineage l USING (run_id)").fetchone()[0] == sum(s[3] for s in POOLS.values())


def test_rematerializing_a_partition_replaces_it_without_duplicates(shared_data, r1_home, write_config, materialize):
    write_config(_pools_config(shared_data))
    materialize(["raw_problems"], "math_train")
    materialize(["raw_problems"], "gsm8k_train")
    with _db(r1_home) as con:
        first = con.execute("SELECT problem_id, source_row, problem, answer FROM raw_problems WHERE source='math_train' ORDER BY source_row").fetchall()
    materialize(["raw_problems"], "math_train")
    with _db(r1_home) as con:
        again = con.execute("SELECT problem_id, source_row, problem, answer FROM raw_problems WHERE source='math_train' ORDER BY source_row").fetchall()
        assert again == first and len(first) == 7470
        assert con.execute("SELECT count(*) FROM raw_problems WHERE source='gsm8k_train'").fetchone()[0] == 7473
        assert con.execute("SELECT count(*) FROM rejected_rows").fetchone()[0] == 4
        assert con.execute("SELECT count(DISTINCT run_id) FROM lineage WHERE partition='source=math_train'").fetchone()[0] == 2


def test_in_process_materialization_reports_metadata(r1_home, materialize):
    # The packaged embedded default (reasoning-gym), materialized in process.
    result = materialize(["raw_problems"], "chain_sum")
    (mat,) = result.asset_materializations_for_node("raw_problems")
    meta = mat.metadata
    assert meta["dagster/row_count"].value == load_config().source("chain_sum").size  # the packaged default's
    assert [c.name for c in meta["dagster/column_schema"].schema.columns][:5] == ["problem_id", "source", "source_row", "problem", "answer"]
    assert "| problem_id |" in meta["preview"].value
    assert meta["rows_rejected"].value == 0


def test_bad_rows_in_a_dagster_run_go_to_rejected_rows(tmp_path, r1_home, write_config, materialize):
    path = tmp_path / "broken.jsonl"
    path.write_bytes(b'{"problem": "1+1?", "answer": "2"}\n{broken\n{"problem": "", "answer": "3"}\n\xff\xfe\n{"problem": "2+2?", "answer": "4"}\n')
    write_config({"sources": [{"name": "broken", "kind": "file", "path": str(path)}]})
    materialize(["raw_problems"], "broken")
    with _db(r1_home) as con:
        assert con.execute("SELECT problem FROM raw_problems ORDER BY source_row").fetchall() == [("1+1?",), ("2+2?",)]
        assert con.execute("SELECT source_row, reason FROM rejected_rows ORDER BY source_row").fetchall() == [
            (1, "invalid_json"), (2, "empty_problem"), (3, "invalid_utf8")]






