"""The store on both backends: idempotent partition writes, lineage, lock handling, clear errors."""

import json
import multiprocessing as mp
import os
from datetime import datetime

import duckdb
import polars as pl
import pytest

from r1_assets.config import StorageConfig
from r1_assets.storage import Lineage, Store, StorageError, quote_ident, redact

BACKENDS = pytest.mark.parametrize("backend", ["duckdb", "ducklake"])


def _rows(source: str, n: int) -> pl.DataFrame:
    return pl.DataFrame({
        "problem_id": [f"{source}{i:04d}" for i in range(n)], "source": [source] * n, "source_row": list(range(n)),
        "problem": [f"p{i}" for i in range(n)], "answer": ["1"] * n, "source_kind": ["file"] * n,
        "source_ref": ["x"] * n, "metadata": [None] * n, "run_id": ["r"] * n,
    }, schema_overrides={"metadata": pl.Utf8})


@BACKENDS
def test_replace_partition_is_idempotent_and_records_lineage(tmp_path, backend):
    store = Store(tmp_path, storage=StorageConfig(backend=backend))
    for run in ("run-1", "run-2"):
        store.replace_partition("raw_problems", _rows("a", 5), where={"source": "a"},
                                lineage=Lineage(run_id=run, params={"k": 1}, inputs=[{"table": "f", "row_count": 5}]))
    store.replace_partition("raw_problems", _rows("b", 3), where={"source": "b"}, lineage=Lineage(run_id="run-3"))
    assert store.count("raw_problems") == 8
    assert store.count("raw_problems", {"source": "a"}) == 5
    lineage = store.query("SELECT * FROM lineage ORDER BY created_at")
    assert lineage["run_id"].to_list() == ["run-1", "run-2", "run-3"]
    assert lineage["partition"].to_list() == ["source=a", "source=a", "source=b"]
    assert json.loads(lineage["inputs"][0]) == [{"row_count": 5, "table": "f"}]
    assert lineage["row_count"].to_list() == [5, 5, 3]
    if backend == "ducklake":  # each write's lineage row names the snapshot it committed
        snapshots = lineage["snapshot_id"].to_list()
        assert snapshots == sorted(snapshots) and len(set(snapshots)) == 3
        assert store.at_snapshot(snapshots[0]).count("raw_problems") == 5
    else:
        assert lineage["snapshot_id"].to_list() == [None] * 3


@BACKENDS
def test_failed_write_leaves_previous_partition_intact(tmp_path, backend):
    store = Store(tmp_path, storage=StorageConfig(backend=backend))
    store.replace_partition("raw_problems", _rows("a", 5), where={"source": "a"}, lineage=Lineage(run_id="ok"))
    broken = _rows("a", 2).with_columns(pl.lit(None, pl.Utf8).alias("problem"))  # violates NOT NULL
    with pytest.raises(duckdb.Error):
        store.replace_partition("raw_problems", broken, where={"source": "a"}, lineage=Lineage(run_id="bad"))
    assert store.count("raw_problems", {"source": "a"}) == 5
    assert store.query("SELECT run_id FROM lineage")["run_id"].to_list() == ["ok"]


@BACKENDS
def test_append_new_never_duplicates(tmp_path, backend):
    store = Store(tmp_path, storage=StorageConfig(backend=backend))
    gen = pl.DataFrame({"generation_id": ["g1", "g2"], "purpose": ["pass_rate"] * 2, "problem_id": ["p"] * 2,
                        "model": ["m"] * 2, "params_hash": ["h"] * 2, "params": ["{}"] * 2, "sample_idx": [0, 1],
                        "prompt": ["q"] * 2, "text": ["a", "b"], "run_id": ["r"] * 2,
                        "created_at": [datetime(2026, 1, 1)] * 2})
    assert store.append_new("generations", gen) == 2
    assert store.append_new("generations", gen) == 0
    assert store.count("generations") == 2
    new = gen.head(1).with_columns(generation_id=pl.lit("g3"))
    assert store.append_new("generations", pl.concat([gen, new, new])) == 1  # a repeated key lands once
    assert store.count("generations") == 3


def _hold_lock(path, ready, release):
    con = duckdb.connect(path)
    ready.set()
    release.wait(20)
    con.close()


def test_writer_waits_for_another_process_lock(tmp_path):
    store = Store(tmp_path, lock_timeout_s=30, storage=StorageConfig(backend="duckdb"))
    with store.connect():
        pass
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(store.path), ready, release))
    holder.start()
    ready.wait(20)
    import threading
    threading.Timer(1.5, release.set).start()
    store.replace_partition("raw_problems", _rows("a", 1), where={"source": "a"}, lineage=Lineage(run_id="waited"))
    holder.join(10)
    assert store.count("raw_problems") == 1


def test_lock_held_too_long_is_a_clear_error(tmp_path):
    store = Store(tmp_path, lock_timeout_s=0.5, storage=StorageConfig(backend="duckdb"))
    with store.connect():
        pass
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(store.path), ready, release))
    holder.start()
    ready.wait(20)
    try:
        with pytest.raises(StorageError, match="cannot open .*r1.duckdb"):
            store.count("raw_problems")
    finally:
        release.set()
        holder.join(10)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_home_is_a_clear_error(tmp_path):
    home = tmp_path / "ro"
    home.mkdir()
    home.chmod(0o555)
    with pytest.raises(StorageError, match="not writable"):
        Store(home).replace_partition("raw_problems", _rows("a", 1), where={"source": "a"}, lineage=Lineage(run_id="x"))


def test_identifiers_are_quoted_and_checked():
    assert quote_ident("raw_problems") == '"raw_problems"'
    for bad in ['x"; DROP TABLE lineage; --', "a b", ""]:
        with pytest.raises(ValueError):
            quote_ident(bad)


def test_redact_hides_secret_keys_at_any_depth():
    params = {"model": "m", "api_key": "sk-123", "nested": [{"hf_token": "hf_abc", "n": 1}]}
    assert redact(params) == {"model": "m", "api_key": "<redacted>", "nested": [{"hf_token": "<redacted>", "n": 1}]}
