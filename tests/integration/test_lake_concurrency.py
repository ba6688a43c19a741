"""DuckLake with real processes: an analyst's session held open through a whole Dagster
materialization, and two writers on a PostgreSQL catalog (real server on loopback) at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import REPO_ROOT, open_data

# A notebook-style reader: one connection kept for the whole run, queried in a loop.
READER = """
import sys, time, pathlib
from r1_assets.analysis import connect, execute_named_query
stop = pathlib.Path(sys.argv[1])
con = connect()
seen, queries = [], 0
print("ready", flush=True)
while not stop.exists():
    seen.append(con.execute("SELECT count(*) FROM raw_problems").fetchone()[0])
    execute_named_query(con, "yield_funnel")
    queries += 1
    time.sleep(0.05)
con.close()
print("queries", queries, "counts", sorted(set(seen)), flush=True)
"""

# One writer process: rewrites its own partition of raw_problems again and again.
WRITER = """
import sys
import polars as pl
from r1_assets.config import StorageConfig
from r1_assets.storage import Lineage, Store
home, catalog, source, writes = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
store = Store(home, storage=StorageConfig(backend="ducklake", catalog=catalog))
for i in range(writes):
    n = 1000 + i
    frame = pl.DataFrame({"problem_id": [f"{source}{j}" for j in range(n)], "source": [source] * n,
                          "source_row": list(range(n)), "problem": [f"{source} {j}" for j in range(n)],
                          "answer": ["1"] * n, "source_kind": ["file"] * n, "source_ref": ["x"] * n,
                          "metadata": [None] * n, "run_id": [f"{source}-{i}"] * n},
                         schema_overrides={"metadata": pl.Utf8})
    store.replace_partition("raw_problems", frame, where={"source": source}, lineage=Lineage(run_id=f"{source}-{i}"))
print("done", source, flush=True)
"""


def _jsonl(path: Path, rows: int, tag: str) -> str:
    with path.open("w") as fh:
        for i in range(rows):
            fh.write(json.dumps({"problem": f"[{tag}] What is {i} plus {i * 7 + 3}?", "answer": str(i * 8 + 3)}) + "\n")
    return str(path)


def test_a_reader_kept_open_through_a_whole_materialization_blocks_nothing(tmp_path, r1_home, write_config):
    sources = {f"s{i}": 4000 for i in range(4)}
    write_config({"sources": [{"name": n, "kind": "file", "path": _jsonl(tmp_path / f"{n}.jsonl", rows, n)}
                              for n, rows in sources.items()]})  # storage: the default (ducklake)
    stop = tmp_path / "stop"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(stop)], cwd=REPO_ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        assert reader.stdout.readline().strip() == "ready", reader.stderr.read()
        pipeline = subprocess.run(
            [sys.executable, "-m", "dagster_project.pipeline", "--select", "raw_problems", "unique_problems",
             "clean_problems"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
        stop.touch()
        out, err = reader.communicate(timeout=120)
    finally:
        if reader.poll() is None:
            os.killpg(reader.pid, 9)
    log = pipeline.stdout + pipeline.stderr
    assert pipeline.returncode == 0, log[-6000:]
    assert "lock" not in log.lower(), log[-6000:]
    assert reader.returncode == 0, err[-4000:]
    queries, counts = out.split("queries ")[1].split(" counts ")
    seen = json.loads(counts)
    # The reader queried all along and saw the partitions land one commit at a time.
    assert int(queries) >= 20 and seen[0] == 0 and seen[-1] == sum(sources.values()) and len(seen) >= 3, out
    with open_data(r1_home) as con:
        assert con.execute("SELECT count(*) FROM clean_problems").fetchone()[0] > 0
        snapshots = [r[0] for r in con.execute("SELECT snapshot_id FROM lineage ORDER BY created_at").fetchall()]
    assert all(s is not None for s in snapshots) and snapshots == sorted(set(snapshots))


def test_two_writers_on_a_postgres_catalog_land_at_once(tmp_path, postgres_catalog):
    writes = 8
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), postgres_catalog, source, str(writes)],
                              cwd=REPO_ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for source in ("left", "right")]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    from r1_assets.config import StorageConfig
    from r1_assets.storage import Store

    store = Store(tmp_path, storage=StorageConfig(backend="ducklake", catalog=postgres_catalog))
    counts = dict(store.query("SELECT source, count(*) AS n FROM raw_problems GROUP BY 1").iter_rows())
    assert counts == {"left": 1000 + writes - 1, "right": 1000 + writes - 1}
    lineage = store.query("SELECT run_id, snapshot_id, created_at FROM lineage ORDER BY created_at")
    assert lineage.height == 2 * writes and lineage["snapshot_id"].null_count() == 0
    assert lineage["snapshot_id"].n_unique() == 2 * writes
    # The two writers' commits interleaved: they really wrote at the same time.
    order = [r.split("-")[0] for r in lineage["run_id"]]
    assert order != sorted(order) and order != sorted(order, reverse=True), order


@pytest.mark.timeout(900)
def test_two_dagster_runs_materialize_partitions_into_one_postgres_lake(tmp_path, r1_home, write_config, postgres_catalog):
    write_config({
        "sources": [{"name": n, "kind": "file", "path": _jsonl(tmp_path / f"{n}.jsonl", 20_000, n)} for n in ("left", "right")],
        "storage": {"backend": "ducklake", "catalog": postgres_catalog, "data_path": str(tmp_path / "lake-data")},
    })
    procs = []
    for source in ("left", "right"):
        # Two nodes: each has its own Dagster instance; the lake is what they share.
        dagster_home = tmp_path / f"dagster-{source}"
        dagster_home.mkdir()
        (dagster_home / "dagster.yaml").write_text((REPO_ROOT / "dagster.yaml").read_text())
        env = {**os.environ, "DAGSTER_HOME": str(dagster_home)}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "dagster_project.definitions",
             "--select", "raw_problems", "--partition", source],
            cwd=REPO_ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    outs = [p.communicate(timeout=800)[0] for p in procs]
    for proc, out in zip(procs, outs):
        assert proc.returncode == 0 and "RUN_SUCCESS" in out, out[-4000:]
    assert os.environ["PGPASSWORD"] not in "".join(outs)
    with open_data(r1_home) as con:
        assert dict(con.execute("SELECT source, count(*) FROM raw_problems GROUP BY 1").fetchall()) == {
            "left": 20_000, "right": 20_000}
        rows = con.execute("SELECT partition, snapshot_id FROM lineage WHERE table_name = 'raw_problems'").fetchall()
    assert sorted(p for p, _ in rows) == ["source=left", "source=right"] and all(s is not None for _, s in rows)
