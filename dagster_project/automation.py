"""Automation: the chain refresh (declarative automation) and the source-file sensor.

- ``refresh_condition`` is every asset's ``automation_condition``. After each cron tick
  (``R1_REFRESH_CRON``, default 03:00 UTC daily) a partition is materialized when it is
  missing, when its code version changed (its config section was edited, see
  ``code_versions``) or when a parent was updated since it was last materialized, and only
  once its parents are neither missing nor in progress. So the refresh does exactly the stale
  or missing work, in dependency order, and nothing else. ``chain_refresh`` is the sensor that
  evaluates it (off by default: turn it on in the UI's Automation tab); pools (dagster.yaml)
  keep writers and engines one at a time.
- ``source_file_sensor`` watches every ``kind: file`` source. Its path may be a file or a folder
  (a drop folder: every ``*.jsonl``/``*.json``/``*.parquet`` inside is part of that source).
  When a file is added, changed or removed it requests that source's ``raw_problems``
  partition plus ``unique_problems``/``clean_problems``; the refresh condition continues from
  there (new shards are registered by ``clean_problems`` itself). Source partitions are the
  configured source names, read from the sensor's own definitions: a file dropped into a
  configured folder needs no config edit; a new source name needs one and a reload.

Nothing here mutates state: sensors only return requests.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable

import dagster as dg
from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset

from dagster_project.resources import R1Resource
from r1_assets.config import ConfigError, PipelineConfig
from r1_assets.sources import source_files

RAW = dg.AssetKey("raw_problems")
CLEAN = dg.AssetKey("clean_problems")
# What a changed source file refreshes directly; the refresh condition continues from clean_problems.
FILE_CHANGE_DOWNSTREAM = (dg.AssetKey("unique_problems"), CLEAN)
# The sensors look at local file stats and one event-log query: cheap enough every 30 s.
SENSOR_INTERVAL_S = 30


def refresh_cron() -> str:
    return os.environ.get("R1_REFRESH_CRON", "0 3 * * *")


def refresh_condition(cron: str) -> dg.AutomationCondition:
    """Materialize a missing or stale partition once per cron tick, after its parents."""
    stale = (
        dg.AutomationCondition.code_version_changed() | dg.AutomationCondition.any_deps_updated()
    ).since_last_handled()
    return (
        dg.AutomationCondition.cron_tick_passed(cron, "UTC").since_last_handled()
        & (dg.AutomationCondition.missing() | stale)
        & ~dg.AutomationCondition.any_deps_missing()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    ).with_label(f"missing or stale, after the cron tick {cron}")


chain_refresh_sensor = dg.AutomationConditionSensorDefinition(
    "chain_refresh",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Evaluates every asset's refresh condition: after each cron tick, materializes the missing "
    "or stale partitions of the chain (config edited, parent updated) in dependency order.",
)


def chain_subset(
    graph,
    instance: dg.DagsterInstance,
    keys: Iterable[dg.AssetKey],
    partitions: dict[dg.AssetKey, Iterable[str]] | None = None,
) -> AssetGraphSubset:
    """``keys`` with all their partitions, except where ``partitions`` names some."""
    partitions = partitions or {}
    by_key, unpartitioned = {}, set()
    for key in set(keys) & set(graph.materializable_asset_keys):
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


def describe_subset(subset: AssetGraphSubset) -> str:
    parts = [f"{k.to_user_string()}[{len(s)}]" for k, s in sorted(subset.partitions_subsets_by_asset_key.items())]
    parts += [k.to_user_string() for k in sorted(subset.non_partitioned_asset_keys)]
    return ", ".join(parts)


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
    graph = context.repository_def.asset_graph
    known = set(graph.get(RAW).partitions_def.get_partition_keys())
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
    subset = chain_subset(graph, context.instance, [RAW, *FILE_CHANGE_DOWNSTREAM], {RAW: changed})
    context.log.info(f"source files changed for {changed}: requesting {describe_subset(subset)}")
    return dg.SensorResult(
        run_requests=[dg.RunRequest.for_asset_graph_subset(subset, tags={"r1/trigger": "source_file_sensor"})],
        cursor=json.dumps(seen),
    )


sensors = [chain_refresh_sensor, source_file_sensor]
