"""Teacher chain-of-thought distillation and its verification, one shard at a time.

Distillation (``distillations``): the shard's problems whose pass rate under
``difficulty.model`` lies inside ``distillation.band`` (or all of them) get ``sampling.n``
samples from the teacher through ``r1_assets.engines.run_generation``, which checkpoints
raw outputs into ``generations`` (purpose ``distillation``) and resumes: a crash loses at
most one batch and a re-run never duplicates. Each sample is then split into its reasoning
(inside ``<think>...</think>``) and its final answer part.

Verification (``verified_distillations``): every sample gets the verdict of its domain's
verifier (``r1_assets.verification``: math-verify, the code sandbox, the option letter, the
puzzle's scorer), the method and verifier version that produced it, and format checks. An
optional LLM judge looks again at samples the verifier rejects or cannot parse; its verdict is
stored next to the verifier's, never instead of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl

from r1_assets.config import PipelineConfig, VerificationConfig
from r1_assets.storage import Lineage, Store
from r1_assets.verification import (
    sample_from_row,
    sample_text,
    verification_warnings,
    verify_samples,
)
from r1_assets.verification.format import format_issues, split_reasoning
from r1_assets.verification.judge import judge_candidates, run_judge

PURPOSE = "distillation"
DISTILLATION_SCHEMA = {
    "generation_id": pl.String, "problem_id": pl.String, "model": pl.String, "params_hash": pl.String,
    "params": pl.String, "sample_idx": pl.Int32, "prompt": pl.String, "text": pl.String,
    "reasoning": pl.String, "final_answer": pl.String, "n_prompt_tokens": pl.Int32, "n_tokens": pl.Int32,
    "finish_reason": pl.String, "shard": pl.String, "run_id": pl.String,
}
VERIFIED_SCHEMA = {
    "generation_id": pl.String, "problem_id": pl.String, "domain": pl.String, "correct": pl.Boolean,
    "method": pl.String, "verifier": pl.String, "verdict": pl.String, "extracted_answer": pl.String, "format_ok": pl.Boolean,
    "format_issues": pl.List(pl.String), "judge_model": pl.String, "judge_verdict": pl.String,
    "detail": pl.String, "shard": pl.String, "run_id": pl.String,
}


# --------------------------------------------------------------------------------------------
# Distillation


@dataclass(frozen=True)
class DistillationShard:
    """What one ``distillations`` shard wrote, as the asset reports it."""

    model: str
    problems: int
    rows: pl.DataFrame
    stats: Any  # engines.GenerationStats of this run
    failed_samples: int
    finish_reasons: dict[str, int]


def select_problems(store: Store, cfg: PipelineConfig, shard: str) -> pl.DataFrame:
    """The shard's problems to distil: problem_id, domain, problem, answer, tests, choices, pass_rate."""
    dcfg = cfg.distillation
    difficulty_model = cfg.model(cfg.difficulty.model).name
    rows = store.query(
        "SELECT c.problem_id, c.domain, c.problem, c.answer, c.tests, c.choices, p.pass_rate "
        "FROM problem_references c JOIN problem_shards s USING (problem_id) "
        "LEFT JOIN pooled_pass_rates p ON p.problem_id = c.problem_id AND p.model = $model "
        "WHERE s.shard = $shard ORDER BY c.problem_id",
        {"model": difficulty_model, "shard": shard},
    )
    if dcfg.selection == "all":
        return rows
    lo, hi = dcfg.band
    return rows.filter(pl.col("pass_rate").is_not_null() & pl.col("pass_rate").is_between(lo, hi))


def distillation_rows(samples: pl.DataFrame, shard: str, run_id: str) -> pl.DataFrame:
    """``distillations`` rows from error-free ``generations`` rows, reasoning and answer split."""
    ok = samples.filter(pl.col("error").is_null())
    splits = [split_reasoning(t) for t in ok["text"].to_list()]
    return pl.DataFrame(
        {
            "generation_id": ok["generation_id"], "problem_id": ok["problem_id"], "model": ok["model"],
            "params_hash": ok["params_hash"], "params": ok["params"], "sample_idx": ok["sample_idx"],
            "prompt": ok["prompt"], "text": ok["text"],
            "reasoning": [r for r, _ in splits], "final_answer": [a for _, a in splits],
            "n_prompt_tokens": ok["n_prompt_tokens"], "n_tokens": ok["n_tokens"],
            "finish_reason": ok["finish_reason"],
            "shard": [shard] * ok.height, "run_id": [run_id] * ok.height,
        },
        schema=DISTILLATION_SCHEMA,
    )


def materialize_distillations(store: Store, cfg: PipelineConfig, shard: str, engine, run_id: str,
                              log: Callable[[str], None] | None = None) -> DistillationShard:
    """The ``distillations`` asset for one shard: select, generate what is missing, replace the partition.

    ``engine`` is an open engine for ``cfg.distillation.model``.
    """
    from r1_assets.engines import load_generations, run_generation

    say = log or (lambda msg: None)
    dcfg = cfg.distillation
    teacher = cfg.model(dcfg.model)
    problems = select_problems(store, cfg, shard)
    say(f"{shard}: {problems.height} problems selected ({dcfg.selection}, band {list(dcfg.band)}), "
        f"{dcfg.sampling.n} samples each from '{dcfg.model}' ({teacher.name})")
    stats = run_generation(store, engine, PURPOSE, problems, dcfg.sampling, dcfg.prompt_templates,
                           shard=shard, run_id=run_id, log=say)
    samples = load_generations(store, PURPOSE, teacher.name, stats.params_hash, problems["problem_id"])
    samples = samples.filter(pl.col("sample_idx") < dcfg.sampling.n)
    rows = distillation_rows(samples, shard, run_id)
    store.replace_partition(
        "distillations", rows, where={"shard": shard},
        lineage=Lineage(
            run_id=run_id,
            params={"role": dcfg.model, "model": teacher.name, "engine": teacher.engine,
                    "pricing": teacher.pricing.model_dump() if teacher.pricing else None,
                    "params_hash": stats.params_hash, "sampling": dcfg.sampling.model_dump(),
                    "prompt_templates": dcfg.prompt_templates.model_dump(), "selection": dcfg.selection,
                    "band": list(dcfg.band), "difficulty_model": cfg.model(cfg.difficulty.model).name},
            inputs=[{"table": "pass_rates", "partition": shard, "row_count": problems.height},
                    {"table": "generations", "partition": f"{PURPOSE}/{stats.params_hash}",
                     "row_count": samples.height}],
        ),
    )
    errors = samples.height - rows.height
    say(f"{shard}: {rows.height} distillation samples stored ({errors} failed generations left out)")
    return DistillationShard(
        model=teacher.name, problems=problems.height, rows=rows, stats=stats, failed_samples=errors,
        finish_reasons={str(k): v for k, v in rows.group_by("finish_reason").len().iter_rows()} if rows.height else {},
    )


# --------------------------------------------------------------------------------------------
# Verification


def shard_distillations(store: Store, shard: str) -> pl.DataFrame:
    """The shard's distillation samples with their problem and what its domain verifies against."""
    return store.query(
        "SELECT d.generation_id, d.problem_id, d.model, d.sample_idx, d.text, d.reasoning, d.final_answer, "
        "d.finish_reason, coalesce(r.domain, 'math') AS domain, r.problem, r.answer, r.tests, r.choices, r.metadata "
        "FROM distillations d LEFT JOIN problem_references r USING (problem_id) "
        "WHERE d.shard = $shard ORDER BY d.problem_id, d.sample_idx",
        {"shard": shard},
    )


def verified_rows(samples: pl.DataFrame, vcfg: VerificationConfig, shard: str, run_id: str,
                  progress=None) -> pl.DataFrame:
    """``verified_distillations`` rows (without judge verdicts) for ``shard_distillations`` samples."""
    records = samples.to_dicts()
    results = verify_samples([sample_from_row(r) for r in records], vcfg, lenient=vcfg.lenient, progress=progress)
    rows = []
    for r, res in zip(records, results):
        issues = format_issues(r["text"], r["reasoning"], r["final_answer"], r["finish_reason"], res.verdict, vcfg)
        rows.append({
            "generation_id": r["generation_id"], "problem_id": r["problem_id"], "domain": r["domain"],
            "correct": res.correct, "method": res.method, "verifier": res.verifier, "verdict": res.verdict,
            "extracted_answer": res.extracted_answer, "format_ok": not issues, "format_issues": issues,
            "judge_model": None, "judge_verdict": None, "detail": res.detail, "shard": shard, "run_id": run_id,
        })
    return pl.DataFrame(rows, schema=VERIFIED_SCHEMA)


def verification_shares(verified: pl.DataFrame, samples: pl.DataFrame) -> dict[str, float]:
    """Shares of a shard's samples the asset checks look at."""
    n = max(verified.height, 1)
    truncated = samples.filter(pl.col("finish_reason") == "length").height
    return {
        "unparseable_reference": verified.filter(pl.col("verdict") == "unparseable_reference").height / n,
        "timeout": verified.filter(pl.col("verdict") == "timeout").height / n,
        "truncated": truncated / max(samples.height, 1),
    }


@dataclass(frozen=True)
class VerifiedShard:
    """What one ``verified_distillations`` shard wrote, as the asset reports it (counts by key)."""

    verified: pl.DataFrame
    samples: int
    verdicts: dict[str, int]
    methods: dict[str, int]
    format_issues: dict[str, int]
    judge_verdicts: dict[str, int]
    shares: dict[str, float]  # verification_shares: what the asset checks look at
    domains: dict[str, int]
    verifiers: dict[str, int]
    warnings: list[str]


def materialize_verified(store: Store, cfg: PipelineConfig, shard: str, run_id: str,
                         log: Callable[[str], None] | None = None, judge_engine=None) -> VerifiedShard:
    """The ``verified_distillations`` asset for one shard; ``judge_engine`` is an open engine for
    ``verification.judge_model`` (or None to skip the judge)."""
    say = log or (lambda msg: None)
    vcfg = cfg.verification
    samples = shard_distillations(store, shard)
    domains = dict(samples.group_by("domain").len().iter_rows()) if samples.height else {}
    say(f"{shard}: verifying {samples.height} samples by domain {domains} (math timeout {vcfg.timeout_s}s per sample)")

    def progress(done: int, total: int) -> None:
        say(f"{shard}: verified {done}/{total}")

    verified = verified_rows(samples, vcfg, shard, run_id, progress=progress)
    judged = 0
    if judge_engine is not None:
        candidates = judge_candidates(verified).join(
            samples.select("generation_id", "problem", "answer", "text"), on="generation_id")
        items = candidates.with_columns(
            answer_text=pl.col("text").map_elements(sample_text, return_dtype=pl.String))
        say(f"{shard}: LLM judge ({judge_engine.model}) on {items.height} math samples math-verify rejected or could not parse")
        verdicts = run_judge(store, judge_engine, vcfg, items, shard, run_id, log=say)
        judged = len(verdicts)
        verified = verified.with_columns(
            judge_verdict=pl.col("generation_id").replace_strict(verdicts, default=None, return_dtype=pl.String),
        ).with_columns(
            judge_model=pl.when(pl.col("judge_verdict").is_not_null()).then(pl.lit(judge_engine.model))
            .otherwise(None).cast(pl.String),
        )
    store.replace_partition(
        "verified_distillations", verified, where={"shard": shard},
        lineage=Lineage(
            run_id=run_id,
            params={**vcfg.model_dump(exclude={"judge_prompt_template"}),
                    "judge_prompt_template": vcfg.judge_prompt_template if judge_engine is not None else None},
            inputs=[{"table": "distillations", "partition": shard, "row_count": samples.height}],
        ),
    )
    issues = verified.select(pl.col("format_issues").explode()).drop_nulls()
    say(f"{shard}: {verified.filter(pl.col('correct')).height} of {verified.height} samples correct")
    return VerifiedShard(
        verified=verified,
        samples=samples.height,
        verdicts=dict(verified.group_by("verdict").len().iter_rows()) if verified.height else {},
        methods=dict(verified.group_by("method").len().iter_rows()) if verified.height else {},
        format_issues=dict(issues.group_by("format_issues").len().iter_rows()) if issues.height else {},
        judge_verdicts=(dict(verified.drop_nulls("judge_verdict").group_by("judge_verdict").len().iter_rows())
                        if judged else {}),
        shares=verification_shares(verified, samples),
        domains=domains,
        verifiers=dict(verified.group_by("verifier").len().iter_rows()) if verified.height else {},
        warnings=verification_warnings(list(domains), vcfg),
    )
