"""Dagster resources: the store and the pipeline config, resolved from R1_HOME / R1_CONFIG."""


import math
from contextlib import contextmanager
from collections.abc import Iterator

import dagster as dg

from r1_assets.config import PipelineConfig, StepResources, load_config
from r1_assets.storage import Store

# Pools (limits in dagster.yaml): one DuckDB writer at a time, one model on the GPU at a time.
DUCKDB_POOL = "duckdb_writer"
GPU_POOL = "gpu"


class R1Resource(dg.ConfigurableResource):
    """Where r1-curator keeps its data (``home``) and what it runs (``config_path``).

    Both default to the environment at run time: ``R1_HOME`` (else ``.r1/``) and
    ``R1_CONFIG`` (else the packaged embedded default).
    """

    home: str | None = None
    config_path: str | None = None

    def store(self) -> Store:
        return Store.from_config(self.pipeline(), self.home)

    def pipeline(self) -> PipelineConfig:
        return load_config(self.config_path)


def engine_op_tags(cfg: PipelineConfig, role: str) -> dict:
    """op_tags of an engine asset: what each of its steps (one shard) asks a cluster for.

    With dagster-k8s' ``k8s_job_executor`` every step is its own pod, and ``dagster-k8s/config``
    asks the scheduler for the role's GPUs (one GPU pod per shard by default). With
    dagster-ray's ``ray_executor`` (``dagster_project.deployments.ray``) every step is a Ray job,
    and ``dagster-ray/config`` is its entrypoint's resources. Both come from
    ``models.<role>.step_resources``; the in-process and multiprocess executors ignore them,
    so the same asset runs on a CPU laptop.
    """
    wanted = cfg.models[role].step_resources if role in cfg.models else StepResources()
    limits = {"nvidia.com/gpu": str(math.ceil(wanted.num_gpus))} if wanted.num_gpus else {}
    ray = {"num_gpus": wanted.num_gpus}
    if wanted.num_cpus is not None:
        ray["num_cpus"] = wanted.num_cpus
    if wanted.custom:
        ray["resources"] = dict(wanted.custom)
    return {"dagster-k8s/config": {"container_config": {"resources": {"limits": limits}}}, "dagster-ray/config": ray}


class EngineResource(dg.ConfigurableResource):
    """Opens the engine of a ``models:`` role (vLLM in-process or an OpenAI-compatible server).

    ``batch_size`` overrides the role's ``batch_size`` (checkpoint size, vLLM max_num_seqs),
    e.g. to checkpoint more often on a flaky cluster. Usage in an asset::

        with engine.open(cfg, cfg.difficulty.model, store.home) as llm:
            run_generation(store, llm, ...)

    The engine is created on entry and always closed on exit (vLLM shut down), failures
    included; vLLM loads the model only when something is left to generate.
    """

    batch_size: int | None = None

    @contextmanager
    def open(self, cfg: PipelineConfig, role: str, home) -> Iterator["object"]:
        from r1_assets.engines import open_engine

        with open_engine(cfg.model(role), home, batch_size=self.batch_size) as engine:
            yield engine
