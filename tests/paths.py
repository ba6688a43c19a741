"""Where tests find the checkout and the shared real data (importable; conftest is not)."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# CI clones the project with ../shared beside it; R1_SHARED_DATA overrides.
SHARED_DATA = Path(os.environ.get("R1_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def open_data(home: Path):
    """A read-only connection on the tables in ``home`` on the configured backend (``R1_CONFIG``
    storage section), as ``r1_assets.analysis.connect`` gives notebooks."""
    from r1_assets.analysis import connect

    return connect(home)
