"""Benchmark: the named SQL analysis queries (and the split selection) on 1M teacher generations.

    nice python tests/bench/bench_sql.py [--generations 1000000] [--home /tmp/r1_bench] [--keep]
                                         [--backend both|duckdb|ducklake]
    pytest tests/bench -o python_files='bench_*.py' -s -k bench_sql     (R1_BENCH_GENERATIONS=1000000)

Synthesises a database with the real schema (sql/schema.sql through r1_assets.storage.Store):
300k raw rows over 4 sources (50k exact duplicates), 250k unique problems, 5k contaminated,
pass rates under two models (10 shards), 4 teacher samples per problem (1M distillations
with verification), then builds both splits with r1_assets.splits. Each named query is timed
on a fresh read-only connection (first run, cold: includes loading the columns it touches)
and warm (best of 3 more runs), with DuckDB limited to 2 threads. Baseline, same run: the
obvious Python route, pulling the needed columns into polars and computing there, for two
queries (token_lengths, pass_rate_histogram). With --backend both (the default) the same data
is built and queried on each storage backend (a DuckDB file, and a DuckLake on SQLite read
through a read-only attachment), the DuckLake/DuckDB ratio is printed per query, and every
query's result must be the same on both (row for row, timestamps of the writes aside). Prints
markdown tables for docs/benchmarks.md. The pytest entry asserts both and every warm run <= 1 s.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import polars as pl

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from r1_assets.analysis import execute_named_query, named_queries  # noqa: E402
from r1_assets.config import StorageConfig, parse_config  # noqa: E402
from r1_assets.splits import build_split  # noqa: E402
from r1_assets.storage import Store  # noqa: E402

THREADS = 2
CONFIG = {
    "sources": [{"name": f"src{i}", "kind": "file", "path": "unused.jsonl"} for i in range(4)],
    "models": {"small": {"name": "small_model"}, "strong": {"name": "strong_model"},
               "teacher": {"name": "teacher_model"}},
    "difficulty": {"model": "small"},
    "splits": {"alpha": 0.5, "stage2_model": "strong", "stage2_alpha": 0.5},
}


def synthesise(store: Store, generations: int) -> None:
    """Fill every stage table with deterministic synthetic rows, inside DuckDB."""
    samples = 4
    problems = generations // samples
    raw = problems + problems // 5
    with store.connect() as con:  # writable: applies the real schema
        con.execute(f"SET threads = {THREADS}")
        con.execute("SET preserve_insertion_order = false")

        def run(label: str, sql: str) -> None:
            start = time.perf_counter()
            values = {"problems": problems, "raw": raw, "samples": samples}
            for statement in filter(str.strip, sql.split(";")):
                con.execute(statement, {k: v for k, v in values.items() if f"${k}" in statement})
            print(f"  {label}: {time.perf_counter() - start:.1f} s", flush=True)

        # Problem i has id md5('p' || i); raw rows >= problems are exact copies of row i - problems.
        # INSERT ... BY NAME: columns other stages add later (nullable) do not break the bench.
        run("raw_problems", """
            INSERT INTO raw_problems BY NAME
            SELECT md5('p' || (i % $problems)) AS problem_id, 'src' || (i % 4) AS source, i AS source_row,
                   'Problem ' || (i % $problems) || ': compute the value of the expression number ' || (i % $problems)
                     AS problem,
                   ((i % $problems) % 97)::VARCHAR AS answer, 'file' AS source_kind, 'bench.jsonl' AS source_ref,
                   '{}' AS metadata, 'bench' AS run_id
            FROM range($raw) t(i)""")
        run("unique/duplicate_problems", """
            INSERT INTO unique_problems BY NAME
            SELECT problem_id, problem_id AS cluster_id, source, source_row, problem, answer,
                   CASE WHEN source_row < $raw - $problems THEN 2 ELSE 1 END AS cluster_size, 'bench' AS run_id
            FROM raw_problems WHERE source_row < $problems;
            INSERT INTO duplicate_problems BY NAME
            SELECT problem_id, source, source_row, problem_id AS cluster_id, 'exact' AS method, 1.0 AS similarity,
                   'bench' AS run_id
            FROM raw_problems WHERE source_row >= $problems""")
        run("benchmarks/contamination/clean_problems", """
            INSERT INTO benchmark_problems BY NAME
            SELECT CASE WHEN i % 2 = 0 THEN 'math500' ELSE 'aime24' END AS benchmark, i AS benchmark_row,
                   md5('b' || i) AS problem_id, 'Benchmark problem ' || i AS problem, '1' AS answer,
                   'bench.jsonl' AS source_ref, 'bench' AS run_id
            FROM range(1000) t(i);
            INSERT INTO contamination BY NAME
            SELECT problem_id, problem_id AS matched_problem_id,
                   CASE WHEN r % 2 = 0 THEN 'math500' ELSE 'aime24' END AS benchmark, r % 1000 AS benchmark_row,
                   CASE WHEN r % 3 = 0 THEN 'minhash' ELSE 'ngram' END AS method, 0.9 AS score,
                   'matching 13-gram' AS evidence, 'bench' AS run_id
            FROM (SELECT problem_id, source_row // 50 AS r FROM unique_problems WHERE source_row % 50 = 0);
            INSERT INTO clean_problems BY NAME
            SELECT problem_id, source, source_row, problem, answer, 'bench' AS run_id FROM unique_problems
            WHERE source_row % 50 <> 0""")
        # Pass rates: both models, one row per problem and model, 10 shards, 1% unparseable.
        run("pass_rates", """
            INSERT INTO pass_rates BY NAME
            SELECT problem_id, m.model, 'p1' AS params_hash, 8 AS k,
                   CASE WHEN source_row % 100 = 7 THEN NULL ELSE hash(problem_id || m.model) % 9 END AS n_correct,
                   CASE WHEN source_row % 100 = 7 THEN NULL ELSE (hash(problem_id || m.model) % 9) / 8 END AS pass_rate,
                   CASE WHEN source_row % 100 = 7 THEN 'unparseable_reference' ELSE 'ok' END AS reference_status,
                   'shard-' || lpad((source_row % 10)::VARCHAR, 4, '0') AS shard, 'bench' AS run_id
            FROM unique_problems, (VALUES ('small_model'), ('strong_model')) m(model)""")
        # Reasoning of 60-540 characters (real traces are longer; the queries only measure it).
        run("distillations", """
            INSERT INTO distillations BY NAME
            SELECT md5(problem_id || ':' || s) AS generation_id, problem_id, 'teacher_model' AS model,
                   't1' AS params_hash, '{"temperature": 0.6}' AS params, s AS sample_idx,
                   problem || chr(10) || 'Please reason step by step.' AS prompt,
                   '<think>' || repeat('Step. ', (h % 80)::INT + 10) || '</think> The answer is \\boxed{1}.' AS text,
                   CASE WHEN h % 200 = 3 THEN '' ELSE repeat('Step. ', (h % 80)::INT + 10) END AS reasoning,
                   'The answer is \\boxed{1}.' AS final_answer, 40 AS n_prompt_tokens,
                   200 + (h % 8000)::INT AS n_tokens,
                   CASE WHEN h % 33 = 0 THEN 'length' ELSE 'stop' END AS finish_reason,
                   'shard-' || lpad((source_row % 10)::VARCHAR, 4, '0') AS shard, 'bench' AS run_id
            FROM (SELECT u.problem_id, u.problem, u.source_row, s, hash(u.problem_id || s) AS h
                  FROM unique_problems u, range($samples) t(s))""")
        run("verified_distillations", """
            INSERT INTO verified_distillations BY NAME
            SELECT generation_id, problem_id,
                   CASE WHEN h % 50 = 0 THEN NULL ELSE h % 3 <> 0 END AS correct,
                   CASE WHEN h % 50 = 0 THEN 'none' ELSE 'math_verify' END AS method,
                   CASE WHEN h % 50 = 0 THEN 'timeout' WHEN h % 3 <> 0 THEN 'correct' ELSE 'wrong' END AS verdict,
                   '1' AS extracted_answer, finish_reason = 'stop' AND h % 40 <> 0 AS format_ok,
                   CASE WHEN finish_reason <> 'stop' THEN ['truncated'] WHEN h % 40 = 0 THEN ['unclosed_think']
                        ELSE []::VARCHAR[] END AS format_issues,
                   shard, 'bench' AS run_id
            FROM (SELECT generation_id, problem_id, finish_reason, shard, hash(generation_id || 'v') AS h
                  FROM distillations)""")


def _polars_token_lengths(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    d = con.execute("SELECT generation_id, model, n_tokens, finish_reason FROM distillations").pl()
    v = con.execute("SELECT generation_id, correct FROM verified_distillations").pl()
    j = d.join(v.with_columns(pl.lit(True).alias("_v")), on="generation_id", how="left")
    cls = (pl.when(pl.col("_v").is_null()).then(pl.lit("unverified"))
           .when(pl.col("correct")).then(pl.lit("correct"))
           .when(~pl.col("correct")).then(pl.lit("wrong")).otherwise(pl.lit("undecided")))
    return (j.with_columns(correctness=cls).group_by("model", "correctness")
            .agg(samples=pl.len(), truncated=(pl.col("finish_reason") != "stop").sum(),
                 mean_tokens=pl.col("n_tokens").mean().round(1),
                 p10_tokens=pl.col("n_tokens").quantile(0.1, "lower"),
                 p50_tokens=pl.col("n_tokens").quantile(0.5, "lower"),
                 p90_tokens=pl.col("n_tokens").quantile(0.9, "lower"), max_tokens=pl.col("n_tokens").max())
            .sort("model", "correctness"))


def _polars_pass_rate_histogram(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    p = con.execute("SELECT problem_id, model, k, n_correct, pass_rate, reference_status FROM pass_rates").pl()
    c = con.execute("SELECT problem_id, source FROM clean_problems").pl()
    ok = (pl.col("reference_status") == "ok") & pl.col("pass_rate").is_not_null()
    pooled = p.group_by("problem_id", "model").agg(
        (pl.col("n_correct").filter(ok).sum() / pl.col("k").filter(ok).sum()).alias("pass_rate"),
        ok.any().alias("_any"))
    pooled = pooled.with_columns(pl.when(pl.col("_any")).then(pl.col("pass_rate")).alias("pass_rate"))
    binned = pooled.join(c, on="problem_id", how="left").with_columns(
        source=pl.col("source").fill_null("(not in clean_problems)"),
        bin_start=(pl.min_horizontal((pl.col("pass_rate") / 0.125).floor(), pl.lit(7.0)) * 0.125))
    return binned.group_by("model", "source", "bin_start").agg(problems=pl.len()).sort("model", "source", "bin_start")


BASELINES = {"token_lengths": _polars_token_lengths, "pass_rate_histogram": _polars_pass_rate_histogram}


def _connect(store: Store) -> duckdb.DuckDBPyConnection:
    con = store.open_reader()
    con.execute(f"SET threads = {THREADS}")
    return con


def bench_queries(store: Store) -> tuple[list[dict], dict[str, pl.DataFrame]]:
    probe = store.scalar("SELECT problem_id FROM stage2_sft ORDER BY problem_id LIMIT 1")
    params = {"row_lineage": {"problem_id": probe}}
    results, frames = [], {}
    for name in named_queries():
        con = _connect(store)
        try:
            start = time.perf_counter()
            frame = execute_named_query(con, name, params.get(name))
            cold = time.perf_counter() - start
            warm, cpu = [], []
            for _ in range(3):
                start, start_cpu = time.perf_counter(), time.process_time()
                execute_named_query(con, name, params.get(name))
                warm.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
            # CPU seconds of all DuckDB threads: what the query costs whatever else runs on the box.
            row = {"query": name, "rows": frame.height, "cold_s": cold, "warm_s": min(warm), "cpu_s": min(cpu)}
            if name in BASELINES:
                start = time.perf_counter()
                BASELINES[name](con)
                row["polars_s"] = time.perf_counter() - start
        finally:
            con.close()
        print(f"  {name}: {row}", flush=True)
        results.append(row)
        frames[name] = frame
    return results, frames


# Written when the row was written (wall clock, and the DuckLake snapshot): differ between backends.
WRITE_STAMPS = ("created_at", "snapshot_id")


def comparable(frame: pl.DataFrame) -> list[tuple]:
    """A query's rows with write stamps removed from JSON records (row_lineage), as sorted tuples."""
    def clean(value):
        if isinstance(value, str) and value.startswith("{"):
            try:
                record = json.loads(value)
            except ValueError:
                return value
            return json.dumps({k: v for k, v in record.items() if k not in WRITE_STAMPS}, sort_keys=True)
        return value

    return sorted((tuple(clean(v) for v in row) for row in frame.iter_rows()), key=repr)


def differing_queries(file_frames: dict[str, pl.DataFrame], lake_frames: dict[str, pl.DataFrame]) -> list[str]:
    """Queries whose results differ between the DuckDB file and the lake."""
    return [name for name in file_frames if comparable(file_frames[name]) != comparable(lake_frames[name])]


def run_backend(home: Path, backend: str, generations: int, keep: bool) -> tuple[list[dict], dict, dict]:
    store = Store(home, storage=StorageConfig(backend=backend))
    if not (keep and store.exists()):
        shutil.rmtree(home, ignore_errors=True)
        print(f"[{backend}] synthesising {generations:,} generations in {store.location}", flush=True)
        start = time.perf_counter()
        synthesise(store, generations)
        print(f"  total: {time.perf_counter() - start:.1f} s", flush=True)
    cfg = parse_config(copy.deepcopy(CONFIG), home)
    splits = {}
    for split in ("stage1_sft", "stage2_sft"):
        start = time.perf_counter()
        selection = build_split(store, cfg, split, "bench")
        splits[split] = (time.perf_counter() - start, selection.rows.height)
        print(f"  {split}: {selection.rows.height:,} rows in {splits[split][0]:.2f} s", flush=True)
    counts = {t: store.count(t) for t in ("raw_problems", "clean_problems", "pass_rates", "distillations",
                                          "verified_distillations")}
    size = sum(p.stat().st_size for p in home.rglob("*") if p.is_file())
    print(f"tables: {counts}; store {size / 2**20:.0f} MiB")
    results, frames = bench_queries(store)
    return results, splits, frames


def print_table(backend: str, results: list[dict], splits: dict) -> None:
    print(f"\n{backend}:\n")
    print("| query | rows out | first run (s) | warm, best of 3 (s) | warm CPU (s, 2 threads) | polars baseline (s) | baseline / warm |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        base = r.get("polars_s")
        ratio = f"{base / r['warm_s']:.1f}x" if base else ""
        print(f"| {r['query']} | {r['rows']:,} | {r['cold_s']:.3f} | {r['warm_s']:.3f} | {r['cpu_s']:.3f} | "
              f"{f'{base:.3f}' if base else '-'} | {ratio} |")
    for split, (secs, rows) in splits.items():
        print(f"| build_split({split}) | {rows:,} | {secs:.2f} (select + write) | | | | |")
    slow = [r["query"] for r in results if r["warm_s"] >= 1.0]
    print(f"\nall warm runs under 1 s: {not slow}" + (f" (slow: {slow})" if slow else ""))


def run(generations: int, home: Path, backends: list[str], keep: bool = False) -> dict[str, tuple]:
    """Build, time and print every backend; with both, also the ratios and the differing queries."""
    runs = {b: run_backend(home / b, b, generations, keep) for b in backends}
    load = os.getloadavg()[0]
    print(f"\nload average at the end: {load:.1f} on {os.cpu_count()} cores (the box is shared)")
    for backend, (results, splits, _) in runs.items():
        print_table(backend, results, splits)
    if len(runs) == 2:
        print("\n| query | duckdb warm (s) | ducklake warm (s) | ducklake / duckdb | ducklake first run (s) |")
        print("|---|---:|---:|---:|---:|")
        for file_row, lake_row in zip(runs["duckdb"][0], runs["ducklake"][0]):
            print(f"| {file_row['query']} | {file_row['warm_s']:.3f} | {lake_row['warm_s']:.3f} | "
                  f"{lake_row['warm_s'] / file_row['warm_s']:.2f}x | {lake_row['cold_s']:.3f} |")
        for split in ("stage1_sft", "stage2_sft"):
            a, b = runs["duckdb"][1][split][0], runs["ducklake"][1][split][0]
            print(f"| build_split({split}) | {a:.2f} | {b:.2f} | {b / a:.2f}x | |")
        differ = differing_queries(runs["duckdb"][2], runs["ducklake"][2])
        print(f"\nsame results on both backends: {not differ}" + (f" (differ: {differ})" if differ else ""))
    return runs


def test_every_analysis_query_under_1s_on_1m_generations_with_the_same_results_on_both_backends():
    generations = int(os.environ.get("R1_BENCH_GENERATIONS", 1_000_000))
    with tempfile.TemporaryDirectory(prefix="r1-bench-sql-") as root:
        runs = run(generations, Path(root), ["duckdb", "ducklake"])
    slow = {b: {r["query"]: round(r["warm_s"], 3) for r in results if r["warm_s"] > 1.0}
            for b, (results, _, _) in runs.items()}
    assert not any(slow.values()), f"warm runs over 1 s: {slow}"
    assert not differing_queries(runs["duckdb"][2], runs["ducklake"][2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generations", type=int, default=1_000_000)
    parser.add_argument("--home", type=Path, default=Path("/tmp/r1_bench"))
    parser.add_argument("--keep", action="store_true", help="reuse an existing database at --home")
    parser.add_argument("--backend", choices=["both", "duckdb", "ducklake"], default="both")
    args = parser.parse_args()
    run(args.generations, args.home, ["duckdb", "ducklake"] if args.backend == "both" else [args.backend], args.keep)


if __name__ == "__main__":
    main()
