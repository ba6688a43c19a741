"""r1-curator's plain library: one module per pipeline stage, no Dagster imports."""

__version__ = "0.1.0"
