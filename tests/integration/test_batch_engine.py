"""engine: openai_batch against a loopback Batch API: JSONL with custom_id = generation_id,
submit, poll, ingest; resume from the recorded batch id after a crash; per-request errors.
The model test runs the batch through a real `vllm run-batch`."""

from __future__ import annotations

import json

import polars as pl
import pytest

from r1_assets.config import ModelConfig, PromptTemplates, SamplingConfig
from r1_assets.engines import (
    OpenAIBatchEngine,
    generation_id,
    open_engine,
    params_hash,
    run_generation,
    vllm_dtype,
)
from r1_assets.storage import Store
from tests.integration.batch_server import (
    BatchServer,
    deepseek_runner,
    run_batch_runner,
)
from tests.model_support import _cuda_available

SAMPLING = SamplingConfig(n=2, temperature=0.6, top_p=0.95, max_tokens=40, seed=0)
PROMPTS = PromptTemplates(math="{problem}")
PRICING = {"input_per_mtok": 0.275, "output_per_mtok": 1.095}  # half of the online price


def problems(n: int) -> pl.DataFrame:
    return pl.DataFrame({"problem_id": [f"p{i}" for i in range(n)], "problem": [f"What is {i} + {i + 5}?" for i in range(n)]})


def batch_model(base_url: str, **kw) -> ModelConfig:
    defaults = {"name": "deepseek-reasoner", "engine": "openai_batch", "base_url": base_url, "batch_poll_s": 0.05,
                "request_timeout_s": 10, "max_retries": 2, "retry_backoff_s": 0.01, "batch_size": 4, "pricing": PRICING}
    return ModelConfig(**{**defaults, **kw})


def test_batch_submit_poll_ingest_with_per_request_errors(tmp_path):
    store = Store(tmp_path / "home")
    cfg = batch_model("")
    ph = params_hash(cfg.name, SAMPLING, PROMPTS)
    failing = generation_id("distillation", "p1", cfg.name, ph, 0)
    with BatchServer(deepseek_runner(fail_ids={failing})) as server:
        cfg = batch_model(server.base_url)
        with open_engine(cfg, store.home) as engine:
            stats = run_generation(store, engine, "distillation", problems(3), SAMPLING, PROMPTS, "s0", "r1")
        assert server.batches_created == 1
        lines = [json.loads(x) for x in server.files["file-1"].decode().splitlines()]
        rows = store.query("SELECT * FROM generations ORDER BY generation_id")
        assert stats.generated == 6 and stats.errors == 1
        assert sorted(line["custom_id"] for line in lines) == rows["generation_id"].to_list()
        assert {line["url"] for line in lines} == {"/v1/chat/completions"}
        assert all(line["body"]["messages"] == [{"role": "user", "content": line["body"]["messages"][0]["content"]}]
                   for line in lines)
        bad = rows.filter(pl.col("error").is_not_null())
        assert bad["generation_id"].to_list() == [failing]
        assert "HTTP 400" in bad["error"][0] and "prompt rejected by policy" in bad["error"][0]
        good = rows.filter(pl.col("error").is_null())
        assert good["text"].str.starts_with("<think>\n").all()
        assert good["n_reasoning_tokens"].null_count() == 0 and good["cost_usd"].null_count() == 0
        # The failed request is retried by the next run, as a new batch of just that request.
        server.runner = deepseek_runner()
        with open_engine(cfg, store.home) as engine:
            again = run_generation(store, engine, "distillation", problems(3), SAMPLING, PROMPTS, "s0", "r2")
        assert again.generated == 1 and again.errors == 0 and server.batches_created == 2
    assert store.scalar("SELECT count(*) FROM generations WHERE error IS NULL") == 6


def test_batch_resumes_from_the_recorded_batch_after_a_crash(tmp_path, monkeypatch):
    store = Store(tmp_path / "home")
    with BatchServer(deepseek_runner()) as server:
        server.release.clear()  # the batch stays in progress
        cfg = batch_model(server.base_url)
        crash = RuntimeError("killed while waiting for the batch")

        def killed(self, client, state):
            raise crash

        with monkeypatch.context() as m:
            m.setattr(OpenAIBatchEngine, "wait", killed)
            with pytest.raises(RuntimeError, match="killed"), open_engine(cfg, store.home) as engine:
                run_generation(store, engine, "distillation", problems(4), SAMPLING, PROMPTS, "s0", "r1")
        assert server.batches_created == 1 and store.count("generations") == 0
        recorded = OpenAIBatchEngine(cfg, store.home).recorded_batches()
        assert len(recorded) == 1 and len(recorded[0]["custom_ids"]) == 8
        # A new process: the recorded batch is polled again, nothing is submitted twice.
        server.release.set()
        with open_engine(cfg, store.home) as engine:
            stats = run_generation(store, engine, "distillation", problems(4), SAMPLING, PROMPTS, "s0", "r2")
        assert stats.generated == 8 and stats.errors == 0 and server.batches_created == 1
        assert OpenAIBatchEngine(cfg, store.home).recorded_batches() == []  # ingested
        # Two more problems: only their samples go into a new batch.
        with open_engine(cfg, store.home) as engine:
            more = run_generation(store, engine, "distillation", problems(6), SAMPLING, PROMPTS, "s0", "r3")
        assert more.reused == 8 and more.generated == 4 and server.batches_created == 2


def test_batch_engine_needs_base_url(tmp_path):
    from r1_assets.engines import EngineError

    with pytest.raises(EngineError, match="openai_batch' needs key 'base_url'"):
        OpenAIBatchEngine(ModelConfig(name="x", engine="openai_batch"), tmp_path)


@pytest.mark.model
def test_batch_through_real_vllm_run_batch(converted_small_model, tmp_path):
    store = Store(tmp_path / "home")
    runner = run_batch_runner(converted_small_model, "small", tmp_path / "run-batch.log",
                              vllm_dtype("auto", on_cpu=not _cuda_available()))
    with BatchServer(runner) as server:
        cfg = batch_model(server.base_url, name="small_model", served_model_name="small", batch_poll_s=1.0,
                          pricing={"input_per_mtok": 1.0, "output_per_mtok": 2.0})
        with open_engine(cfg, store.home) as engine:
            stats = run_generation(store, engine, "distillation", problems(3), SAMPLING, PROMPTS, "s0", "r1")
        batch = next(iter(server.batches.values()))
    log = (tmp_path / "run-batch.log").read_text() if (tmp_path / "run-batch.log").exists() else ""
    assert batch["status"] == "completed", (batch, log[-3000:])
    rows = store.query("SELECT * FROM generations")
    assert stats.generated == 6 and stats.errors == 0, rows["error"].to_list()
    assert (rows["text"].str.len_chars() > 0).all() and set(rows["finish_reason"]) <= {"stop", "length"}
    assert (rows["n_tokens"] <= SAMPLING.max_tokens).all()
    assert rows["cost_usd"].to_list() == pytest.approx(
        [(p + 2 * c) / 1e6 for p, c in rows.select("n_prompt_tokens", "n_tokens").iter_rows()])
