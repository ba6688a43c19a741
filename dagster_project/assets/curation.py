"""Curation: exact + near-duplicate removal across sources, and benchmark decontamination.

    raw_problems (every source) -> unique_problems -> clean_problems <- benchmark_problems

The rules live in ``r1_assets.dedupe`` and ``r1_assets.decontamination``. Each asset reads its
inputs with a short DuckDB connection, computes with none open, and writes its tables (plus
side tables and a lineage row) in one ``Store.replace_partition`` transaction.
"""

import dagster as dg
import polars as pl

from dagster_project.assets.collection import collect_partition, stale_sources
from dagster_project.partitions import register_shard_partitions
from dagster_project.metadata import counts_markdown, markdown_table, table_metadata
from dagster_project.resources import DUCKDB_POOL, EngineResource, R1Resource
from r1_assets.config import PipelineConfig
from r1_assets.contamination_judge import judge_pairs
from r1_assets.decontamination import (
    METHOD_LABELS, REJECTED, decontaminate_clusters, hit_pairs, label_scores, labels_in_run, load_labels, removes_problem,
)
from r1_assets.dedupe import deduplicate
from r1_assets.difficulty import sync_shards
from r1_assets.sources import collect_source
from r1_assets.storage import Lineage, Store, content_version, quote_ident

_ALL_SOURCES = dg.AllPartitionMapping()
_EXAMPLE_CHARS = 160


def _configured_rows(store: Store, table: str, column: str, names: list[str], columns: list[str]) -> pl.DataFrame:
    select = ", ".join(quote_ident(c) for c in columns)
    return store.query(
        f"SELECT {select} FROM {quote_ident(table)} WHERE list_contains($names, {quote_ident(column)})", {"names": names}
    )


# -- unique_problems ---------------------------------------------------------------------
@dg.asset(
    deps=[dg.AssetDep("raw_problems", partition_mapping=_ALL_SOURCES)],
    pool=DUCKDB_POOL,
    group_name="curation",
    kinds={"duckdb", "python"},
    description="One row per problem after exact (normalised text) and MinHash LSH near-duplicate removal "
    "across all sources. cluster_id names the kept representative; removed rows are in duplicate_problems.",
)
def unique_problems(context: dg.AssetExecutionContext, r1: R1Resource) -> dg.MaterializeResult:
    cfg = r1.pipeline()
    store = r1.store()
    names = [s.name for s in cfg.sources]
    # Bring raw_problems up to date first: a source never collected, or collected under another
    # source config, is collected now (and recorded as a raw_problems materialization), so that
    # `--select '+clean_problems'` runs collection, dedupe and decontamination headless.
    for source in stale_sources(store, cfg.sources):
        metadata, _ = collect_partition(r1, source, context.run.run_id, context.log)
        context.log_event(dg.AssetMaterialization(asset_key="raw_problems", partition=source.name, metadata=metadata))
    rows = _configured_rows(store, "raw_problems", "source", names, ["problem_id", "source", "source_row", "problem", "answer", "domain"])
    per_source = dict(rows.group_by("source").len().iter_rows()) if rows.height else {}
    context.log.info(f"deduplicating {rows.height:,} raw rows from {len(per_source)} sources")

    result = deduplicate(rows, cfg.dedupe, names, log=context.log.info)
    run_id = context.run.run_id
    store.replace_partition(
        "unique_problems",
        result.unique.with_columns(run_id=pl.lit(run_id)),
        where=None,
        lineage=Lineage(
            run_id=run_id,
            params=cfg.dedupe.model_dump(),
            inputs=[{"table": "raw_problems", "partition": n, "row_count": per_source.get(n, 0)} for n in names],
        ),
        extra={"duplicate_problems": (result.duplicates.with_columns(run_id=pl.lit(run_id)), None)},
    )
    return dg.MaterializeResult(
        metadata={
            **table_metadata(store, "unique_problems", preview_columns=["problem_id", "cluster_id", "source", "cluster_size", "problem"]),
            **{k: dg.MetadataValue.int(v) for k, v in result.stats.items() if isinstance(v, int)},
            "seconds": dg.MetadataValue.float(float(result.stats["seconds"])),
            "per_source": dg.MetadataValue.md(markdown_table(result.per_source(rows), max_rows=100)),
            "cluster_sizes": dg.MetadataValue.md(_cluster_size_markdown(result.unique)),
            "near_duplicate_examples": dg.MetadataValue.md(_near_duplicate_examples(result, rows)),
            "sources_without_rows": dg.MetadataValue.text(", ".join(n for n in names if n not in per_source) or "(none)"),
        }
    )


def _cluster_size_markdown(unique: pl.DataFrame) -> str:
    if unique.is_empty():
        return "_(no rows)_"
    bucket = (
        pl.when(pl.col("cluster_size") == 1).then(pl.lit("1"))
        .when(pl.col("cluster_size") == 2).then(pl.lit("2"))
        .when(pl.col("cluster_size") <= 5).then(pl.lit("3-5"))
        .when(pl.col("cluster_size") <= 20).then(pl.lit("6-20"))
        .otherwise(pl.lit(">20"))
    )
    counts = unique.group_by(bucket.alias("size")).agg(clusters=pl.len(), rows=pl.col("cluster_size").sum())
    order = {"1": 0, "2": 1, "3-5": 2, "6-20": 3, ">20": 4}
    return markdown_table(counts.sort(pl.col("size").replace_strict(order)), max_rows=10)


def _near_duplicate_examples(result, rows: pl.DataFrame, n: int = 8) -> str:
    """Kept text beside a near-duplicate's text, for the least similar confirmed pairs first."""
    near = result.duplicates.filter(pl.col("method") == "minhash").sort("similarity").head(n)
    if near.is_empty():
        return "_(no near-duplicates)_"
    text = rows.select("source", "source_row", "problem")
    pairs = (
        near.join(text, on=["source", "source_row"], how="left").rename({"problem": "duplicate", "source": "dup_source"})
        .join(result.unique.select("cluster_id", kept_source="source", kept=pl.col("problem")), on="cluster_id", how="left")
    )
    return markdown_table(
        pairs.select("similarity", "kept_source", "kept", "dup_source", "duplicate"), max_rows=n, max_chars=_EXAMPLE_CHARS
    )


@dg.asset_check(asset=unique_problems, blocking=True, description="One row per problem_id and per cluster; "
                "every removed duplicate points at a kept cluster.")
def unique_problems_are_unique(r1: R1Resource) -> dg.AssetCheckResult:
    store = r1.store()
    repeated_ids = store.scalar("SELECT count(*) - count(DISTINCT problem_id) FROM unique_problems")
    repeated_clusters = store.scalar("SELECT count(*) - count(DISTINCT cluster_id) FROM unique_problems")
    orphans = store.scalar(
        "SELECT count(*) FROM duplicate_problems d WHERE NOT EXISTS (SELECT 1 FROM unique_problems u WHERE u.cluster_id = d.cluster_id)"
    )
    return dg.AssetCheckResult(
        passed=repeated_ids == 0 and repeated_clusters == 0 and orphans == 0,
        metadata={"repeated_problem_ids": repeated_ids, "repeated_cluster_ids": repeated_clusters, "orphan_duplicates": orphans},
    )


# -- benchmark_problems ------------------------------------------------------------------
@dg.asset(
    pool=DUCKDB_POOL,
    group_name="curation",
    kinds={"duckdb", "python"},
    description="Every configured benchmark (decontamination target), read like a source. "
    "benchmark_loads records which loaded and why one did not; its check fails the run then.",
)
def benchmark_problems(context: dg.AssetExecutionContext, r1: R1Resource) -> dg.MaterializeResult:
    cfg = r1.pipeline()
    store = r1.store()
    run_id = context.run.run_id
    frames, rejected, loads = [], [], []
    for bench in cfg.benchmarks:
        try:
            collected = collect_source(bench, cfg, stage="benchmark_problems")
        except Exception as err:  # a missing file, an unknown hub id, a bad field: all mean "not loaded"
            context.log.error(f"benchmark '{bench.name}' could not be loaded: {err}")
            loads.append({"benchmark": bench.name, "status": "failed", "row_count": 0, "rows_rejected": 0,
                          "source_ref": None, "error": f"{type(err).__name__}: {err}"[:2000]})
            continue
        n = collected.rows.height
        loads.append({"benchmark": bench.name, "status": "loaded" if n else "empty", "row_count": n,
                      "rows_rejected": collected.rejected.height, "source_ref": collected.source_ref,
                      "error": None if n else f"0 usable rows of {collected.rows_read} read ({collected.rejected_by_reason()})"})
        context.log.info(f"benchmark '{bench.name}': {n} rows ({collected.rejected.height} rejected) from {collected.source_ref}")
        frames.append(collected.rows.select(
            "problem_id", "problem", "answer", "domain", "source_ref", benchmark="source", benchmark_row="source_row",
        ))
        rejected.append(collected.rejected)
    loads_frame = pl.DataFrame(loads, schema={"benchmark": pl.Utf8, "status": pl.Utf8, "row_count": pl.Int64,
                                              "rows_rejected": pl.Int64, "source_ref": pl.Utf8, "error": pl.Utf8})
    rows = pl.concat(frames) if frames else pl.DataFrame(schema={
        "problem_id": pl.Utf8, "problem": pl.Utf8, "answer": pl.Utf8, "domain": pl.Utf8, "source_ref": pl.Utf8,
        "benchmark": pl.Utf8, "benchmark_row": pl.Int64})
    store.replace_partition(
        "benchmark_problems",
        rows.with_columns(run_id=pl.lit(run_id)),
        where=None,
        lineage=Lineage(
            run_id=run_id,
            params={"benchmarks": [b.model_dump() for b in cfg.benchmarks]},
            inputs=[{"table": r["source_ref"] or r["benchmark"], "partition": "", "row_count": r["row_count"]}
                    for r in loads_frame.iter_rows(named=True)],
        ),
        extra={
            "benchmark_loads": (loads_frame.with_columns(run_id=pl.lit(run_id)), None),
            "rejected_rows": (
                pl.concat(rejected).with_columns(run_id=pl.lit(run_id)) if rejected else pl.DataFrame(),
                {"stage": "benchmark_problems"},
            ),
        },
    )
    failed = loads_frame.filter(pl.col("status") != "loaded")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(content_version(rows, loads_frame)),
        metadata={
            **table_metadata(store, "benchmark_problems", preview_columns=["benchmark", "benchmark_row", "problem", "answer"]),
            "loads": dg.MetadataValue.md(markdown_table(loads_frame, max_rows=100, max_chars=200)),
            "benchmarks_failed": dg.MetadataValue.text(", ".join(failed["benchmark"].to_list()) or "(none)"),
        }
    )


@dg.asset_check(asset=benchmark_problems, blocking=True, description="Every configured benchmark loaded with at "
                "least one row, so decontamination never passes on nothing.")
def benchmarks_loaded(r1: R1Resource) -> dg.AssetCheckResult:
    cfg = r1.pipeline()
    names = [b.name for b in cfg.benchmarks]
    if not names:
        return dg.AssetCheckResult(
            passed=False, severity=dg.AssetCheckSeverity.WARN,
            description="no benchmarks configured: clean_problems is not decontaminated against anything",
        )
    loads = r1.store().query("SELECT benchmark, status, row_count, error FROM benchmark_loads")
    status = {r["benchmark"]: r for r in loads.iter_rows(named=True)}
    problems = []
    for name in names:
        row = status.get(name)
        if row is None:
            problems.append(f"'{name}': not loaded yet (materialize benchmark_problems)")
        elif row["status"] != "loaded" or row["row_count"] == 0:
            problems.append(f"'{name}': {row['status']}: {row['error']}")
    return dg.AssetCheckResult(
        passed=not problems,
        description=("benchmarks not usable: " + "; ".join(problems)) if problems else f"{len(names)} benchmarks loaded",
        metadata={"loads": dg.MetadataValue.md(markdown_table(loads, max_rows=100, max_chars=200))},
    )


# -- clean_problems ----------------------------------------------------------------------
def _benchmarks_missing(cfg: PipelineConfig, loaded: dict[str, int]) -> list[str]:
    return [b.name for b in cfg.benchmarks if not loaded.get(b.name)]


@dg.asset(
    deps=[dg.AssetDep("unique_problems"), dg.AssetDep("benchmark_problems")],
    pool=DUCKDB_POOL,
    group_name="curation",
    kinds={"duckdb", "python"},
    description="unique_problems minus every cluster with a member that matches a benchmark (word n-grams, "
    "digit-stripped text, MinHash). Every hit is a contamination row naming the benchmark row. When "
    "decontamination.judge_model is set, an LLM judge reviews the hits of judge_methods: one it calls "
    "DIFFERENT stays in contamination with its verdict but removes nothing.",
)
def clean_problems(context: dg.AssetExecutionContext, r1: R1Resource, engine: EngineResource) -> dg.MaterializeResult:
    cfg = r1.pipeline()
    store = r1.store()
    names = [b.name for b in cfg.benchmarks]
    benchmarks = _configured_rows(store, "benchmark_problems", "benchmark", names, ["benchmark", "benchmark_row", "problem"])
    loaded = dict(benchmarks.group_by("benchmark").len().iter_rows()) if benchmarks.height else {}
    missing = _benchmarks_missing(cfg, loaded)
    if missing:
        raise dg.Failure(
            f"benchmarks {missing} have no rows in benchmark_problems; see the benchmark_problems"
            " materialization (table benchmark_loads) for why they did not load. Refusing to decontaminate"
            " against fewer benchmarks than configured.",
        )
    unique = store.query("SELECT problem_id, cluster_id, source, source_row, problem, answer, domain FROM unique_problems")
    members = store.query(
        "SELECT DISTINCT ON (d.problem_id) d.problem_id, d.cluster_id, r.problem"
        " FROM duplicate_problems d JOIN raw_problems r USING (source, source_row)"
        " WHERE d.method = 'minhash' ORDER BY d.problem_id, d.source, d.source_row"
    ) if cfg.decontamination.scope == "clusters" else pl.DataFrame()
    context.log.info(f"decontaminating {unique.height:,} problems (+{members.height:,} near-duplicate members)"
                     f" against {benchmarks.height:,} rows of {len(loaded)} benchmarks")

    run_id = context.run.run_id
    dcfg = cfg.decontamination
    if dcfg.judge_model:
        # The judge shares the engine resource with the generating stages, as the verification
        # judge does; vLLM loads the model only when some pair has no stored verdict yet.
        with engine.open(cfg, dcfg.judge_model, store.home) as judge:
            out = decontaminate_clusters(
                unique, members, benchmarks, dcfg, cfg.dedupe, log=context.log.info,
                review=lambda pairs: judge_pairs(store, judge, dcfg, pairs, run_id, log=context.log.info),
            )
    else:
        out = decontaminate_clusters(unique, members, benchmarks, dcfg, cfg.dedupe, log=context.log.info)
    store.replace_partition(
        "clean_problems",
        out.clean.select("problem_id", "source", "source_row", "problem", "answer", "domain").with_columns(run_id=pl.lit(run_id)),
        where=None,
        lineage=Lineage(
            run_id=run_id,
            params={"decontamination": dcfg.model_dump(),
                    "judge_model_name": cfg.model(dcfg.judge_model).name if dcfg.judge_model else None,
                    "dedupe_shingles": {
                "shingle_size": cfg.dedupe.shingle_size, "num_perm": cfg.dedupe.num_perm, "seed": cfg.dedupe.seed}},
            inputs=[{"table": "unique_problems", "partition": "", "row_count": unique.height}]
            + [{"table": "benchmark_problems", "partition": n, "row_count": loaded[n]} for n in names],
        ),
        extra={"contamination": (out.contamination.with_columns(run_id=pl.lit(run_id)), None)},
    )
    # Shards are assigned here, in the step that changes the clean set, so pass_rates partitions
    # exist as soon as clean_problems does, whoever launched it (UI, CLI, schedule, pipeline).
    _, new_shards = sync_shards(store, cfg.difficulty.shard_size, run_id)
    registered = register_shard_partitions(context.instance, store)
    if new_shards or registered:
        context.log.info(f"new shards: {new_shards}; registered shard partitions: {registered}")
    per_benchmark = out.result.per_benchmark(benchmarks)
    removed = per_benchmark.join(
        out.contamination.filter(removes_problem()).group_by("benchmark").agg(kept_rows_removed=pl.col("problem_id").n_unique()),
        on="benchmark", how="left",
    ).fill_null(0)
    return dg.MaterializeResult(
        metadata={
            **table_metadata(store, "clean_problems", preview_columns=["problem_id", "source", "problem", "answer"]),
            "unique_problems": dg.MetadataValue.int(unique.height),
            "removed": dg.MetadataValue.int(unique.height - out.clean.height),
            "members_checked": dg.MetadataValue.int(out.members_checked),
            "contamination_rows": dg.MetadataValue.int(out.contamination.height),
            "hits_per_benchmark": dg.MetadataValue.md(markdown_table(removed, max_rows=100)),
            "hit_examples": dg.MetadataValue.md(_hit_examples(out.contamination, unique, members, benchmarks)),
            "boilerplate_ngrams_ignored": dg.MetadataValue.md(counts_markdown(
                {t: 1 for t in out.result.stats.get("boilerplate_ngrams", []) + out.result.stats.get("frequent_pool_ngrams", [])},
                key="n-gram", value="ignored")),
            "seconds": dg.MetadataValue.float(float(out.result.stats.get("seconds", 0.0))),
            "new_shards": dg.MetadataValue.text(", ".join(new_shards) or "(none)"),
            **_judge_metadata(cfg, out),
            **_labelled_set_metadata(cfg, out, unique, members, benchmarks),
        }
    )


def _judge_metadata(cfg: PipelineConfig, out) -> dict:
    """What the paraphrase judge saw and said: pairs reviewed, verdict counts, hits it lifted."""
    dcfg = cfg.decontamination
    if not dcfg.judge_model:
        return {}
    counts = out.judge_counts()
    return {
        "judge_model": dg.MetadataValue.text(cfg.model(dcfg.judge_model).name),
        "judge_methods": dg.MetadataValue.text(", ".join(dcfg.judge_methods)),
        "judge_reviewed": dg.MetadataValue.int(out.reviewed),
        **{f"judge_{v.lower()}": dg.MetadataValue.int(counts.get(v, 0)) for v in ("EQUIVALENT", REJECTED, "AMBIGUOUS")},
        # Failed requests: their hits stand (the pair is retried on the next run).
        "judge_unanswered": dg.MetadataValue.int(out.reviewed - sum(counts.values())),
        "judge_lifted_problems": dg.MetadataValue.int(
            out.contamination.group_by("problem_id").agg(kept=removes_problem().any()).filter(~pl.col("kept")).height),
    }


def _labelled_set_metadata(cfg: PipelineConfig, out, unique: pl.DataFrame, members: pl.DataFrame,
                           benchmarks: pl.DataFrame) -> dict:
    """Precision and recall on the configured labelled set (its pairs whose two texts are in this run)."""
    path = cfg.decontamination.labelled_set
    if not path:
        return {}
    texts = pl.concat([unique.select("problem_id", "problem")] + ([members.select("problem_id", "problem")] if members.height else []))
    labels = labels_in_run(load_labels(str(cfg.resolve_path(path))), texts, benchmarks)
    # The hits that removed something: those the judge rejected are left out.
    lifted = out.judged.filter(pl.col("judge_verdict") == REJECTED).select(
        problem_id="matched_problem_id", benchmark="benchmark", benchmark_row="benchmark_row", method="method")
    hits = out.result.hits.join(lifted, on=["problem_id", "benchmark", "benchmark_row", "method"], how="anti")
    scores = label_scores(labels, hit_pairs(hits, texts, benchmarks))
    per_category = pl.DataFrame([{"category": c, **v} for c, v in scores.pop("per_category").items()])
    return {
        "labelled_precision": dg.MetadataValue.float(float(scores["precision"])),
        "labelled_recall": dg.MetadataValue.float(float(scores["recall"])),
        "labelled_pairs_in_run": dg.MetadataValue.int(scores["pairs"]),
        "labelled_per_category": dg.MetadataValue.md(markdown_table(per_category, max_rows=50) if per_category.height else "_(none)_"),
    }


def _hit_examples(contamination: pl.DataFrame, unique: pl.DataFrame, members: pl.DataFrame, benchmarks: pl.DataFrame,
                  per_pair: int = 2) -> str:
    """Pool text beside benchmark text: the first hits of each (benchmark, method)."""
    if contamination.is_empty():
        return "_(no hits)_"
    texts = pl.concat([unique.select("problem_id", "problem"), members.select("problem_id", "problem")]
                      if members.height else [unique.select("problem_id", "problem")])
    sample = (
        contamination.sort("benchmark", "method", "benchmark_row").group_by("benchmark", "method", maintain_order=True)
        .head(per_pair)
        .join(texts.rename({"problem_id": "matched_problem_id", "problem": "pool_problem"}).unique("matched_problem_id"),
              on="matched_problem_id", how="left")
        .join(benchmarks.rename({"problem": "benchmark_problem"}), on=["benchmark", "benchmark_row"], how="left")
    )
    order = {m: i for i, m in enumerate(METHOD_LABELS)}
    sample = sample.sort("benchmark", pl.col("method").replace_strict(order, default=len(order)))
    return markdown_table(
        sample.select("benchmark", "method", "score", "pool_problem", "benchmark_problem", "evidence"),
        max_rows=sample.height, max_chars=_EXAMPLE_CHARS,
    )


@dg.asset_check(asset=clean_problems, blocking=True, description="No clean problem has a contamination hit "
                "(other than one the paraphrase judge called DIFFERENT), and every clean problem is a unique problem.")
def clean_problems_exclude_contamination(r1: R1Resource) -> dg.AssetCheckResult:
    store = r1.store()
    leaked = store.scalar("SELECT count(*) FROM clean_problems WHERE problem_id IN "
                          "(SELECT problem_id FROM removing_contamination)")
    strays = store.scalar("SELECT count(*) FROM clean_problems WHERE problem_id NOT IN (SELECT problem_id FROM unique_problems)")
    return dg.AssetCheckResult(passed=leaked == 0 and strays == 0,
                               metadata={"contaminated_rows_in_clean": leaked, "rows_not_in_unique": strays})
