"""Security: tokens stay in the environment, config never reaches SQL as text, paths stay in their roots.

Token tests plant distinctive secrets in the environment and look for them everywhere a run
leaves text: CLI output, every DuckDB column, every file Dagster wrote (event logs, compute
logs, run storage). The failure-injection servers echo the Authorization header back in
their error bodies, the worst case for an error message that quotes the response.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl
import pytest

from r1_assets.config import ConfigError, ExportConfig, ModelConfig, SamplingConfig, load_config, parse_config
from r1_assets.export import ExportError, export_dir, exports_root, push_split
from r1_assets.sources import collect_source, source_files
from r1_assets.storage import Lineage, Store, quote_ident, redact
from tests.paths import open_data

SERVER_KEY = "sk-r1SECRETserverkey0123456789"
HF_SECRET = "hf_r1SECREThubtoken0123456789"


def _files_containing(root: Path, needle: str) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and needle.encode() in path.read_bytes():
            hits.append(str(path))
    return hits


def _text_columns_containing(home: Path, needle: str) -> list[str]:
    hits = []
    with open_data(home) as con:
        cols = con.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE data_type = 'VARCHAR' AND table_catalog = current_database()"
        ).fetchall()
        for table, column in cols:
            sql = f"SELECT count(*) FROM {quote_ident(table)} WHERE contains({quote_ident(column)}, $needle)"
            if con.execute(sql, {"needle": needle}).fetchone()[0]:
                hits.append(f"{table}.{column}")
    return hits


def _raw_rows(source: str) -> pl.DataFrame:
    return pl.DataFrame({"problem_id": [f"{source}-1"], "source": [source], "source_row": [0], "problem": ["p"],
                         "answer": ["a"], "source_kind": ["file"], "source_ref": ["f"], "run_id": ["r"]})


# -- tokens ------------------------------------------------------------------------------------
def test_a_run_with_tokens_in_the_environment_leaves_them_nowhere(tmp_path, r1_home, write_config, dagster_materialize, monkeypatch):
    monkeypatch.setenv("R1_TEST_SERVER_KEY", SERVER_KEY)
    monkeypatch.setenv("HF_TOKEN", HF_SECRET)
    (tmp_path / "p.jsonl").write_text('{"problem": "What is 2+2?", "answer": "4"}\n{"problem": 5}\n')
    write_config({
        "sources": [{"name": "p", "kind": "file", "path": "p.jsonl"}],
        "models": {"teacher": {"name": "remote", "engine": "openai", "base_url": "http://127.0.0.1:9/v1",
                               "api_key_env": "R1_TEST_SERVER_KEY"}},
        "export": {"push_to_hub": True, "hub_repo": "me/data", "hub_token_env": "HF_TOKEN"},
    })
    out = dagster_materialize("raw_problems", partition="p")
    for secret in (SERVER_KEY, HF_SECRET):
        assert secret not in out
        assert _text_columns_containing(r1_home, secret) == []
        assert _files_containing(r1_home, secret) == []  # the store's files, Dagster storage and logs
    # What lineage does keep: the source's params, not the environment.
    with open_data(r1_home) as con:
        params = json.loads(con.execute("SELECT params FROM lineage").fetchone()[0])
    assert params["name"] == "p" and "R1_TEST_SERVER_KEY" not in json.dumps(params)


def test_config_holds_the_names_of_token_variables_never_tokens(tmp_path):
    assert "api_key_env" in ModelConfig.model_fields and "api_key" not in ModelConfig.model_fields
    assert "hub_token_env" in ExportConfig.model_fields and "hub_token" not in ExportConfig.model_fields
    raw = {"sources": [{"name": "s", "kind": "reasoning_gym", "task": "chain_sum"}],
           "models": {"t": {"name": "m", "engine": "openai", "base_url": "http://x/v1", "api_key": SERVER_KEY}}}
    with pytest.raises(ConfigError) as err:
        parse_config(raw, tmp_path)
    assert "unknown key 'api_key'" in str(err.value) and SERVER_KEY not in str(err.value)


def test_lineage_params_are_redacted_before_they_are_stored(r1_home):
    store = Store(r1_home)
    params = {"model": "m", "api_key": SERVER_KEY, "nested": [{"hub_token": HF_SECRET, "Authorization": "Bearer x"}]}
    assert SERVER_KEY not in json.dumps(redact(params)) and HF_SECRET not in json.dumps(redact(params))
    store.replace_partition("raw_problems", _raw_rows("s"), where={"source": "s"}, lineage=Lineage(run_id="r", params=params))
    stored = store.scalar("SELECT params FROM lineage")
    assert SERVER_KEY not in stored and HF_SECRET not in stored and json.loads(stored)["model"] == "m"


class _EchoAuthHandler(BaseHTTPRequestHandler):
    """Every request fails with `status`, quoting the Authorization header it was sent."""

    status = 401

    def _reply(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps({"error": f"rejected credentials: {self.headers.get('Authorization')}"}).encode()
        try:
            self.send_response(self.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first

    do_GET = do_POST = do_PUT = do_HEAD = _reply

    def log_message(self, *args):
        pass


@pytest.fixture
def echo_server():
    servers = []

    def start(status: int) -> str:
        handler = type("Handler", (_EchoAuthHandler,), {"status": status})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


# A server that echoes the Authorization header must not put the key into stored errors.
@pytest.mark.parametrize("status", [401, 500])
def test_openai_engine_errors_never_quote_the_api_key(echo_server, monkeypatch, status):
    from r1_assets.engines import EngineError, OpenAIEngine, SampleRequest

    monkeypatch.setenv("R1_TEST_SERVER_KEY", SERVER_KEY)
    base = echo_server(status)
    cfg = ModelConfig(name="remote", engine="openai", base_url=f"{base}/v1", api_key_env="R1_TEST_SERVER_KEY",
                      max_retries=1, retry_backoff_s=0.01, failure_budget=2, request_timeout_s=5)
    engine = OpenAIEngine(cfg)
    requests = [SampleRequest(key=f"p{i}", sample_idx=0, prompt="What is 2+2?", seed=i) for i in range(3)]
    errors = []
    try:
        for result in engine.generate(requests, SamplingConfig(n=1, max_tokens=8)):
            errors.append(result.error or "")
    except EngineError as err:
        errors.append(str(err))
    assert errors and all(f"HTTP {status}" in e for e in errors)
    leaked = [e for e in errors if SERVER_KEY in e]
    assert not leaked, f"the API key is quoted in engine errors: {leaked[0]}"


def test_hub_push_errors_never_quote_the_token(tmp_path, echo_server, monkeypatch):
    import datasets
    import huggingface_hub.constants as hub_constants

    base = echo_server(401)
    import datasets.config

    monkeypatch.setattr(hub_constants, "ENDPOINT", base)
    monkeypatch.setattr(datasets.config, "HF_ENDPOINT", base)
    monkeypatch.setenv("HF_ENDPOINT", base)
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"x": [1]})}).save_to_disk(str(tmp_path / "hf"))
    cfg = ExportConfig(push_to_hub=True, hub_repo="me/data", formats=["hf"])
    with pytest.raises(ExportError) as err:
        push_split(tmp_path, "stage1_sft", cfg, HF_SECRET)
    # The hub client got the server's answer (which quoted the token), and it was scrubbed.
    assert "401" in str(err.value) and "rejected credentials" in str(err.value)
    assert "stage1_sft" in str(err.value) and HF_SECRET not in str(err.value)


# -- SQL ---------------------------------------------------------------------------------------
def test_source_names_that_are_sql_are_refused_by_the_config(tmp_path):
    for name in ["x'; DROP TABLE raw_problems; --", 'a"b', "a b", "../up"]:
        raw = {"sources": [{"name": name, "kind": "reasoning_gym", "task": "chain_sum"}]}
        with pytest.raises(ConfigError, match="sources"):
            parse_config(raw, tmp_path)


def test_store_passes_values_as_parameters_and_quotes_identifiers(r1_home):
    store = Store(r1_home)

    store.replace_partition("raw_problems", _raw_rows("safe"), where={"source": "safe"}, lineage=Lineage(run_id="r"))
    hostile = "x' OR '1'='1"
    store.replace_partition("raw_problems", _raw_rows(hostile), where={"source": hostile}, lineage=Lineage(run_id="r2"))
    # The hostile value matched only itself: the other partition is intact.
    assert store.query("SELECT source FROM raw_problems ORDER BY source")["source"].to_list() == ["safe", hostile]
    assert store.count("raw_problems", {"source": hostile}) == 1
    assert store.scalar("SELECT partition FROM lineage WHERE run_id = 'r2'") == f"source={hostile}"
    for ident in ["raw_problems; DROP TABLE lineage", 'raw"problems', "1abc", ""]:
        with pytest.raises(ValueError, match="not a valid identifier"):
            quote_ident(ident)
    with pytest.raises(ValueError):
        store.count("raw_problems", {"source = source OR 1": 1})
    with pytest.raises(ValueError):
        store.replace_partition("lineage; DROP TABLE raw_problems", _raw_rows("z"), where=None, lineage=Lineage(run_id="r3"))
    assert store.count("raw_problems") == 2


# -- paths -------------------------------------------------------------------------------------
def _file_source(path: str) -> dict:
    return {"name": "s", "kind": "file", "path": path}


def test_relative_source_paths_resolve_against_the_config_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("R1_DATA_ROOTS", raising=False)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "p.jsonl").write_text('{"problem": "1+1?", "answer": "2"}\n')
    (tmp_path / "project").mkdir()
    cfg_path = tmp_path / "project" / "r1.yaml"
    cfg_path.write_text(json.dumps({"sources": [_file_source("../shared/p.jsonl")]}))
    monkeypatch.chdir(tmp_path / "shared")  # not the config's folder
    cfg = load_config(cfg_path)
    # Without data_roots, `..` is allowed: it is how the contract's example reaches ../shared/data.
    assert collect_source(cfg.sources[0], cfg).rows["answer"].to_list() == ["2"]


@pytest.mark.parametrize("roots_from", ["config", "env"])
def test_source_paths_cannot_leave_the_configured_data_roots(tmp_path, monkeypatch, roots_from):
    data, outside = tmp_path / "data", tmp_path / "outside"
    data.mkdir(), outside.mkdir()
    (data / "ok.jsonl").write_text('{"problem": "1+1?", "answer": "2"}\n')
    (outside / "secret.jsonl").write_text('{"problem": "private", "answer": "x"}\n')
    (data / "link.jsonl").symlink_to(outside / "secret.jsonl")
    extra = {"data_roots": ["data"]} if roots_from == "config" else {}
    if roots_from == "env":
        monkeypatch.setenv("R1_DATA_ROOTS", str(data))
    else:
        monkeypatch.delenv("R1_DATA_ROOTS", raising=False)

    def cfg(path):
        return parse_config({"sources": [_file_source(path)], **extra}, tmp_path)

    ok = cfg("data/ok.jsonl")
    assert collect_source(ok.sources[0], ok).rows.height == 1
    for path in ["data/../outside/secret.jsonl", str(outside / "secret.jsonl"), "data/link.jsonl", "/etc/passwd"]:
        bad = cfg(path)
        with pytest.raises(ConfigError, match=r"source 's': key 'path': .*outside the allowed data roots"):
            collect_source(bad.sources[0], bad)
    # The same guard covers hub data_files and benchmarks (same resolver).
    hf = parse_config({"sources": [{"name": "h", "kind": "hf", "dataset": "json", "data_files": "../x.jsonl"}], **extra}, tmp_path)
    with pytest.raises(ConfigError, match=r"source 'h': key 'data_files': .*outside"):
        collect_source(hf.sources[0], hf)


def test_a_drop_folder_reads_its_files_and_refuses_links_that_leave_it(tmp_path):
    drop, outside = tmp_path / "incoming", tmp_path / "outside"
    drop.mkdir(), outside.mkdir()
    (drop / "a.jsonl").write_text('{"problem": "1+1?", "answer": "2"}\n')
    (drop / "b.json").write_text(json.dumps([{"problem": "2+2?", "answer": "4"}]))
    (drop / "notes.txt").write_text("not data")
    (drop / ".partial.jsonl").write_text("{half")
    cfg = parse_config({"sources": [_file_source("incoming")]}, tmp_path)
    assert [p.name for p in source_files(cfg.sources[0], cfg)] == ["a.jsonl", "b.json"]
    got = collect_source(cfg.sources[0], cfg).rows
    assert got["answer"].to_list() == ["2", "4"]
    assert [json.loads(m)["source_file"] for m in got["metadata"]] == ["a.jsonl", "b.json"]
    (outside / "secret.jsonl").write_text('{"problem": "private", "answer": "x"}\n')
    (drop / "c.jsonl").symlink_to(outside / "secret.jsonl")
    with pytest.raises(ConfigError, match="points outside the folder"):
        collect_source(cfg.sources[0], cfg)


def test_export_paths_stay_under_home_exports(tmp_path):
    home = tmp_path / "home"
    root = exports_root(home)
    assert export_dir(home, "stage1_sft") == root / "stage1_sft"
    for split in ["../stage1_sft", "a/b", "..", "", "/etc"]:
        with pytest.raises(ExportError):
            export_dir(home, split)
    root.mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (root / "stage2_sft").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ExportError, match="outside"):
        export_dir(home, "stage2_sft")
