"""Dedupe and decontamination at scale, against a naive per-row datasketch loop in the same run.

    nice python tests/bench/bench_dedupe.py --rows 1000000 --naive-sample 20000
    # the previous dedupe (another checkout) on the same pool, same run: time, memory, same flags
    python tests/bench/bench_dedupe.py --rows 1000000 --baseline-code /path/to/old/checkout --dedupe-only
    python tests/bench/bench_dedupe.py --rows 10000000 --naive-sample 0 --dedupe-only

1. Synthesise ``--rows`` pool rows from the shared pools (../shared/data/pools): each row is a
   random pool problem with 0-3 random small word edits (replace, delete, insert, swap), so
   exact and near duplicates exist at every scale.
2. Dedupe all rows with ``r1_assets.dedupe.deduplicate`` (in a child process, so its peak RSS
   is its own) and report rows/s and peak memory.
3. Naive baseline on a random sample: per row ``MinHash.update`` per shingle (the same
   5-token shingle hashes, fed one by one), ``MinHashLSH.insert``, then query every
   row and confirm candidates by ``MinHash.jaccard``. Our dedupe runs on the same sample; the
   flagged sets (rows with at least one duplicate) are compared (Jaccard of the two sets).
   ``--naive-sample 0`` skips it.
4. Decontaminate all rows against every shared benchmark (child process) and report rows/s:
   the default methods less ``semantic`` (``--semantic`` keeps it).
5. Per-benchmark, per-method hits of the real shared pools, with a sample of hits to inspect.
   ``--dedupe-only`` skips 4 and 5.

``--baseline-code DIR`` also runs steps 2 and 4 with the ``r1_assets`` of DIR (an older checkout)
on the same pool, reports both, and fails unless both dedupes flag the same rows with the same stats. The
synthesised pool is cached in ``--out`` by rows and seed (10M rows take minutes to synthesise).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# A stage child may run another checkout's code (``--baseline-code``): it goes first on the path.
sys.path.insert(0, str(REPO))
if os.environ.get("R1_BENCH_CODE"):
    sys.path.insert(0, os.environ["R1_BENCH_CODE"])

import polars as pl

from r1_assets.config import parse_config
from r1_assets.sources import collect_source
from r1_assets.text import problem_id

SHARED = Path(os.environ.get("R1_SHARED_DATA", REPO.parent / "shared" / "data"))
POOLS = [
    {"name": "math_train", "kind": "file", "path": "pools/math_train.json"},
    {"name": "aime_old", "kind": "file", "path": "pools/aime_1983_2023.json"},
    {"name": "deepscaler", "kind": "file", "path": "pools/deepscaler_subset.json"},
    {"name": "gsm8k_train", "kind": "file", "path": "pools/gsm8k_train.jsonl", "problem": "question"},
    {"name": "dapo", "kind": "file", "path": "pools/dapo_math_17k.parquet",
     "problem": "prompt[0].content", "answer": "reward_model.ground_truth"},
]
BENCHMARKS = [
    {"name": "math500", "kind": "file", "path": "benchmarks/math500.jsonl"},
    {"name": "aime24", "kind": "file", "path": "benchmarks/aime24.jsonl"},
    {"name": "aime25_I", "kind": "file", "path": "benchmarks/aime25_I.jsonl"},
    {"name": "aime25_II", "kind": "file", "path": "benchmarks/aime25_II.jsonl"},
    {"name": "aime25_alt", "kind": "file", "path": "benchmarks/aime25_alt_wording.jsonl", "problem": "prompt"},
    {"name": "amc23", "kind": "file", "path": "benchmarks/amc23.jsonl"},
    {"name": "gsm8k_test", "kind": "file", "path": "benchmarks/gsm8k_test.jsonl", "problem": "question"},
]


# --semantic: the decontamination stage runs the semantic method too (the 3-minute target is
# for the lexical methods; the semantic method has its own bench, bench_semantic.py).
SEMANTIC = False


def _config():
    return parse_config({"sources": POOLS, "benchmarks": BENCHMARKS}, SHARED)


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20   # Linux: KiB


def rss_gib() -> float:
    """Resident memory now (Linux), to see which phase sets the peak."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def load_pools() -> pl.DataFrame:
    cfg = _config()
    return pl.concat([collect_source(s, cfg).rows for s in cfg.sources])


def load_benchmarks() -> pl.DataFrame:
    cfg = _config()
    return pl.concat([collect_source(b, cfg, "benchmark_problems").rows for b in cfg.benchmarks]).select(
        benchmark="source", benchmark_row="source_row", problem="problem", problem_id="problem_id")


# -- synthesis ---------------------------------------------------------------------------
def _edit(words: list[str], rng: random.Random, vocab: list[str]) -> list[str]:
    op = rng.randrange(4)
    i = rng.randrange(len(words))
    if op == 0:
        words[i] = rng.choice(vocab)
    elif op == 1 and len(words) > 1:
        del words[i]
    elif op == 2:
        words.insert(i, rng.choice(vocab))
    elif len(words) > 1:
        j = min(i + 1, len(words) - 1)
        words[i], words[j] = words[j], words[i]
    return words


def synthesise(pools: pl.DataFrame, n: int, seed: int, chunk: int = 1_000_000):
    """``n`` rows in DataFrames of at most ``chunk`` rows (one random stream: the rows do not
    depend on ``chunk``), so that 10M rows never sit in Python lists at once."""
    rng = random.Random(seed)
    texts, sources, answers = pools["problem"].to_list(), pools["source"].to_list(), pools["answer"].to_list()
    vocab = ["the", "a", "of", "number", "value", "integer", "find", "let", "2", "3", "x", "y", "and", "is"]
    for start in range(0, n, chunk):
        out_text, out_source, out_answer = [], [], []
        for _ in range(min(chunk, n - start)):
            k = rng.randrange(len(texts))
            words = texts[k].split(" ")
            for _ in range(rng.choice((0, 1, 1, 2, 3))):
                words = _edit(words, rng, vocab)
            out_text.append(" ".join(words))
            out_source.append(sources[k])
            out_answer.append(answers[k])
        yield pl.DataFrame({
            "problem_id": [problem_id(t) for t in out_text],
            "source": out_source,
            "source_row": range(start, start + len(out_text)),
            "problem": out_text,
            "answer": out_answer,
        }, schema={"problem_id": pl.Utf8, "source": pl.Utf8, "source_row": pl.Int64, "problem": pl.Utf8, "answer": pl.Utf8})


def synthesised_pool(out: Path, n: int, seed: int) -> Path:
    """The synthesised pool as Parquet in ``out``, written once per (rows, seed)."""
    import pyarrow.parquet as pq

    path = out / f"pool-{n}-seed{seed}.parquet"
    if path.exists():
        return path
    t0 = time.perf_counter()
    pools = load_pools()
    tmp = path.with_suffix(".partial")
    writer = None
    for frame in synthesise(pools, n, seed):
        table = frame.to_arrow()
        writer = writer or pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table)
    writer.close()
    tmp.rename(path)
    print(f"synthesised {n:,} rows from {pools.height:,} pool rows in {time.perf_counter() - t0:.0f}s", flush=True)
    return path


# -- stages (each in its own process) ------------------------------------------------------
def stage_dedupe(path: str) -> dict:
    from r1_assets.config import DedupeConfig
    from r1_assets.dedupe import deduplicate

    rows = pl.read_parquet(path)
    print(f"  [rss {rss_gib():.2f} GiB] input read", file=sys.stderr)
    t0 = time.perf_counter()
    result = deduplicate(rows, DedupeConfig(), [p["name"] for p in POOLS],
                         log=lambda m: print(f"  [rss {rss_gib():.2f} GiB, peak {peak_rss_gib():.2f}] {m}", file=sys.stderr))
    seconds = time.perf_counter() - t0
    in_cluster = pl.concat([
        result.unique.filter(pl.col("cluster_size") > 1).select("source_row"),
        result.duplicates.select("source_row"),
    ])["source_row"]
    tag = os.environ.get("R1_BENCH_TAG", "")
    pl.DataFrame({"source_row": in_cluster}).write_parquet(f"{path}{tag}.flagged.parquet")
    result.unique.drop("problem", "answer").write_parquet(f"{path}{tag}.unique.parquet")
    result.duplicates.write_parquet(f"{path}{tag}.duplicates.parquet")
    return {"rows": rows.height, "seconds": seconds, "rows_per_s": rows.height / seconds,
            "peak_rss_gib": peak_rss_gib(), "stats": result.stats}


def stage_decontaminate(path: str) -> dict:
    from r1_assets.config import DecontaminationConfig, DedupeConfig
    from r1_assets.decontamination import decontaminate

    rows = pl.read_parquet(path).select("problem_id", "problem")
    bench = load_benchmarks()
    cfg = DecontaminationConfig()
    if not os.environ.get("R1_BENCH_SEMANTIC"):
        cfg = cfg.model_copy(update={"methods": [m for m in cfg.methods if m != "semantic"]})
    t0 = time.perf_counter()
    result = decontaminate(rows, bench, cfg, DedupeConfig(), log=lambda m: print("  " + m, file=sys.stderr))
    seconds = time.perf_counter() - t0
    return {"rows": rows.height, "benchmark_rows": bench.height, "methods": cfg.methods, "seconds": seconds,
            "rows_per_s": rows.height / seconds, "peak_rss_gib": peak_rss_gib(),
            "hits": result.hits.height, "problems_flagged": result.stats["problems_flagged"]}


def stage_naive(path: str) -> dict:
    """Per-row datasketch: MinHash.update per shingle, MinHashLSH.insert, query + jaccard confirm."""
    from datasketch import MinHash, MinHashLSH

    from r1_assets.config import DedupeConfig
    from r1_assets.dedupe import MinHasher

    cfg = DedupeConfig()
    rows = pl.read_parquet(path)
    # The same 32-bit shingle hashes as ours (so the flagged sets compare the implementations,
    # not two random hash families), computed row by row; the hashing per shingle, the
    # permutations and the LSH are datasketch's own per-row path.
    hasher = MinHasher.from_config(cfg)
    t0 = time.perf_counter()
    lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm, params=(cfg.bands, cfg.rows))
    sketches = []
    for i, text in enumerate(rows["problem"].to_list()):
        _, shingles = hasher.shingle_hashes(pl.Series([text]))
        m = MinHash(num_perm=cfg.num_perm, seed=cfg.seed, scheme="affine32", hashfunc=int)
        for s in set(shingles.tolist()):
            m.update(s)
        lsh.insert(i, m)
        sketches.append(m)
    flagged = set()
    for i, m in enumerate(sketches):
        for j in lsh.query(m):
            if j != i and m.jaccard(sketches[j]) >= cfg.threshold:
                flagged.update((i, j))
    seconds = time.perf_counter() - t0
    source_rows = rows["source_row"].to_list()
    pl.DataFrame({"source_row": [source_rows[i] for i in sorted(flagged)]}, schema={"source_row": pl.Int64}).write_parquet(
        path + ".naive_flagged.parquet")
    return {"rows": rows.height, "seconds": seconds, "rows_per_s": rows.height / seconds, "peak_rss_gib": peak_rss_gib()}


def run_stage(stage: str, path: Path, code: str | None = None, tag: str = "") -> dict:
    """One stage in a child process; ``code``: another checkout whose ``r1_assets`` it uses."""
    env = {**os.environ, "R1_BENCH_CODE": code or "", "R1_BENCH_TAG": tag, "R1_BENCH_SEMANTIC": "1" if SEMANTIC else ""}
    proc = subprocess.run([sys.executable, __file__, "--stage", stage, "--input", str(path)],
                          capture_output=True, text=True, check=False, env=env)
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"stage {stage} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- quality on the real pools -------------------------------------------------------------
def shared_pool_hits(out_dir: Path) -> pl.DataFrame:
    from r1_assets.config import DecontaminationConfig, DedupeConfig
    from r1_assets.decontamination import METHOD_LABELS, decontaminate

    pools = load_pools().with_columns(problem_id=pl.col("source") + ":" + pl.col("problem_id")).unique("problem_id")
    bench = load_benchmarks()
    result = decontaminate(pools.select("problem_id", "problem"), bench, DecontaminationConfig(), DedupeConfig())
    hits = (result.hits.join(pools.select("problem_id", "source", pool_problem="problem"), on="problem_id")
            .join(bench.select("benchmark", "benchmark_row", benchmark_problem="problem"), on=["benchmark", "benchmark_row"]))
    hits.write_parquet(out_dir / "shared_pool_hits.parquet")
    table = (hits.group_by("benchmark", "method").agg(n=pl.col("problem_id").n_unique())
             .pivot(on="method", index="benchmark", values="n").fill_null(0))
    any_method = hits.group_by("benchmark").agg(any=pl.col("problem_id").n_unique())
    cols = [m for m in METHOD_LABELS if m in table.columns]
    return table.join(any_method, on="benchmark").select("benchmark", *cols, "any").sort("benchmark")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--naive-sample", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="/tmp/r1_bench_dedupe")
    ap.add_argument("--stage", choices=["dedupe", "decontaminate", "naive"])
    ap.add_argument("--input")
    ap.add_argument("--baseline-code", help="a checkout whose r1_assets is the dedupe baseline")
    ap.add_argument("--dedupe-only", action="store_true", help="skip decontamination and the shared-pool hits")
    ap.add_argument("--semantic", action="store_true", help="decontaminate with the semantic method too (default: off)")
    args = ap.parse_args()
    global SEMANTIC
    SEMANTIC = args.semantic
    if args.stage:
        print(json.dumps({"dedupe": stage_dedupe, "decontaminate": stage_decontaminate, "naive": stage_naive}[args.stage](args.input)))
        return

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    full = synthesised_pool(out, args.rows, args.seed)
    report: dict = {"rows": args.rows, "naive_sample": args.naive_sample}
    if args.baseline_code:
        report["dedupe_baseline"] = run_stage("dedupe", full, code=args.baseline_code, tag=".baseline")
        print("dedupe (baseline):", json.dumps(report["dedupe_baseline"]), flush=True)
    report["dedupe"] = run_stage("dedupe", full)
    print("dedupe:", json.dumps(report["dedupe"]), flush=True)
    if args.baseline_code:
        ours = pl.read_parquet(f"{full}.flagged.parquet").sort("source_row")
        theirs = pl.read_parquet(f"{full}.baseline.flagged.parquet").sort("source_row")
        same_stats = ({k: v for k, v in report["dedupe"]["stats"].items() if k != "seconds"}
                      == {k: v for k, v in report["dedupe_baseline"]["stats"].items() if k != "seconds"})
        same_frames = all(pl.read_parquet(f"{full}.{name}.parquet").equals(pl.read_parquet(f"{full}.baseline.{name}.parquet"))
                          for name in ("unique", "duplicates"))
        report["vs_baseline"] = {
            "same_flagged_set": ours.equals(theirs), "flagged": ours.height, "same_stats": same_stats,
            "same_unique_and_duplicates": same_frames,
            "speedup": report["dedupe_baseline"]["seconds"] / report["dedupe"]["seconds"],
            "peak_rss_ratio": report["dedupe"]["peak_rss_gib"] / report["dedupe_baseline"]["peak_rss_gib"],
        }
        print("vs baseline:", json.dumps(report["vs_baseline"]), flush=True)
        if not (ours.equals(theirs) and same_stats and same_frames):
            raise SystemExit("dedupe differs from the baseline: see the stats above")
    if args.naive_sample:
        sample = pl.read_parquet(full).sample(n=min(args.naive_sample, args.rows), seed=args.seed)
        sample_path = out / "sample.parquet"
        sample.write_parquet(sample_path)
        report["dedupe_sample"] = run_stage("dedupe", sample_path)
        report["naive_sample"] = run_stage("naive", sample_path)
        ours = set(pl.read_parquet(str(sample_path) + ".flagged.parquet")["source_row"].to_list())
        naive = set(pl.read_parquet(str(sample_path) + ".naive_flagged.parquet")["source_row"].to_list())
        report["agreement"] = {
            "ours_flagged": len(ours), "naive_flagged": len(naive), "both": len(ours & naive),
            "jaccard": len(ours & naive) / max(len(ours | naive), 1),
        }
        report["speedup_vs_naive"] = report["dedupe"]["rows_per_s"] / report["naive_sample"]["rows_per_s"]
        report["speedup_vs_naive_same_sample"] = report["dedupe_sample"]["rows_per_s"] / report["naive_sample"]["rows_per_s"]
        print("naive:", json.dumps(report["naive_sample"]), "agreement:", json.dumps(report["agreement"]), flush=True)
    if args.dedupe_only:
        (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
        print(json.dumps(report, indent=2, default=str))
        return
    if args.baseline_code:
        report["decontaminate_baseline"] = run_stage("decontaminate", full, code=args.baseline_code, tag=".baseline")
        print("decontaminate (baseline):", json.dumps(report["decontaminate_baseline"]), flush=True)
    report["decontaminate"] = run_stage("decontaminate", full)
    print("decontaminate:", json.dumps(report["decontaminate"]), flush=True)
    if args.baseline_code:
        report["decontaminate_speedup"] = report["decontaminate_baseline"]["seconds"] / report["decontaminate"]["seconds"]

    table = shared_pool_hits(out)
    with pl.Config(tbl_rows=50, tbl_cols=20, tbl_formatting="MARKDOWN", tbl_hide_column_data_types=True, tbl_hide_dataframe_shape=True):
        print("hits on the shared pools (distinct pool problems per benchmark and method):")
        print(table)
    report["shared_pool_hits"] = table.to_dicts()
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps({k: v for k, v in report.items() if k != "shared_pool_hits"}, indent=2, default=str))


if __name__ == "__main__":
    main()
