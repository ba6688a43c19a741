"""Pass-rate difficulty: one partition per shard of clean_problems."""

import dagster as dg
import polars as pl

from dagster_project.metadata import counts_markdown, markdown_table, sandbox_warning, table_metadata
from dagster_project.partitions import shard_partitions
from dagster_project.resources import GPU_POOL, EngineResource, R1Resource
from r1_assets import difficulty


def pass_rates_asset(op_tags: dict) -> dg.AssetsDefinition:
    """``pass_rates``; the definitions factory passes the op_tags of difficulty.model's role
    (``resources.engine_op_tags``: what each shard step asks a cluster for)."""

    @dg.asset(
        partitions_def=shard_partitions,
        deps=["clean_problems", "small_model"],
        pool=GPU_POOL,
        op_tags=op_tags,
        group_name="difficulty",
        kinds={"vllm", "duckdb"},
        description="k samples per problem from difficulty.model (default k=8, T=0.7, top_p=0.95, as Open-R1), "
        "scored by math-verify against the reference answer (lenient: last number when nothing is boxed). "
        "Raw samples go to `generations` (resume checkpoint; re-scoring needs no regeneration); "
        "per-problem k, n_correct and pass_rate to `pass_rates`.",
    )
    def pass_rates(context: dg.AssetExecutionContext, r1: R1Resource, engine: EngineResource) -> dg.MaterializeResult:
        cfg = r1.pipeline()
        store = r1.store()
        shard = context.partition_key
        if difficulty.shard_problems(store, shard).is_empty():
            raise dg.Failure(f"shard {shard} has no clean problems (clean_problems re-materialized without them?)")
        with engine.open(cfg, cfg.difficulty.model, store.home) as llm:
            result = difficulty.materialize_shard(store, cfg, shard, llm, context.run.run_id, log=context.log.info)
        stats = result.stats
        return dg.MaterializeResult(
            metadata={
                **table_metadata(store, "pass_rates", {"shard": shard, "model": result.model},
                                 preview_columns=["problem_id", "k", "n_correct", "pass_rate", "reference_status"]),
                "pass_rate_histogram": dg.MetadataValue.md(result.histogram),
                # Band order (easy to hard edges) matters more than count order here.
                "difficulty_bands": dg.MetadataValue.md(markdown_table(
                    pl.DataFrame({"band": list(result.bands), "problems": list(result.bands.values())}), max_rows=50)),
                "reference_status": dg.MetadataValue.md(counts_markdown(result.reference_status, key="status", value="problems")),
                "mean_pass_rate": dg.MetadataValue.float(round(result.mean_pass_rate, 4)),
                "domains": dg.MetadataValue.md(counts_markdown(result.domains, key="domain", value="problems")),
                **sandbox_warning(r1.pipeline().verification),
                "samples_boxed_share": dg.MetadataValue.float(round(result.boxed_share, 4)),
                "samples_last_number_share": dg.MetadataValue.float(round(result.last_number_share, 4)),
                "model": dg.MetadataValue.text(result.model),
                "params_hash": dg.MetadataValue.text(stats.params_hash),
                "generation": dg.MetadataValue.json(stats.as_dict()),
            }
        )

    return pass_rates
