"""Set the pool limits on a Dagster instance: ``python -m dagster_project.pools``.

dagster.yaml can only give a *default* pool limit; each pool is created lazily, by the first
step that claims it. Two runs that start at the same moment on a fresh instance both create
it and both get a slot (measured with Dagster 1.13 on SQLite storage: two DuckDB writers ran
at once). Creating the pools up front closes that race, so ``make dagster-home`` runs this.
A limit that is already set (e.g. ``dagster instance concurrency set gpu 8`` on a cluster) is
kept.
"""

import dagster as dg

from dagster_project.resources import DUCKDB_POOL, GPU_POOL

# DuckDB allows one writing process; the embedded default has one (CPU) engine.
POOL_LIMITS = {DUCKDB_POOL: 1, GPU_POOL: 1}


def ensure_pools(instance: dg.DagsterInstance, limits: dict[str, int] = POOL_LIMITS) -> dict[str, int]:
    """Create each pool that has no explicit limit yet; returns every pool's limit."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        raise RuntimeError(f"the instance's event log storage ({type(storage).__name__}) has no pools")
    configured = {p.name: p for p in storage.get_pool_limits()}
    for name, limit in limits.items():
        pool = configured.get(name)
        if pool is None or pool.from_default:
            storage.set_concurrency_slots(name, limit)
    return {p.name: p.limit for p in storage.get_pool_limits()}


if __name__ == "__main__":
    with dg.DagsterInstance.get() as instance:
        for name, limit in sorted(ensure_pools(instance).items()):
            print(f"pool {name}: limit {limit}")
