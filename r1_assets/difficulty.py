"""Pass-rate difficulty: k samples per problem from a small model, scored by math-verify.

Shards. ``clean_problems`` is split into shards of ``difficulty.shard_size`` problems, one
Dagster partition each, so a backfill spreads the work over executors. The assignment is
stored in ``problem_shards`` and never changes once made: problems already assigned keep
their shard, new ones fill new shards (sorted by problem_id, so the same input gives the
same shards on every machine). A materialized shard therefore always means the same set
of problems, even after more sources are added.

Scoring. Each sample is verified by its problem's domain verifier through
``r1_assets.verification.verify_samples``, the same path ``verified_distillations`` takes (for
math: math-verify with Open-R1's extraction, in a process pool). SmolLM2-135M almost never writes ``\\boxed{}``, so extraction is lenient by default:
when math-verify finds no LaTeX/boxed/expression answer, the last number of the text is
parsed instead. ``pass_rates`` records how each sample's answer was found (``n_boxed``,
``n_last_number``, ``n_unparseable_answer``) so the effect of that fallback is measurable.

A problem whose reference answer math-verify cannot parse gets
``reference_status='unparseable_reference'`` and a NULL pass rate: it is neither solved nor
unsolved (open-r1 issue 293 counted those as solved).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from r1_assets.config import VerificationConfig
from r1_assets.storage import Store
from r1_assets.verification import (
    reference_missing,
    sample_from_row,
    start_worker_server,
    verifier_name,
    verify_samples,
)

SHARD_PREFIX = "shard-"
PURPOSE = "pass_rate"


def shard_key(index: int) -> str:
    return f"{SHARD_PREFIX}{index:05d}"


def assign_shards(new_problem_ids: Sequence[str], existing_shards: Sequence[str], shard_size: int) -> pl.DataFrame:
    """Shard rows (problem_id, shard) for problems not assigned yet.

    New problems (sorted) fill new shards numbered after the highest existing one; existing
    shards are never touched, so their membership stays what was materialized.
    """
    ids = sorted(set(new_problem_ids))
    start = 1 + max((int(s[len(SHARD_PREFIX):]) for s in existing_shards), default=-1)
    shards = [shard_key(start + i // shard_size) for i in range(len(ids))]
    return pl.DataFrame({"problem_id": ids, "shard": shards}, schema={"problem_id": pl.String, "shard": pl.String})


def sync_shards(store: Store, shard_size: int, run_id: str = "shard_sync") -> tuple[list[str], list[str]]:
    """Assign every clean problem to a shard; returns (all shard keys with problems, new shard keys).

    Idempotent: assignments are appended with ``Store.append_new`` (problem_id is the key), so
    a repeated or concurrent call never moves or duplicates a problem.
    """
    existing = store.query("SELECT DISTINCT shard FROM problem_shards")["shard"].to_list()
    new_ids = store.query(
        "SELECT c.problem_id FROM clean_problems c ANTI JOIN problem_shards s USING (problem_id)"
    )["problem_id"].to_list()
    frame = assign_shards(new_ids, existing, shard_size).with_columns(run_id=pl.lit(run_id))
    store.append_new("problem_shards", frame)
    return stored_shard_keys(store), sorted(set(frame["shard"].to_list()))


def stored_shard_keys(store: Store) -> list[str]:
    """Every shard that holds at least one clean problem, in order."""
    return store.query(
        "SELECT DISTINCT s.shard FROM problem_shards s JOIN clean_problems c USING (problem_id) ORDER BY 1"
    )["shard"].to_list()


def shard_problems(store: Store, shard: str) -> pl.DataFrame:
    """The clean problems of one shard with what their domain verifies against: problem_id,
    domain, problem, answer, tests, choices, metadata."""
    return store.query(
        "SELECT r.problem_id, r.domain, r.problem, r.answer, r.tests, r.choices, r.metadata "
        "FROM problem_references r JOIN problem_shards s USING (problem_id) "
        "WHERE s.shard = $shard ORDER BY r.problem_id",
        {"shard": shard},
    )


def score_pass_rates(
    problems: pl.DataFrame,
    samples: pl.DataFrame,
    *,
    model: str,
    params_hash: str,
    k: int,
    shard: str,
    run_id: str,
    verification: VerificationConfig,
    lenient: bool = True,
    progress=None,
) -> pl.DataFrame:
    """One pass_rates row per problem from its stored samples (``generations`` rows).

    Only the first ``k`` error-free samples (by sample_idx) count, so k is the same for every
    problem whose samples all succeeded; a problem with failed samples has a smaller k. Each
    sample is verified by its problem's domain verifier (``r1_assets.verification.verify_samples``,
    the same path as ``verified_distillations``).
    """
    ok = samples.filter(pl.col("error").is_null() & (pl.col("sample_idx") < k))
    references = {r["problem_id"]: {**r, "domain": r.get("domain") or "math"} for r in problems.to_dicts()}
    candidates = [
        sample_from_row({**references[pid], "sample_idx": idx, "text": text or ""})
        for pid, idx, text in ok.select("problem_id", "sample_idx", "text").iter_rows()
    ]
    scored_samples = [c for c in candidates if not reference_missing(c)]
    results = verify_samples(scored_samples, verification, lenient=lenient, progress=progress) if scored_samples else []
    verdicts = pl.DataFrame(
        {
            "problem_id": [c.problem_id for c in scored_samples],
            "verdict": [r.verdict for r in results],
            "method": [r.method for r in results],
            "boxed": [("\\boxed" in (c.text or "")) for c in scored_samples],
        },
        schema={"problem_id": pl.String, "verdict": pl.String, "method": pl.String, "boxed": pl.Boolean},
    )
    per_problem = verdicts.group_by("problem_id").agg(
        n_samples=pl.len(),
        n_correct=(pl.col("verdict") == "correct").sum(),
        n_unparseable_reference=(pl.col("verdict") == "unparseable_reference").sum(),
        n_unparseable_answer=(pl.col("verdict") == "unparseable_answer").sum(),
        n_undecided=pl.col("verdict").is_in(["timeout", "error"]).sum(),
        n_boxed=pl.col("boxed").sum(),
        n_last_number=(pl.col("method") == "last_number").sum(),
    )
    rows = []
    stats = {r["problem_id"]: r for r in per_problem.iter_rows(named=True)}
    for pid, ref in references.items():
        s = stats.get(pid)
        n = int(s["n_samples"]) if s else 0
        row = {
            "problem_id": pid, "domain": ref["domain"], "verifier": verifier_name(ref["domain"], verification),
            "model": model, "params_hash": params_hash, "k": n,
            "n_correct": int(s["n_correct"]) if s else None, "pass_rate": None,
            "n_boxed": int(s["n_boxed"]) if s else 0,
            "n_last_number": int(s["n_last_number"]) if s else 0,
            "n_unparseable_answer": int(s["n_unparseable_answer"]) if s else 0,
            "n_undecided": int(s["n_undecided"]) if s else 0,
            "shard": shard, "run_id": run_id,
        }
        if reference_missing(sample_from_row({**ref, "sample_idx": 0})):
            row.update(reference_status="missing_reference", n_correct=None)
        elif s and s["n_unparseable_reference"] > 0:
            # math-verify parses the reference the same way for every sample: all or none.
            row.update(reference_status="unparseable_reference", n_correct=None)
        elif n == 0:
            row.update(reference_status="no_samples", n_correct=None)
        else:
            row.update(reference_status="ok", pass_rate=row["n_correct"] / n)
        rows.append(row)
    schema = {
        "problem_id": pl.String, "domain": pl.String, "verifier": pl.String, "model": pl.String,
        "params_hash": pl.String, "k": pl.Int32,
        "n_correct": pl.Int32, "pass_rate": pl.Float64, "n_boxed": pl.Int32, "n_last_number": pl.Int32,
        "n_unparseable_answer": pl.Int32, "n_undecided": pl.Int32, "shard": pl.String, "run_id": pl.String,
        "reference_status": pl.String,
    }
    return pl.DataFrame(rows, schema=schema)


def band_counts(pass_rates: pl.DataFrame, edges: Sequence[float]) -> dict[str, int]:
    """Problems per difficulty band [e0,e1), ..., [e_n-1, e_n]; NULL pass rates by reference_status."""
    labels = [f"[{lo:g},{hi:g}{']' if i == len(edges) - 2 else ')'}" for i, (lo, hi) in enumerate(zip(edges, edges[1:]))]
    counts = {label: 0 for label in labels}
    for rate, status in pass_rates.select("pass_rate", "reference_status").iter_rows():
        if rate is None:
            counts[status] = counts.get(status, 0) + 1
            continue
        for i, hi in enumerate(edges[1:]):
            if rate < hi or i == len(labels) - 1:
                counts[labels[i]] += 1
                break
    return counts


def histogram_markdown(pass_rates: pl.DataFrame, k: int) -> str:
    """Problems per number of correct samples (0..k) as a markdown table with text bars."""
    rated = pass_rates.filter(pl.col("pass_rate").is_not_null())
    counts = {i: 0 for i in range(k + 1)}
    for n_correct, n in rated.select("n_correct", "k").iter_rows():
        # Rows with fewer than k samples (failed ones) are binned on the 0..k scale.
        counts[min(k, round(n_correct * k / n)) if n else 0] += 1
    top = max(counts.values(), default=0) or 1
    lines = ["| correct of k | pass rate | problems | |", "|---|---|---|---|"]
    for i, c in counts.items():
        lines.append(f"| {i}/{k} | {i / k:.2f} | {c} | {'█' * math.ceil(20 * c / top) if c else ''} |")
    return "\n".join(lines)


@dataclass(frozen=True)
class PassRateShard:
    """What one ``pass_rates`` shard wrote, as the asset reports it."""

    model: str
    rates: pl.DataFrame
    stats: Any  # engines.GenerationStats of this run
    mean_pass_rate: float
    histogram: str
    bands: dict[str, int]
    reference_status: dict[str, int]
    domains: dict[str, int]
    boxed_share: float
    last_number_share: float


def materialize_shard(store: Store, cfg, shard: str, engine, run_id: str, log=None) -> PassRateShard:
    """The ``pass_rates`` asset for one shard: generate what is missing, score, replace the partition.

    ``engine`` is an open engine for ``cfg.difficulty.model`` (the asset opens it; benchmarks
    pass one they already loaded).
    """
    from r1_assets.engines import load_generations, run_generation
    from r1_assets.storage import Lineage

    say = log or (lambda msg: None)
    dcfg = cfg.difficulty
    model_cfg = cfg.model(dcfg.model)
    problems = shard_problems(store, shard)
    if problems.is_empty():
        raise ValueError(f"shard {shard} has no clean problems (clean_problems re-materialized without them?)")
    say(f"{shard}: {problems.height} problems x {dcfg.sampling.n} samples from '{dcfg.model}' ({model_cfg.name})")
    # The verifiers' imports (seconds) run while the samples they will score are generated.
    start_worker_server(problems["domain"].fill_null("math").unique().to_list())
    stats = run_generation(store, engine, PURPOSE, problems, dcfg.sampling, dcfg.prompt_templates,
                           shard=shard, run_id=run_id, log=say)
    samples = load_generations(store, PURPOSE, model_cfg.name, stats.params_hash, problems["problem_id"])
    say(f"{shard}: scoring {samples.height} samples, each with its domain's verifier")
    rates = score_pass_rates(
        problems, samples, model=model_cfg.name, params_hash=stats.params_hash, k=dcfg.sampling.n,
        shard=shard, run_id=run_id, verification=cfg.verification, lenient=dcfg.lenient_extraction,
    )
    store.replace_partition(
        "pass_rates",
        rates,
        where={"shard": shard, "model": model_cfg.name},
        lineage=Lineage(
            run_id=run_id,
            params={"role": dcfg.model, "model": model_cfg.name, "params_hash": stats.params_hash,
                    "sampling": dcfg.sampling.model_dump(), "prompt_templates": dcfg.prompt_templates.model_dump(),
                    "lenient_extraction": dcfg.lenient_extraction, "engine": model_cfg.engine,
                    "pricing": model_cfg.pricing.model_dump() if model_cfg.pricing else None},
            inputs=[{"table": "clean_problems", "partition": shard, "row_count": problems.height},
                    {"table": "generations", "partition": f"{PURPOSE}/{stats.params_hash}", "row_count": samples.height}],
        ),
    )
    rated = rates.filter(pl.col("pass_rate").is_not_null())
    n_samples = int(rates["k"].sum() or 0)
    mean = float(rated["pass_rate"].mean() or 0.0) if rated.height else 0.0
    say(f"{shard}: {rated.height} of {rates.height} problems rated, mean pass rate {mean:.3f}")
    return PassRateShard(
        model=model_cfg.name,
        rates=rates,
        stats=stats,
        mean_pass_rate=mean,
        histogram=histogram_markdown(rates, dcfg.sampling.n),
        bands=band_counts(rates, dcfg.band_edges),
        reference_status=dict(rates.group_by("reference_status").len().iter_rows()),
        domains=dict(rates.group_by("domain").len().iter_rows()),
        boxed_share=int(rates["n_boxed"].sum() or 0) / max(n_samples, 1),
        last_number_share=int(rates["n_last_number"].sum() or 0) / max(n_samples, 1),
    )
