"""Where tests find the checkout and the shared real data (importable; conftest is not)."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# CI clones the project with ../shared beside it; R1_SHARED_DATA overrides.
SHARED_DATA = Path(os.environ.get("R1_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
