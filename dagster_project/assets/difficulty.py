"""Pass-rate difficulty: one partition per shard of clean_problems."""

import dagster as dg
import polars as pl

from dagster_project.metadata import counts_markdown, table_metadata
from dagster_project.partitions import shard_partitions
from dagster_project.resources import GPU_OP_TAGS, GPU_POOL, EngineResource, R1Resource
from r1_assets import difficulty
from r1_assets.engines import load_generations, run_generation
from r1_assets.storage import Lineage


@dg.asset(
    partitions_def=shard_partitions,
    deps=["clean_problems", "small_model"],
    pool=GPU_POOL,
    op_tags=GPU_OP_TAGS,
    group_name="difficulty",
    kinds={"vllm", "duckdb"},
    description="k samples per problem from difficulty.model (default k=8, T=0.7, top_p=0.95, as Open-R1), "
    "scored by math-verify against the reference answer. Raw samples go to `generations` (resume "
    "checkpoint, re-scoring without regeneration); per-problem n_correct and pass_rate to `pass_rates`.",
)
def pass_rates(context: dg.AssetExecutionContext, r1: R1Resource, engine: EngineResource) -> dg.MaterializeResult:
    cfg = r1.pipeline()
    store = r1.store()
    shard = context.partition_key
    dcfg = cfg.difficulty
    model_cfg = cfg.model(dcfg.model)
    problems = difficulty.shard_problems(store, shard)
    if problems.is_empty():
        raise dg.Failure(f"shard {shard} has no clean problems (clean_problems re-materialized without them?)")
    context.log.info(f"{shard}: {problems.height} problems x {dcfg.sampling.n} samples from '{dcfg.model}' ({model_cfg.name})")
    with engine.open(cfg, dcfg.model, store.home) as llm:
        stats = run_generation(
            store, llm, difficulty.PURPOSE, problems, dcfg.sampling, dcfg.prompt_template,
            shard=shard, run_id=context.run.run_id, log=context.log.info,
        )
    samples = load_generations(store, difficulty.PURPOSE, model_cfg.name, stats.params_hash, problems["problem_id"])
    context.log.info(f"{shard}: scoring {samples.height} samples with math-verify")
    rates = difficulty.score_pass_rates(
        problems, samples, model=model_cfg.name, params_hash=stats.params_hash, k=dcfg.sampling.n,
        shard=shard, run_id=context.run.run_id, timeout_s=cfg.verification.timeout_s,
        workers=cfg.verification.workers, lenient=dcfg.lenient_extraction,
    )
    store.replace_partition(
        "pass_rates",
        rates,
        where={"shard": shard, "model": model_cfg.name},
        lineage=Lineage(
            run_id=context.run.run_id,
            params={"role": dcfg.model, "model": model_cfg.name, "params_hash": stats.params_hash,
                    "sampling": dcfg.sampling.model_dump(), "prompt_template": dcfg.prompt_template,
                    "lenient_extraction": dcfg.lenient_extraction, "engine": model_cfg.engine},
            inputs=[{"table": "clean_problems", "partition": shard, "row_count": problems.height},
                    {"table": "generations", "partition": f"pass_rate/{stats.params_hash}", "row_count": samples.height}],
        ),
    )
    statuses = rates.group_by("reference_status").len().iter_rows()
    rated = rates.filter(pl.col("pass_rate").is_not_null())
    n_samples = int(rates["k"].sum() or 0)
    context.log.info(f"{shard}: {rated.height} problems rated, mean pass rate "
                     f"{(rated['pass_rate'].mean() or 0):.3f}; generation {stats.tokens_per_s:.0f} tok/s")
    return dg.MaterializeResult(
        metadata={
            **table_metadata(store, "pass_rates", {"shard": shard, "model": model_cfg.name},
                             preview_columns=["problem_id", "k", "n_correct", "pass_rate", "reference_status"]),
            "pass_rate_histogram": dg.MetadataValue.md(difficulty.histogram_markdown(rates, dcfg.sampling.n)),
            "difficulty_bands": dg.MetadataValue.md(
                counts_markdown(difficulty.band_counts(rates, dcfg.band_edges), key="band", value="problems")),
            "reference_status": dg.MetadataValue.md(counts_markdown(dict(statuses), key="status", value="problems")),
            "mean_pass_rate": dg.MetadataValue.float(round(float(rated["pass_rate"].mean() or 0.0), 4)),
            "samples_boxed_share": dg.MetadataValue.float(round(int(rates["n_boxed"].sum() or 0) / max(n_samples, 1), 4)),
            "samples_last_number_share": dg.MetadataValue.float(
                round(int(rates["n_last_number"].sum() or 0) / max(n_samples, 1), 4)),
            "model": dg.MetadataValue.text(model_cfg.name),
            "params_hash": dg.MetadataValue.text(stats.params_hash),
            "generation": dg.MetadataValue.json(stats.as_dict()),
        }
    )
