"""The code location: ``dagster dev -w workspace.yaml`` or ``-m dagster_project.definitions``.

Assets and asset checks are collected from the modules of ``dagster_project.assets``.
"""

import dagster as dg

from dagster_project import assets, automation
from dagster_project.resources import EngineResource, R1Resource

all_assets = dg.load_assets_from_package_module(assets)
all_asset_checks = dg.load_asset_checks_from_package_module(assets)
resources = {"r1": R1Resource(), "engine": EngineResource()}

defs = dg.Definitions(
    assets=all_assets,
    asset_checks=all_asset_checks,
    resources=resources,
    jobs=automation.jobs,
    schedules=automation.schedules,
    sensors=automation.sensors,
)
