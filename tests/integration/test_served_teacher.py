"""Distilling from a served R1 through a loopback DeepSeek-shaped server (failure injection):
the chain of thought is kept, Retry-After is honoured, reasoning tokens and cost are recorded,
and the pipeline chain ends with the reasoning inside <think> in every stage-1 row."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from r1_assets.config import ModelConfig, PromptTemplates, SamplingConfig
from r1_assets.distillation import split_reasoning
from r1_assets.engines import OpenAIEngine, SampleRequest, cost_usd, run_generation
from r1_assets.storage import Store
from tests.paths import REPO_ROOT, open_data
from tests.integration.deepseek_server import DeepSeekServer, reply_parts

SAMPLING = SamplingConfig(n=1, temperature=0.6, top_p=0.95, max_tokens=64, seed=0)
PRICING = {"input_per_mtok": 0.55, "output_per_mtok": 2.19, "cached_input_per_mtok": 0.14}


def teacher(base_url: str, **kw) -> ModelConfig:
    defaults = {"name": "deepseek-reasoner", "engine": "openai", "base_url": base_url, "max_concurrency": 8,
                "request_timeout_s": 10, "max_retries": 3, "retry_backoff_s": 0.01, "batch_size": 4, "pricing": PRICING}
    return ModelConfig(**{**defaults, **kw})


def requests_for(n: int) -> list[SampleRequest]:
    return [SampleRequest(key=f"p{i}", sample_idx=0, prompt=f"What is {i} + {2 * i + 1}?", seed=i) for i in range(n)]


def test_reasoning_is_kept_in_every_sample_with_usage_and_cost():
    with DeepSeekServer() as server:
        server.plan = ["reasoning_field", "both_fields", "reasoning_only"]
        engine = OpenAIEngine(teacher(server.base_url, max_concurrency=1))
        results = list(engine.generate(requests_for(6), SAMPLING))
        replies = dict(server.replies)
    assert [r.error for r in results] == [None] * 6
    for r in results:
        data = replies[("deepseek-reasoner", r.prompt, r.params["sample_seed"])]
        message, usage = data["choices"][0]["message"], data["usage"]
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        # Every character the server returned is in the text, in R1's own format.
        assert r.text == f"<think>\n{reasoning}\n</think>\n\n{message['content'] or ''}"
        assert split_reasoning(r.text) == (reasoning, message["content"])
        assert r.n_reasoning_tokens == usage["completion_tokens_details"]["reasoning_tokens"] > 0
        assert r.n_tokens == usage["completion_tokens"] and r.n_prompt_tokens == usage["prompt_tokens"]
        cached = usage["prompt_tokens_details"]["cached_tokens"]
        expected = ((usage["prompt_tokens"] - cached) * 0.55 + cached * 0.14 + usage["completion_tokens"] * 2.19) / 1e6
        assert r.cost_usd == pytest.approx(expected)
    cut = [r for r in results if r.finish_reason == "length"]
    assert len(cut) == 1 and cut[0].text.endswith("</think>\n\n")


@pytest.mark.parametrize("status,retry_after,least_s", [(429, "1.5", 1.5), (503, "1", 1.0), (429, "date", 1.0)])
def test_retry_after_is_honoured_not_the_own_backoff(status, retry_after, least_s):
    # The own backoff would wait ~30 s: finishing in a few seconds means Retry-After was used.
    with DeepSeekServer(first_status=status, retry_after=retry_after, retry_after_date_s=2.0) as server:
        engine = OpenAIEngine(teacher(server.base_url, retry_backoff_s=30))
        started = time.monotonic()
        results = list(engine.generate(requests_for(4), SAMPLING))
        elapsed = time.monotonic() - started
        gaps = server.retry_gaps()
    assert [r.error for r in results] == [None] * 4
    assert len(gaps) == 4 and all(g >= least_s - 0.02 for g in gaps), gaps
    assert elapsed < least_s + 2.5, elapsed
    assert engine.retry_after_waits and max(engine.retry_after_waits) <= 2.0


def test_own_backoff_when_the_server_gives_no_retry_after():
    with DeepSeekServer(first_status=429, retry_after=None) as server:
        engine = OpenAIEngine(teacher(server.base_url, retry_backoff_s=0.2, max_concurrency=1))
        results = list(engine.generate(requests_for(2), SAMPLING))
        gaps = server.retry_gaps()
    assert [r.error for r in results] == [None, None]
    assert all(0.1 <= g < 1.0 for g in gaps), gaps  # 0.2 s jittered by 0.5-1.5x
    assert engine.retry_after_waits == []


def test_malformed_body_is_retried_then_recorded():
    with DeepSeekServer() as server:
        server.plan = ["malformed"]
        engine = OpenAIEngine(teacher(server.base_url, max_concurrency=1))
        results = list(engine.generate(requests_for(2), SAMPLING))
        assert [r.error for r in results] == [None, None] and server.calls == 3
        server.mode = "malformed"
        failed = list(engine.generate(requests_for(1), SAMPLING))
    assert "malformed response" in failed[0].error and "after 4 attempts" in failed[0].error
    assert failed[0].text is None and failed[0].cost_usd is None


def test_client_side_request_and_token_limits():
    with DeepSeekServer() as server:
        # 300 requests per minute = 5/s holding 5: 15 requests need >= 2 s.
        engine = OpenAIEngine(teacher(server.base_url, max_requests_per_minute=300, max_concurrency=16))
        started = time.monotonic()
        assert all(r.error is None for r in engine.generate(requests_for(15), SAMPLING))
        assert 1.9 <= time.monotonic() - started < 4.0
        # Tokens: each request is estimated at prompt/4 + 64 and really uses ~25, corrected
        # from usage, so 6000 tokens per minute (100/s) allow ~4 requests per second.
        engine = OpenAIEngine(teacher(server.base_url, max_tokens_per_minute=6000, max_concurrency=16))
        started = time.monotonic()
        results = list(engine.generate(requests_for(8), SAMPLING))
        elapsed = time.monotonic() - started
    used = sum(r.n_prompt_tokens + r.n_tokens for r in results)
    assert all(r.error is None for r in results)
    assert used / max(elapsed, 1e-9) <= 100 * 1.3 + 100 / max(elapsed, 1e-9)  # rate + one bucket of burst
    assert elapsed < 8 * 70 / 100  # faster than the uncorrected estimate would allow


def test_generations_rows_carry_reasoning_tokens_and_cost(tmp_path):
    import polars as pl

    store = Store(tmp_path / "home")
    problems = pl.DataFrame({"problem_id": [f"p{i}" for i in range(5)], "problem": [f"What is {i} * 3?" for i in range(5)]})
    with DeepSeekServer(first_status=429, retry_after="0.2") as server:
        engine = OpenAIEngine(teacher(server.base_url))
        stats = run_generation(store, engine, "distillation", problems, SAMPLING.model_copy(update={"n": 2}),
                               PromptTemplates(math="{problem}"), shard="s0", run_id="r1")
    rows = store.query("SELECT * FROM generations")
    assert rows.height == 10 and rows["error"].null_count() == 10
    assert rows["n_reasoning_tokens"].null_count() == 0 and rows["cost_usd"].null_count() == 0
    assert (rows["text"].str.starts_with("<think>\n")).all()
    expected = [cost_usd(engine.cfg.pricing, p, c, min(4, p)) for p, c in rows.select("n_prompt_tokens", "n_tokens").iter_rows()]
    assert rows["cost_usd"].to_list() == pytest.approx(expected)
    assert stats.cost_usd == pytest.approx(sum(expected)) and stats.reasoning_tokens == rows["n_reasoning_tokens"].sum()


# -- the pipeline chain with engine: openai for both roles ---------------------------------------

CHAIN = ["raw_problems", "benchmark_problems", "unique_problems", "clean_problems", "pass_rates",
         "distillations", "verified_distillations", "stage1_sft"]
PROBLEMS = [(f"What is {a} + {b}?", str(a + b)) for a, b in [(17, 25), (3, 9), (120, 7), (44, 56), (8, 13), (61, 29)]]


def test_pipeline_chain_keeps_the_teachers_reasoning_in_every_stage1_row(r1_home, write_config, tmp_path):
    source = tmp_path / "problems.jsonl"
    source.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in PROBLEMS))
    with DeepSeekServer(wrong_model="small-served", first_status=429, retry_after="1") as server:
        write_config({
            "sources": [{"name": "sums", "kind": "file", "path": str(source), "problem": "question", "answer": "answer"}],
            "models": {
                "small": {"name": "small-served", "engine": "openai", "base_url": server.base_url,
                          "max_concurrency": 8, "batch_size": 8, "max_retries": 2, "request_timeout_s": 30,
                          "pricing": {"input_per_mtok": 0.1, "output_per_mtok": 0.2}},
                "teacher": {"name": "deepseek-reasoner", "engine": "openai", "base_url": server.base_url,
                            "max_concurrency": 8, "batch_size": 8, "max_retries": 2, "request_timeout_s": 30,
                            "retry_backoff_s": 30, "pricing": PRICING, "max_requests_per_minute": 600},
            },
            "difficulty": {"model": "small", "shard_size": 50, "sampling": {"n": 2, "max_tokens": 64}},
            "distillation": {"model": "teacher", "selection": "all", "sampling": {"n": 2, "max_tokens": 256}},
            "splits": {"alpha": 0.5},
        })
        proc = subprocess.run([sys.executable, "-m", "dagster_project.pipeline", "--select", *CHAIN],
                              capture_output=True, text=True, timeout=900, cwd=REPO_ROOT, check=False)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
        gaps = server.retry_gaps()
    with open_data(r1_home) as con:
        dist = con.execute("SELECT problem_id, reasoning, final_answer, text FROM distillations").fetchall()
        stage1 = con.execute("SELECT s.messages, c.problem FROM stage1_sft s JOIN clean_problems c USING (problem_id)").fetchall()
        gens = con.execute("SELECT count(*), count(n_reasoning_tokens), count(cost_usd) FROM generations "
                           "WHERE error IS NULL").fetchone()
        lineage = con.execute("SELECT params FROM lineage WHERE table_name = 'distillations'").fetchone()[0]
    # 6 problems x (2 pass-rate + 2 teacher samples): every first request refused, then retried after >= 1 s.
    assert len(gaps) == 24 and min(gaps) >= 0.98, sorted(gaps)[:3]
    assert gens == (24, 24, 24)
    assert len(dist) == 12 and all(r and a for _, r, a, _ in dist)
    assert len(stage1) == len(PROBLEMS)
    for messages, problem in stage1:
        user, assistant = json.loads(messages)
        reasoning, answer = reply_parts(problem + "\nPlease reason", "deepseek-reasoner", "small-served")
        assert user == {"role": "user", "content": problem}
        assert assistant["content"] == f"<think>\n{reasoning}\n</think>\n\n{answer}"
    assert json.loads(lineage)["pricing"] == PRICING
