"""The named analysis queries of ``sql/analysis/*.sql``, runnable from Python.

Each file is one documented SELECT. Its header comment says what it shows, its parameters
(``-- @param name TYPE: description``) and its columns. Parameters are DuckDB variables read
with ``getvariable('name')`` and defaulted inside the SQL, so the same file runs unchanged in
the duckdb CLI::

    duckdb -readonly $R1_HOME/r1.duckdb -c "SET VARIABLE alpha = 0.3" -c ".read sql/analysis/yield_funnel.sql"

and from Python::

    from r1_assets.analysis import run_named_query
    run_named_query("yield_funnel", {"alpha": 0.3})

The same loader reads the other folders of one-statement files (``sql/splits``), whose
parameters are bound ``$name`` placeholders instead (``execute_bound_query``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from r1_assets.storage import SQL_DIR, Store, quote_ident

ANALYSIS_DIR = SQL_DIR / "analysis"
_PARAM = re.compile(r"^--\s*@param\s+([A-Za-z_][A-Za-z0-9_]*)\s+([A-Z\[\]]+)\s*:\s*(.*)$")


class QueryError(ValueError):
    """Unknown query name or parameter."""


@dataclass(frozen=True)
class NamedQuery:
    name: str
    path: Path
    description: str  # the header's first paragraph
    params: dict[str, str]  # name -> "TYPE: description"
    sql: str


def _parse(path: Path) -> NamedQuery:
    sql = path.read_text()
    header: list[str] = []
    for line in sql.splitlines():
        if not line.startswith("--"):
            break
        header.append(line)
    description = []
    for line in header:
        text = line[2:].strip()
        if not text:
            break
        description.append(text)
    params: dict[str, str] = {}
    last = None
    for line in header:
        match = _PARAM.match(line)
        if match:
            last = match[1]
            params[last] = f"{match[2]}: {match[3]}"
        elif last and line.startswith("--   "):  # an indented continuation of the last @param
            params[last] += " " + line[2:].strip()
        else:
            last = None
    return NamedQuery(path.stem, path, "\n".join(description), params, sql)


@cache
def load_queries(folder: Path) -> dict[str, NamedQuery]:
    """Every ``.sql`` file in ``folder``, by file name without ``.sql``."""
    return {p.stem: _parse(p) for p in sorted(folder.glob("*.sql"))}


def named_queries() -> dict[str, NamedQuery]:
    """Every query in sql/analysis, by file name without ``.sql``."""
    return load_queries(ANALYSIS_DIR)


def get_query(name: str, folder: Path = ANALYSIS_DIR) -> NamedQuery:
    queries = load_queries(folder)
    if name not in queries:
        raise QueryError(f"no {folder.name} query named '{name}'; known: {sorted(queries)}")
    return queries[name]


def execute_bound_query(
    con: duckdb.DuckDBPyConnection, query: NamedQuery, params: Mapping[str, Any]
) -> duckdb.DuckDBPyConnection:
    """Run ``query`` with its ``$name`` placeholders bound to ``params`` (exactly the declared ones)."""
    if set(params) != set(query.params):
        raise QueryError(
            f"{query.path.name} takes {sorted(query.params)}; given {sorted(params)}"
        )
    return con.execute(query.sql, dict(params))


def execute_named_query(
    con: duckdb.DuckDBPyConnection, name: str, params: Mapping[str, Any] | None = None
) -> pl.DataFrame:
    """Run a named query on an open connection; variables not given keep their SQL defaults."""
    query = get_query(name)
    params = dict(params or {})
    unknown = sorted(set(params) - set(query.params))
    if unknown:
        raise QueryError(f"query '{name}' has no parameter(s) {unknown}; it takes {sorted(query.params)}")
    # Reset every declared variable, so a value from an earlier call on this connection never leaks.
    for key in query.params:
        # Names come from the query's own header (validated identifiers), values are bound.
        con.execute(f"SET VARIABLE {quote_ident(key)} = $value", {"value": params.get(key)})
    return pl.from_arrow(con.execute(query.sql).to_arrow_table())


def run_named_query(
    name: str, params: Mapping[str, Any] | None = None, store: Store | None = None
) -> pl.DataFrame:
    """Run a named query on a short read-only connection to ``store`` (default: ``$R1_HOME``)."""
    store = store or Store()
    with store.connect(read_only=True) as con:
        return execute_named_query(con, name, params)
