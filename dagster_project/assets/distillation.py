"""Teacher CoT distillation and its verification: one partition per shard, like pass_rates."""

import dagster as dg
import polars as pl

from dagster_project.metadata import counts_markdown, sandbox_warning, table_metadata
from dagster_project.partitions import shard_partitions
from dagster_project.resources import DUCKDB_POOL, GPU_POOL, EngineResource, R1Resource
from r1_assets import distillation
from r1_assets.engines import generation_spend

UNPARSEABLE_REFERENCE_CHECK = "unparseable_reference_share"
TIMEOUT_CHECK = "verification_timeout_share"
TRUNCATED_CHECK = "truncated_share"


def distillations_asset(op_tags: dict) -> dg.AssetsDefinition:
    """``distillations``; the definitions factory passes the op_tags of distillation.model's
    role (``resources.engine_op_tags``: what each shard step asks a cluster for)."""

    @dg.asset(
        partitions_def=shard_partitions,
        deps=["pass_rates"],
        pool=GPU_POOL,
        op_tags=op_tags,
        group_name="distillation",
        kinds={"vllm", "duckdb"},
        description="Teacher chain-of-thought samples (distillation.model, default R1 sampling T=0.6, top_p=0.95, "
        "Open-R1's prompt) for the shard's problems whose pass rate lies inside distillation.band. Raw outputs "
        "are checkpointed in `generations` (resume; a re-run never duplicates); each sample's reasoning "
        "(<think>...</think>) and final answer are split into `distillations`.",
    )
    def distillations(context: dg.AssetExecutionContext, r1: R1Resource, engine: EngineResource) -> dg.MaterializeResult:
        cfg = r1.pipeline()
        store = r1.store()
        shard = context.partition_key
        with engine.open(cfg, cfg.distillation.model, store.home) as llm:
            result = distillation.materialize_distillations(store, cfg, shard, llm, context.run.run_id,
                                                            log=context.log.info)
        rows, stats = result.rows, result.stats
        return dg.MaterializeResult(
            metadata={
                **table_metadata(store, "distillations", {"shard": shard},
                                 preview_columns=["problem_id", "sample_idx", "n_tokens", "finish_reason", "final_answer"]),
                "problems_selected": dg.MetadataValue.int(result.problems),
                "failed_generations": dg.MetadataValue.int(result.failed_samples),
                "finish_reasons": dg.MetadataValue.md(counts_markdown(
                    result.finish_reasons, key="finish_reason", value="samples")),
                "mean_tokens": dg.MetadataValue.float(float(rows["n_tokens"].mean() or 0.0) if rows.height else 0.0),
                "teacher_model": dg.MetadataValue.text(result.model),
                "params_hash": dg.MetadataValue.text(stats.params_hash),
                "generation": dg.MetadataValue.json(stats.as_dict()),
                # Teacher spend: this run's new samples, and every distillation sample of this teacher so far.
                "cost_usd_this_run": dg.MetadataValue.float(round(stats.cost_usd or 0.0, 6)),
                "teacher_spend_so_far": dg.MetadataValue.json(generation_spend(store, distillation.PURPOSE, result.model)),
            }
        )

    return distillations


@dg.asset(
    partitions_def=shard_partitions,
    deps=["distillations"],
    pool=DUCKDB_POOL,
    group_name="distillation",
    kinds={"duckdb", "python"},
    check_specs=[
        dg.AssetCheckSpec(UNPARSEABLE_REFERENCE_CHECK, asset="verified_distillations", blocking=True,
                          description="Share of samples whose reference answer math-verify cannot parse is "
                          "at most verification.max_unparseable_reference_share."),
        dg.AssetCheckSpec(TIMEOUT_CHECK, asset="verified_distillations", blocking=True,
                          description="Share of samples whose verification timed out is at most "
                          "verification.max_timeout_share."),
        dg.AssetCheckSpec(TRUNCATED_CHECK, asset="verified_distillations",
                          description="Warns when more than verification.warn_truncated_share of the samples "
                          "hit max_tokens (finish_reason 'length'): raise distillation.sampling.max_tokens."),
    ],
    description="Every teacher sample checked: math-verify verdict against the reference (Open-R1 extraction, "
    "process pool, per-sample timeout) with its method, format checks (think block closed, final answer, "
    "not truncated, no degenerate repetition) and, when verification.judge_model is set, an LLM judge's "
    "EQUIVALENT/DIFFERENT/AMBIGUOUS for samples math-verify rejected. Per-problem rollups: view "
    "`distillation_rollups`.",
)
def verified_distillations(context: dg.AssetExecutionContext, r1: R1Resource, engine: EngineResource):
    cfg = r1.pipeline()
    store = r1.store()
    shard = context.partition_key
    vcfg = cfg.verification
    if vcfg.judge_model:
        # The judge shares the engine resource (and its model) with the generating stages.
        with engine.open(cfg, vcfg.judge_model, store.home) as judge:
            result = distillation.materialize_verified(store, cfg, shard, context.run.run_id,
                                                       log=context.log.info, judge_engine=judge)
    else:
        result = distillation.materialize_verified(store, cfg, shard, context.run.run_id, log=context.log.info)
    shares = result.shares
    verified = result.verified
    n = verified.height
    correct = verified.filter(pl.col("correct")).height if n else 0
    checks = [
        dg.AssetCheckResult(
            check_name=UNPARSEABLE_REFERENCE_CHECK, asset_key="verified_distillations",
            passed=shares["unparseable_reference"] <= vcfg.max_unparseable_reference_share,
            metadata={"share": shares["unparseable_reference"], "bound": vcfg.max_unparseable_reference_share},
        ),
        dg.AssetCheckResult(
            check_name=TIMEOUT_CHECK, asset_key="verified_distillations",
            passed=shares["timeout"] <= vcfg.max_timeout_share,
            metadata={"share": shares["timeout"], "bound": vcfg.max_timeout_share},
        ),
        dg.AssetCheckResult(
            check_name=TRUNCATED_CHECK, asset_key="verified_distillations",
            passed=shares["truncated"] <= vcfg.warn_truncated_share,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"share": shares["truncated"], "bound": vcfg.warn_truncated_share},
        ),
    ]
    return dg.MaterializeResult(
        metadata={
            **table_metadata(store, "verified_distillations", {"shard": shard},
                             preview_columns=["problem_id", "verdict", "method", "extracted_answer", "format_issues"]),
            "correct_share": dg.MetadataValue.float(round(correct / n, 4) if n else 0.0),
            "verdicts": dg.MetadataValue.md(counts_markdown(result.verdicts, key="verdict", value="samples")),
            "methods": dg.MetadataValue.md(counts_markdown(result.methods, key="method", value="samples")),
            "format_issues": dg.MetadataValue.md(counts_markdown(result.format_issues, key="issue", value="samples")),
            "judge_verdicts": dg.MetadataValue.md(counts_markdown(result.judge_verdicts, key="judge", value="samples")),
            "unparseable_reference_share": dg.MetadataValue.float(round(shares["unparseable_reference"], 4)),
            "timeout_share": dg.MetadataValue.float(round(shares["timeout"], 4)),
            "truncated_share": dg.MetadataValue.float(round(shares["truncated"], 4)),
            "domains": dg.MetadataValue.md(counts_markdown(result.domains, key="domain", value="samples")),
            "verifiers": dg.MetadataValue.md(counts_markdown(result.verifiers, key="verifier", value="samples")),
            **sandbox_warning(vcfg),
        },
        check_results=checks,
    )
