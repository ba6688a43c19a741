"""Raw collection: one partition of ``raw_problems`` per configured source."""


import json

import dagster as dg
import polars as pl

from dagster_project.metadata import counts_markdown, table_metadata
from dagster_project.resources import DUCKDB_POOL, R1Resource
from r1_assets.sources import collect_source
from r1_assets.config import SourceConfig
from r1_assets.storage import Lineage, Store, content_version, lineage_params_json


def raw_problems_asset(source_partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """``raw_problems`` over the configured sources (the definitions factory passes them in)."""

    @dg.asset(
        name="raw_problems",
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
        metadata, version = collect_partition(r1, cfg.source(context.partition_key), context.run.run_id, context.log)
        return dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(version))

    return raw_problems


def collect_partition(r1: R1Resource, source: SourceConfig, run_id: str, log) -> tuple[dict, str]:
    """Collect one source into its raw_problems partition (one transaction); returns the metadata
    and the data version (a digest of the rows kept and rejected: unchanged source, same version).

    Shared by ``raw_problems`` and by ``unique_problems``, which brings uncollected or
    reconfigured sources up to date first so that ``--select '+clean_problems'`` runs headless.
    """
    store = r1.store()
    log.info(f"reading source '{source.name}' ({source.kind})")
    collected = collect_source(source, r1.pipeline(), stage="raw_problems")
    run_id_col = pl.lit(run_id)
    store.replace_partition(
        "raw_problems",
        collected.rows.with_columns(run_id=run_id_col),
        where={"source": source.name},
        lineage=Lineage(
            run_id=run_id,
            params=source.model_dump(),
            inputs=[{"table": collected.source_ref, "partition": "", "row_count": collected.rows_read}],
        ),
        extra={
            "rejected_rows": (
                collected.rejected.with_columns(run_id=run_id_col),
                {"source": source.name, "stage": "raw_problems"},
            )
        },
    )
    log.info(
        f"source '{source.name}': {collected.rows.height} rows kept, {collected.rejected.height} rejected of {collected.rows_read} read"
    )
    metadata = {
        **table_metadata(
            store, "raw_problems", {"source": source.name},
            preview_columns=["problem_id", "source_row", "problem", "answer"],
        ),
        "rows_read": dg.MetadataValue.int(collected.rows_read),
        "rows_rejected": dg.MetadataValue.int(collected.rejected.height),
        "rejected_by_reason": dg.MetadataValue.md(counts_markdown(collected.rejected_by_reason())),
        "source_ref": dg.MetadataValue.text(collected.source_ref),
    }
    return metadata, content_version(collected.rows, collected.rejected)


def stale_sources(store: Store, sources: list[SourceConfig]) -> list[SourceConfig]:
    """Sources never collected, or collected last under a different source config."""
    last = store.query(
        "SELECT partition, arg_max(params, created_at)::VARCHAR AS params FROM lineage"
        " WHERE table_name = 'raw_problems' GROUP BY partition"
    )
    collected = {partition: json.loads(params) for partition, params in last.iter_rows()}
    return [
        s for s in sources
        if collected.get(f"source={s.name}") != json.loads(lineage_params_json(s.model_dump()))
    ]
