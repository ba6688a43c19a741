"""Materialization metadata built from stored tables: row counts, schema, markdown previews."""

from __future__ import annotations

from typing import Any
from collections.abc import Mapping

import dagster as dg
import polars as pl

from r1_assets.storage import Store, quote_ident, where_clause


def markdown_table(frame: pl.DataFrame, max_rows: int = 10, max_chars: int = 80) -> str:
    """A small markdown table; long cells are cut so the UI stays readable."""
    if frame.is_empty():
        return "_(no rows)_"

    def cell(value: Any) -> str:
        text = "" if value is None else str(value)
        text = text.replace("\n", " ").replace("|", "\\|")
        return text if len(text) <= max_chars else text[: max_chars - 1] + "…"

    head = frame.head(max_rows)
    lines = ["| " + " | ".join(head.columns) + " |", "|" + "---|" * len(head.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in head.iter_rows()]
    return "\n".join(lines)


def counts_markdown(counts: Mapping[str, int], key: str = "reason", value: str = "rows") -> str:
    if not counts:
        return "_(none)_"
    rows = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return markdown_table(pl.DataFrame({key: [k for k, _ in rows], value: [v for _, v in rows]}), max_rows=50)


def table_metadata(
    store: Store,
    table: str,
    where: Mapping[str, Any] | None = None,
    preview_columns: list[str] | None = None,
) -> dict[str, Any]:
    """Row count, column schema and a markdown preview of a stored table (or one partition)."""
    clause, params = where_clause(where)
    cols = ", ".join(quote_ident(c) for c in preview_columns) if preview_columns else "*"
    preview = store.query(f"SELECT {cols} FROM {quote_ident(table)}{clause} LIMIT 10", params)
    schema = dg.TableSchema(columns=[dg.TableColumn(name, dtype) for name, dtype in store.columns(table)])
    return {
        "dagster/row_count": dg.MetadataValue.int(store.count(table, where)),
        "dagster/column_schema": schema,
        "dagster/table_name": dg.MetadataValue.text(f"{store.location}::{table}"),
        "preview": dg.MetadataValue.md(markdown_table(preview)),
    }


def sandbox_warning(vcfg) -> dict:
    """``{"code_sandbox_warning": ...}`` when model-written code runs unsandboxed (verification.code.sandbox: none)."""
    from r1_assets.verification import UNSANDBOXED_WARNING

    return {"code_sandbox_warning": dg.MetadataValue.text(UNSANDBOXED_WARNING)} if vcfg.code.sandbox == "none" else {}
