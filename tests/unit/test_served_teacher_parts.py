"""Pieces of the served-teacher path: reasoning fields, Retry-After, token buckets, cost."""

from __future__ import annotations

import datetime as dt
import email.utils
import time

import pytest

from r1_assets.config import ModelConfig, PricingConfig, parse_config
from r1_assets.distillation import split_reasoning
from r1_assets.engines import (
    TokenBucket,
    cost_usd,
    estimate_tokens,
    retry_after_s,
    served_text,
    think_block,
)


def test_served_text_keeps_reasoning_and_answer_in_r1_format():
    msg = {"role": "assistant", "reasoning_content": "2 + 2 is 4.", "content": "The answer is $\\boxed{4}$."}
    text = served_text(msg)
    assert text == "<think>\n2 + 2 is 4.\n</think>\n\nThe answer is $\\boxed{4}$."
    assert split_reasoning(text) == ("2 + 2 is 4.", "The answer is $\\boxed{4}$.")
    # Newer vLLM: `reasoning`, alone or next to the same reasoning_content (not duplicated).
    assert served_text({"reasoning": "R", "content": "A"}) == "<think>\nR\n</think>\n\nA"
    assert served_text({"reasoning": "R", "reasoning_content": "R", "content": "A"}) == "<think>\nR\n</think>\n\nA"
    # Two different reasoning texts: neither is dropped.
    both = served_text({"reasoning_content": "R1", "reasoning": "R2", "content": "A"})
    assert "R1" in both and "R2" in both
    # Cut inside the reasoning: content null -> empty answer part, split gives no final answer.
    cut = served_text({"reasoning_content": "still thinking", "content": None})
    assert cut == "<think>\nstill thinking\n</think>\n\n" and split_reasoning(cut) == ("still thinking", None)
    # Servers that do not split leave the text as it came.
    assert served_text({"content": "<think>x</think>y"}) == "<think>x</think>y"
    assert served_text({"content": None}) == ""
    with pytest.raises(TypeError, match="reasoning_content"):
        served_text({"reasoning_content": 3, "content": "A"})


def test_think_block():
    assert think_block("<think>\nR\n</think>\n\nA") == "\nR\n"
    assert think_block("R</think>A") == "R"  # R1 templates open the block in the prompt
    assert think_block("<think>unclosed") == "unclosed"
    assert think_block("no tags") is None and think_block(None) is None


def test_retry_after_seconds_and_http_date():
    assert retry_after_s("2") == 2.0 and retry_after_s(" 0.5 ") == 0.5 and retry_after_s("-3") == 0.0
    now = dt.datetime(2026, 12, 1, 12, 0, 0, tzinfo=dt.UTC)
    date = email.utils.format_datetime(now + dt.timedelta(seconds=7), usegmt=True)
    assert retry_after_s(date, now=now) == 7.0
    assert retry_after_s(email.utils.format_datetime(now - dt.timedelta(seconds=7), usegmt=True), now=now) == 0.0
    assert retry_after_s(None) is None and retry_after_s("") is None and retry_after_s("soon") is None
    assert retry_after_s("inf") is None


def test_token_bucket_rate_burst_and_correction():
    bucket = TokenBucket(600)  # 10 per second, holds 10
    assert bucket.capacity == 10
    for _ in range(10):
        assert bucket.wait_s(1) == 0
        bucket.take(1)
    assert bucket.wait_s(1) == pytest.approx(0.1, abs=0.02)
    # A request larger than the bucket waits for a full bucket, then leaves it in debt.
    big = TokenBucket(60)  # 1 per second, holds 1
    assert big.wait_s(5) == 0
    big.take(5)
    assert big.wait_s(5) == pytest.approx(5.0, abs=0.05)
    # Usage below the estimate gives the difference back (never above the capacity).
    tokens = TokenBucket(6000)  # 100/s
    tokens.take(100)
    tokens.settle(estimated=100, actual=40)
    assert tokens.level == pytest.approx(60, abs=1)
    tokens.settle(estimated=100, actual=0)
    assert tokens.level == pytest.approx(100, abs=1e-6)
    started = time.monotonic()
    slow = TokenBucket(120)  # 2/s
    slow.take(2)
    assert slow.wait_s(1) == pytest.approx(0.5, abs=0.05)
    assert time.monotonic() - started < 0.1
    assert estimate_tokens("x" * 40, 100) == 110


def test_cost_from_pricing_with_cached_input():
    p = PricingConfig(input_per_mtok=0.55, output_per_mtok=2.19, cached_input_per_mtok=0.14)
    assert cost_usd(p, 1000, 2000, 400) == pytest.approx((600 * 0.55 + 400 * 0.14 + 2000 * 2.19) / 1e6)
    plain = PricingConfig(input_per_mtok=1, output_per_mtok=2)  # no cached price: cached billed as input
    assert cost_usd(plain, 1000, 2000, 400) == pytest.approx((1000 + 4000) / 1e6)
    assert cost_usd(None, 1000, 2000) is None and cost_usd(p, None, 2000) is None


def test_model_config_fields_and_errors():
    cfg = parse_config({
        "sources": [{"name": "a", "kind": "reasoning_gym", "task": "basic_arithmetic"}],
        "models": {"teacher": {"name": "deepseek-reasoner", "engine": "openai", "base_url": "http://x/v1",
                               "pricing": {"input_per_mtok": 0.55, "output_per_mtok": 2.19},
                               "max_requests_per_minute": 600, "max_tokens_per_minute": 1_000_000}},
    }, ".")
    teacher = cfg.model("teacher")
    assert teacher.pricing.output_per_mtok == 2.19 and teacher.pricing.cached_input_per_mtok is None
    assert teacher.max_requests_per_minute == 600 and teacher.max_tokens_per_minute == 1_000_000
    with pytest.raises(Exception, match="missing key 'output_per_mtok'"):
        parse_config({"sources": [{"name": "a", "kind": "reasoning_gym", "task": "t"}],
                      "models": {"t": {"name": "m", "pricing": {"input_per_mtok": 1}}}}, ".")
    with pytest.raises(Exception, match="max_requests_per_minute"):
        ModelConfig(name="m", max_requests_per_minute=0)


def test_cluster_profile_follows_r1_usage_recommendations():
    from r1_assets.config import load_config
    from r1_assets.engines import render_prompt

    cfg = load_config(__import__("r1_assets").__path__[0] + "/defaults/cluster.yaml")
    s = cfg.distillation.sampling
    assert (s.temperature, s.top_p, s.max_tokens) == (0.6, 0.95, 32768)
    assert render_prompt(cfg.distillation.prompt_templates.math, "What is 1+1?") == (
        "What is 1+1?\nPlease reason step by step, and put your final answer within \\boxed{}.")


def test_pass_rates_score_the_answer_after_the_think_block():
    import polars as pl

    from r1_assets.config import VerificationConfig
    from r1_assets.difficulty import score_pass_rates

    texts = [served_text({"reasoning_content": "Try $\\boxed{3}$? No, recount.", "content": "The answer is $\\boxed{4}$."}),
             # A boxed 4 inside the reasoning must not make the answer "5" correct.
             served_text({"reasoning_content": "Maybe $\\boxed{4}$.", "content": "So the answer is $5$."})]
    samples = pl.DataFrame({"problem_id": ["p", "p"], "sample_idx": [0, 1], "text": texts, "error": [None, None]},
                           schema_overrides={"error": pl.String})
    rates = score_pass_rates(pl.DataFrame({"problem_id": ["p"], "answer": ["4"]}), samples, model="m", params_hash="h",
                             k=2, shard="s", run_id="r", verification=VerificationConfig(workers=1), lenient=False)
    assert rates["n_correct"].to_list() == [1] and rates["pass_rate"].to_list() == [0.5]
