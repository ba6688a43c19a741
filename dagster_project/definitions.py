"""The code location: ``dagster dev -w workspace.yaml`` or ``-m dagster_project.definitions``.

Importing this module does nothing but define ``build_definitions``: the config is read when
Dagster (or a test) calls the ``@dg.definitions`` entry point, so a missing or broken
``R1_CONFIG`` is one clear error at load time, and tests build definitions in-process for
any config they write.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from dagster_project import assets, automation
from dagster_project.assets.collection import raw_problems_asset
from dagster_project.assets.difficulty import pass_rates_asset
from dagster_project.assets.distillation import distillations_asset
from dagster_project.code_versions import asset_code_version
from dagster_project.partitions import source_partitions
from dagster_project.resources import EngineResource, R1Resource, engine_op_tags
from r1_assets.config import load_config


def _env(name: str) -> dg.EnvVar | None:
    # An EnvVar (read when a run starts, shown by name in the UI) where the variable is set;
    # unset, the resource falls back to its default (.r1/, the packaged embedded config).
    return dg.EnvVar(name) if os.environ.get(name) else None


def build_definitions(
    config_path: str | Path | None = None,
    home: str | Path | None = None,
    executor: dg.ExecutorDefinition | None = None,
) -> dg.Definitions:
    """Every asset, check, sensor and resource of r1-curator for one config.

    ``config_path`` / ``home`` default to ``R1_CONFIG`` / ``R1_HOME`` (else the packaged
    embedded default / ``.r1/``). The config is loaded once here: it names the source
    partitions, sets each asset's code version, and the op_tags of the engine steps
    (``models.<role>.step_resources``). ``executor``: a deployment's own (e.g.
    dagster-k8s' ``k8s_job_executor``, dagster-ray's ``ray_executor`` in
    ``dagster_project.deployments.ray``); default Dagster's multiprocess executor.
    """
    cfg = load_config(config_path)
    r1 = R1Resource(
        home=str(home) if home else _env("R1_HOME"),
        config_path=str(config_path) if config_path else _env("R1_CONFIG"),
    )
    condition = automation.refresh_condition(automation.refresh_cron())

    def configured(asset: dg.AssetsDefinition) -> dg.AssetsDefinition:
        return asset.map_asset_specs(lambda spec: spec.replace_attributes(
            code_version=asset_code_version(cfg, spec.key.to_user_string()),
            automation_condition=condition,
        ))

    package_assets = dg.load_assets_from_package_module(assets)
    all_assets = [configured(a) for a in [
        raw_problems_asset(source_partitions(cfg)),
        pass_rates_asset(engine_op_tags(cfg, cfg.difficulty.model)),
        distillations_asset(engine_op_tags(cfg, cfg.distillation.model)),
        *package_assets,
    ]]
    return dg.Definitions(
        assets=all_assets,
        asset_checks=dg.load_asset_checks_from_package_module(assets),
        resources={"r1": r1, "engine": EngineResource()},
        sensors=automation.sensors,
        executor=executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
