"""Raw collection: one partition of ``raw_problems`` per configured source."""


import dagster as dg
import polars as pl

from dagster_project.metadata import counts_markdown, table_metadata
from dagster_project.partitions import source_partitions
from dagster_project.resources import DUCKDB_POOL, R1Resource
from r1_assets.sources import collect_source
from r1_assets.storage import Lineage


@dg.asset(
    partitions_def=source_partitions,
    # One source per run: each is its own transaction, and a failing source fails alone.
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=1),
    pool=DUCKDB_POOL,
    group_name="collection",
    kinds={"duckdb", "python"},
    description="Problems read from each configured source and normalised to one schema. "
    "Rows that cannot be used go to rejected_rows with a reason.",
)
def raw_problems(context: dg.AssetExecutionContext, r1: R1Resource) -> dg.MaterializeResult:
    cfg = r1.pipeline()
    source = cfg.source(context.partition_key)
    store = r1.store()
    context.log.info(f"reading source '{source.name}' ({source.kind})")
    collected = collect_source(source, cfg, stage="raw_problems")
    run_id = pl.lit(context.run.run_id)
    store.replace_partition(
        "raw_problems",
        collected.rows.with_columns(run_id=run_id),
        where={"source": source.name},
        lineage=Lineage(
            run_id=context.run.run_id,
            params=source.model_dump(),
            inputs=[{"table": collected.source_ref, "partition": "", "row_count": collected.rows_read}],
        ),
        extra={
            "rejected_rows": (
                collected.rejected.with_columns(run_id=run_id),
                {"source": source.name, "stage": "raw_problems"},
            )
        },
    )
    rejected = collected.rejected_by_reason()
    context.log.info(
        f"source '{source.name}': {collected.rows.height} rows kept, {collected.rejected.height} rejected of {collected.rows_read} read"
    )
    return dg.MaterializeResult(
        metadata={
            **table_metadata(
                store, "raw_problems", {"source": source.name},
                preview_columns=["problem_id", "source_row", "problem", "answer"],
            ),
            "rows_read": dg.MetadataValue.int(collected.rows_read),
            "rows_rejected": dg.MetadataValue.int(collected.rejected.height),
            "rejected_by_reason": dg.MetadataValue.md(counts_markdown(rejected)),
            "source_ref": dg.MetadataValue.text(collected.source_ref),
        }
    )
