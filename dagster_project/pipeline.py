"""The main job: materialize every asset of the chain, in dependency order, every partition.

    python -m dagster_project.pipeline [--select KEY ...]

Runs go to the Dagster instance in $DAGSTER_HOME, so the UI (``make ui``) shows them
with their metadata. Each step is one Dagster run of one asset (and one partition); a
failed run stops the pipeline with its error. Re-running is cheap: every stage replaces
its partition idempotently, and model outputs resume from the `generations` checkpoint.
"""

import argparse
import sys
import time

import dagster as dg

from dagster_project.definitions import build_definitions
from dagster_project.partitions import register_shard_partitions
from r1_assets.storage import Store


def _partition_keys(assets_def: dg.AssetsDefinition, instance: dg.DagsterInstance) -> list[str | None]:
    partitions_def = assets_def.partitions_def
    if partitions_def is None:
        return [None]
    return list(partitions_def.get_partition_keys(dynamic_partitions_store=instance))


def _store(defs: dg.Definitions) -> Store:
    # The resource as a run sees it (EnvVar fields resolved).
    return defs.resources["r1"].process_config_and_initialize().store()


def _register_shards(instance: dg.DagsterInstance, defs: dg.Definitions) -> None:
    """Shards of an earlier clean_problems run that this instance has not seen (another DAGSTER_HOME)."""
    added = register_shard_partitions(instance, _store(defs))
    if added:
        print(f"  registered shard partitions: {', '.join(added)}", flush=True)


def run_pipeline(select: list[str] | None = None) -> int:
    instance = dg.DagsterInstance.get()
    defs = build_definitions()
    asset_graph = defs.resolve_asset_graph()
    assets_by_key = {key: asset_graph.get(key).assets_def for key in asset_graph.materializable_asset_keys}
    order = [k for k in asset_graph.toposorted_asset_keys if k in assets_by_key]
    if select:
        wanted = {dg.AssetKey.from_user_string(s) for s in select}
        unknown = wanted - set(order)
        if unknown:
            print(f"unknown assets: {sorted(k.to_user_string() for k in unknown)}", file=sys.stderr)
            return 2
        order = [k for k in order if k in wanted]
    started = time.monotonic()
    for key in order:
        assets_def = assets_by_key[key]
        if isinstance(assets_def.partitions_def, dg.DynamicPartitionsDefinition):
            _register_shards(instance, defs)
        keys = _partition_keys(assets_def, instance)
        if not keys:
            print(f"{key.to_user_string()}: no partitions yet, skipped", flush=True)
            continue
        for partition in keys:
            label = key.to_user_string() + (f" [{partition}]" if partition else "")
            print(f"{label}: running", flush=True)
            t0 = time.monotonic()
            result = dg.materialize(
                [*defs.assets, *defs.asset_checks],
                selection=[key],
                partition_key=partition,
                instance=instance,
                resources=defs.resources,
                raise_on_error=False,
                tags={"r1/launched_by": "pipeline"},
            )
            if not result.success:
                print(f"{label}: FAILED (run {result.run_id}); see `make ui` -> Runs", file=sys.stderr, flush=True)
                return 1
            counts = [
                m.metadata["dagster/row_count"].value
                for m in result.asset_materializations_for_node(assets_def.node_def.name)
                if "dagster/row_count" in m.metadata
            ]
            rows = f", {counts[0]} rows" if counts else ""
            print(f"{label}: done in {time.monotonic() - t0:.1f}s{rows}", flush=True)
    print(f"pipeline finished in {time.monotonic() - started:.0f}s; data: {_store(defs).location}")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--select", nargs="*", help="asset keys to run (default: all, in dependency order)")
    args = parser.parse_args()
    sys.exit(run_pipeline(args.select))


if __name__ == "__main__":
    main()
