"""Benchmark: the embedded default's model stages vs raw ``LLM.chat`` on the same prompts, same run.

    flock /tmp/r1-heavy.lock python -m tests.bench.bench_first_run [--problems 48]
    make bench      # pytest -o python_files='bench_*.py' tests/bench

The embedded default as `make run` has it (tasks, prompts, k, max_tokens, batch size), on
its first ``--problems`` clean problems, with one loaded engine for everything (what
``keep_engines_open`` gives the pipeline):
1. pass_rates: ``difficulty.materialize_shard`` per shard (resume check, streamed generation
   with DuckDB checkpoints, math-verify scoring, partition write), then raw ``LLM.chat`` on the
   same prompts with the same per-sample seeds;
2. distillations: ``distillation.materialize_distillations`` per shard, then raw ``LLM.chat``.
The verifiers' worker server starts before the model loads, as in the pipeline (where the
load is lazy, inside the first shard's generation). The r1-curator side runs first; the prefix
cache is emptied before each side, so neither reuses the other's prefills (the prompts are the
same). Ratio: generated tokens per second of wall time, target >= 0.9. The model load is
measured apart.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")

import polars as pl

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from r1_assets import difficulty, distillation
from r1_assets.config import load_config
from r1_assets.engines import keep_engines_open, open_engine, sample_seed
from r1_assets.prompts import render_sample_prompt
from r1_assets.small_model import convert_gguf, small_model_dir
from r1_assets.sources import collect_source
from r1_assets.storage import Lineage, Store
from r1_assets.verification import start_worker_server


def write_problems(store: Store, cfg, n: int) -> pl.DataFrame:
    """Store ``n`` distinct problems, the first ones of each of the default's reasoning-gym sources
    in equal parts, as raw_problems and clean_problems (each with its domain, so every sample is
    scored by its own verifier, as in the pipeline); returns the clean rows."""
    frames = []
    for source in (s for s in cfg.sources if s.kind == "reasoning_gym"):
        raw = collect_source(source, cfg, stage="raw_problems").rows.with_columns(run_id=pl.lit("bench"))
        store.replace_partition("raw_problems", raw, where={"source": source.name}, lineage=Lineage(run_id="bench"))
        frames.append(raw.unique("problem_id", maintain_order=True))
    per_source = n // len(frames)
    rows = pl.concat([f.head(per_source) for f in frames]).unique("problem_id", keep="first", maintain_order=True)
    clean = rows.select("problem_id", "source", "source_row", "problem", "answer", "domain", "run_id")
    store.replace_partition("clean_problems", clean, where=None, lineage=Lineage(run_id="bench"))
    return clean


def raw_chat(llm, problems: pl.DataFrame, sampling, templates) -> tuple[int, float]:
    from vllm import SamplingParams

    messages, params = [], []
    for row in problems.iter_rows(named=True):
        pid = row["problem_id"]
        for i in range(sampling.n):
            messages.append([{"role": "user", "content": render_sample_prompt(templates, row, i)}])
            params.append(SamplingParams(temperature=sampling.temperature, top_p=sampling.top_p,
                                         max_tokens=sampling.max_tokens, seed=sample_seed(sampling.seed, pid, i)))
    llm.reset_prefix_cache()  # cold, as the r1-curator side started: no reuse of its prefills
    t0 = time.monotonic()
    outs = llm.chat(messages, params, use_tqdm=False)
    return sum(len(o.outputs[0].token_ids) for o in outs), time.monotonic() - t0


def side_by_side(name: str, asset_tokens: int, asset_s: float, raw: tuple[int, float]) -> dict:
    raw_tokens, raw_s = raw
    out = {"asset_tokens": asset_tokens, "asset_s": round(asset_s, 1), "asset_tok_s": round(asset_tokens / asset_s, 1),
           "raw_tokens": raw_tokens, "raw_s": round(raw_s, 1), "raw_tok_s": round(raw_tokens / raw_s, 1),
           "ratio": round((asset_tokens / asset_s) / (raw_tokens / raw_s), 3)}
    print(f"{name}: r1-curator {out['asset_tok_s']} tok/s ({asset_tokens} tokens, {out['asset_s']}s) vs raw LLM.chat "
          f"{out['raw_tok_s']} tok/s ({raw_tokens} tokens, {out['raw_s']}s): ratio {out['ratio']}", flush=True)
    return out


def run(args) -> dict:
    cache = REPO / ".pytest_cache" / "d" / "r1-small-model"
    model_dir = convert_gguf(small_model_dir(cache)).path
    os.environ.setdefault("VLLM_CACHE_ROOT", str(cache / "vllm-cache"))
    os.environ.pop("R1_CONFIG", None)
    cfg = load_config()
    report: dict = {"args": vars(args), "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp, keep_engines_open():
        store = Store(Path(tmp) / "home")
        small_model_dir(store.home).parent.mkdir(parents=True)
        small_model_dir(store.home).symlink_to(model_dir, target_is_directory=True)
        problems = write_problems(store, cfg, args.problems)
        shards, _ = difficulty.sync_shards(store, cfg.difficulty.shard_size)
        # In the pipeline the verifiers' worker server starts (materialize_shard) before the
        # engine's lazy load, so its imports overlap the load; here the load is done up front,
        # so the server starts first as well, or its imports would compete with the generation.
        start_worker_server(problems["domain"].fill_null("math").unique().to_list())
        with open_engine(cfg.model(cfg.difficulty.model), store.home) as engine:
            t0 = time.monotonic()
            engine.llm.chat([[{"role": "user", "content": "Say hi."}]] * 8, use_tqdm=False)  # load + warm-up
            report["load_s"] = round(engine.load_seconds, 1)
            report["warmup_s"] = round(time.monotonic() - t0 - engine.load_seconds, 1)
            engine.llm.reset_prefix_cache()
            t0, tokens = time.monotonic(), 0
            for shard in shards:  # the phases' start times, so a gap names its phase
                tokens += difficulty.materialize_shard(store, cfg, shard, engine, "bench",
                                                       log=lambda m: print(f"  +{time.monotonic() - t0:.1f}s {m}",
                                                                           flush=True)).stats.generated_tokens
            asset_s = time.monotonic() - t0
            dcfg = cfg.difficulty
            report["pass_rates"] = side_by_side("pass_rates", tokens, asset_s,
                                                raw_chat(engine.llm, problems, dcfg.sampling, dcfg.prompt_templates))
        with open_engine(cfg.model(cfg.distillation.model), store.home) as teacher:
            report["engines_shared"] = teacher is engine
            teacher.llm.reset_prefix_cache()
            t0, tokens, selected = time.monotonic(), 0, []
            for shard in shards:
                result = distillation.materialize_distillations(store, cfg, shard, teacher, "bench")
                tokens += result.stats.generated_tokens
                selected.append(distillation.select_problems(store, cfg, shard))
            asset_s = time.monotonic() - t0
            tcfg = cfg.distillation
            report["distillations"] = side_by_side("distillations", tokens, asset_s,
                                                   raw_chat(teacher.llm, pl.concat(selected), tcfg.sampling,
                                                            tcfg.prompt_templates))
    print(json.dumps(report, indent=2))
    return report


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--problems", type=int, default=48)
    return p.parse_args(argv)


def test_bench_first_run():
    report = run(parse_args([]))
    assert report["engines_shared"]
    assert report["pass_rates"]["ratio"] > 0 and report["distillations"]["ratio"] > 0


if __name__ == "__main__":
    run(parse_args())
