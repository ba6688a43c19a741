"""Benchmark: pass_rates end to end vs raw vLLM, the HTTP engine vs raw requests, math-verify rate.

    nice python -m tests.bench.bench_engines [--problems 24] [--k 8] [--max-tokens 128]
    make bench      # pytest -o python_files='bench_*.py' tests/bench

Same engine, same prompts, same per-sample seeds, same process:
1. in-process vLLM: raw ``LLM.chat`` on all prompts at once vs ``difficulty.materialize_shard``
   (the body of the ``pass_rates`` asset: resume check, streaming generation with checkpoints
   to DuckDB, math-verify scoring, partition write) with the same loaded ``LLM``. Ratio of
   generated tokens per second of wall time, target >= 0.9. Model load is reported apart
   (a fixed cost per shard run).
2. HTTP: ``vllm serve`` of the same model; raw async httpx posting every request (same
   concurrency, no retries, no storage) vs the OpenAI engine under ``run_generation``
   (checkpoints to DuckDB; target >= 0.95) and vs ``materialize_shard`` (the whole
   ``pass_rates`` body: generation, math-verify scoring, partition write), in ``--rounds``
   interleaved rounds.
3. math-verify scoring rate of the generated samples: ``verify_batch`` with 1 worker vs a
   process pool of ``os.cpu_count()`` workers.
4. Client-side rate limit: the OpenAI engine with ``max_requests_per_minute`` (default 600)
   against the loopback DeepSeek-shaped test server (answers in ~1 ms, so only the limiter
   decides the pace): achieved requests per minute over ``--rpm-requests`` requests, target
   within 5% of the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")

import polars as pl  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from r1_assets import difficulty  # noqa: E402
from r1_assets.config import parse_config  # noqa: E402
from r1_assets.engines import VllmEngine, open_engine, render_prompt, sample_seed  # noqa: E402
from r1_assets.small_model import convert_gguf, small_model_dir  # noqa: E402
from r1_assets.storage import Lineage, Store  # noqa: E402
from r1_assets.text import problem_id  # noqa: E402
from r1_assets.verification import verify_batch  # noqa: E402


def make_problems(n: int) -> pl.DataFrame:
    import reasoning_gym

    rows = [(item["question"], str(item["answer"])) for item in reasoning_gym.create_dataset("basic_arithmetic", size=n, seed=7)]
    return pl.DataFrame({
        "problem_id": [problem_id(q) for q, _ in rows], "source": ["bench"] * n, "source_row": list(range(n)),
        "problem": [q for q, _ in rows], "answer": [a for _, a in rows], "run_id": ["bench"] * n,
    })


def new_store(root: Path, name: str, problems: pl.DataFrame, model_dir: Path, shard_size: int) -> Store:
    home = root / name
    target = small_model_dir(home)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(model_dir, target_is_directory=True)
    store = Store(home)
    store.replace_partition("clean_problems", problems, where=None, lineage=Lineage(run_id="bench"))
    difficulty.sync_shards(store, shard_size)
    return store


def config(args, engine: str = "vllm", base_url: str | None = None):
    model = {"name": "small_model", "dtype": "auto", "enforce_eager": True, "max_model_len": 2048,
             "batch_size": args.batch_size}
    if engine == "openai":
        model = {"name": "small_model", "engine": "openai", "base_url": base_url, "served_model_name": "small",
                 "max_concurrency": args.batch_size, "batch_size": args.batch_size, "request_timeout_s": 600}
    return parse_config({
        "sources": [{"name": "bench", "kind": "reasoning_gym", "task": "basic_arithmetic"}],
        "models": {"small": model},
        "difficulty": {"model": "small", "shard_size": args.problems,
                       "sampling": {"n": args.k, "temperature": 0.7, "top_p": 0.95, "max_tokens": args.max_tokens, "seed": 0}},
        "verification": {"workers": os.cpu_count()},
    }, REPO)


def requests(cfg, problems: pl.DataFrame) -> list[tuple[str, int]]:
    s = cfg.difficulty.sampling
    return [(pid, sample_seed(s.seed, pid, i)) for pid in problems["problem_id"] for i in range(s.n)]


def bench_vllm(args, root: Path, problems: pl.DataFrame, model_dir: Path) -> dict:
    from vllm import SamplingParams

    cfg = config(args)
    s = cfg.difficulty.sampling
    store = new_store(root, "vllm", problems, model_dir, args.problems)
    prompts = dict(zip(problems["problem_id"], problems["problem"]))
    engine = VllmEngine(cfg.model("small"), store.home)
    try:
        llm = engine.llm
        print(f"vllm: model loaded in {engine.load_seconds:.1f}s", flush=True)
        llm.chat([[{"role": "user", "content": "Say hi."}]] * 8, SamplingParams(max_tokens=16), use_tqdm=False)  # warm-up
        reqs = requests(cfg, problems)
        messages = [[{"role": "user", "content": render_prompt(cfg.difficulty.prompt_templates.math, prompts[pid])}] for pid, _ in reqs]
        params = [SamplingParams(temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens, seed=seed) for _, seed in reqs]
        t0 = time.monotonic()
        outs = llm.chat(messages, params, use_tqdm=False)
        raw_s = time.monotonic() - t0
        raw_tokens = sum(len(o.outputs[0].token_ids) for o in outs)
        print(f"vllm raw LLM.chat: {raw_tokens} tokens in {raw_s:.1f}s = {raw_tokens / raw_s:.0f} tok/s", flush=True)
        t0 = time.monotonic()
        result = difficulty.materialize_shard(store, cfg, "shard-00000", engine, "bench", log=None)
        asset_s = time.monotonic() - t0
    finally:
        engine.close()
    tokens = result.stats.generated_tokens
    print(f"vllm pass_rates end to end: {tokens} tokens in {asset_s:.1f}s = {tokens / asset_s:.0f} tok/s "
          f"(generation alone {result.stats.tokens_per_s:.0f} tok/s)", flush=True)
    samples = store.query("SELECT g.text, c.answer FROM generations g JOIN clean_problems c USING (problem_id)")
    return {
        "samples": len(reqs), "load_s": round(engine.load_seconds, 1),
        "raw_tokens": raw_tokens, "raw_s": round(raw_s, 1), "raw_tok_s": round(raw_tokens / raw_s, 1),
        "asset_tokens": tokens, "asset_s": round(asset_s, 1), "asset_tok_s": round(tokens / asset_s, 1),
        "ratio": round((tokens / asset_s) / (raw_tokens / raw_s), 3),
        "mean_pass_rate": round(result.mean_pass_rate, 3), "boxed_share": round(result.boxed_share, 3),
        "last_number_share": round(result.last_number_share, 3),
        "pass_rate_values": sorted(set(result.rates["pass_rate"].drop_nulls().to_list())),
        "pairs": list(samples.iter_rows()),
    }


async def raw_http(base_url: str, cfg, problems: pl.DataFrame, concurrency: int) -> tuple[int, float]:
    import httpx

    s = cfg.difficulty.sampling
    prompts = dict(zip(problems["problem_id"], problems["problem"]))
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=concurrency)) as client:
        async def one(pid: str, seed: int) -> int:
            async with sem:
                body = {"model": "small", "messages": [{"role": "user", "content": render_prompt(cfg.difficulty.prompt_templates.math, prompts[pid])}],
                        "temperature": s.temperature, "top_p": s.top_p, "max_tokens": s.max_tokens, "seed": seed}
                resp = await client.post(f"{base_url}/chat/completions", json=body)
                return resp.json()["usage"]["completion_tokens"]

        t0 = time.monotonic()
        counts = await asyncio.gather(*(one(pid, seed) for pid, seed in requests(cfg, problems)))
        return sum(counts), time.monotonic() - t0


def bench_http(args, root: Path, problems: pl.DataFrame, model_dir: Path) -> dict:
    """Rounds of raw httpx / the HTTP engine alone / the pass_rates body, interleaved so that
    server warm-up and machine load drift hit all three alike; ratios of summed tok/s."""
    from r1_assets.engines import run_generation
    from tests.model_support import VllmServer

    server = VllmServer(model_dir, served_name="small", max_num_seqs=args.batch_size)
    server.start(root / "serve.log")
    totals = {"raw": [0, 0.0], "engine": [0, 0.0], "asset": [0, 0.0]}
    errors = 0
    try:
        cfg = config(args, "openai", server.base_url)
        d = cfg.difficulty
        asyncio.run(raw_http(server.base_url, cfg, problems.head(2), 8))  # warm-up
        for i in range(args.rounds):
            tokens, seconds = asyncio.run(raw_http(server.base_url, cfg, problems, args.batch_size))
            totals["raw"][0] += tokens
            totals["raw"][1] += seconds
            print(f"http round {i}: raw httpx {tokens} tokens in {seconds:.1f}s = {tokens / seconds:.0f} tok/s", flush=True)
            store = new_store(root, f"http-engine-{i}", problems, model_dir, args.problems)
            t0 = time.monotonic()
            with open_engine(cfg.model("small"), store.home) as engine:
                stats = run_generation(store, engine, difficulty.PURPOSE, problems, d.sampling, d.prompt_templates,
                                       shard="shard-00000", run_id="bench")
            seconds = time.monotonic() - t0
            totals["engine"][0] += stats.generated_tokens
            totals["engine"][1] += seconds
            errors += stats.errors
            print(f"http round {i}: OpenAIEngine + run_generation (DuckDB checkpoints) {stats.generated_tokens} tokens "
                  f"in {seconds:.1f}s = {stats.generated_tokens / seconds:.0f} tok/s", flush=True)
            store = new_store(root, f"http-asset-{i}", problems, model_dir, args.problems)
            t0 = time.monotonic()
            with open_engine(cfg.model("small"), store.home) as engine:
                result = difficulty.materialize_shard(store, cfg, "shard-00000", engine, "bench")
            seconds = time.monotonic() - t0
            totals["asset"][0] += result.stats.generated_tokens
            totals["asset"][1] += seconds
            errors += result.stats.errors
            print(f"http round {i}: pass_rates body {result.stats.generated_tokens} tokens in {seconds:.1f}s = "
                  f"{result.stats.generated_tokens / seconds:.0f} tok/s", flush=True)
    finally:
        server.stop()
    rate = {k: tokens / seconds for k, (tokens, seconds) in totals.items()}
    return {
        "rounds": args.rounds, **{f"{k}_tokens": v[0] for k, v in totals.items()},
        **{f"{k}_s": round(v[1], 1) for k, v in totals.items()}, **{f"{k}_tok_s": round(v, 1) for k, v in rate.items()},
        "engine_ratio": round(rate["engine"] / rate["raw"], 3), "asset_ratio": round(rate["asset"] / rate["raw"], 3),
        "errors": errors,
    }


def bench_verify(pairs: list[tuple[str, str]], unique: int) -> dict:
    out = {"pairs": len(pairs)}
    for workers in (1, os.cpu_count() or 1):
        t0 = time.monotonic()
        results = verify_batch(pairs, timeout_s=5, workers=workers, lenient=True)
        seconds = time.monotonic() - t0
        out[f"workers_{workers}_per_s"] = round(len(pairs) / seconds, 1)
        print(f"math-verify, {workers} worker(s): {len(pairs)} samples in {seconds:.1f}s = {len(pairs) / seconds:.0f}/s", flush=True)
    # Answer extraction, measured on the real samples: Open-R1's extraction alone vs with the
    # last-number fallback (difficulty.lenient_extraction).
    strict = verify_batch(pairs[:unique], timeout_s=5, workers=os.cpu_count(), lenient=False)
    lenient = results[:unique]
    for name, rs in (("strict", strict), ("lenient", lenient)):
        out[f"{name}_correct"] = sum(r.verdict == "correct" for r in rs)
        out[f"{name}_unparseable_answer"] = sum(r.verdict == "unparseable_answer" for r in rs)
    out["samples_scored"] = unique
    out["lenient_by_method"] = {m: sum(r.method == m for r in lenient) for m in ("math_verify", "last_number", None)}
    return out


def bench_rate_limit(args) -> dict:
    from r1_assets.config import ModelConfig, SamplingConfig
    from r1_assets.engines import OpenAIEngine, SampleRequest
    from tests.integration.deepseek_server import DeepSeekServer

    sampling = SamplingConfig(n=1, max_tokens=64)
    reqs = [SampleRequest(key=f"p{i}", sample_idx=0, prompt=f"What is {i} + 1?", seed=i) for i in range(args.rpm_requests)]
    with DeepSeekServer() as server:
        engine = OpenAIEngine(ModelConfig(name="deepseek-reasoner", engine="openai", base_url=server.base_url,
                                          max_concurrency=32, max_requests_per_minute=args.rpm))
        t0 = time.monotonic()
        errors = sum(r.error is not None for r in engine.generate(reqs, sampling))
        seconds = time.monotonic() - t0
        starts = sorted(t for times in server.arrivals.values() for t, _ in times)
    achieved = 60 * len(reqs) / seconds
    # Steady state: between the first and the last arrival, after the initial one-second burst.
    burst = int(args.rpm / 60)
    steady = 60 * (len(starts) - 1 - burst) / (starts[-1] - starts[burst])
    print(f"rate limit {args.rpm}/min: {len(reqs)} requests in {seconds:.1f}s = {achieved:.0f}/min "
          f"(steady {steady:.0f}/min), {errors} errors", flush=True)
    return {"limit_per_min": args.rpm, "requests": len(reqs), "seconds": round(seconds, 2),
            "achieved_per_min": round(achieved, 1), "steady_per_min": round(steady, 1),
            "ratio": round(achieved / args.rpm, 4), "steady_ratio": round(steady / args.rpm, 4), "errors": errors}


def run(args) -> dict:
    cache = REPO / ".pytest_cache" / "d" / "r1-small-model"
    model_dir = convert_gguf(small_model_dir(cache)).path
    os.environ.setdefault("VLLM_CACHE_ROOT", str(cache / "vllm-cache"))
    problems = make_problems(args.problems)
    report: dict = {"args": vars(args), "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if "vllm" in args.parts:
            report["vllm"] = bench_vllm(args, root, problems, model_dir)
            pairs = report["vllm"].pop("pairs")
            report["verify"] = bench_verify(pairs * max(1, 1000 // max(len(pairs), 1)), len(pairs))
        if "http" in args.parts:
            report["http"] = bench_http(args, root, problems, model_dir)
        if "rpm" in args.parts:
            report["rate_limit"] = bench_rate_limit(args)
    print(json.dumps(report, indent=2))
    return report


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--problems", type=int, default=24)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--parts", nargs="*", default=["vllm", "http", "rpm"])
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds of the HTTP comparison")
    p.add_argument("--rpm", type=float, default=600)
    p.add_argument("--rpm-requests", type=int, default=600)
    return p.parse_args(argv)


def test_bench_engines():
    report = run(parse_args([]))
    assert report["vllm"]["ratio"] > 0 and report["http"]["errors"] == 0
    assert report["rate_limit"]["errors"] == 0 and abs(report["rate_limit"]["ratio"] - 1) <= 0.05


if __name__ == "__main__":
    import signal

    # `timeout` sends SIGTERM: turn it into SystemExit so `finally` stops vllm serve.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    run(parse_args())
