"""The OpenAI-compatible engine against a real `vllm serve --reasoning-parser deepseek_r1` of the
small model on loopback, one server for the module: samples, usage and finish reasons come
through; every character the server returned (reasoning and content) is in generations.text,
and the reasoning/answer split of `distillations` gives back exactly what the server split."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from r1_assets import engines
from r1_assets.config import ModelConfig, PromptTemplates, SamplingConfig
from r1_assets.distillation import distillation_rows, split_reasoning
from r1_assets.engines import load_generations, open_engine, run_generation
from r1_assets.storage import Store
from tests.model_support import VllmServer

pytestmark = pytest.mark.model

SAMPLING = SamplingConfig(n=2, temperature=0.6, top_p=0.95, max_tokens=40, seed=0)
PROMPTS = PromptTemplates(math="{problem}")
# No prompt may contain "<think>"/"</think>": their added ids lie beyond the model's embedding
# (49152 rows), and a prompt token there crashes the engine ("index out of range in self").
PROBLEMS = ["What is 2 + 3?", "What is 7 * 6?", "Name a prime number larger than 10."]


def think_tokenizer_model(converted: Path, target: Path) -> Path:
    """The small model with `<think>`/`</think>` in its tokenizer: the deepseek_r1 parser looks
    them up in the vocabulary at startup. The weights are the converted ones, linked."""
    from transformers import AutoTokenizer

    target.mkdir()
    for name in ("model.safetensors", "config.json", "generation_config.json"):
        (target / name).symlink_to(converted / name)
    tokenizer = AutoTokenizer.from_pretrained(converted)
    tokenizer.add_tokens(["<think>", "</think>"])
    tokenizer.save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def served(converted_small_model, tmp_path_factory):
    base = tmp_path_factory.mktemp("served")
    model_dir = think_tokenizer_model(converted_small_model, base / "smollm2-think")
    server = VllmServer(model_dir, served_name="small", extra_args=("--reasoning-parser", "deepseek_r1"))
    server.start(base / "serve.log")
    yield server
    server.stop()
    assert server.proc.poll() is not None


def _engine_config(server: VllmServer, **extra) -> ModelConfig:
    return ModelConfig(name="small_model", served_model_name="small", engine="openai", base_url=server.base_url,
                       max_concurrency=8, request_timeout_s=120, batch_size=8, **extra)


def test_http_engine_against_real_vllm_serve(served, tmp_path):
    sampling = SamplingConfig(n=3, temperature=0.7, top_p=0.95, max_tokens=48, seed=0)
    problems = pl.DataFrame({"problem_id": [f"p{i:03d}" for i in range(4)],
                             "problem": [f"What is {i} + {i + 2}?" for i in range(4)]})
    store = Store(tmp_path / "home")
    with open_engine(_engine_config(served), tmp_path) as engine:
        stats = run_generation(store, engine, "pass_rate", problems, sampling,
                               PromptTemplates(math="{problem}\nAnswer with just the number."), "s0", "run1")
    assert stats.generated == 12 and stats.errors == 0 and stats.generated_tokens > 12
    rows = store.query("SELECT * FROM generations")
    assert rows["text"].str.len_chars().min() > 0
    assert set(rows["finish_reason"]) <= {"stop", "length"}
    assert (rows["n_tokens"] <= sampling.max_tokens).all() and (rows["n_prompt_tokens"] > 5).all()
    assert rows["model"].unique().to_list() == ["small_model"]


def test_vllm_serve_reasoning_parser_nothing_dropped(served, tmp_path, monkeypatch):
    seen: dict[tuple[str, int], dict] = {}
    result = engines.completion_result

    def spy(cfg, r, data, latency_s, params):  # what the real server returned, before the engine reads it
        seen[(r.key, r.sample_idx)] = data
        return result(cfg, r, data, latency_s, params)

    monkeypatch.setattr(engines, "completion_result", spy)
    cfg = _engine_config(served, pricing={"input_per_mtok": 1.0, "output_per_mtok": 2.0})
    store = Store(tmp_path / "home")
    problems = pl.DataFrame({"problem_id": [f"p{i}" for i in range(len(PROBLEMS))], "problem": PROBLEMS})
    with open_engine(cfg, tmp_path) as engine:
        stats = run_generation(store, engine, "distillation", problems, SAMPLING, PROMPTS, "s0", "run1")
    errors = store.query("SELECT error FROM generations WHERE error IS NOT NULL")["error"].to_list()
    assert stats.generated == 6 and stats.errors == 0, (errors[:2], served.log_path.read_text()[-3000:])
    samples = load_generations(store, "distillation", "small_model", stats.params_hash, problems["problem_id"])
    rows = distillation_rows(samples, "s0", "run1")
    assert rows.height == 6
    for row, gen in zip(rows.iter_rows(named=True), samples.iter_rows(named=True)):
        data = seen[(row["problem_id"], row["sample_idx"])]
        message, usage = data["choices"][0]["message"], data["usage"]
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        content = message.get("content")
        assert reasoning is not None, message  # the parser split the reply
        assert row["text"] == f"<think>\n{reasoning}\n</think>\n\n{content or ''}"
        assert (row["reasoning"], row["final_answer"]) == split_reasoning(row["text"])
        assert row["reasoning"] == reasoning.strip() and row["final_answer"] == ((content or "").strip() or None)
        details = usage.get("completion_tokens_details") or {}
        assert gen["n_reasoning_tokens"] == details.get("reasoning_tokens")
        assert gen["cost_usd"] == pytest.approx((usage["prompt_tokens"] + 2 * usage["completion_tokens"]) / 1e6)
