"""Light-R1 SFT splits, their exports, and the curation report, with charts in the UI.

The selection rules live in ``r1_assets.splits``; these assets call them and attach charts
(base64 PNGs in markdown metadata, which the asset page renders) and markdown tables.
"""

import dagster as dg
import polars as pl

from dagster_project.metadata import counts_markdown, markdown_table, table_metadata
from dagster_project.resources import DUCKDB_POOL, R1Resource
from r1_assets.analysis import execute_named_query
from r1_assets.charts import binned_bar_chart, funnel_chart, histogram_chart, png_markdown
from r1_assets.distillation import PURPOSE as DISTILLATION_PURPOSE
from r1_assets.engines import generation_spend
from r1_assets.export import export_split
from r1_assets.splits import STAGE1_OUTCOMES, STAGE2_OUTCOMES, SplitSelection, build_split, model_ids
from r1_assets.storage import Store, quote_ident

# The split tables read every shard of the sharded stages.
_ALL_SHARDS = dg.AllPartitionMapping()
_PREVIEW = ["problem_id", "source", "pass_rate", "difficulty_band", "n_tokens", "messages"]


def _outcomes_markdown(selection: SplitSelection, order: tuple[str, ...]) -> str:
    """Problems per outcome (rows) and source (columns), in funnel order."""
    if selection.outcomes.is_empty():
        return "_(no input problems)_"
    wide = selection.outcomes.pivot(on="source", index="outcome", values="problems").fill_null(0)
    sources = [c for c in wide.columns if c != "outcome"]
    wide = wide.with_columns(total=pl.sum_horizontal(sources))
    rank = {name: i for i, name in enumerate(order)}
    wide = wide.with_columns(pl.col("outcome").replace_strict(rank, default=len(rank)).alias("_rank"))
    return markdown_table(wide.sort("_rank").drop("_rank"), max_rows=len(order) + 1)


def _split_charts(
    selection: SplitSelection, band_edges: list[float], order: tuple[str, ...]
) -> dict[str, dg.MetadataValue]:
    rows = selection.rows
    rank = {name: i for i, name in enumerate(order)}
    outcomes = selection.outcomes.with_columns(
        pl.col("outcome").replace_strict(rank, default=len(rank)).alias("_rank")
    ).sort("_rank", "source")
    charts = {
        "outcomes": funnel_chart(outcomes, stage="outcome", count="problems", group="source",
                                 title=f"{selection.split}: why each input problem was kept or dropped"),
        "token_lengths": histogram_chart(
            rows["n_tokens"], groups=rows["source"], bins=20,
            title=f"{selection.split}: tokens of the chosen solutions, by source", xlabel="tokens",
        ),
        "difficulty": histogram_chart(
            rows["pass_rate"], groups=rows["source"], bins=band_edges,
            title=f"{selection.split}: pass rate under the difficulty model (bands), by source", xlabel="pass rate",
        ),
    }
    return {f"{name}_chart": dg.MetadataValue.md(png_markdown(png, name)) for name, png in charts.items()}


def _split_result(store: Store, selection: SplitSelection, order: tuple[str, ...], band_edges) -> dg.MaterializeResult:
    rows = selection.rows
    by_band = dict(rows.group_by("difficulty_band").len().iter_rows()) if rows.height else {}
    by_source = dict(rows.group_by("source").len().iter_rows()) if rows.height else {}
    spend = generation_spend(store, DISTILLATION_PURPOSE)
    return dg.MaterializeResult(
        metadata={
            **table_metadata(store, selection.split, preview_columns=_PREVIEW),
            "outcomes": dg.MetadataValue.md(_outcomes_markdown(selection, order)),
            "rows_by_source": dg.MetadataValue.md(counts_markdown(by_source, key="source")),
            "rows_by_band": dg.MetadataValue.md(counts_markdown(by_band, key="difficulty_band")),
            "mean_tokens": dg.MetadataValue.float(float(rows["n_tokens"].mean() or 0.0)),
            "selection_params": dg.MetadataValue.json(selection.params),
            "params_hash": dg.MetadataValue.text(selection.params_hash),
            # Every teacher sample paid for so far, against the rows this split kept.
            "teacher_spend_so_far": dg.MetadataValue.json(spend),
            "usd_per_kept_row": dg.MetadataValue.float(
                round(spend["cost_usd"] / rows.height, 6) if spend["cost_usd"] is not None and rows.height else 0.0),
            **_split_charts(selection, band_edges, order),
        }
    )


@dg.asset(
    deps=[
        dg.AssetDep("clean_problems"),
        dg.AssetDep("pass_rates", partition_mapping=_ALL_SHARDS),
        dg.AssetDep("distillations", partition_mapping=_ALL_SHARDS),
        dg.AssetDep("verified_distillations", partition_mapping=_ALL_SHARDS),
    ],
    pool=DUCKDB_POOL,
    group_name="splits",
    kinds={"duckdb", "python"},
    description="Light-R1 stage 1: clean problems whose pass rate under difficulty.model is below "
    "splits.alpha, with one verified, complete teacher solution each (splits.choice), as chat messages.",
)
def stage1_sft(context: dg.AssetExecutionContext, r1: R1Resource) -> dg.MaterializeResult:
    return _materialize_split(context, r1, "stage1_sft")


@dg.asset(
    deps=[dg.AssetDep("stage1_sft"), dg.AssetDep("pass_rates", partition_mapping=_ALL_SHARDS)],
    pool=DUCKDB_POOL,
    group_name="splits",
    kinds={"duckdb", "python"},
    description="Light-R1 stage 2: stage-1 rows whose pass rate under splits.stage2_model is below "
    "splits.stage2_alpha and whose teacher samples are neither all correct nor all wrong.",
)
def stage2_sft(context: dg.AssetExecutionContext, r1: R1Resource) -> dg.MaterializeResult:
    return _materialize_split(context, r1, "stage2_sft")


def _materialize_split(context: dg.AssetExecutionContext, r1: R1Resource, split: str) -> dg.MaterializeResult:
    cfg = r1.pipeline()
    store = r1.store()
    if split == "stage1_sft":
        settings, outcomes = f"alpha={cfg.splits.alpha}, choice={cfg.splits.choice}", STAGE1_OUTCOMES
    else:
        settings, outcomes = f"model={cfg.splits.stage2_model}, stage2_alpha={cfg.splits.stage2_alpha}", STAGE2_OUTCOMES
    context.log.info(f"selecting {split}: {settings}")
    selection = build_split(store, cfg, split, context.run.run_id)
    context.log.info(f"{split}: {selection.rows.height} rows; outcomes {selection.outcome_counts()}")
    return _split_result(store, selection, outcomes, cfg.splits.band_edges)


@dg.asset(
    deps=[dg.AssetDep("stage1_sft"), dg.AssetDep("stage2_sft")],
    group_name="splits",
    kinds={"parquet", "huggingface"},
    description="The splits as Parquet, JSONL and a datasets DatasetDict under $R1_HOME/exports/<split>/ "
    "(written atomically), optionally pushed to the Hugging Face hub (export.push_to_hub).",
)
def split_exports(context: dg.AssetExecutionContext, r1: R1Resource) -> dg.MaterializeResult:
    cfg = r1.pipeline()
    store = r1.store()
    summary, metadata = [], {}
    for split in cfg.export.splits:
        result = export_split(store, split, cfg.export, context.run.run_id)
        context.log.info(f"exported {split}: {result.rows} rows to {result.path}")
        if result.pushed_to:
            context.log.info(f"pushed {split} to the hub repo {result.pushed_to} (config {split})")
        size = sum(f["bytes"] for f in result.files.values())
        summary.append({"split": split, "rows": result.rows, "MiB": round(size / 2**20, 3),
                        "files": len(result.files), "path": str(result.path), "pushed_to": result.pushed_to or ""})
        metadata[f"{split}_path"] = dg.MetadataValue.path(str(result.path))
        metadata[f"{split}_manifest"] = dg.MetadataValue.json(
            {k: v for k, v in result.manifest.items() if k != "files"} | {"files": result.files}
        )
    return dg.MaterializeResult(
        metadata={"exports": dg.MetadataValue.md(markdown_table(pl.DataFrame(summary), max_chars=120)), **metadata}
    )


@dg.asset(
    deps=[dg.AssetDep("stage1_sft"), dg.AssetDep("stage2_sft")],
    group_name="splits",
    kinds={"duckdb"},
    description="The SQL analysis pack (sql/analysis) run on the current tables: yield funnel, "
    "pass-rate and token-length histograms, contamination and verification failure reports.",
)
def curation_report(context: dg.AssetExecutionContext, r1: R1Resource) -> dg.MaterializeResult:
    cfg = r1.pipeline()
    store = r1.store()
    with store.connect(read_only=True) as con:
        funnel = execute_named_query(con, "yield_funnel")
        pass_hist = execute_named_query(con, "pass_rate_histogram", {"bin_width": 0.125})
        length_hist = execute_named_query(con, "token_length_histogram", {"bins": 20})
        lengths = execute_named_query(con, "token_lengths")
        contamination = execute_named_query(con, "contamination_report")
        failures = execute_named_query(con, "verification_failures")
    per_source = funnel.filter(~pl.col("source").str.starts_with("(all"))
    total = funnel.filter(pl.col("source") == "(all)")
    width = float(length_hist["bin_end"][0] - length_hist["bin_start"][0]) if length_hist.height else 1.0
    difficulty_models = model_ids(cfg, cfg.difficulty.model)
    charts = {
        "funnel_chart": funnel_chart(per_source, stage="stage", count="problems", group="source",
                                     title="yield funnel by source"),
        "pass_rate_chart": binned_bar_chart(
            pass_hist.filter(pl.col("model").is_in(difficulty_models)),
            bin_start="bin_start", bin_width=0.125, count="problems", group="source",
            title=f"pass rate under {cfg.difficulty.model}, by source", xlabel="pass rate", ylabel="problems"),
        "token_length_chart": binned_bar_chart(
            length_hist, bin_start="bin_start", bin_width=width, count="samples", group="correctness",
            title="teacher sample lengths, by verified correctness", xlabel="tokens", ylabel="samples"),
    }
    context.log.info(f"curation report: funnel {dict(total.select('stage', 'problems').iter_rows())}")
    return dg.MaterializeResult(
        metadata={
            **{name: dg.MetadataValue.md(png_markdown(png, name)) for name, png in charts.items()},
            "yield_funnel": dg.MetadataValue.md(markdown_table(total.drop("source", "domain"), max_rows=20)),
            "yield_funnel_by_domain": dg.MetadataValue.md(markdown_table(
                funnel.filter(pl.col("source").str.starts_with("(all ")).drop("source"), max_rows=60)),
            "token_lengths": dg.MetadataValue.md(markdown_table(lengths, max_rows=50)),
            "contamination": dg.MetadataValue.md(markdown_table(contamination, max_rows=50, max_chars=60)),
            "verification_failures": dg.MetadataValue.md(markdown_table(failures, max_rows=50)),
        }
    )


@dg.asset_check(asset=stage1_sft, description="Every row's solution is verified correct and complete, "
                "and its messages are a user turn then an assistant turn with a closed think block.")
def stage1_sft_rows_are_verified(r1: R1Resource) -> dg.AssetCheckResult:
    return _rows_are_verified(r1.store(), "stage1_sft")


@dg.asset_check(asset=stage2_sft, description="Every row's solution is verified correct and complete, "
                "and its messages are a user turn then an assistant turn with a closed think block.")
def stage2_sft_rows_are_verified(r1: R1Resource) -> dg.AssetCheckResult:
    return _rows_are_verified(r1.store(), "stage2_sft")


def _rows_are_verified(store: Store, split: str) -> dg.AssetCheckResult:
    # The usable-sample rule is the view the splits select with (sql/schema.sql).
    bad = store.query(
        f"""
        SELECT s.problem_id, s.generation_id
        FROM {quote_ident(split)} s
        LEFT JOIN distillation_samples d USING (generation_id)
        WHERE d.usable IS NOT TRUE
           OR d.problem_id IS DISTINCT FROM s.problem_id
           OR json_array_length(s.messages) <> 2
           OR (s.messages->>'$[0].role') IS DISTINCT FROM 'user'
           OR (s.messages->>'$[1].role') IS DISTINCT FROM 'assistant'
           OR NOT starts_with(s.messages->>'$[1].content', '<think>')
           OR strpos(s.messages->>'$[1].content', '</think>') = 0
        """
    )
    return dg.AssetCheckResult(
        passed=bad.is_empty(),
        metadata={"bad_rows": dg.MetadataValue.int(bad.height), "examples": dg.MetadataValue.md(markdown_table(bad))},
    )
