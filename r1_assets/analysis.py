"""The named analysis queries of ``sql/analysis/*.sql``, runnable from Python.

Each file is one documented SELECT. Its header comment says what it shows, its parameters
(``-- @param name TYPE: description``) and its columns. Parameters are DuckDB variables read
with ``getvariable('name')`` and defaulted inside the SQL, so the same file runs unchanged in
the duckdb CLI::

    make sql   # then: SET VARIABLE alpha = 0.3; .read sql/analysis/yield_funnel.sql

and from Python::

    from r1_assets.analysis import run_named_query
    run_named_query("yield_funnel", {"alpha": 0.3})

The same loader reads the other folders of one-statement files (``sql/splits``), whose
parameters are bound ``$name`` placeholders instead (``execute_bound_query``).

``make sql`` (``python -m r1_assets.analysis shell``) opens the duckdb CLI, and ``connect()``
a Python connection, on the configured storage read-only, with the tables by name: on the
DuckLake backend they never block the pipeline's writers.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from r1_assets.storage import LAKE_ALIAS, SQL_DIR, Store, extension_files, load_name, quote_ident, sql_literal

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


def configured_store(home: Path | str | None = None, snapshot_id: int | None = None) -> Store:
    """The store of ``$R1_HOME`` (or ``home``) with the storage section of ``$R1_CONFIG``."""
    from r1_assets.config import load_config

    return Store(home, storage=load_config().storage, snapshot_id=snapshot_id)


def connect(home: Path | str | None = None, snapshot_id: int | None = None) -> duckdb.DuckDBPyConnection:
    """A read-only connection on the project's data, for notebooks; close it when done.

    Tables are there by name, as in ``make sql``; ``execute_named_query(con, name, params)``
    runs the analysis pack on it. ``snapshot_id`` (DuckLake) reads every table as it was at
    that snapshot, e.g. a split's ``lineage.snapshot_id``.
    """
    return configured_store(home, snapshot_id).open_reader()


def run_named_query(
    name: str, params: Mapping[str, Any] | None = None, store: Store | None = None
) -> pl.DataFrame:
    """Run a named query on a short read-only connection to ``store`` (default: the configured one)."""
    store = store or configured_store()
    with store.connect(read_only=True) as con:
        return execute_named_query(con, name, params)


def cli_init_sql(store: Store) -> str:
    """The duckdb CLI init file of ``make sql``: the data attached read-only as ``r1``, and the pack."""
    lines = ["-- Written by `make sql` (r1_assets.analysis); regenerated on every start."]
    if store.is_lake:
        # Make sure the store exists, so that an empty one opens with empty tables.
        store.open_reader().close()
        kinds = ["ducklake"] + ([store.catalog_kind] if store.catalog_kind != "duckdb" else [])
        lines.append("SET autoinstall_known_extensions = false;")
        lines += [f"INSTALL {sql_literal(str(path))};" for path in extension_files(kinds)]
        lines += [f"LOAD {load_name(kind)};" for kind in kinds]
        lines.append(store.attach_sql(read_only=True) + ";")
    else:
        if not store.path.exists():
            with store.connect():
                pass
        lines.append(f"ATTACH {sql_literal(str(store.path))} AS {LAKE_ALIAS} (READ_ONLY);")
    lines.append(f"USE {LAKE_ALIAS};")
    as_of = f", as of snapshot {store.snapshot_id}" if store.snapshot_id is not None else ""
    lines.append(f".print 'r1-curator data, read-only{as_of}: {store.location}'".replace("\n", " "))
    lines.append(".print 'Analysis pack (SET VARIABLE <param> = <value>; first to set a parameter):'")
    for query in named_queries().values():
        params = f"  [{', '.join(query.params)}]" if query.params else ""
        lines.append(f".print '  .read {query.path}{params}'")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m r1_assets.analysis", description="SQL on the project's data")
    sub = parser.add_subparsers(dest="command", required=True)
    shell = sub.add_parser("shell", help="the duckdb CLI, read-only, with the analysis pack (make sql)")
    shell.add_argument("--snapshot", type=int, help="read every table as of this DuckLake snapshot")
    # Everything else is passed on to the duckdb CLI, e.g. -c "SELECT ..." or -csv.
    args, duckdb_args = parser.parse_known_args(argv)
    store = configured_store(snapshot_id=args.snapshot)
    init = store.home / "sql_init.sql"
    init.parent.mkdir(parents=True, exist_ok=True)
    init.write_text(cli_init_sql(store))
    # The duckdb-cli package of the same version as the duckdb module, beside this interpreter.
    cli = Path(sys.executable).parent / "duckdb"
    os.execv(str(cli), [str(cli), "-init", str(init), *duckdb_args])


if __name__ == "__main__":
    main()
