"""Exports of the SFT splits under ``$R1_HOME/exports/<split>/``, atomically.

One folder per split::

    exports/stage1_sft/
        stage1_sft.parquet    messages as list<struct<role, content>>, plus the split's columns
        stage1_sft.jsonl      one JSON object per line, same columns
        hf/                   datasets.DatasetDict({"train": ...}).save_to_disk
        manifest.json         rows, files (bytes, sha256), the split's run and selection params

The folder is built next to its final place (``exports/.stage1_sft.tmp-<id>``) and renamed
into place, so readers see the old export or the new one, never a half-written one. Nothing
is ever written outside ``$R1_HOME/exports``: split names are checked, and a path that
resolves elsewhere (e.g. through a symlink) is refused.

``push_to_hub`` (opt-in in config) uploads the DatasetDict as config ``<split>`` of
``export.hub_repo``. The token is read from the environment variable ``export.hub_token_env``
at push time; it is passed to the hub client only and scrubbed from any error text.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r1_assets.config import ExportConfig
from r1_assets.storage import Store, code_version, quote_ident, scrub

EXPORTS_DIRNAME = "exports"
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]*$")
_MESSAGES_TYPE = '[{"role": "VARCHAR", "content": "VARCHAR"}]'
_FILE_FORMATS = {"parquet": "(FORMAT parquet, COMPRESSION zstd)", "jsonl": "(FORMAT json)"}


class ExportError(RuntimeError):
    """An export cannot be written or pushed; the message names the split and the cause."""


@dataclass
class ExportResult:
    split: str
    path: Path
    rows: int
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # relative path -> bytes, sha256
    manifest: dict[str, Any] = field(default_factory=dict)
    pushed_to: str | None = None


def exports_root(home: Path) -> Path:
    return (Path(home) / EXPORTS_DIRNAME).resolve()


def export_dir(home: Path, split: str) -> Path:
    """``$R1_HOME/exports/<split>``; refuses names or links that would lead anywhere else."""
    if not _SPLIT_NAME.match(split):
        raise ExportError(f"export: '{split}' is not a valid split name")
    root = exports_root(home)
    path = (root / split).resolve()
    if path.parent != root:
        raise ExportError(f"export: {root / split} resolves to {path}, outside {root}; refusing to write there")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _clean_leftovers(root: Path, split: str) -> None:
    """Remove temp/old folders a crashed export of this split left behind."""
    for stale in root.glob(f".{split}.*-*"):
        shutil.rmtree(stale, ignore_errors=True)


def hub_token(cfg: ExportConfig) -> str:
    token = os.environ.get(cfg.hub_token_env, "")
    if not token:
        raise ExportError(
            f"export.push_to_hub is on but the environment variable {cfg.hub_token_env} "
            "(export.hub_token_env) is not set"
        )
    return token


def export_split(store: Store, split: str, cfg: ExportConfig, run_id: str) -> ExportResult:
    """Write ``split`` from the store to ``$R1_HOME/exports/<split>/`` and push it if configured."""
    token = hub_token(cfg) if cfg.push_to_hub else None  # fail before any work
    final = export_dir(store.home, split)
    root = final.parent
    root.mkdir(parents=True, exist_ok=True)
    _clean_leftovers(root, split)
    tmp = root / f".{split}.tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        result = _write(store, split, cfg, run_id, tmp)
        old = root / f".{split}.old-{uuid.uuid4().hex[:12]}"
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result.path = final
    if token is not None:
        result.pushed_to = push_split(final, split, cfg, token)
    return result


def _write(store: Store, split: str, cfg: ExportConfig, run_id: str, out: Path) -> ExportResult:
    select = (
        f"SELECT * REPLACE (from_json(messages, $messages_type) AS messages) FROM {quote_ident(split)} ORDER BY problem_id"
    )
    with store.connect(read_only=True) as con:
        exists = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = $split", {"split": split}
        ).fetchone()[0]
        if not exists:
            raise ExportError(f"export: no table '{split}' in {store.location}; materialize it first")
        rows = con.execute(f"SELECT count(*) FROM {quote_ident(split)}").fetchone()[0]
        lineage = con.execute(
            "SELECT run_id, params, created_at FROM lineage WHERE table_name = $split ORDER BY created_at DESC LIMIT 1",
            {"split": split},
        ).fetchone()
        for fmt, options in _FILE_FORMATS.items():
            if fmt in cfg.formats:
                con.execute(
                    f"COPY ({select}) TO $path {options}",
                    {"messages_type": _MESSAGES_TYPE, "path": str(out / f"{split}.{fmt}")},
                )
        table = con.execute(select, {"messages_type": _MESSAGES_TYPE}).to_arrow_table() if "hf" in cfg.formats else None
    if table is not None:
        import datasets

        # An empty split still gets one (empty) shard: with none, load_from_disk fails.
        shards = {"train": 1} if table.num_rows == 0 else None
        datasets.DatasetDict({"train": datasets.Dataset(table)}).save_to_disk(str(out / "hf"), num_shards=shards)
    files = {
        str(p.relative_to(out)): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }
    manifest = {
        "split": split,
        "rows": rows,
        "export_run_id": run_id,
        "split_run_id": lineage[0] if lineage else None,
        # The DuckLake snapshot the rows were read at (None on the duckdb backend).
        "storage_snapshot_id": store.snapshot_id if store.snapshot_id is not None else store.current_snapshot(),
        "split_materialized_at": lineage[2].isoformat() if lineage else None,
        "selection_params": json.loads(lineage[1]) if lineage else None,
        "formats": list(cfg.formats),
        "files": files,
        "code_version": code_version(),
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    return ExportResult(split=split, path=out, rows=rows, files=files, manifest=manifest)


def push_split(path: Path, split: str, cfg: ExportConfig, token: str) -> str:
    """Push the exported DatasetDict as config ``split`` of ``cfg.hub_repo``; returns the repo."""
    import datasets

    try:
        data = datasets.load_from_disk(str(path / "hf"))
        data.push_to_hub(cfg.hub_repo, config_name=split, private=cfg.hub_private, token=token)
    except Exception as err:  # any client/network error: report it without the token
        text = scrub(f"{type(err).__name__}: {err}", token)
        raise ExportError(f"export: push of {split} to {cfg.hub_repo} failed: {text[:2000]}") from None
    return cfg.hub_repo
