"""Partitions: one static partition per configured source, one dynamic partition per shard.

Nothing here reads the config or the store at import: the source partitions are built by the
definitions factory from the config it loaded, and shard keys are registered by the
``clean_problems`` step that assigns them.
"""

from __future__ import annotations

import dagster as dg

from r1_assets.config import PipelineConfig
from r1_assets.difficulty import stored_shard_keys
from r1_assets.storage import Store

# pass_rates, distillations, verified_distillations: one partition per shard of clean_problems.
# Keys are added when clean_problems assigns new shards, and never removed.
shard_partitions = dg.DynamicPartitionsDefinition(name="shards")


def source_partitions(cfg: PipelineConfig) -> dg.StaticPartitionsDefinition:
    """One partition of ``raw_problems`` per configured source."""
    return dg.StaticPartitionsDefinition([s.name for s in cfg.sources])


def unregistered_shard_keys(instance: dg.DagsterInstance, store: Store) -> list[str]:
    """Shards that hold clean problems in the store but are no partition of the instance yet."""
    known = set(instance.get_dynamic_partitions(shard_partitions.name))
    return [key for key in stored_shard_keys(store) if key not in known]


def register_shard_partitions(instance: dg.DagsterInstance, store: Store) -> list[str]:
    """Add the stored shards the instance does not know yet; returns the keys added."""
    added = unregistered_shard_keys(instance, store)
    if added:
        instance.add_dynamic_partitions(shard_partitions.name, added)
    return added
