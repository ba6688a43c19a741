"""Semantic decontamination speed: all-MiniLM-L6-v2 embeddings + cosine top-k, rows/s.

    nice python tests/bench/bench_semantic.py --rows 2000

Embeds ``--rows`` MATH train problems (../shared/data/pools/math_train.json) with
``r1_assets.embeddings.embed_texts`` and matches them against every shared benchmark with
``top_k_cosine``; reports rows/s of each part and of the whole (model load excluded), next to the
text-only decontamination of the same rows in the same run (the baseline the ratio is against).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import polars as pl

from tests.bench.bench_dedupe import load_benchmarks, load_pools


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2000)
    args = ap.parse_args()
    import torch

    from r1_assets.config import DecontaminationConfig, DedupeConfig
    from r1_assets.decontamination import decontaminate
    from r1_assets.embeddings import embed_texts, load_encoder, top_k_cosine

    pool = load_pools().filter(pl.col("source") == "math_train").head(args.rows)
    bench = load_benchmarks()
    load_encoder("cpu")
    t0 = time.perf_counter()
    bench_emb = embed_texts(bench["problem"].to_list())
    t_bench = time.perf_counter() - t0
    t0 = time.perf_counter()
    emb = embed_texts(pool["problem"].to_list())
    t_embed = time.perf_counter() - t0
    t0 = time.perf_counter()
    top_k_cosine(emb, bench_emb, 3)
    t_topk = time.perf_counter() - t0
    t0 = time.perf_counter()
    decontaminate(pool.select("problem_id", "problem"), bench.drop("problem_id"), DecontaminationConfig(), DedupeConfig())
    t_text = time.perf_counter() - t0
    report = {
        "rows": pool.height, "torch_threads": torch.get_num_threads(), "benchmark_rows": bench.height,
        "benchmark_embed_s": round(t_bench, 1), "embed_rows_per_s": round(pool.height / t_embed, 1),
        "topk_rows_per_s": round(pool.height / t_topk), "semantic_rows_per_s": round(pool.height / (t_embed + t_topk), 1),
        "text_methods_rows_per_s": round(pool.height / t_text), "target_rows_per_s": 2000,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
