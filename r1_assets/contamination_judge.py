"""The optional LLM paraphrase judge of decontamination (``decontamination.judge_model``).

A hit of one of ``decontamination.judge_methods`` is shown to the judge, pool text beside
benchmark text, and it answers EQUIVALENT or DIFFERENT (``parse_judge_verdict``, shared with
the verification judge: a reply without a verdict word is AMBIGUOUS). ``decontaminate_clusters``
applies the verdicts: only DIFFERENT lifts a hit, so an unsure judge keeps a possible copy out.

Outputs go to ``generations`` (purpose ``contamination_judge``), one per question asked: a
re-run reuses them and a crashed run resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from r1_assets.config import DecontaminationConfig, SamplingConfig
from r1_assets.engines import load_generations, run_generation
from r1_assets.storage import Store
from r1_assets.text import stable_hash
from r1_assets.verification.judge import JUDGE_PROMPTS, parse_judge_verdict

PURPOSE = "contamination_judge"
VERDICT_COLUMNS = {"matched_problem_id": pl.Utf8, "benchmark": pl.Utf8, "benchmark_row": pl.Int64,
                   "judge_verdict": pl.Utf8, "judge_model": pl.Utf8}


def judge_key(matched_problem_id: str, benchmark: str, benchmark_row: int, prompt: str) -> str:
    """The ``generations.problem_id`` of one judged pair: the pair and the exact question asked, so
    a changed benchmark text or prompt template is judged again instead of reusing an old verdict."""
    return stable_hash(PURPOSE, matched_problem_id, benchmark, benchmark_row, prompt)


def judge_pairs(store: Store, engine, cfg: DecontaminationConfig, pairs: pl.DataFrame, run_id: str,
                log: Callable[[str], None] | None = None) -> pl.DataFrame:
    """Verdicts (``VERDICT_COLUMNS``) of the pairs the judge answered.

    ``pairs`` has matched_problem_id, benchmark, benchmark_row, pool_problem and
    benchmark_problem, one row per pair. A pair whose request failed has no row (its hit stands).
    """
    pairs = pairs.unique(["matched_problem_id", "benchmark", "benchmark_row"], maintain_order=True)
    if pairs.is_empty():
        return pl.DataFrame(schema=VERDICT_COLUMNS)
    keys, prompts = [], []
    for m, b, r, pool_text, bench_text in pairs.select(
            "matched_problem_id", "benchmark", "benchmark_row", "pool_problem", "benchmark_problem").iter_rows():
        prompts.append(cfg.judge_prompt_template.format(pool_problem=pool_text, benchmark_problem=bench_text))
        keys.append(judge_key(m, b, r, prompts[-1]))
    keyed = pairs.select("matched_problem_id", "benchmark", "benchmark_row").with_columns(
        problem_id=pl.Series(keys, dtype=pl.Utf8), problem=pl.Series(prompts, dtype=pl.Utf8))
    sampling = SamplingConfig(**{**cfg.judge_sampling.model_dump(), "n": 1})
    stats = run_generation(store, engine, PURPOSE, keyed.select("problem_id", "problem"), sampling, JUDGE_PROMPTS,
                           shard=None, run_id=run_id, log=log)
    outputs = load_generations(store, PURPOSE, engine.model, stats.params_hash, keyed["problem_id"])
    answered = {pid: parse_judge_verdict(text) for pid, text, err in
                outputs.select("problem_id", "text", "error").iter_rows() if err is None}
    return keyed.filter(pl.col("problem_id").is_in(list(answered))).select(
        "matched_problem_id", "benchmark", "benchmark_row",
        judge_verdict=pl.col("problem_id").replace_strict(answered, return_dtype=pl.Utf8),
        judge_model=pl.lit(engine.model, dtype=pl.Utf8),
    ).cast(VERDICT_COLUMNS)
