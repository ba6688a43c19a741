"""Each asset's ``code_version``: the library version plus the config sections the asset reads.

Dagster compares an asset's code version with the one its last materialization recorded. So
editing one section (say ``decontamination.ngram_size``) marks the assets that read it stale
in the UI, their descendants with them ("upstream code version changed"), and nothing else;
the refresh automation (``automation.refresh_condition``) then re-materializes exactly those.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from collections.abc import Callable

from r1_assets import __version__
from r1_assets.config import ModelConfig, PipelineConfig

# Model settings that change how a model runs, not what it writes: editing them is no reason
# to regenerate anything.
_OPERATIONAL_MODEL_KEYS = {
    "max_concurrency", "request_timeout_s", "max_retries", "retry_backoff_s", "failure_budget",
    "batch_size", "gpu_memory_utilization", "enforce_eager", "api_key_env",
    "max_requests_per_minute", "max_tokens_per_minute", "step_resources",
}


def _model(cfg: PipelineConfig, role: str | None) -> dict[str, Any] | None:
    model: ModelConfig | None = cfg.models.get(role) if role else None
    if model is None:
        return None
    return {k: v for k, v in model.model_dump().items() if k not in _OPERATIONAL_MODEL_KEYS}


def _limits(cfg: PipelineConfig) -> dict[str, Any]:
    return {"max_problem_chars": cfg.max_problem_chars, "max_answer_chars": cfg.max_answer_chars}


# What each asset reads from the config. An asset not listed reads none (library version only).
CONFIG_READ: dict[str, Callable[[PipelineConfig], Any]] = {
    "raw_problems": lambda c: {"sources": c.sources, **_limits(c)},
    "benchmark_problems": lambda c: {"benchmarks": c.benchmarks, **_limits(c)},
    "unique_problems": lambda c: {"dedupe": c.dedupe, "sources": [s.name for s in c.sources]},
    "clean_problems": lambda c: {
        "decontamination": c.decontamination,
        "judge": _model(c, c.decontamination.judge_model),
        "shingles": (c.dedupe.shingle_size, c.dedupe.num_perm, c.dedupe.seed),
        "shard_size": c.difficulty.shard_size,
    },
    "pass_rates": lambda c: {
        "difficulty": c.difficulty.model_dump(exclude={"shard_size", "band_edges"}),
        "model": _model(c, c.difficulty.model),
        "verification": (c.verification.timeout_s,),
    },
    "distillations": lambda c: {"distillation": c.distillation, "model": _model(c, c.distillation.model)},
    "verified_distillations": lambda c: {
        "verification": c.verification.model_dump(exclude={"workers"}),
        "judge": _model(c, c.verification.judge_model),
    },
    "stage1_sft": lambda c: {"splits": c.splits, "difficulty_model": _model(c, c.difficulty.model)},
    "stage2_sft": lambda c: {"splits": c.splits, "difficulty_model": _model(c, c.difficulty.model)},
    "split_exports": lambda c: {"export": c.export},
}


def _canonical(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return _canonical(value.model_dump())
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def asset_code_version(cfg: PipelineConfig, asset_name: str) -> str:
    """``<library version>-<12 hex digits of the config the asset reads>``."""
    read = CONFIG_READ.get(asset_name, lambda c: None)(cfg)
    digest = hashlib.sha256(json.dumps(_canonical(read), sort_keys=True, default=str).encode()).hexdigest()
    return f"{__version__}-{digest[:12]}"
