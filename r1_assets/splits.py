"""Light-R1's two-stage SFT splits, selected inside DuckDB from the stage tables.

Stage 1 (``stage1_sft``), one row per problem:
  1. the problem is in ``clean_problems`` (deduplicated, not contaminated);
  2. its pass rate under ``difficulty.model`` is below ``splits.alpha``. The pass rate pools
     every ``pass_rates`` row of that model whose reference answer parsed
     (``reference_status = 'ok'``): sum(n_correct) / sum(k) (the view ``pooled_pass_rates`` and
     macro ``pass_rate_under`` in sql/schema.sql). A problem whose reference could not be
     parsed has no pass rate and is never selected;
  3. it has at least one *usable* teacher solution (``distillation_samples.usable`` in
     sql/schema.sql): ``verified_distillations.correct`` is true, ``format_ok`` is true,
     ``finish_reason = 'stop'`` and the reasoning is not empty;
  4. one solution is chosen per problem (``splits.choice``): ``shortest`` = fewest tokens,
     ties broken by generation_id; ``random`` = lowest md5(seed:generation_id), which is
     reproducible and does not change when unrelated samples are added;
  5. optional caps: at most ``max_per_source`` problems per source, at most
     ``caps_per_domain[d]`` per domain, then at most
     ``max_per_band`` per difficulty band. Problems over a cap are dropped in
     md5(seed:cap:problem_id) order, so the kept subset is reproducible and unbiased.

Stage 2 (``stage2_sft``): stage-1 rows (same chosen solution) whose pass rate under
``splits.stage2_model`` is below ``stage2_alpha``, and whose teacher samples are neither all
correct nor all wrong (counting decided samples only: correct is true or false).

Each row carries ``messages`` ready for SFT trainers::

    [{"role": "user", "content": <problem>},
     {"role": "assistant", "content": "<think>\\n<reasoning>\\n</think>\\n\\n<final answer>"}]

Every problem of the input gets exactly one ``outcome`` (why it was kept or dropped); the
counts per source are the split's funnel. Same tables + same params = same rows.

The SQL is in sql/splits (one file per operation, loaded like the analysis pack); this module
turns the config into the files' ``$name`` parameters and runs them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import duckdb
import polars as pl

from r1_assets.analysis import execute_bound_query, get_query
from r1_assets.config import ConfigError, PipelineConfig
from r1_assets.storage import SQL_DIR, Lineage, Store, quote_ident
from r1_assets.text import stable_hash

SPLITS = ("stage1_sft", "stage2_sft")
STAGE1_INPUTS = ("clean_problems", "pass_rates", "distillations", "verified_distillations")
STAGE2_INPUTS = ("stage1_sft", "pass_rates")

# Outcomes in funnel order: a problem gets the first one that applies.
STAGE1_OUTCOMES = (
    "unscored",  # no pass rate under the difficulty model (not sampled, or reference unparseable)
    "too_easy",  # pass rate >= alpha
    "not_distilled",  # no teacher sample
    "no_correct_sample",  # teacher samples exist, none verified correct
    "no_complete_correct_sample",  # correct ones are truncated, badly formatted or lack reasoning
    "capped_by_source",
    "capped_by_domain",
    "capped_by_band",
    "selected",
)
STAGE2_OUTCOMES = (
    "unscored_stage2",  # no pass rate under the stage-2 model
    "too_easy_stage2",  # stage-2 pass rate >= stage2_alpha
    "teacher_all_correct",  # no decided teacher sample is wrong: nothing hard left to learn
    "teacher_all_wrong",  # unreachable from stage 1 (it needs a correct one); kept for clarity
    "selected",
)


class SplitError(RuntimeError):
    """The split cannot be built as configured (e.g. no pass rates for the stage-2 model)."""


@dataclass(frozen=True)
class SplitSelection:
    """A selected split: rows for the split table, the funnel, and what lineage records."""

    split: str
    rows: pl.DataFrame  # columns of the split table, without run_id
    outcomes: pl.DataFrame  # source, outcome, problems
    params: dict[str, Any]
    inputs: list[dict[str, Any]]

    @property
    def params_hash(self) -> str:
        return stable_hash(json.dumps(self.params, sort_keys=True))

    def outcome_counts(self) -> dict[str, int]:
        totals = self.outcomes.group_by("outcome").agg(pl.col("problems").sum())
        return dict(zip(totals["outcome"].to_list(), totals["problems"].to_list()))


# -- parameters -------------------------------------------------------------------------------


def model_ids(cfg: PipelineConfig, model: str) -> list[str]:
    """The names under which ``model`` may appear in ``pass_rates.model``.

    ``model`` is a role in ``models:`` (then its role, name and served name all match) or a
    model name as stored.
    """
    spec = cfg.models.get(model)
    if spec is None:
        return [model]
    ids = [model, spec.name] + ([spec.served_model_name] if spec.served_model_name else [])
    return sorted(set(ids))


def band_labels(edges: list[float]) -> list[str]:
    last = len(edges) - 2
    return [
        f"[{lo:g},{hi:g}{']' if i == last else ')'}" for i, (lo, hi) in enumerate(pairwise(edges))
    ]


def stage1_params(cfg: PipelineConfig) -> dict[str, Any]:
    """Everything that decides stage 1's rows; recorded in lineage and export manifests."""
    s = cfg.splits
    return {
        "split": "stage1_sft",
        "difficulty_model": cfg.difficulty.model,
        "difficulty_model_ids": model_ids(cfg, cfg.difficulty.model),
        "alpha": s.alpha,
        "choice": s.choice,
        "seed": s.seed,
        "user_message": s.user_message,
        "max_per_source": s.max_per_source,
        "caps_per_domain": dict(s.caps_per_domain),
        "max_per_band": s.max_per_band,
        "band_edges": list(s.band_edges),
    }


def stage2_params(cfg: PipelineConfig) -> dict[str, Any]:
    s = cfg.splits
    model = s.stage2_model or cfg.difficulty.model
    return {
        "split": "stage2_sft",
        "stage2_model": model,
        "stage2_model_ids": model_ids(cfg, model),
        "stage2_alpha": s.stage2_alpha,
    }


# -- SQL ---------------------------------------------------------------------------------------

# One file per operation in sql/splits; the shared rules (pooled pass rate, usable sample) are
# views in sql/schema.sql.
SPLITS_SQL_DIR = SQL_DIR / "splits"


def _run(con: duckdb.DuckDBPyConnection, name: str, params: dict[str, Any] | None = None) -> duckdb.DuckDBPyConnection:
    return execute_bound_query(con, get_query(name, SPLITS_SQL_DIR), params or {})


def _fetch(con: duckdb.DuckDBPyConnection, name: str, params: dict[str, Any] | None = None) -> pl.DataFrame:
    return pl.from_arrow(_run(con, name, params).to_arrow_table())


def _input_counts(con: duckdb.DuckDBPyConnection, tables: tuple[str, ...]) -> list[dict[str, Any]]:
    return [
        {"table": t, "partition": "*", "row_count": con.execute(f"SELECT count(*) FROM {quote_ident(t)}").fetchone()[0]}
        for t in tables
    ]


def _cap(value: int | None) -> int:
    return value if value is not None else 2**62


# -- selection ---------------------------------------------------------------------------------


def select_stage1(con: duckdb.DuckDBPyConnection, cfg: PipelineConfig) -> SplitSelection:
    """Select stage 1 from the stage tables on ``con`` (read-only is enough)."""
    params = stage1_params(cfg)
    s = cfg.splits
    _run(
        con,
        "stage1_select",
        {
            "difficulty_ids": params["difficulty_model_ids"],
            "alpha": s.alpha,
            "seed": s.seed,
            "choice": s.choice,
            "band_inner_edges": [float(e) for e in s.band_edges[1:-1]],
            "band_labels": band_labels(s.band_edges),
            "max_per_source": _cap(s.max_per_source),
            "max_per_band": _cap(s.max_per_band),
            "cap_domains": list(s.caps_per_domain),
            "domain_caps": [_cap(c) for c in s.caps_per_domain.values()],
            "no_cap": _cap(None),
        },
    )
    return SplitSelection(
        split="stage1_sft",
        rows=_fetch(con, "stage1_rows", {"user_message": s.user_message}),
        outcomes=_fetch(con, "outcomes"),
        params=params,
        inputs=_input_counts(con, STAGE1_INPUTS),
    )


def select_stage2(con: duckdb.DuckDBPyConnection, cfg: PipelineConfig) -> SplitSelection:
    """Select stage 2 from ``stage1_sft`` and the stage-2 model's pass rates on ``con``."""
    params = stage2_params(cfg)
    ids = params["stage2_model_ids"]
    stage1_rows, stage2_model_rows, present = _run(con, "stage2_model_coverage", {"stage2_ids": ids}).fetchone()
    if stage1_rows and not stage2_model_rows:
        raise SplitError(
            f"splits.stage2_model '{params['stage2_model']}': pass_rates has no rows for it "
            f"(looked for model in {ids}; models present: {present}). Materialize pass_rates for "
            "that model first, or set splits.stage2_model to one of the models present."
        )
    _run(con, "stage2_select", {"stage2_ids": ids, "stage2_alpha": cfg.splits.stage2_alpha})
    return SplitSelection(
        split="stage2_sft",
        rows=_fetch(con, "stage2_rows"),
        outcomes=_fetch(con, "outcomes"),
        params=params,
        inputs=_input_counts(con, STAGE2_INPUTS),
    )


def build_split(store: Store, cfg: PipelineConfig, split: str, run_id: str) -> SplitSelection:
    """Select ``split`` (read-only connection) and replace its table, with lineage, in one write."""
    select = {"stage1_sft": select_stage1, "stage2_sft": select_stage2}.get(split)
    if select is None:
        raise ConfigError(f"unknown split '{split}'; known: {list(SPLITS)}")
    with store.connect(read_only=True) as con:
        selection = select(con, cfg)
    store.replace_partition(
        split,
        selection.rows.with_columns(run_id=pl.lit(run_id)),
        where=None,
        lineage=Lineage(
            run_id=run_id,
            params={**selection.params, "params_hash": selection.params_hash, "outcomes": selection.outcome_counts()},
            inputs=selection.inputs,
        ),
    )
    return selection
