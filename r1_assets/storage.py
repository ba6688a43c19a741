"""The DuckDB store in ``$R1_HOME/r1.duckdb``: schema, idempotent partition writes, lineage.

DuckDB allows one writing process at a time, and a writer excludes readers in other
processes. So connections here are short: callers compute outside ``connect()`` and
hand finished frames to ``replace_partition``, which deletes and inserts one partition
and appends its ``lineage`` row in a single transaction. Lock conflicts with another
process are retried with backoff until ``lock_timeout_s``.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import random
import re
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Mapping

import duckdb
import polars as pl

DB_FILENAME = "r1.duckdb"
SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Keys whose values never reach lineage, metadata or logs.
_SECRET_KEY = re.compile(r"(token|secret|password|api_key|apikey|authorization)", re.IGNORECASE)


class StorageError(RuntimeError):
    """The store cannot be used: unwritable R1_HOME, full disk, lock held too long."""


def r1_home() -> Path:
    """``$R1_HOME``, default ``.r1/`` in the working directory."""
    return Path(os.environ.get("R1_HOME") or ".r1").expanduser().resolve()


def quote_ident(name: str) -> str:
    """Quote a table or column name; config values never reach SQL as text."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a valid identifier: {name!r}")
    return f'"{name}"'


def lineage_params_json(params: dict[str, Any]) -> str:
    """Params as ``lineage.params`` stores them: redacted, canonical JSON (comparable across runs)."""
    return json.dumps(redact(params), sort_keys=True, default=str)


def scrub(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` replaced: for error text a server may echo."""
    return text.replace(secret, "<redacted>") if secret else text


def redact(value: Any) -> Any:
    """Drop secret-looking keys from nested params before they are stored or shown."""
    if isinstance(value, Mapping):
        return {k: ("<redacted>" if _SECRET_KEY.search(str(k)) else redact(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


@lru_cache(maxsize=1)
def code_version() -> str:
    """Package version plus the git commit of the checkout, when there is one."""
    from r1_assets import __version__

    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+{sha}" if sha else __version__


@dataclass
class Lineage:
    """What one write records in ``lineage``: who wrote it, from what, with which params."""

    run_id: str
    params: dict[str, Any] = field(default_factory=dict)
    inputs: list[dict[str, Any]] = field(default_factory=list)


def _is_lock_error(err: Exception) -> bool:
    text = str(err)
    return "Could not set lock" in text or "Conflicting lock" in text


class Store:
    def __init__(self, home: Path | str | None = None, lock_timeout_s: float = 120.0):
        self.home = Path(home).expanduser().resolve() if home else r1_home()
        self.path = self.home / DB_FILENAME
        self.lock_timeout_s = lock_timeout_s

    # -- connections -----------------------------------------------------------------
    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived connection; the schema is ensured on every writable one."""
        if read_only and not self.path.exists():
            # Reading a store that was never written: create it so queries see empty tables.
            with self.connect():
                pass
        if not read_only:
            self._check_writable()
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.05
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only)
                break
            except duckdb.IOException as err:
                if not _is_lock_error(err) or time.monotonic() > deadline:
                    raise StorageError(f"cannot open {self.path}: {err}") from None
                time.sleep(delay + random.random() * delay)
                delay = min(delay * 2, 2.0)
        try:
            if not read_only:
                con.execute((SQL_DIR / "schema.sql").read_text())
            yield con
        finally:
            con.close()

    def _check_writable(self) -> None:
        try:
            self.home.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StorageError(f"R1_HOME {self.home} cannot be created: {err.strerror}") from None
        if not os.access(self.home, os.W_OK):
            raise StorageError(f"R1_HOME {self.home} is not writable")
        if self.path.exists() and not os.access(self.path, os.W_OK):
            raise StorageError(f"{self.path} is read-only")

    # -- reads -----------------------------------------------------------------------
    # Parameters are named ``$name`` placeholders bound from a mapping (the project's one style).
    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> pl.DataFrame:
        with self.connect(read_only=True) as con:
            return con.execute(sql, params or {}).pl()

    def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        with self.connect(read_only=True) as con:
            row = con.execute(sql, params or {}).fetchone()
        return row[0] if row else None

    def count(self, table: str, where: Mapping[str, Any] | None = None) -> int:
        clause, params = where_clause(where)
        return int(self.scalar(f"SELECT count(*) FROM {quote_ident(table)}{clause}", params))

    def columns(self, table: str) -> list[tuple[str, str]]:
        with self.connect(read_only=True) as con:
            rows = con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = $table ORDER BY ordinal_position", {"table": table}
            ).fetchall()
        return [(r[0], r[1]) for r in rows]

    # -- writes ----------------------------------------------------------------------
    def replace_partition(
        self,
        table: str,
        frame: pl.DataFrame,
        *,
        where: Mapping[str, Any] | None,
        lineage: Lineage,
        extra: Mapping[str, tuple[pl.DataFrame, Mapping[str, Any] | None]] | None = None,
    ) -> int:
        """Replace the rows of ``table`` matching ``where`` (all rows when None) by ``frame``.

        ``extra`` maps side tables (e.g. rejected_rows, contamination) to ``(frame, where)``:
        their matching rows are replaced in the same transaction. Returns ``frame``'s row count.
        """
        partition = "|".join(f"{k}={v}" for k, v in (where or {}).items())
        writes = {table: (frame, where), **(extra or {})}
        lineage_row = pl.DataFrame(
            {
                "table_name": [table],
                "partition": [partition],
                "run_id": [lineage.run_id],
                "inputs": [json.dumps(lineage.inputs, sort_keys=True, default=str)],
                "row_count": [frame.height],
                "params": [lineage_params_json(lineage.params)],
                "code_version": [code_version()],
                "created_at": [dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)],
            }
        )
        try:
            with self.connect() as con:
                con.execute("BEGIN TRANSACTION")
                try:
                    for name, (data, data_where) in writes.items():
                        clause, params = where_clause(data_where)
                        con.execute(f"DELETE FROM {quote_ident(name)}{clause}", params)
                        _insert(con, name, data)
                    _insert(con, "lineage", lineage_row)
                    con.execute("COMMIT")
                except BaseException:
                    try:
                        con.execute("ROLLBACK")
                    except duckdb.Error:
                        pass  # a failed COMMIT (e.g. disk full) has already ended the transaction
                    raise
        except _WRITE_ERRORS as err:
            raise StorageError(_explain_io_error(self.path, err)) from None
        return frame.height

    def append_new(self, table: str, frame: pl.DataFrame) -> int:
        """Insert rows whose primary key is not there yet (checkpoints; never duplicates)."""
        if frame.is_empty():
            return 0
        try:
            with self.connect() as con:
                before = con.execute(f"SELECT count(*) FROM {quote_ident(table)}").fetchone()[0]
                con.register("_r1_frame", frame.to_arrow())
                con.execute(f"INSERT OR IGNORE INTO {quote_ident(table)} BY NAME SELECT * FROM _r1_frame")
                con.unregister("_r1_frame")
                after = con.execute(f"SELECT count(*) FROM {quote_ident(table)}").fetchone()[0]
        except _WRITE_ERRORS as err:
            raise StorageError(_explain_io_error(self.path, err)) from None
        return after - before


# What a failed write raises: I/O errors, and a COMMIT that could not write its WAL
# ("Failed to commit: ... No space left on device" is a TransactionException).
_WRITE_ERRORS = (duckdb.IOException, duckdb.TransactionException, OSError)


def where_clause(where: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """`` WHERE "col" = $col AND ...`` and its parameters; '' and {} when ``where`` is empty."""
    if not where:
        return "", {}
    # Each column name doubles as its parameter's name; quote_ident admits identifiers only.
    parts = [f"{quote_ident(k)} = ${k}" for k in where]
    return " WHERE " + " AND ".join(parts), dict(where)


def _insert(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> None:
    if frame.is_empty():
        return
    con.register("_r1_frame", frame.to_arrow())
    try:
        con.execute(f"INSERT INTO {quote_ident(table)} BY NAME SELECT * FROM _r1_frame")
    finally:
        con.unregister("_r1_frame")


def _explain_io_error(path: Path, err: Exception) -> str:
    text = str(err)
    if isinstance(err, OSError) and err.errno == errno.ENOSPC or "No space left" in text:
        return f"disk full while writing {path}; nothing of this write was committed"
    if "Read-only" in text or "Permission denied" in text:
        return f"{path} is not writable ({text}); nothing of this write was committed"
    return f"write to {path} failed: {text}; nothing of this write was committed"
