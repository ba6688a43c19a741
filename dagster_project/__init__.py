"""Dagster wiring for r1-curator: assets, resources, partitions, checks, schedules, sensors.

Thin by design: every computation lives in the plain library ``r1_assets``.
"""
