"""Teacher chain-of-thought distillation and its verification, one shard at a time.

Distillation (``distillations``): the shard's problems whose pass rate under
``difficulty.model`` lies inside ``distillation.band`` (or all of them) get ``sampling.n``
samples from the teacher through ``r1_assets.engines.run_generation``, which checkpoints
raw outputs into ``generations`` (purpose ``distillation``) and resumes: a crash loses at
most one batch and a re-run never duplicates. Each sample is then split into its reasoning
(inside ``<think>...</think>``) and its final answer part.

Verification (``verified_distillations``): every sample gets a math-verify verdict against
the reference (Open-R1 extraction, process pool, per-sample timeout; see
``r1_assets.verification``), the method that produced it, and format checks. An optional
LLM judge looks again at samples math-verify rejects or cannot parse; its verdict is stored
next to math-verify's, never instead of it.
"""

from __future__ import annotations

import re
import zlib
from typing import Callable

import polars as pl

from r1_assets.config import PipelineConfig, SamplingConfig, VerificationConfig
from r1_assets.storage import Lineage, Store

PURPOSE = "distillation"
JUDGE_PURPOSE = "judge"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"

# Format issues recorded in verified_distillations.format_issues.
UNCLOSED_THINK = "unclosed_think"  # <think> opened, never closed
EMPTY_REASONING = "empty_reasoning"  # the think block holds nothing
NO_THINK = "no_think"  # no <think> block although verification.require_think
NO_FINAL_ANSWER = "no_final_answer"  # nothing after the reasoning, or no answer extractable
TRUNCATED = "truncated"  # finish_reason says max_tokens cut it
REPETITION = "repetition"  # degenerate repetition
GENERATION_ERROR = "generation_error"  # no text (not expected: errored samples are not distilled)

DISTILLATION_SCHEMA = {
    "generation_id": pl.String, "problem_id": pl.String, "model": pl.String, "params_hash": pl.String,
    "params": pl.String, "sample_idx": pl.Int32, "prompt": pl.String, "text": pl.String,
    "reasoning": pl.String, "final_answer": pl.String, "n_prompt_tokens": pl.Int32, "n_tokens": pl.Int32,
    "finish_reason": pl.String, "shard": pl.String, "run_id": pl.String,
}
VERIFIED_SCHEMA = {
    "generation_id": pl.String, "problem_id": pl.String, "correct": pl.Boolean, "method": pl.String,
    "verdict": pl.String, "extracted_answer": pl.String, "format_ok": pl.Boolean,
    "format_issues": pl.List(pl.String), "judge_model": pl.String, "judge_verdict": pl.String,
    "detail": pl.String, "shard": pl.String, "run_id": pl.String,
}


# --------------------------------------------------------------------------------------------
# Splitting a sample


def split_reasoning(text: str | None) -> tuple[str | None, str | None]:
    """(reasoning, final_answer) of one sample.

    - ``<think>R</think>A``: R and A. R1-style chat templates put ``<think>`` in the prompt, so
      a lone ``</think>`` also closes a reasoning block that started the text.
    - ``<think>R`` never closed (cut by max_tokens): R and None.
    - No tags (a model that does not think aloud): the whole solution is the reasoning except
      its last paragraph, which is the final answer; a one-paragraph text is all reasoning,
      and its final answer is its last ``\\boxed{...}`` when there is one.
    """
    if text is None:
        return None, None
    open_at = text.find(THINK_OPEN)
    close_at = text.find(THINK_CLOSE, open_at + len(THINK_OPEN) if open_at >= 0 else 0)
    if open_at >= 0 and close_at < 0:
        return text[open_at + len(THINK_OPEN):].strip(), None
    if close_at >= 0:
        start = open_at + len(THINK_OPEN) if 0 <= open_at < close_at else 0
        return text[start:close_at].strip(), text[close_at + len(THINK_CLOSE):].strip() or None
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    if len(paragraphs) >= 2:
        return "\n\n".join(paragraphs[:-1]), paragraphs[-1]
    boxed = last_boxed(text)
    return text.strip(), (f"$\\boxed{{{boxed}}}$" if boxed is not None else None)


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (balanced braces), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed")
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1:j]
    return None


# --------------------------------------------------------------------------------------------
# Distillation


def select_problems(store: Store, cfg: PipelineConfig, shard: str) -> pl.DataFrame:
    """The shard's problems to distil: problem_id, problem, answer, pass_rate."""
    dcfg = cfg.distillation
    difficulty_model = cfg.model(cfg.difficulty.model).name
    rows = store.query(
        "SELECT c.problem_id, c.problem, c.answer, p.pass_rate "
        "FROM clean_problems c JOIN problem_shards s USING (problem_id) "
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
                              log: Callable[[str], None] | None = None) -> dict:
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
    stats = run_generation(store, engine, PURPOSE, problems, dcfg.sampling, dcfg.prompt_template,
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
                    "prompt_template": dcfg.prompt_template, "selection": dcfg.selection,
                    "band": list(dcfg.band), "difficulty_model": cfg.model(cfg.difficulty.model).name},
            inputs=[{"table": "pass_rates", "partition": shard, "row_count": problems.height},
                    {"table": "generations", "partition": f"{PURPOSE}/{stats.params_hash}",
                     "row_count": samples.height}],
        ),
    )
    errors = samples.height - rows.height
    say(f"{shard}: {rows.height} distillation samples stored ({errors} failed generations left out)")
    return {"model": teacher.name, "problems": problems.height, "rows": rows, "stats": stats,
            "failed_samples": errors,
            "finish_reasons": dict(rows.group_by("finish_reason").len().iter_rows()) if rows.height else {}}


# --------------------------------------------------------------------------------------------
# Format checks


def has_degenerate_repetition(text: str, vcfg: VerificationConfig = VerificationConfig()) -> bool:
    """True when the text ends in a block repeated over and over, or is mostly the same thing."""
    if not text:
        return False
    tail = text[-(vcfg.repetition_max_period * vcfg.repetition_min_repeats * 4):]
    for period in range(1, min(vcfg.repetition_max_period, len(tail) // vcfg.repetition_min_repeats) + 1):
        block = tail[-period:]
        repeats, end = 1, len(tail) - period
        while end - period >= 0 and tail[end - period:end] == block:
            repeats += 1
            end -= period
        if repeats >= vcfg.repetition_min_repeats and repeats * period >= vcfg.repetition_min_chars:
            return True
    if len(text) >= 2000:
        raw = text.encode("utf-8", "replace")
        if len(zlib.compress(raw, 6)) / len(raw) < vcfg.repetition_max_zlib_ratio:
            return True
    return False


def format_issues(text: str | None, reasoning: str | None, final_answer: str | None,
                  finish_reason: str | None, verdict: str | None,
                  vcfg: VerificationConfig = VerificationConfig()) -> list[str]:
    """Every format problem of one sample (empty list = format_ok)."""
    if text is None:
        return [GENERATION_ERROR]
    issues = []
    uses_think = THINK_OPEN in text or THINK_CLOSE in text
    if uses_think and THINK_CLOSE not in text:
        issues.append(UNCLOSED_THINK)
    elif uses_think and not (reasoning or "").strip():
        issues.append(EMPTY_REASONING)
    if not uses_think and vcfg.require_think:
        issues.append(NO_THINK)
    if not (final_answer or "").strip() or verdict == "unparseable_answer":
        issues.append(NO_FINAL_ANSWER)
    if finish_reason == "length":
        issues.append(TRUNCATED)
    if has_degenerate_repetition(text, vcfg):
        issues.append(REPETITION)
    return issues


def answer_text(text: str | None, reasoning: str | None, final_answer: str | None) -> str:
    """What math-verify reads: the final answer part after a closed think block, else the whole text.

    Inside a think block a reasoning model boxes intermediate results; its answer is what it
    writes after ``</think>``. Without a closed block the whole text is all there is.
    """
    if text and THINK_CLOSE in text and final_answer:
        return final_answer
    return text or ""


# --------------------------------------------------------------------------------------------
# LLM judge


_JUDGE_WORDS = re.compile(r"\b(NOT\s+EQUIVALENT|EQUIVALENT|DIFFERENT|AMBIGUOUS)\b", re.IGNORECASE)


def parse_judge_verdict(text: str | None) -> str:
    """EQUIVALENT / DIFFERENT / AMBIGUOUS from the judge's reply: its last verdict word wins.

    "not equivalent" is DIFFERENT; a reply without any verdict word is AMBIGUOUS.
    """
    words = _JUDGE_WORDS.findall(text or "")
    if not words:
        return "AMBIGUOUS"
    last = re.sub(r"\s+", " ", words[-1].upper())
    return "DIFFERENT" if last == "NOT EQUIVALENT" else last


def judge_candidates(verified: pl.DataFrame) -> pl.DataFrame:
    """Samples the judge looks at: math-verify said wrong, or could not parse one side."""
    return verified.filter(pl.col("verdict").is_in(["wrong", "unparseable_answer", "unparseable_reference"]))


def run_judge(store: Store, engine, vcfg: VerificationConfig, items: pl.DataFrame, shard: str, run_id: str,
              log: Callable[[str], None] | None = None) -> dict[str, str]:
    """Judge verdicts keyed by the distillation generation_id.

    ``items`` has generation_id, problem, answer (reference) and answer_text (the sample's
    final answer part). Judge outputs go to ``generations`` (purpose ``judge``, keyed by the
    judged sample), so a re-run reuses them.
    """
    from r1_assets.engines import load_generations, run_generation

    if items.is_empty():
        return {}
    prompts = pl.DataFrame({
        "problem_id": items["generation_id"],
        "problem": [
            vcfg.judge_prompt_template.format(problem=p, reference=r or "", answer=(a or "")[-4000:])
            for p, r, a in items.select("problem", "answer", "answer_text").iter_rows()
        ],
    })
    sampling = SamplingConfig(**{**vcfg.judge_sampling.model_dump(), "n": 1})
    stats = run_generation(store, engine, JUDGE_PURPOSE, prompts, sampling, "{problem}", shard=shard,
                           run_id=run_id, log=log)
    outputs = load_generations(store, JUDGE_PURPOSE, engine.model, stats.params_hash, prompts["problem_id"])
    return {gid: parse_judge_verdict(text) for gid, text, err in
            outputs.select("problem_id", "text", "error").iter_rows() if err is None}


# --------------------------------------------------------------------------------------------
# Verification


def shard_distillations(store: Store, shard: str) -> pl.DataFrame:
    """The shard's distillation samples with their problem and reference answer."""
    return store.query(
        "SELECT d.generation_id, d.problem_id, d.model, d.text, d.reasoning, d.final_answer, d.finish_reason, "
        "c.problem, c.answer FROM distillations d LEFT JOIN clean_problems c USING (problem_id) "
        "WHERE d.shard = $shard ORDER BY d.problem_id, d.sample_idx",
        {"shard": shard},
    )


def verify_samples(samples: pl.DataFrame, vcfg: VerificationConfig, shard: str, run_id: str,
                   progress=None) -> pl.DataFrame:
    """``verified_distillations`` rows (without judge verdicts) for samples with columns
    generation_id, problem_id, text, reasoning, final_answer, finish_reason, answer."""
    from r1_assets.verification import verify_batch

    records = samples.select("generation_id", "problem_id", "text", "reasoning", "final_answer",
                             "finish_reason", "answer").to_dicts()
    has_reference = [r["answer"] is not None and str(r["answer"]).strip() != "" for r in records]
    pairs = [(answer_text(r["text"], r["reasoning"], r["final_answer"]), r["answer"])
             for r, ok in zip(records, has_reference) if ok]
    results = iter(verify_batch(pairs, timeout_s=vcfg.timeout_s, workers=vcfg.workers,
                                lenient=vcfg.lenient, progress=progress))
    rows = []
    for r, ok in zip(records, has_reference):
        if ok:
            res = next(results)
            verdict, correct, extracted, detail = res.verdict, res.correct, res.extracted_answer, res.detail
            method = res.method or "math_verify"
        else:
            verdict, correct, extracted, detail, method = (
                "unparseable_reference", None, None, "no reference answer", "none")
        issues = format_issues(r["text"], r["reasoning"], r["final_answer"], r["finish_reason"], verdict, vcfg)
        rows.append({
            "generation_id": r["generation_id"], "problem_id": r["problem_id"], "correct": correct,
            "method": method, "verdict": verdict, "extracted_answer": extracted,
            "format_ok": not issues, "format_issues": issues, "judge_model": None, "judge_verdict": None,
            "detail": detail, "shard": shard, "run_id": run_id,
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


def materialize_verified(store: Store, cfg: PipelineConfig, shard: str, run_id: str,
                         log: Callable[[str], None] | None = None, judge_engine=None) -> dict:
    """The ``verified_distillations`` asset for one shard; ``judge_engine`` is an open engine for
    ``verification.judge_model`` (or None to skip the judge)."""
    say = log or (lambda msg: None)
    vcfg = cfg.verification
    samples = shard_distillations(store, shard)
    say(f"{shard}: verifying {samples.height} samples with math-verify (timeout {vcfg.timeout_s}s per sample)")

    def progress(done: int, total: int) -> None:
        say(f"{shard}: verified {done}/{total}")

    verified = verify_samples(samples, vcfg, shard, run_id, progress=progress)
    judged = 0
    if judge_engine is not None:
        candidates = judge_candidates(verified).join(
            samples.select("generation_id", "problem", "answer", "text", "reasoning", "final_answer"),
            on="generation_id")
        items = candidates.with_columns(answer_text=pl.struct("text", "reasoning", "final_answer").map_elements(
            lambda s: answer_text(s["text"], s["reasoning"], s["final_answer"]), return_dtype=pl.String))
        say(f"{shard}: LLM judge ({judge_engine.model}) on {items.height} samples math-verify rejected or could not parse")
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
    return {
        "verified": verified,
        "verdicts": dict(verified.group_by("verdict").len().iter_rows()) if verified.height else {},
        "methods": dict(verified.group_by("method").len().iter_rows()) if verified.height else {},
        "format_issues": dict(issues.group_by("format_issues").len().iter_rows()) if issues.height else {},
        "judge_verdicts": (dict(verified.drop_nulls("judge_verdict").group_by("judge_verdict").len().iter_rows())
                           if judged else {}),
        "shares": verification_shares(verified, samples),
        "samples": samples.height,
    }
