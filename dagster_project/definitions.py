"""The code location: ``dagster dev -w workspace.yaml`` or ``-m dagster_project.definitions``."""

from __future__ import annotations

import dagster as dg

from dagster_project.assets import collection
from dagster_project.resources import R1Resource

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([collection]),
    resources={"r1": R1Resource()},
)
