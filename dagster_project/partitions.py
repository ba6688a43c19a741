"""Partitions. Source partitions come from the config loaded when definitions load."""

from __future__ import annotations

import dagster as dg

from r1_assets.config import load_config

# One static partition per configured source (R1_CONFIG, else the embedded default).
source_partitions = dg.StaticPartitionsDefinition([s.name for s in load_config().sources])

# pass_rates (and other per-problem model stages): one partition per shard of clean_problems.
# Keys are added by sync_shard_partitions (pipeline driver, sensor), never removed.
shard_partitions = dg.DynamicPartitionsDefinition(name="shards")


def sync_shard_partitions(instance: dg.DagsterInstance, r1_resource) -> list[str]:
    """Assign clean problems to stable shards (table problem_shards) and register new keys.

    Returns the shard keys added to the instance. Idempotent: a second call adds nothing.
    """
    from r1_assets.difficulty import sync_shards

    cfg = r1_resource.pipeline()
    store = r1_resource.store()
    current, _ = sync_shards(store, cfg.difficulty.shard_size)
    known = set(instance.get_dynamic_partitions(shard_partitions.name))
    added = [key for key in current if key not in known]
    if added:
        instance.add_dynamic_partitions(shard_partitions.name, added)
    return added
