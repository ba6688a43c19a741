"""The DuckLake backend of Store: DDL derived from sql/schema.sql, commit retries against a
real second writer (a process holding the SQLite catalog's write lock), snapshots and time travel."""

import multiprocessing as mp
import sqlite3

import polars as pl
import pytest

from r1_assets import storage
from r1_assets.config import ConfigError, ExportConfig, StorageConfig, parse_config
from r1_assets.export import export_split
from r1_assets.storage import (
    SQL_DIR,
    Lineage,
    StorageError,
    Store,
    lake_schema_sql,
    primary_keys,
)


def _rows(source: str, n: int, tag: str = "p") -> pl.DataFrame:
    return pl.DataFrame({
        "problem_id": [f"{source}{i:04d}" for i in range(n)], "source": [source] * n, "source_row": list(range(n)),
        "problem": [f"{tag}{i}" for i in range(n)], "answer": ["1"] * n, "source_kind": ["file"] * n,
        "source_ref": ["x"] * n, "metadata": [None] * n, "run_id": ["r"] * n,
    }, schema_overrides={"metadata": pl.Utf8})


def _lake(tmp_path, **kwargs) -> Store:
    return Store(tmp_path, storage=StorageConfig(backend="ducklake"), **kwargs)


def test_lake_ddl_is_schema_sql_without_keys_and_the_keys_drive_append_new():
    schema = (SQL_DIR / "schema.sql").read_text()
    lake = lake_schema_sql(schema)
    assert "PRIMARY KEY" not in lake.upper() and "PRIMARY KEY" in schema
    assert lake.count("CREATE TABLE IF NOT EXISTS") == schema.count("CREATE TABLE IF NOT EXISTS")
    assert "snapshot_id  BIGINT" in lake and "NOT NULL" in lake  # columns and NOT NULL stay
    keys = primary_keys(schema)
    assert keys["raw_problems"] == ["source", "source_row"] and keys["generations"] == ["generation_id"]


def test_lake_tables_match_the_duckdb_file(tmp_path):
    lake, file = _lake(tmp_path / "lake"), Store(tmp_path / "file", storage=StorageConfig(backend="duckdb"))
    for store in (lake, file):
        with store.connect():
            pass
    for table in ("raw_problems", "generations", "lineage", "stage1_sft", "verified_distillations"):
        assert lake.columns(table) == file.columns(table), table


def _hold_catalog_write_lock(path, ready, release):
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("BEGIN IMMEDIATE")  # readers go on; a writer's commit finds "database is locked"
    ready.set()
    release.wait(60)
    con.execute("ROLLBACK")
    con.close()


def _holder(store: Store):
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold_catalog_write_lock, args=(store.catalog, ready, release))
    proc.start()
    assert ready.wait(30)
    return proc, release


def test_a_commit_blocked_by_another_writer_is_retried_and_lands(tmp_path):
    store = _lake(tmp_path)
    store.replace_partition("raw_problems", _rows("a", 3), where={"source": "a"}, lineage=Lineage(run_id="first"))
    proc, release = _holder(store)
    import threading

    threading.Timer(2.0, release.set).start()
    try:
        store.replace_partition("raw_problems", _rows("b", 4), where={"source": "b"}, lineage=Lineage(run_id="waited"))
    finally:
        release.set()
        proc.join(30)
    assert store.count("raw_problems") == 7
    assert store.query("SELECT run_id FROM lineage ORDER BY created_at")["run_id"].to_list() == ["first", "waited"]


def test_a_commit_conflict_that_persists_is_a_bounded_clear_error(tmp_path, monkeypatch):
    store = _lake(tmp_path)
    store.replace_partition("raw_problems", _rows("a", 3), where={"source": "a"}, lineage=Lineage(run_id="first"))
    monkeypatch.setattr(storage, "COMMIT_ATTEMPTS", 3)
    proc, release = _holder(store)
    try:
        with pytest.raises(StorageError, match="still conflicts with other writers after 3 attempts.*nothing of this write"):
            store.replace_partition("raw_problems", _rows("a", 9), where={"source": "a"}, lineage=Lineage(run_id="lost"))
        assert store.count("raw_problems") == 3  # reads were never blocked
    finally:
        release.set()
        proc.join(30)
    assert store.query("SELECT run_id FROM lineage")["run_id"].to_list() == ["first"]


def test_every_write_is_a_snapshot_that_can_be_read_and_exported_later(tmp_path):
    store = _lake(tmp_path)
    store.replace_partition("raw_problems", _rows("a", 3, "old"), where={"source": "a"}, lineage=Lineage(run_id="r1"))
    split = pl.DataFrame({"problem_id": ["a0000"], "generation_id": ["g"], "source": ["a"],
                          "messages": ['[{"role": "user", "content": "old0"}]'], "pass_rate": [0.5],
                          "difficulty_band": ["[0.5,0.75)"], "teacher_model": ["t"], "n_tokens": [3], "n_samples": [1],
                          "n_correct": [1], "n_wrong": [0], "run_id": ["split-1"]})
    store.replace_partition("stage1_sft", split, where=None, lineage=Lineage(run_id="split-1"))
    built = store.scalar("SELECT snapshot_id FROM lineage WHERE table_name = 'stage1_sft'")
    # Later runs change the inputs and the split.
    store.replace_partition("raw_problems", _rows("a", 5, "new"), where={"source": "a"}, lineage=Lineage(run_id="r2"))
    store.replace_partition("stage1_sft", split.with_columns(run_id=pl.lit("split-2"), pass_rate=pl.lit(0.9)),
                            where=None, lineage=Lineage(run_id="split-2"))
    assert store.count("raw_problems") == 5
    then = store.at_snapshot(built)
    assert then.query("SELECT problem FROM raw_problems ORDER BY source_row")["problem"].to_list() == ["old0", "old1", "old2"]
    # The split's inputs as of when it was built, through the same row_lineage query.
    from r1_assets.analysis import run_named_query

    trail = run_named_query("row_lineage", {"problem_id": "a0000"}, store=then)
    assert '"problem":"old0"' in "".join(trail["row"].to_list())
    with pytest.raises(StorageError, match="read-only"):
        then.replace_partition("raw_problems", _rows("a", 1), where={"source": "a"}, lineage=Lineage(run_id="x"))
    # Exported exactly as of that snapshot.
    result = export_split(then, "stage1_sft", ExportConfig(formats=["jsonl"]), run_id="export-then")
    assert '"pass_rate":0.5' in (result.path / "stage1_sft.jsonl").read_text()
    assert result.manifest["split_run_id"] == "split-1"


def test_a_postgres_password_in_the_config_is_refused():
    raw = {"sources": [{"name": "s", "kind": "reasoning_gym", "task": "chain_sum"}],
           "storage": {"backend": "ducklake", "catalog": "postgres:dbname=r1 host=127.0.0.1 password=hunter2"}}
    with pytest.raises(ConfigError, match="storage: catalog: do not put the password .*PGPASSWORD") as err:
        parse_config(raw, ".")
    assert "hunter2" not in str(err.value)


def test_migrate_copies_a_duckdb_file_into_a_lake_and_checks_counts(tmp_path):
    from r1_assets.storage import main, migrate

    file = Store(tmp_path, storage=StorageConfig(backend="duckdb"))
    file.replace_partition("raw_problems", _rows("a", 7), where={"source": "a"}, lineage=Lineage(run_id="r"))
    file.replace_partition("raw_problems", _rows("b", 2), where={"source": "b"}, lineage=Lineage(run_id="r"))
    lake = _lake(tmp_path)
    counts = migrate(file.path, lake)
    assert counts["raw_problems"] == 9 and counts["lineage"] == 2 and counts["generations"] == 0
    assert lake.query("SELECT source, count(*) AS n FROM raw_problems GROUP BY 1 ORDER BY 1").rows() == [("a", 7), ("b", 2)]
    assert migrate(file.path, lake)["raw_problems"] == 9  # rerunnable: replaces, never doubles
    with pytest.raises(SystemExit, match="no DuckDB file"):
        main(["migrate", str(tmp_path / "missing.duckdb")])


def test_maintain_compacts_and_keeps_the_snapshots_that_built_splits(tmp_path):
    from r1_assets.storage import maintain

    store = _lake(tmp_path)
    for i in range(5):
        store.replace_partition("raw_problems", _rows("a", 3 + i), where={"source": "a"}, lineage=Lineage(run_id=f"r{i}"))
    split = pl.DataFrame({"problem_id": ["a0000"], "generation_id": ["g"], "source": ["a"], "messages": ["[]"],
                          "pass_rate": [0.5], "difficulty_band": ["b"], "teacher_model": ["t"], "n_tokens": [3],
                          "n_samples": [1], "n_correct": [1], "n_wrong": [0], "run_id": ["s"]})
    store.replace_partition("stage1_sft", split, where=None, lineage=Lineage(run_id="s"))
    built = store.scalar("SELECT snapshot_id FROM lineage WHERE table_name = 'stage1_sft'")
    before = store.scalar("SELECT count(*) FROM r1.snapshots()")
    done = maintain(store, keep_days=0)
    assert done["kept_split_snapshots"] == [built] and done["expired_snapshots"] > 0
    assert done["snapshots_left"] < before
    assert store.count("raw_problems") == 7
    assert store.at_snapshot(built).count("stage1_sft") == 1  # a split's snapshot still reads
