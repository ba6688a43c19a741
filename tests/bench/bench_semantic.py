"""Semantic decontamination speed: all-MiniLM-L6-v2 embeddings + cosine top-k, rows/s.

    nice python tests/bench/bench_semantic.py --rows 1000

Embeds ``--rows`` MATH train problems (../shared/data/pools/math_train.json) with the previous
implementation (float32 encoder) and the current one (``r1_assets.embeddings.embed_texts``:
bfloat16 on a CPU with native bfloat16) in the same run, checks that both give the same
embeddings (cosine of each text's two embeddings), and matches them against every shared
benchmark with ``top_k_cosine``; reports rows/s of each part (model load excluded).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import numpy as np
import polars as pl

from tests.bench.bench_dedupe import load_benchmarks, load_pools


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1000)
    args = ap.parse_args()
    import torch

    from r1_assets.embeddings import embed_texts, load_encoder, top_k_cosine
    from r1_assets.engines import cpu_has_native_bf16

    texts = load_pools().filter(pl.col("source") == "math_train").head(args.rows)["problem"].to_list()
    bench = load_benchmarks()["problem"].to_list()
    report = {"rows": len(texts), "torch_threads": torch.get_num_threads(), "native_bf16": cpu_has_native_bf16(),
              "benchmark_rows": len(bench), "target_rows_per_s": 2000}
    runs = {}
    for label, bf16 in (("previous_float32", False), ("current", None)):
        load_encoder("cpu", bf16)
        embed_texts(texts[:16], bf16=bf16)                         # warm-up
        t0 = time.perf_counter()
        runs[label] = embed_texts(texts, bf16=bf16)
        report[f"{label}_embed_rows_per_s"] = round(len(texts) / (time.perf_counter() - t0), 1)
    agree = np.einsum("ij,ij->i", runs["previous_float32"], runs["current"])
    report["cosine_current_vs_previous_min"] = round(float(agree.min()), 5)
    report["speedup"] = round(report["current_embed_rows_per_s"] / report["previous_float32_embed_rows_per_s"], 2)
    t0 = time.perf_counter()
    bench_emb = embed_texts(bench)
    report["benchmark_embed_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    top_k_cosine(runs["current"], bench_emb, 3)
    report["topk_rows_per_s"] = round(len(texts) / (time.perf_counter() - t0))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
