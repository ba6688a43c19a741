"""Dagster resources: the store and the pipeline config, resolved from R1_HOME / R1_CONFIG."""


from typing import Optional

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

    home: Optional[str] = None
    config_path: Optional[str] = None

    def store(self) -> Store:
        return Store(self.home)

    def pipeline(self) -> PipelineConfig:
        return load_config(self.config_path)
