"""Partitions. Source partitions come from the config loaded when definitions load."""

from __future__ import annotations

import dagster as dg

from r1_assets.config import load_config

# One static partition per configured source (R1_CONFIG, else the embedded default).
source_partitions = dg.StaticPartitionsDefinition([s.name for s in load_config().sources])
