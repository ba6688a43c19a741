"""Semantic decontamination speed: rows/s of the semantic method against every shared benchmark.

    flock /tmp/r1-heavy.lock nice python tests/bench/bench_semantic.py [--sample 1000]

Two sides, same run, same encoder (``r1_assets.embeddings``):
- baseline, the previous method: embed every pool row and take its cosine top-k over all
  benchmark rows (on a ``--sample`` of the pool: embedding all of it would take hours);
- current: ``decontaminate(methods=[semantic])``, which embeds only the (pool, benchmark)
  pairs at TF-IDF cosine >= ``semantic_min_tfidf`` (r1_assets/tfidf.py), on the whole pool of
  the labelled run (the five shared pools plus the other AIME 2025 wording, ~34k rows) and on
  the sample.
Reports rows/s of each (the baseline's benchmark embeddings apart, as a model load), and
whether the two find the same hits on the sample (the current method with its hit check off:
the check is a later filter). Exits non-zero when the current method misses a baseline hit.
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

from tests.paths import SHARED_DATA
from tests.unit.test_decontamination_labels import labelled_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sample", type=int, default=1000)
    args = ap.parse_args()
    import torch

    from r1_assets.config import DecontaminationConfig, DedupeConfig
    from r1_assets.decontamination import decontaminate, strip_phrases
    from r1_assets.embeddings import embed_texts, load_encoder, top_k_cosine
    from r1_assets.engines import cpu_has_native_bf16

    pool, bench = labelled_run(SHARED_DATA)
    sample = pool.sample(args.sample, seed=7)
    cfg = DecontaminationConfig(methods=["semantic"])
    report = {"pool_rows": pool.height, "sample_rows": sample.height, "benchmark_rows": bench.height,
              "torch_threads": torch.get_num_threads(), "native_bf16": cpu_has_native_bf16(),
              "semantic_threshold": cfg.semantic_threshold, "semantic_min_tfidf": cfg.semantic_min_tfidf,
              "target_rows_per_s": 2000}
    load_encoder("cpu")
    embed_texts(["warm-up"] * 8)

    t0 = time.perf_counter()
    bench_emb = embed_texts(strip_phrases(bench["problem"], cfg.strip_phrases).to_list())
    report["baseline_benchmark_embed_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    emb = embed_texts(strip_phrases(sample["problem"], cfg.strip_phrases).to_list())
    idx, sim = top_k_cosine(emb, bench_emb, cfg.semantic_top_k)
    seconds = time.perf_counter() - t0
    report["baseline_rows_per_s"] = round(sample.height / seconds, 1)
    rows = np.repeat(np.arange(sample.height), idx.shape[1])
    keep = sim.reshape(-1) >= cfg.semantic_threshold
    ids = sample["problem_id"].to_numpy()
    keys = bench.select("benchmark", "benchmark_row").rows()
    baseline_hits = {(ids[r], keys[b]) for r, b in zip(rows[keep], idx.reshape(-1)[keep])}

    # The TF-IDF pass is compared with the baseline's embeddings with the hit check off
    # (same_numbers_share 0): the check then drops look-alike exercises from both alike.
    t0 = time.perf_counter()
    on_sample = decontaminate(sample, bench, cfg.model_copy(update={"same_numbers_share": 0.0}), DedupeConfig())
    report["current_sample_s"] = round(time.perf_counter() - t0, 1)
    current_hits = {(r["problem_id"], (r["benchmark"], r["benchmark_row"])) for r in on_sample.hits.iter_rows(named=True)}
    checked = decontaminate(sample, bench, cfg, DedupeConfig()).hits
    report["sample_hits"] = {"baseline": len(baseline_hits), "current": len(current_hits),
                             "both": len(baseline_hits & current_hits),
                             "baseline_only": sorted(map(str, baseline_hits - current_hits)),
                             "current_after_the_check": checked.height}

    t0 = time.perf_counter()
    whole = decontaminate(pool, bench, cfg, DedupeConfig())
    seconds = time.perf_counter() - t0
    report["current_pool_s"] = round(seconds, 1)
    report["current_rows_per_s"] = round(pool.height / seconds)
    report["current_rows_embedded"] = whole.stats["semantic_rows_embedded"]
    report["current_benchmark_rows_embedded"] = whole.stats["semantic_benchmark_rows_embedded"]
    report["current_problems_flagged"] = whole.stats["problems_flagged"]
    report["ratio_rows_per_s"] = round(report["current_rows_per_s"] / report["baseline_rows_per_s"], 1)
    print(json.dumps(report, indent=2))
    if baseline_hits - current_hits:
        sys.exit("the TF-IDF pass lost semantic hits of the baseline")


if __name__ == "__main__":
    main()
