"""Light-R1's two-stage SFT splits, selected inside DuckDB from the stage tables.

Stage 1 (``stage1_sft``), one row per problem:
  1. the problem is in ``clean_problems`` (deduplicated, not contaminated);
  2. its pass rate under ``difficulty.model`` is below ``splits.alpha``. The pass rate pools
     every ``pass_rates`` row of that model whose reference answer parsed
     (``reference_status = 'ok'``): sum(n_correct) / sum(k). A problem whose reference could
     not be parsed has no pass rate and is never selected;
  3. it has at least one *verified, complete* teacher solution: ``verified_distillations.correct``
     is true, ``format_ok`` is true, ``finish_reason = 'stop'`` and the reasoning is not empty;
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
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import duckdb
import polars as pl

from r1_assets.config import ConfigError, PipelineConfig, SplitsConfig
from r1_assets.storage import Lineage, Store
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
        f"[{lo:g},{hi:g}{']' if i == last else ')'}" for i, (lo, hi) in enumerate(zip(edges, edges[1:]))
    ]


def _band_case(column: str, edges: list[float]) -> str:
    """SQL CASE naming the band of ``column``; edges are validated floats, never user text."""
    labels = band_labels(edges)
    whens = " ".join(f"WHEN {column} < {float(hi)!r} THEN '{label}'" for hi, label in zip(edges[1:-1], labels))
    return f"CASE {whens} ELSE '{labels[-1]}' END"


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

# Pooled pass rate per problem under one model (any params_hash / shard), decided rows only.
_PASS_RATE_CTE = """
    SELECT problem_id, sum(n_correct)::DOUBLE / sum(k) AS pass_rate
    FROM pass_rates
    WHERE list_contains(${ids}, model) AND reference_status = 'ok'
      AND pass_rate IS NOT NULL AND k > 0
    GROUP BY problem_id
"""

# The ORDER of candidate samples for ``splits.choice``; the first one is chosen (arg_min).
_CHOICE_ORDER = {
    "shortest": "(coalesce(d.n_tokens, 2147483647), length(d.reasoning) + length(coalesce(d.final_answer, '')), d.generation_id)",
    "random": "(md5($seed::VARCHAR || ':' || d.generation_id), d.generation_id)",
}
# A usable solution: verified correct, well formatted, finished, with non-whitespace reasoning
# (regexp, as trim() is ~20x slower on a million rows).
_USABLE = (
    "v.correct AND v.format_ok AND d.finish_reason = 'stop' AND regexp_matches(coalesce(d.reasoning, ''), '\\S')"
)
_WS = "chr(32) || chr(9) || chr(10) || chr(13)"


def _stage1_sql(splits: SplitsConfig) -> str:
    # Speed (1M generations): one join of the generation-sized tables, aggregated per problem
    # (counts and the chosen sample together); the cap windows only see the narrow eligible rows.
    return f"""
CREATE OR REPLACE TEMP TABLE _stage1 AS
WITH difficulty AS ({_PASS_RATE_CTE.format(ids="difficulty_ids")}),
samples AS (
    SELECT d.problem_id,
           count(*) AS n_samples,
           count(*) FILTER (WHERE v.correct) AS n_correct,
           count(*) FILTER (WHERE NOT v.correct) AS n_wrong,
           arg_min(d.generation_id, {_CHOICE_ORDER[splits.choice]}) FILTER (WHERE {_USABLE}) AS generation_id
    FROM distillations d LEFT JOIN verified_distillations v USING (generation_id)
    GROUP BY d.problem_id
),
classified AS (
    SELECT c.problem_id, c.source, c.domain, dif.pass_rate,
           {_band_case("dif.pass_rate", splits.band_edges)} AS difficulty_band,
           s.n_samples, s.n_correct, s.n_wrong, s.generation_id,
           CASE WHEN dif.pass_rate IS NULL THEN 'unscored'
                WHEN dif.pass_rate >= $alpha THEN 'too_easy'
                WHEN s.n_samples IS NULL THEN 'not_distilled'
                WHEN s.n_correct = 0 THEN 'no_correct_sample'
                WHEN s.generation_id IS NULL THEN 'no_complete_correct_sample'
                ELSE 'eligible' END AS outcome
    FROM clean_problems c
    LEFT JOIN difficulty dif USING (problem_id)
    LEFT JOIN samples s USING (problem_id)
),
by_source AS (
    SELECT problem_id, difficulty_band, md5($seed::VARCHAR || ':cap:' || problem_id) AS cap_key,
           row_number() OVER (PARTITION BY source ORDER BY cap_key) AS source_rank,
           row_number() OVER (PARTITION BY domain ORDER BY cap_key) AS domain_rank,
           coalesce($domain_caps[list_position($cap_domains, domain)], $no_cap) AS domain_cap
    FROM classified WHERE outcome = 'eligible'
),
by_band AS (
    SELECT problem_id, source_rank, domain_rank, domain_cap,
           CASE WHEN source_rank <= $max_per_source AND domain_rank <= domain_cap THEN
                row_number() OVER (PARTITION BY difficulty_band, source_rank <= $max_per_source AND domain_rank <= domain_cap
                                   ORDER BY cap_key)
           END AS band_rank
    FROM by_source
)
SELECT c.* EXCLUDE (outcome),
       CASE WHEN c.outcome <> 'eligible' THEN c.outcome
            WHEN b.source_rank > $max_per_source THEN 'capped_by_source'
            WHEN b.domain_rank > b.domain_cap THEN 'capped_by_domain'
            WHEN b.band_rank > $max_per_band THEN 'capped_by_band'
            ELSE 'selected' END AS outcome
FROM classified c LEFT JOIN by_band b USING (problem_id)
"""


def _stage1_rows_sql(splits: SplitsConfig) -> str:
    """The selected rows with their messages (text is only read for the chosen samples)."""
    user = "c.problem" if splits.user_message == "problem" else "d.prompt"
    assistant = (
        f"'<think>' || chr(10) || trim(d.reasoning, {_WS}) || chr(10) || '</think>' || chr(10) || chr(10)"
        f" || trim(coalesce(d.final_answer, ''), {_WS})"
    )
    return f"""
SELECT s.problem_id, s.generation_id, s.source, s.domain,
       to_json([{{'role': 'user', 'content': {user}}}, {{'role': 'assistant', 'content': {assistant}}}]) AS messages,
       s.pass_rate, s.difficulty_band, d.model AS teacher_model, d.n_tokens, s.n_samples, s.n_correct, s.n_wrong
FROM _stage1 s
JOIN distillations d USING (generation_id)
JOIN clean_problems c ON c.problem_id = s.problem_id
WHERE s.outcome = 'selected'
ORDER BY s.problem_id
"""


_STAGE2_SQL = f"""
CREATE OR REPLACE TEMP TABLE _stage2 AS
WITH difficulty AS ({_PASS_RATE_CTE.format(ids="stage2_ids")})
SELECT s.*, dif.pass_rate AS stage2_pass_rate,
       CASE WHEN dif.pass_rate IS NULL THEN 'unscored_stage2'
            WHEN dif.pass_rate >= $stage2_alpha THEN 'too_easy_stage2'
            WHEN s.n_wrong = 0 THEN 'teacher_all_correct'
            WHEN s.n_correct = 0 THEN 'teacher_all_wrong'
            ELSE 'selected' END AS outcome
FROM stage1_sft s LEFT JOIN difficulty dif USING (problem_id)
"""

_STAGE2_ROWS = """
SELECT problem_id, generation_id, source, domain, messages, pass_rate, stage2_pass_rate, difficulty_band,
       teacher_model, n_tokens, n_samples, n_correct, n_wrong
FROM _stage2 WHERE outcome = 'selected' ORDER BY problem_id
"""

_OUTCOMES = "SELECT source, outcome, count(*) AS problems FROM {table} GROUP BY ALL ORDER BY source, outcome"


def _fetch(con: duckdb.DuckDBPyConnection, sql: str, params: dict | None = None) -> pl.DataFrame:
    return pl.from_arrow(con.execute(sql, params or {}).to_arrow_table())


def _input_counts(con: duckdb.DuckDBPyConnection, tables: tuple[str, ...]) -> list[dict[str, Any]]:
    # The tables are constants of this module, never config text.
    return [
        {"table": t, "partition": "*", "row_count": con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]}
        for t in tables
    ]


def _cap(value: int | None) -> int:
    return value if value is not None else 2**62


# -- selection ---------------------------------------------------------------------------------


def select_stage1(con: duckdb.DuckDBPyConnection, cfg: PipelineConfig) -> SplitSelection:
    """Select stage 1 from the stage tables on ``con`` (read-only is enough)."""
    params = stage1_params(cfg)
    con.execute(
        _stage1_sql(cfg.splits),
        {
            "difficulty_ids": params["difficulty_model_ids"],
            "alpha": cfg.splits.alpha,
            "seed": cfg.splits.seed,
            "max_per_source": _cap(cfg.splits.max_per_source),
            "max_per_band": _cap(cfg.splits.max_per_band),
            "cap_domains": list(cfg.splits.caps_per_domain),
            "domain_caps": list(cfg.splits.caps_per_domain.values()),
            "no_cap": _cap(None),
        },
    )
    return SplitSelection(
        split="stage1_sft",
        rows=_fetch(con, _stage1_rows_sql(cfg.splits)),
        outcomes=_fetch(con, _OUTCOMES.format(table="_stage1")),
        params=params,
        inputs=_input_counts(con, STAGE1_INPUTS),
    )


def select_stage2(con: duckdb.DuckDBPyConnection, cfg: PipelineConfig) -> SplitSelection:
    """Select stage 2 from ``stage1_sft`` and the stage-2 model's pass rates on ``con``."""
    params = stage2_params(cfg)
    ids = params["stage2_model_ids"]
    has_stage1 = con.execute("SELECT count(*) FROM stage1_sft").fetchone()[0] > 0
    if has_stage1 and not con.execute(
        "SELECT count(*) FROM pass_rates WHERE list_contains($ids, model)", {"ids": ids}
    ).fetchone()[0]:
        present = [r[0] for r in con.execute("SELECT DISTINCT model FROM pass_rates ORDER BY 1").fetchall()]
        raise SplitError(
            f"splits.stage2_model '{params['stage2_model']}': pass_rates has no rows for it "
            f"(looked for model in {ids}; models present: {present}). Materialize pass_rates for "
            "that model first, or set splits.stage2_model to one of the models present."
        )
    con.execute(_STAGE2_SQL, {"stage2_ids": ids, "stage2_alpha": cfg.splits.stage2_alpha})
    return SplitSelection(
        split="stage2_sft",
        rows=_fetch(con, _STAGE2_ROWS),
        outcomes=_fetch(con, _OUTCOMES.format(table="_stage2")),
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
