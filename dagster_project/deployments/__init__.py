"""Code locations of the same assets for cluster executors (one module per deployment)."""
