"""The store: schema, idempotent partition writes and lineage, on a DuckDB file or a DuckLake.

The backend comes from the config's ``storage`` section (``r1_assets.config.StorageConfig``):

- ``duckdb``: ``$R1_HOME/r1.duckdb``. DuckDB allows one writing process, and a writer
  excludes readers in other processes, so connections here are short and lock conflicts are
  retried with backoff until ``lock_timeout_s``.
- ``ducklake``: a catalog (SQLite, DuckDB or PostgreSQL) plus Parquet files, attached as
  ``r1`` to an in-memory DuckDB and made the default catalog, so every query uses the same
  table names. Readers never block writers; every commit is a snapshot, and each lineage row
  records the one its write committed (``lineage.snapshot_id``). DuckLake has no PRIMARY KEY,
  UNIQUE or index: its DDL is sql/schema.sql without them, and ``append_new`` anti-joins on
  the key schema.sql declares. A commit that conflicts with another writer, or that finds the
  SQLite catalog locked, is retried as a whole with bounded backoff.

Callers compute outside ``connect()`` and hand finished frames to ``replace_partition``,
which deletes and inserts one partition and appends its ``lineage`` row in one transaction.
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
from typing import TYPE_CHECKING, Any
from collections.abc import Iterator, Mapping

import duckdb
import polars as pl

if TYPE_CHECKING:
    from r1_assets.config import PipelineConfig, StorageConfig

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


def content_version(*frames: pl.DataFrame) -> str:
    """A digest of the rows of ``frames``, whatever their order: the data version a collecting
    step reports, so that re-reading an unchanged source leaves everything downstream fresh."""
    import hashlib

    digest = hashlib.sha256()
    for frame in frames:
        digest.update(",".join(f"{name}:{dtype}" for name, dtype in frame.schema.items()).encode())
        if frame.height:
            digest.update(frame.hash_rows(seed=0).sort().to_numpy().tobytes())
    return digest.hexdigest()[:24]


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
    # DuckDB's file lock, and SQLite's (a DuckLake catalog another process is committing to).
    return "Could not set lock" in text or "Conflicting lock" in text or "database is locked" in text


def _is_commit_conflict(err: Exception) -> bool:
    """Another writer committed a change this transaction conflicts with (DuckLake), or the
    catalog was locked at commit: the whole transaction is safe to run again."""
    text = str(err)
    return _is_lock_error(err) or "onflict" in text or "could not serialize" in text


def _is_init_race(err: Exception) -> bool:
    """Two processes attached a new catalog at once and both created its metadata tables."""
    text = str(err)
    return "Failed to initialize DuckLake" in text and ("already exists" in text or "duplicate key" in text)


LAKE_ALIAS = "r1"
# Whole-transaction attempts on a commit conflict; backoff doubles from 0.1 s up to 5 s, so
# the last attempt runs about a minute after the first.
COMMIT_ATTEMPTS = 16
# Extensions a DuckLake needs, per catalog kind: (PyPI package module, file name, LOAD name).
_EXTENSIONS = {
    "ducklake": ("duckdb_extension_ducklake", "ducklake", "ducklake"),
    "sqlite": ("duckdb_extension_sqlite", "sqlite", "sqlite_scanner"),
    "postgres": ("duckdb_extension_postgres", "postgres", "postgres_scanner"),
}
# One in-memory DuckDB per process and lake, with the extensions loaded (about 1 s each) and the
# lake attached; every connect() is a cursor on it. Keyed by pid so a forked child never
# reuses its parent's handles.
_LAKE_DATABASES: dict[tuple, duckdb.DuckDBPyConnection] = {}


def sql_literal(text: str) -> str:
    """A SQL string literal (ATTACH and INSTALL take no bound parameters)."""
    return "'" + text.replace("'", "''") + "'"


def load_extension(con: duckdb.DuckDBPyConnection, kind: str) -> None:
    """LOAD a DuckLake extension, installing it first from its PyPI package (offline)."""
    module_name, file_name, load_name = _EXTENSIONS[kind]
    try:
        con.execute(f"LOAD {load_name}")
        return
    except duckdb.Error:
        pass
    try:
        module = __import__(module_name)
    except ImportError:
        raise StorageError(
            f"storage.backend ducklake needs the PyPI package {module_name.replace('_', '-')}=={duckdb.__version__}"
        ) from None
    version = "v" + duckdb.__version__
    path = Path(module.__file__).parent / "extensions" / version / f"{file_name}.duckdb_extension"
    if not path.is_file():
        raise StorageError(f"{path} is missing: install {module_name.replace('_', '-')}=={duckdb.__version__}")
    con.execute(f"INSTALL {sql_literal(str(path))}")
    con.execute(f"LOAD {load_name}")


def load_name(kind: str) -> str:
    """The name ``LOAD`` takes for an extension kind (sqlite -> sqlite_scanner)."""
    return _EXTENSIONS[kind][2]


def extension_files(kinds: list[str]) -> list[Path]:
    """The extension files of ``kinds`` in their PyPI packages (for the duckdb CLI's init file)."""
    files = []
    for kind in kinds:
        module_name, file_name, _ = _EXTENSIONS[kind]
        module = __import__(module_name)
        files.append(Path(module.__file__).parent / "extensions" / f"v{duckdb.__version__}" / f"{file_name}.duckdb_extension")
    return files


def lake_schema_sql(schema: str) -> str:
    """sql/schema.sql as DuckLake takes it: without PRIMARY KEY, UNIQUE and indexes."""
    schema = re.sub(r"^\s*CREATE\s+(UNIQUE\s+)?INDEX[^;]*;", "", schema, flags=re.IGNORECASE | re.MULTILINE)
    schema = re.sub(r",\s*(PRIMARY\s+KEY|UNIQUE)\s*\([^)]*\)", "", schema, flags=re.IGNORECASE)
    return re.sub(r"\s+(PRIMARY\s+KEY|UNIQUE)\b(?=\s*[,\n(-])", "", schema, flags=re.IGNORECASE)


@lru_cache(maxsize=4)
def primary_keys(schema: str) -> dict[str, list[str]]:
    """Table -> key columns, as sql/schema.sql declares them (inline or as a table constraint)."""
    keys: dict[str, list[str]] = {}
    for match in re.finditer(r"CREATE TABLE IF NOT EXISTS (\w+)\s*\((.*?)\n\);", schema, re.DOTALL):
        table, body = match[1], match[2]
        constraint = re.search(r"PRIMARY KEY\s*\(([^)]*)\)", body)
        if constraint:
            keys[table] = [c.strip() for c in constraint[1].split(",")]
            continue
        inline = re.search(r"^\s*(\w+)\s+[^\n]*?\bPRIMARY KEY\b", body, re.MULTILINE)
        if inline:
            keys[table] = [inline[1]]
    return keys


# Lakes whose schema this process has applied: (catalog, data_path, hash of schema.sql).
_LAKE_SCHEMAS_APPLIED: set[tuple[str, str, int]] = set()


class Store:
    def __init__(
        self,
        home: Path | str | None = None,
        lock_timeout_s: float = 120.0,
        storage: StorageConfig | None = None,
        snapshot_id: int | None = None,
    ):
        from r1_assets.config import StorageConfig

        self.home = Path(home).expanduser().resolve() if home else r1_home()
        self.path = self.home / DB_FILENAME
        self.lock_timeout_s = lock_timeout_s
        self.storage = storage or StorageConfig()
        self.backend = self.storage.backend
        # Reads as of this DuckLake snapshot (time travel); such a store cannot write.
        self.snapshot_id = snapshot_id
        if self.backend == "duckdb":
            if snapshot_id is not None:
                raise StorageError("reading as of a snapshot needs storage.backend: ducklake")
            self.location = str(self.path)
        else:
            self.catalog_kind, self.catalog = self._resolve_catalog(self.storage.catalog)
            data = self.storage.data_path
            self.data_path = data if "://" in data else str((self.home / data).resolve()) + "/"
            where = "PostgreSQL catalog" if self.catalog_kind == "postgres" else self.catalog
            self.location = f"DuckLake {where} (data {self.data_path})"

    def _resolve_catalog(self, catalog: str) -> tuple[str, str]:
        if catalog.startswith("postgres:"):
            return "postgres", catalog
        path = catalog.removeprefix("sqlite:")
        resolved = str((self.home / os.path.expanduser(path)).resolve())
        return ("duckdb", resolved) if path.endswith(".duckdb") else ("sqlite", resolved)

    @classmethod
    def from_config(cls, cfg: PipelineConfig, home: Path | str | None = None, **kwargs) -> Store:
        return cls(home, storage=cfg.storage, **kwargs)

    def at_snapshot(self, snapshot_id: int) -> Store:
        """The same lake, read as it was at ``snapshot_id`` (e.g. a lineage row's snapshot)."""
        return Store(self.home, self.lock_timeout_s, self.storage, snapshot_id=snapshot_id)

    @property
    def is_lake(self) -> bool:
        return self.backend == "ducklake"

    # -- connections -----------------------------------------------------------------
    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived connection; the schema is ensured on writable ones (on a lake once per process)."""
        if self.snapshot_id is not None and not read_only:
            raise StorageError(f"{self.location} is opened as of snapshot {self.snapshot_id}: read-only")
        if read_only:
            con = self.open_reader()
        else:
            self._check_writable()
            con = self._retry_locked(lambda: self._open(read_only))
        try:
            if not read_only:
                schema = (SQL_DIR / "schema.sql").read_text()
                if not self.is_lake:
                    con.execute(schema)
                elif (key := (self.catalog, self.data_path, hash(schema))) not in _LAKE_SCHEMAS_APPLIED:
                    # Once per process: on a lake the DDL is a catalog commit (its views are
                    # replaced), which would add a snapshot to every write and queue each
                    # connection behind other writers' commits.
                    self._retry_locked(lambda: _in_transaction(con, lake_schema_sql(schema)))
                    _LAKE_SCHEMAS_APPLIED.add(key)
            yield con
        finally:
            con.close()

    def open_reader(self) -> duckdb.DuckDBPyConnection:
        """A read-only connection the caller keeps and closes (``r1_assets.analysis.connect``)."""
        if not self.exists():
            # Reading a store that was never written: create it so queries see empty tables.
            with self.connect():
                pass
        return self._retry_locked(lambda: self._open(True))

    def exists(self) -> bool:
        """Whether anything was ever written (the DuckDB file, or the catalog)."""
        if not self.is_lake:
            return self.path.exists()
        return self.catalog_kind == "postgres" or Path(self.catalog).exists()

    def _retry_locked(self, action):
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.05
        while True:
            try:
                return action()
            except duckdb.Error as err:
                retry = _is_lock_error(err) or self.is_lake and (_is_commit_conflict(err) or _is_init_race(err))
                if not retry or time.monotonic() > deadline:
                    raise StorageError(f"cannot open {self.location}: {err}") from None
                time.sleep(delay + random.random() * delay)
                delay = min(delay * 2, 2.0)

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        if not self.is_lake:
            return duckdb.connect(str(self.path), read_only=read_only)
        key = (os.getpid(), self.catalog, self.data_path, read_only, self.snapshot_id)
        database = _LAKE_DATABASES.get(key)
        if database is None:
            database = duckdb.connect()
            try:
                database.execute("SET autoinstall_known_extensions = false")
                load_extension(database, "ducklake")
                if self.catalog_kind != "duckdb":
                    load_extension(database, self.catalog_kind)
                database.execute(self.attach_sql(read_only))
            except BaseException:
                database.close()
                raise
            _LAKE_DATABASES[key] = database
        con = database.cursor()
        con.execute(f"USE {LAKE_ALIAS}")
        return con

    def attach_sql(self, read_only: bool) -> str:
        """The ATTACH statement of this lake (also written into the duckdb CLI's init file)."""
        prefix = {"sqlite": "sqlite:", "postgres": "", "duckdb": ""}[self.catalog_kind]
        options = [f"DATA_PATH {sql_literal(self.data_path)}"]
        if read_only:
            options.append("READ_ONLY")
        if self.snapshot_id is not None:
            options.append(f"SNAPSHOT_VERSION {int(self.snapshot_id)}")
        return f"ATTACH {sql_literal('ducklake:' + prefix + self.catalog)} AS {LAKE_ALIAS} ({', '.join(options)})"

    def _check_writable(self) -> None:
        try:
            self.home.mkdir(parents=True, exist_ok=True)
            if self.is_lake:
                if self.catalog_kind != "postgres":
                    Path(self.catalog).parent.mkdir(parents=True, exist_ok=True)
                if "://" not in self.data_path:
                    Path(self.data_path).mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StorageError(f"R1_HOME {self.home} cannot be created: {err.strerror}") from None
        if not os.access(self.home, os.W_OK):
            raise StorageError(f"R1_HOME {self.home} is not writable")
        if not self.is_lake and self.path.exists() and not os.access(self.path, os.W_OK):
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
                "WHERE table_name = $table AND table_catalog = current_database() ORDER BY ordinal_position",
                {"table": table},
            ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def current_snapshot(self) -> int | None:
        """The lake's latest snapshot id (None on the duckdb backend)."""
        if not self.is_lake:
            return None
        return int(self.scalar(f"SELECT id FROM {LAKE_ALIAS}.current_snapshot()"))

    # -- writes ----------------------------------------------------------------------
    def _commit(self, write) -> Any:
        """Run ``write(con)`` in one transaction; a conflicting commit is rerun as a whole."""
        delay = 0.1
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                with self.connect() as con:
                    con.execute("BEGIN TRANSACTION")
                    try:
                        result = write(con)
                        con.execute("COMMIT")
                    except BaseException:
                        try:
                            con.execute("ROLLBACK")
                        except duckdb.Error:
                            pass  # a failed COMMIT (e.g. disk full) has already ended the transaction
                        raise
                    return result, con.execute(
                        f"SELECT id FROM ducklake_last_committed_snapshot('{LAKE_ALIAS}')"
                    ).fetchone()[0] if self.is_lake else None
            except (duckdb.TransactionException, duckdb.IOException, duckdb.InvalidInputException) as err:
                if not (self.is_lake and _is_commit_conflict(err)):
                    raise
                if attempt == COMMIT_ATTEMPTS:
                    raise StorageError(
                        f"commit to {self.location} still conflicts with other writers after {attempt} attempts "
                        f"({' '.join(str(err).split())}); nothing of this write was committed"
                    ) from None
                time.sleep(delay + random.random() * delay)
                delay = min(delay * 2, 5.0)

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
        On a lake, the lineage row then records the snapshot the write committed.
        """
        partition = "|".join(f"{k}={v}" for k, v in (where or {}).items())
        writes = {table: (frame, where), **(extra or {})}

        def write(con: duckdb.DuckDBPyConnection) -> None:
            for name, (data, data_where) in writes.items():
                clause, params = where_clause(data_where)
                con.execute(f"DELETE FROM {quote_ident(name)}{clause}", params)
                _insert(con, name, data)

        self._commit_with_lineage(write, table, partition, lineage, frame.height)
        return frame.height

    def record_lineage(self, table: str, lineage: Lineage, row_count: int, partition: str = "") -> None:
        """A lineage row for something that is no table here (e.g. the converted model folder)."""
        self._commit_with_lineage(lambda con: None, table, partition, lineage, row_count)

    def _commit_with_lineage(self, write, table: str, partition: str, lineage: Lineage, row_count: int) -> None:
        """``write`` plus its lineage row in one transaction; on a lake the row then gets its snapshot id."""
        created_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        lineage_row = pl.DataFrame(
            {
                "table_name": [table],
                "partition": [partition],
                "run_id": [lineage.run_id],
                "inputs": [json.dumps(lineage.inputs, sort_keys=True, default=str)],
                "row_count": [row_count],
                "params": [lineage_params_json(lineage.params)],
                "code_version": [code_version()],
                "created_at": [created_at],
            }
        )

        def write_recorded(con: duckdb.DuckDBPyConnection) -> None:
            write(con)
            _insert(con, "lineage", lineage_row)

        try:
            _, snapshot = self._commit(write_recorded)
            if snapshot is not None:
                # The snapshot id is known only once committed; recording it is its own commit.
                self._commit(lambda con: con.execute(
                    "UPDATE lineage SET snapshot_id = $snapshot WHERE snapshot_id IS NULL AND table_name = $table "
                    "AND partition = $partition AND run_id = $run_id AND created_at = $created_at",
                    {"snapshot": snapshot, "table": table, "partition": partition, "run_id": lineage.run_id,
                     "created_at": created_at},
                ))
        except _WRITE_ERRORS as err:
            raise StorageError(_explain_io_error(self.location, err)) from None

    def append_new(self, table: str, frame: pl.DataFrame) -> int:
        """Insert rows whose primary key is not there yet (checkpoints; never duplicates)."""
        if frame.is_empty():
            return 0
        if self.is_lake:
            keys = primary_keys((SQL_DIR / "schema.sql").read_text()).get(table)
            if not keys:
                raise StorageError(f"append_new: sql/schema.sql declares no PRIMARY KEY for {table}")
            frame = frame.unique(subset=keys, keep="first", maintain_order=True)
            match = " AND ".join(f"t.{quote_ident(k)} = f.{quote_ident(k)}" for k in keys)
            insert = (f"INSERT INTO {quote_ident(table)} BY NAME SELECT f.* FROM _r1_frame f "
                      f"WHERE NOT EXISTS (SELECT 1 FROM {quote_ident(table)} t WHERE {match})")
        else:
            insert = f"INSERT OR IGNORE INTO {quote_ident(table)} BY NAME SELECT * FROM _r1_frame"

        def write(con: duckdb.DuckDBPyConnection) -> int:
            con.register("_r1_frame", frame.to_arrow())
            try:
                return con.execute(insert).fetchone()[0]
            finally:
                con.unregister("_r1_frame")

        try:
            inserted, _ = self._commit(write)
        except _WRITE_ERRORS as err:
            raise StorageError(_explain_io_error(self.location, err)) from None
        return int(inserted)


def _in_transaction(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(sql)
        con.execute("COMMIT")
    except BaseException:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:
            pass
        raise


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


def _explain_io_error(path: Path | str, err: Exception) -> str:
    text = str(err)
    if isinstance(err, OSError) and err.errno == errno.ENOSPC or "No space left" in text or "disk is full" in text:
        return f"disk full while writing {path}; nothing of this write was committed"
    if "Read-only" in text or "Permission denied" in text:
        return f"{path} is not writable ({text}); nothing of this write was committed"
    return f"write to {path} failed: {text}; nothing of this write was committed"


# -- operations: migration and maintenance (``python -m r1_assets.storage ...``) ----------------
# The split tables: the snapshots their lineage rows name are never expired, so every split
# stays reproducible as of the day it was built.
SPLIT_TABLES = ("stage1_sft", "stage2_sft")


def migrate(source: Path | str, target: Store) -> dict[str, int]:
    """Copy every table of a DuckDB file (e.g. ``r1.duckdb``) into the lake ``target``.

    One transaction replaces the lake's rows of each table by the file's; then the row counts
    of both sides are compared table by table. Returns them; a difference is a StorageError.
    """
    source = Path(source).expanduser().resolve()
    if not target.is_lake:
        raise StorageError("migrate: the target storage.backend must be ducklake")
    if not source.is_file():
        raise StorageError(f"migrate: no DuckDB file {source}")
    tables_sql = ("SELECT table_name FROM information_schema.tables WHERE table_catalog = $catalog "
                  "AND table_schema = 'main' AND table_type = 'BASE TABLE' ORDER BY 1")
    with target.connect() as con:
        con.execute(f"ATTACH {sql_literal(str(source))} AS r1_source (READ_ONLY)")
        try:
            tables = [r[0] for r in con.execute(tables_sql, {"catalog": "r1_source"}).fetchall()]
            known = {r[0] for r in con.execute(tables_sql, {"catalog": LAKE_ALIAS}).fetchall()}
            unknown = sorted(set(tables) - known)
            if unknown:
                raise StorageError(f"migrate: {source} has tables sql/schema.sql does not define: {unknown}")

            def copy(con: duckdb.DuckDBPyConnection) -> None:
                for table in tables:
                    con.execute(f"DELETE FROM {LAKE_ALIAS}.{quote_ident(table)}")
                    con.execute(f"INSERT INTO {LAKE_ALIAS}.{quote_ident(table)} BY NAME "
                                f"SELECT * FROM r1_source.{quote_ident(table)}")

            con.execute("BEGIN TRANSACTION")
            try:
                copy(con)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            counts, wrong = {}, []
            for table in tables:
                theirs, ours = (con.execute(f"SELECT count(*) FROM {db}.{quote_ident(table)}").fetchone()[0]
                                for db in ("r1_source", LAKE_ALIAS))
                counts[table] = ours
                if theirs != ours:
                    wrong.append(f"{table}: {theirs} in the file, {ours} in the lake")
        finally:
            con.execute("DETACH r1_source")
    if wrong:
        raise StorageError("migrate: row counts differ: " + "; ".join(wrong))
    return counts


def maintain(store: Store, keep_days: float = 30.0) -> dict[str, Any]:
    """Compact the lake and expire old snapshots; returns what was done.

    Inlined rows are written out to Parquet, small adjacent files are merged, snapshots older
    than ``keep_days`` are expired except those that built a split (lineage of SPLIT_TABLES),
    and files no snapshot references any more are deleted.
    """
    if not store.is_lake:
        raise StorageError("maintain: snapshots and compaction need storage.backend: ducklake")
    lake = sql_literal(LAKE_ALIAS)
    with store.connect() as con:
        kept = sorted({r[0] for r in con.execute(
            "SELECT DISTINCT snapshot_id FROM lineage WHERE snapshot_id IS NOT NULL AND table_name IN "
            f"({', '.join(sql_literal(t) for t in SPLIT_TABLES)})").fetchall()})
        con.execute(f"CALL ducklake_flush_inlined_data({lake})")
        con.execute(f"CALL ducklake_merge_adjacent_files({lake})")
        current = con.execute(f"SELECT id FROM {LAKE_ALIAS}.current_snapshot()").fetchone()[0]
        expire = [r[0] for r in con.execute(
            f"SELECT snapshot_id FROM {LAKE_ALIAS}.snapshots() WHERE snapshot_time < now() - to_days($keep_days::INTEGER) "
            f"AND snapshot_id <> $current ORDER BY 1", {"keep_days": int(keep_days), "current": current}).fetchall() if r[0] not in kept]
        if expire:
            con.execute(f"CALL ducklake_expire_snapshots({lake}, versions => $versions::UBIGINT[])", {"versions": expire})
        con.execute(f"CALL ducklake_cleanup_old_files({lake}, cleanup_all => true)")
        con.execute(f"CALL ducklake_delete_orphaned_files({lake}, cleanup_all => true)")
        left = con.execute(f"SELECT count(*) FROM {LAKE_ALIAS}.snapshots()").fetchone()[0]
    return {"expired_snapshots": len(expire), "kept_split_snapshots": kept, "snapshots_left": left}


def main(argv: list[str] | None = None) -> None:
    import argparse

    from r1_assets.config import load_config

    parser = argparse.ArgumentParser(prog="python -m r1_assets.storage",
                                     description="Operations on the configured store ($R1_HOME, $R1_CONFIG storage).")
    sub = parser.add_subparsers(dest="command", required=True)
    mig = sub.add_parser("migrate", help="copy a DuckDB file (r1.duckdb) into the configured lake, checking row counts")
    mig.add_argument("source", nargs="?", help="the DuckDB file (default: $R1_HOME/r1.duckdb)")
    mnt = sub.add_parser("maintain", help="compact the lake and expire old snapshots (never a split's)")
    mnt.add_argument("--keep-days", type=float, default=30.0, help="expire snapshots older than this (default 30)")
    exp = sub.add_parser("export", help="export a split exactly as of a past snapshot (e.g. its lineage.snapshot_id)")
    exp.add_argument("split", choices=SPLIT_TABLES)
    exp.add_argument("--snapshot", type=int, required=True)
    args = parser.parse_args(argv)
    cfg = load_config()
    store = Store.from_config(cfg)
    try:
        if args.command == "migrate":
            counts = migrate(args.source or store.path, store)
            for table, rows in counts.items():
                print(f"{table}: {rows} rows (same in both)")
            print(f"migrated into {store.location}")
        elif args.command == "maintain":
            print(json.dumps(maintain(store, args.keep_days)))
        else:
            from r1_assets.export import export_split

            result = export_split(store.at_snapshot(args.snapshot), args.split, cfg.export,
                                  run_id=f"snapshot-{args.snapshot}")
            print(f"{args.split} as of snapshot {args.snapshot}: {result.rows} rows in {result.path}")
    except StorageError as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    main()
