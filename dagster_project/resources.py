"""Dagster resources: the store and the pipeline config, resolved from R1_HOME / R1_CONFIG."""


from contextlib import contextmanager
from collections.abc import Iterator

import dagster as dg

from r1_assets.config import PipelineConfig, load_config
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


# op_tags of engine assets: with dagster-k8s' k8s_job_executor every step is its own pod,
# and this asks the scheduler for one GPU for it (one GPU pod per shard). Ignored by the
# in-process and multiprocess executors, so the same asset runs on a CPU laptop.
GPU_OP_TAGS = {"dagster-k8s/config": {"container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}}}}


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
