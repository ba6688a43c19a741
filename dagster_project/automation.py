"""Automation: the nightly refresh backfill, the source-file sensor and the shard sensor.

- ``chain_refresh_schedule`` (cron ``R1_REFRESH_CRON``, default 03:00 UTC daily) submits ONE
  backfill of the whole chain: every source partition of ``raw_problems``, every current
  shard of the sharded stages, and the unpartitioned assets between them. The backfill
  daemon runs them in dependency order and batches partitions by each asset's
  ``BackfillPolicy``; pools (dagster.yaml) keep writers and engines one at a time.
  Schedules cannot return a backfill request in Dagster 1.13 (only sensors can), so the
  schedule runs ``chain_refresh_job``, one op that submits the backfill (launch that job by
  hand to refresh now).
- ``source_file_sensor`` watches every ``kind: file`` source of the config. Its path may be a
  file, or a folder (a drop folder): every ``*.jsonl``/``*.json``/``*.parquet`` inside is part
  of that source. When a file is added, changed or removed, the sensor requests a backfill of
  that source's ``raw_problems`` partition and of ``unique_problems``/``clean_problems``; the
  shard sensor takes over from there. The partitions are the configured source names (static,
  see ``dagster_project.partitions``): a dropped file needs no config edit when it lands in a
  configured folder; a new source *name* needs a config edit and a definitions reload.
- ``shard_sensor`` fires on each new ``clean_problems`` materialization: it registers the shard
  partitions of the new clean set (``sync_shard_partitions``) and requests ``pass_rates`` for
  every shard that has none yet, as one backfill so ``BackfillPolicy`` batching applies.
"""

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Iterable, Optional

import dagster as dg
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
from dagster._core.execution.backfill import PartitionBackfill
from dagster._core.utils import make_new_backfill_id

from dagster_project.partitions import source_partitions
from dagster_project.resources import R1Resource
from r1_assets.config import ConfigError, PipelineConfig
from r1_assets.sources import source_files

try:  # helper-2's shard partitions; the shard sensor exists only once they do
    from dagster_project.partitions import sync_shard_partitions
except ImportError:  # pragma: no cover - depends on the sharded stages being present
    sync_shard_partitions = None

RAW = dg.AssetKey("raw_problems")
CLEAN = dg.AssetKey("clean_problems")
PASS_RATES = dg.AssetKey("pass_rates")
# What a changed source file refreshes directly; the shard sensor continues from clean_problems.
FILE_CHANGE_DOWNSTREAM = (dg.AssetKey("unique_problems"), CLEAN)
# Not part of the nightly refresh: converting the packaged model is a one-time setup step.
REFRESH_EXCLUDED = {dg.AssetKey("small_model")}
REFRESH_CRON = os.environ.get("R1_REFRESH_CRON", "0 3 * * *")
# The sensors look at local file stats and one event-log query: cheap enough every 30 s.
SENSOR_INTERVAL_S = 30


def _asset_graph():
    from dagster_project.definitions import defs  # import here: definitions imports this module

    return defs.resolve_asset_graph()


def chain_subset(
    instance: dg.DagsterInstance,
    partitions: Optional[dict[dg.AssetKey, Optional[Iterable[str]]]] = None,
    keys: Optional[Iterable[dg.AssetKey]] = None,
) -> AssetGraphSubset:
    """An asset-graph subset: ``keys`` (default: every materializable asset but REFRESH_EXCLUDED)
    with all their partitions, except where ``partitions`` names some (None = all of them).

    Assets whose (dynamic) partition set is still empty are left out.
    """
    graph = _asset_graph()
    wanted = set(keys) if keys is not None else set(graph.materializable_asset_keys) - REFRESH_EXCLUDED
    wanted &= set(graph.materializable_asset_keys)
    partitions = partitions or {}
    by_key, unpartitioned = {}, set()
    for key in wanted:
        pdef = graph.get(key).partitions_def
        if pdef is None:
            unpartitioned.add(key)
            continue
        available = list(pdef.get_partition_keys(dynamic_partitions_store=instance))
        chosen = partitions.get(key)
        selected = available if chosen is None else [k for k in available if k in set(chosen)]
        if selected:
            by_key[key] = pdef.empty_subset().with_partition_keys(selected)
    return AssetGraphSubset(partitions_subsets_by_asset_key=by_key, non_partitioned_asset_keys=unpartitioned)


def _describe(subset: AssetGraphSubset) -> str:
    parts = [f"{k.to_user_string()}[{len(s)}]" for k, s in sorted(subset.partitions_subsets_by_asset_key.items())]
    parts += [k.to_user_string() for k in sorted(subset.non_partitioned_asset_keys)]
    return ", ".join(parts)


# -- the nightly refresh ---------------------------------------------------------------------
def submit_backfill(instance: dg.DagsterInstance, subset: AssetGraphSubset, trigger: str, title: str) -> str:
    """Add a backfill of ``subset`` to the instance; the backfill daemon runs it. Returns its id."""
    backfill_id = make_new_backfill_id()
    instance.add_backfill(
        PartitionBackfill.from_asset_graph_subset(
            backfill_id=backfill_id,
            backfill_timestamp=time.time(),
            tags={"r1/trigger": trigger},
            dynamic_partitions_store=instance,
            asset_graph_subset=subset,
            title=title,
            description=f"{trigger}: {_describe(subset)}",
            run_config=None,
        )
    )
    return backfill_id


@dg.op(description="Submits one backfill of the whole chain: every source and shard partition.")
def submit_chain_refresh_backfill(context: dg.OpExecutionContext) -> str:
    subset = chain_subset(context.instance)
    backfill_id = submit_backfill(context.instance, subset, "chain_refresh_schedule", "chain refresh")
    context.log.info(f"submitted backfill {backfill_id}: {_describe(subset)} (see /runs/b/{backfill_id})")
    context.add_output_metadata({"backfill_id": backfill_id, "assets": _describe(subset)})
    return backfill_id


@dg.job(
    description="Refresh now: submits a backfill of the whole chain (what the nightly schedule runs).",
    tags={"r1/trigger": "chain_refresh_schedule"},
)
def chain_refresh_job():
    submit_chain_refresh_backfill()


# Schedules cannot return a backfill request in Dagster 1.13 (only sensors can), so the
# schedule runs a one-op job that submits it. The schedule's run key is its tick, so a
# retried tick never submits the same refresh twice.
chain_refresh_schedule = dg.ScheduleDefinition(
    name="chain_refresh_schedule",
    job=chain_refresh_job,
    cron_schedule=REFRESH_CRON,
    execution_timezone="UTC",
    description="Backfills the whole chain (every source and shard partition) once a day.",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)


# -- new or changed source files -------------------------------------------------------------
def source_fingerprint(cfg: PipelineConfig, name: str) -> tuple[str, float]:
    """A hash of (file name, size, mtime) of every file of a file source, and the newest mtime."""
    files = source_files(cfg.source(name), cfg)
    stats = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    digest = hashlib.sha256(json.dumps(stats).encode()).hexdigest()[:16]
    return digest, max((s[2] for s in stats), default=0) / 1e9


def _last_materialized_at(instance: dg.DagsterInstance, partition: str) -> float | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=RAW, asset_partitions=[partition]), limit=1
    ).records
    return records[0].timestamp if records else None


@dg.sensor(
    name="source_file_sensor",
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    # Sensors that request backfills must name what they may target.
    asset_selection=dg.AssetSelection.assets(RAW).downstream(depth=len(FILE_CHANGE_DOWNSTREAM)),
    description="Re-collects a file source (a file or a drop folder) when a file is added, changed or removed.",
    default_status=dg.DefaultSensorStatus.STOPPED,
)
def source_file_sensor(context: dg.SensorEvaluationContext, r1: R1Resource):
    cfg = r1.pipeline()
    known = set(source_partitions.get_partition_keys())
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    changed: list[str] = []
    for src in cfg.sources:
        if src.kind != "file":
            continue
        if src.name not in known:
            context.log.warning(f"source '{src.name}' is not a partition yet: reload the definitions to add it")
            continue
        try:
            digest, newest = source_fingerprint(cfg, src.name)
        except ConfigError as err:  # file removed or unreadable: report, keep watching the rest
            context.log.warning(str(err))
            continue
        if seen.get(src.name) == digest:
            continue
        if src.name not in seen:
            # First sighting (sensor just turned on): only files newer than the last run count.
            last = _last_materialized_at(context.instance, src.name)
            if last is not None and last >= newest:
                seen[src.name] = digest
                continue
        seen[src.name] = digest
        changed.append(src.name)
    if not changed:
        return dg.SensorResult(skip_reason=dg.SkipReason("no new or changed source files"), cursor=json.dumps(seen))
    subset = chain_subset(context.instance, {RAW: changed}, keys=[RAW, *FILE_CHANGE_DOWNSTREAM])
    context.log.info(f"source files changed for {changed}: requesting {_describe(subset)}")
    return dg.SensorResult(
        run_requests=[dg.RunRequest.for_asset_graph_subset(subset, tags={"r1/trigger": "source_file_sensor"})],
        cursor=json.dumps(seen),
    )


# -- new shards after clean_problems ---------------------------------------------------------
def _shard_sensor_fn(context: dg.SensorEvaluationContext, r1: R1Resource):
    instance = context.instance
    records = instance.fetch_materializations(CLEAN, limit=1).records
    if not records:
        return dg.SkipReason("clean_problems has not been materialized yet")
    latest = records[0].storage_id
    if context.cursor and int(context.cursor) >= latest:
        return dg.SkipReason("no new clean_problems materialization")
    added = sync_shard_partitions(instance, r1) or []
    graph = _asset_graph()
    if not graph.has(PASS_RATES):
        return dg.SensorResult(skip_reason=dg.SkipReason("no pass_rates asset"), cursor=str(latest))
    pdef = graph.get(PASS_RATES).partitions_def
    shards = set(pdef.get_partition_keys(dynamic_partitions_store=instance))
    missing = sorted((shards - instance.get_materialized_partitions(PASS_RATES)) | (set(added) & shards))
    context.log.info(f"clean_problems materialization {latest}: {len(added)} new shards, {len(missing)} without pass_rates")
    if not missing:
        return dg.SensorResult(skip_reason=dg.SkipReason("every shard has pass_rates"), cursor=str(latest))
    subset = chain_subset(instance, {PASS_RATES: missing}, keys=[PASS_RATES])
    return dg.SensorResult(
        run_requests=[dg.RunRequest.for_asset_graph_subset(subset, tags={"r1/trigger": "shard_sensor"})],
        cursor=str(latest),
    )


shard_sensor = None
if sync_shard_partitions is not None:
    shard_sensor = dg.sensor(
        name="shard_sensor",
        minimum_interval_seconds=SENSOR_INTERVAL_S,
        asset_selection=dg.AssetSelection.assets(CLEAN).downstream(depth=1, include_self=False),
        description="Registers shard partitions after each clean_problems materialization and requests "
        "pass_rates for shards that have none.",
        default_status=dg.DefaultSensorStatus.STOPPED,
    )(_shard_sensor_fn)

jobs = [chain_refresh_job]
schedules = [chain_refresh_schedule]
sensors = [s for s in (source_file_sensor, shard_sensor) if s is not None]
