"""Seeding a store for tests that start downstream of collection."""

from __future__ import annotations

import polars as pl

from r1_assets.storage import Lineage, Store
from r1_assets.text import problem_id


def put_clean_problems(store: Store, rows: list[tuple[str, str | None]], source: str = "test") -> list[str]:
    """(problem, answer) pairs as the whole of ``clean_problems``; returns their problem_ids."""
    frame = pl.DataFrame(
        {
            "problem_id": [problem_id(p) for p, _ in rows],
            "source": [source] * len(rows),
            "source_row": list(range(len(rows))),
            "problem": [p for p, _ in rows],
            "answer": [a for _, a in rows],
            "run_id": ["seed"] * len(rows),
        },
        schema_overrides={"answer": pl.String},
    )
    store.replace_partition("clean_problems", frame, where=None, lineage=Lineage(run_id="seed"))
    return frame["problem_id"].to_list()
