"""Split exports: formats read back, atomic replacement, path confinement, the push_to_hub guard."""

from __future__ import annotations

import copy
import http.server
import json
import os
import subprocess
import sys
import threading

import datasets
import polars as pl
import pytest

from r1_assets.config import ConfigError, ExportConfig, parse_config
from r1_assets.export import ExportError, export_dir, export_split
from r1_assets.splits import build_split
from r1_assets.storage import Store, quote_ident
from tests.splits_world import WORLD_CONFIG, bulk_problems, named_problems, populate_world

from tests.paths import REPO_ROOT
TOKEN = "hf_test_SECRET_token_value_123456"


@pytest.fixture
def split_store(tmp_path):
    store = Store(tmp_path / "home")
    populate_world(store, named_problems() + bulk_problems(10))
    cfg = parse_config(copy.deepcopy(WORLD_CONFIG), tmp_path)
    build_split(store, cfg, "stage1_sft", "run-s1")
    build_split(store, cfg, "stage2_sft", "run-s2")
    return store


def _table(store: Store, split: str) -> pl.DataFrame:
    return store.query(f"SELECT * FROM {quote_ident(split)} ORDER BY problem_id")


def test_parquet_jsonl_and_datasetdict_read_back(split_store):
    store = split_store
    result = export_split(store, "stage1_sft", ExportConfig(), "run-export")
    table = _table(store, "stage1_sft")
    out = store.home / "exports" / "stage1_sft"
    assert result.path == out and result.rows == table.height > 0
    expected_messages = [json.loads(m) for m in table["messages"]]

    parquet = pl.read_parquet(out / "stage1_sft.parquet")
    assert parquet.height == table.height
    assert parquet.schema["messages"] == pl.List(pl.Struct({"role": pl.String, "content": pl.String}))
    assert parquet["messages"].to_list() == expected_messages
    assert parquet["problem_id"].to_list() == table["problem_id"].to_list()
    assert parquet["generation_id"].to_list() == table["generation_id"].to_list()

    lines = (out / "stage1_sft.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["messages"] for r in records] == expected_messages
    assert [r["pass_rate"] for r in records] == table["pass_rate"].to_list()

    dsd = datasets.load_from_disk(str(out / "hf"))
    assert list(dsd) == ["train"] and dsd["train"].num_rows == table.height
    assert dsd["train"][0]["messages"] == expected_messages[0]
    assert dsd["train"]["problem_id"] == table["problem_id"].to_list()

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows"] == table.height and manifest["split_run_id"] == "run-s1"
    assert manifest["selection_params"]["alpha"] == 0.5
    assert set(manifest["files"]) >= {"stage1_sft.parquet", "stage1_sft.jsonl", "hf/dataset_dict.json"}
    assert manifest["files"]["stage1_sft.parquet"]["bytes"] == (out / "stage1_sft.parquet").stat().st_size


def test_formats_are_configurable(split_store):
    export_split(split_store, "stage2_sft", ExportConfig(formats=["jsonl"]), "run")
    out = split_store.home / "exports" / "stage2_sft"
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "stage2_sft.jsonl"]


def test_a_failed_export_leaves_the_previous_one_untouched(split_store, monkeypatch):
    store = split_store
    export_split(store, "stage1_sft", ExportConfig(), "run-1")
    out = store.home / "exports" / "stage1_sft"
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    # Failure injection: the DatasetDict write dies after Parquet and JSONL were written.
    def boom(*args, **kwargs):
        raise OSError("disk full (injected)")

    monkeypatch.setattr(datasets.DatasetDict, "save_to_disk", boom)
    with pytest.raises(OSError, match="injected"):
        export_split(store, "stage1_sft", ExportConfig(), "run-2")
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in (store.home / "exports").iterdir()) == ["stage1_sft"]  # no temp left


def test_leftovers_of_a_crashed_export_are_removed(split_store):
    root = split_store.home / "exports"
    (root / ".stage1_sft.tmp-deadbeef" / "hf").mkdir(parents=True)
    (root / ".stage1_sft.old-deadbeef").mkdir()
    export_split(split_store, "stage1_sft", ExportConfig(formats=["parquet"]), "run")
    assert sorted(p.name for p in root.iterdir()) == ["stage1_sft"]


def test_export_paths_cannot_escape_the_exports_folder(split_store, tmp_path):
    home = split_store.home
    for name in ("../escape", "a/b", "..", "", ".hidden"):
        with pytest.raises(ExportError, match="not a valid split name"):
            export_dir(home, name)
    outside = tmp_path / "outside"
    outside.mkdir()
    (home / "exports").mkdir(exist_ok=True)
    (home / "exports" / "stage1_sft").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ExportError, match="outside"):
        export_split(split_store, "stage1_sft", ExportConfig(), "run")
    assert list(outside.iterdir()) == []
    with pytest.raises(ConfigError, match="export splits"):
        parse_config({**copy.deepcopy(WORLD_CONFIG), "export": {"splits": ["../../etc"]}}, tmp_path)


def test_missing_split_table_is_a_clear_error(tmp_path):
    store = Store(tmp_path / "empty")
    with store.connect(read_only=False) as con:
        con.execute("DROP TABLE stage2_sft")
    with pytest.raises(ExportError, match="no table 'stage2_sft'.*materialize it first"):
        export_split(store, "stage2_sft", ExportConfig(), "run")


def test_push_to_hub_is_guarded_by_config_and_a_token(split_store, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="push_to_hub needs key 'hub_repo'"):
        parse_config({**copy.deepcopy(WORLD_CONFIG), "export": {"push_to_hub": True}}, tmp_path)
    monkeypatch.delenv("R1_TEST_HF_TOKEN", raising=False)
    cfg = ExportConfig(push_to_hub=True, hub_repo="someone/r1-splits", hub_token_env="R1_TEST_HF_TOKEN")
    with pytest.raises(ExportError, match="environment variable R1_TEST_HF_TOKEN .* is not set"):
        export_split(split_store, "stage1_sft", cfg, "run")
    # It fails before writing anything.
    assert not (split_store.home / "exports" / "stage1_sft").exists()


class _EchoingHub(http.server.BaseHTTPRequestHandler):
    """A hub that fails every request with a 500 whose body echoes the Authorization header."""

    def _fail(self):
        body = json.dumps({"error": f"internal error for {self.headers.get('authorization')}"}).encode()
        self.send_response(500)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_HEAD = _fail

    def log_message(self, *args):
        pass


def test_a_failed_push_never_reveals_the_token(split_store, tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EchoingHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # A fresh process, so the hub clients read HF_ENDPOINT at import.
        script = (
            "import sys\n"
            "from r1_assets.config import ExportConfig\n"
            "from r1_assets.export import export_split, ExportError\n"
            "from r1_assets.storage import Store\n"
            "cfg = ExportConfig(push_to_hub=True, hub_repo='someone/r1-splits', hub_token_env='R1_TEST_HF_TOKEN')\n"
            "try:\n"
            "    export_split(Store(sys.argv[1]), 'stage1_sft', cfg, 'run')\n"
            "except ExportError as err:\n"
            "    print('EXPORT_ERROR', err)\n"
        )
        env = {**os.environ, "R1_TEST_HF_TOKEN": TOKEN, "HF_ENDPOINT": f"http://127.0.0.1:{server.server_port}",
               "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_ETAG_TIMEOUT": "2", "HF_HUB_DOWNLOAD_TIMEOUT": "2",
               "HF_HOME": str(tmp_path / "hf_home")}
        proc = subprocess.run([sys.executable, "-c", script, str(split_store.home)], capture_output=True, text=True,
                              env=env, cwd=REPO_ROOT, timeout=300)
    finally:
        server.shutdown()
    out = proc.stdout + proc.stderr
    assert "EXPORT_ERROR export: push of stage1_sft to someone/r1-splits failed" in out, out[-3000:]
    assert TOKEN not in out
    assert "<redacted>" in out  # the hub echoed it, and it was scrubbed
    # The local export was still written, and nothing stored mentions the token.
    export = split_store.home / "exports" / "stage1_sft"
    assert (export / "stage1_sft.parquet").is_file()
    for path in export.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    for path in split_store.home.rglob("*"):  # the store's files (DuckDB file, or lake catalog and Parquet)
        if path.is_file() and "exports" not in path.parts:
            assert TOKEN.encode() not in path.read_bytes(), path
