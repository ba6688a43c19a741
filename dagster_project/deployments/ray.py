"""The Ray deployment: ``dagster dev -m dagster_project.deployments.ray`` (or a workspace entry).

The same definitions as ``dagster_project.definitions`` (same factory, same config), with
dagster-ray's ``ray_executor``: every step of a run is submitted to the Ray cluster at
``RAY_ADDRESS`` (the dashboard/job-submission address, e.g. ``http://ray-head:8265``) as its
own Ray job, ``dagster api execute_step`` as the entrypoint. The engine steps (``pass_rates``,
``distillations``) ask Ray for their model role's ``step_resources`` through the
``dagster-ray/config`` op tag (one GPU per shard by default), so Ray places each shard on a
node that has them.

What a worker node needs: the same image (this package, vLLM), the config file at the same
``R1_CONFIG`` path, the model, and the storage settings: a DuckLake on a PostgreSQL catalog
(``PGPASSWORD`` in the node's own environment, never forwarded) and a ``data_path`` every node
sees (object storage or a shared volume). No database file in ``R1_HOME``: with such a lake
nothing under it is read or written except model folders named ``small_model``. The Dagster
instance (run and event storage) must be reachable from the nodes too: PostgreSQL
(dagster-postgres) on a cluster; the steps get its reference from the run.
"""

from __future__ import annotations

import dagster as dg
from dagster_ray import ray_executor

from dagster_project.definitions import build_definitions

# Forwarded from the launching process (the run worker) into each step's Ray job, where set:
# the step resolves its resources from them. Secrets (PGPASSWORD, API keys) are not: they
# would show in the Ray job's runtime_env on the dashboard; give them to the nodes instead.
FORWARDED_ENV = ["R1_CONFIG", "R1_HOME"]


def ray_step_executor() -> dg.ExecutorDefinition:
    """``ray_executor`` on the cluster named by ``RAY_ADDRESS`` (read when a run starts)."""
    return ray_executor.configured({"ray": {"address": {"env": "RAY_ADDRESS"}, "env_vars": FORWARDED_ENV}})


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(executor=ray_step_executor())
