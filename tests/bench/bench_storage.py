"""Benchmark: writing 1M-row tables on each storage backend, in the same run.

    pytest tests/bench/bench_storage.py -o python_files='bench_*.py' -s     (R1_BENCH_ROWS=1000000)
    nice python tests/bench/bench_storage.py [--rows 1000000]

Through ``Store`` only, as the pipeline writes: ``raw_problems`` as 4 source partitions of
rows/4 (``replace_partition``), then every partition rewritten (delete + insert, the idempotent
re-materialization), then ``generations`` as 10 checkpoints of rows/10 (``append_new``: INSERT OR
IGNORE on the DuckDB file, an anti-join on the key in the lake), then the same checkpoints once
more (all already there). The DuckDB file is the baseline; the target is DuckLake <= 1.5x.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from r1_assets.config import StorageConfig  # noqa: E402
from r1_assets.storage import Lineage, Store  # noqa: E402

SOURCES = 4
CHECKPOINTS = 10


def _raw(source: str, n: int, offset: int) -> pl.DataFrame:
    i = pl.int_range(offset, offset + n, eager=True)
    return pl.DataFrame({
        "problem_id": i.cast(pl.String).str.pad_start(12, "0"),
        "source": [source] * n, "source_row": i,
        "problem": "Problem " + i.cast(pl.String) + ": compute the value of the expression number " + i.cast(pl.String),
        "answer": (i % 97).cast(pl.String), "source_kind": ["file"] * n, "source_ref": ["bench.jsonl"] * n,
        "metadata": ["{}"] * n, "run_id": ["bench"] * n,
    })


def _generations(n: int, offset: int) -> pl.DataFrame:
    i = pl.int_range(offset, offset + n, eager=True)
    return pl.DataFrame({
        "generation_id": "g" + i.cast(pl.String), "purpose": ["pass_rate"] * n,
        "problem_id": (i // 8).cast(pl.String), "model": ["small_model"] * n, "params_hash": ["p1"] * n,
        "params": ['{"temperature": 0.7}'] * n, "sample_idx": (i % 8).cast(pl.Int32),
        "prompt": "Problem " + (i // 8).cast(pl.String), "text": "<think>Step. Step.</think> \\boxed{" + (i % 9).cast(pl.String) + "}",
        "n_prompt_tokens": [40] * n, "n_tokens": (200 + i % 800).cast(pl.Int32), "finish_reason": ["stop"] * n,
        "latency_s": [0.5] * n, "error": [None] * n, "shard": ["shard-00000"] * n, "run_id": ["bench"] * n,
        "created_at": [dt.datetime(2026, 12, 1)] * n,
    }, schema_overrides={"error": pl.String})


def bench_backend(home: Path, backend: str, rows: int) -> dict[str, float]:
    shutil.rmtree(home, ignore_errors=True)
    store = Store(home, storage=StorageConfig(backend=backend))
    with store.connect():  # schema and extensions outside the timings
        pass
    per_source, per_checkpoint = rows // SOURCES, rows // CHECKPOINTS
    raw = [_raw(f"src{s}", per_source, s * per_source) for s in range(SOURCES)]
    gens = [_generations(per_checkpoint, c * per_checkpoint) for c in range(CHECKPOINTS)]
    timings = {}
    for label in ("raw_problems write", "raw_problems rewrite"):
        start = time.perf_counter()
        for s, frame in enumerate(raw):
            store.replace_partition("raw_problems", frame, where={"source": f"src{s}"}, lineage=Lineage(run_id=label))
        timings[label] = time.perf_counter() - start
    for label in ("generations append", "generations append again"):
        start = time.perf_counter()
        added = sum(store.append_new("generations", frame) for frame in gens)
        timings[label] = time.perf_counter() - start
        assert added == (rows if label == "generations append" else 0), added
    assert store.count("raw_problems") == rows and store.count("generations") == rows
    timings["total"] = sum(timings.values())
    return timings


def run(rows: int, root: Path) -> dict[str, dict[str, float]]:
    results = {b: bench_backend(root / b, b, rows) for b in ("duckdb", "ducklake")}
    print(f"\nwriting {rows:,}-row tables, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    print("| write | duckdb file (s) | ducklake on SQLite (s) | ducklake / duckdb |")
    print("|---|---:|---:|---:|")
    for label in results["duckdb"]:
        a, b = results["duckdb"][label], results["ducklake"][label]
        print(f"| {label} | {a:.2f} | {b:.2f} | {b / a:.2f}x |")
    return results


def test_writing_1m_row_tables_on_ducklake_within_1_5x_of_the_duckdb_file():
    rows = int(os.environ.get("R1_BENCH_ROWS", 1_000_000))
    with tempfile.TemporaryDirectory(prefix="r1-bench-storage-") as root:
        results = run(rows, Path(root))
    ratio = results["ducklake"]["total"] / results["duckdb"]["total"]
    assert ratio <= 1.5, f"ducklake writes take {ratio:.2f}x the DuckDB file's"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="r1-bench-storage-") as root:
        run(args.rows, Path(root))
