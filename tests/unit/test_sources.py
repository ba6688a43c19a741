"""Raw collection on real files: every shared pool and benchmark, bad rows, config errors."""

import json

import polars as pl
import pytest

from r1_assets.config import ConfigError, load_config, parse_config
from r1_assets.sources import collect_source, get_field, parse_field_path
from r1_assets.text import normalize_text, problem_id

# (name, path under shared/data, problem field, answer field, good rows, rejected rows by reason)
SHARED_FILES = [
    ("aime_pool", "pools/aime_1983_2023.json", "problem", "answer", 975, {}),
    ("dapo", "pools/dapo_math_17k.parquet", "prompt[0].content", "reward_model.ground_truth", 17917, {}),
    ("deepscaler", "pools/deepscaler_subset.json", "problem", "answer", 803, {}),
    ("gsm8k_train", "pools/gsm8k_train.jsonl", "question", "answer", 7473, {}),
    # MATH train has 2 rows with a null answer and 2 with an empty one.
    ("math_train", "pools/math_train.json", "problem", "answer", 7470, {"missing_answer": 4}),
    ("math500", "benchmarks/math500.jsonl", "problem", "answer", 500, {}),
    ("aime24", "benchmarks/aime24.jsonl", "problem", "answer", 30, {}),
    ("aime25_I", "benchmarks/aime25_I.jsonl", "problem", "answer", 15, {}),
    ("aime25_II", "benchmarks/aime25_II.jsonl", "problem", "answer", 15, {}),
    ("aime25_alt", "benchmarks/aime25_alt_wording.jsonl", "prompt", "answer", 30, {}),
    ("amc23", "benchmarks/amc23.jsonl", "problem", "answer", 40, {}),
    ("gsm8k_test", "benchmarks/gsm8k_test.jsonl", "question", "answer", 1319, {}),
]


@pytest.mark.parametrize("name,path,problem,answer,good,rejected", SHARED_FILES, ids=[f[0] for f in SHARED_FILES])
def test_every_shared_file_loads_with_exact_row_counts(shared_data, name, path, problem, answer, good, rejected):
    cfg = parse_config({"sources": [{"name": name, "kind": "file", "path": path, "problem": problem, "answer": answer}]}, shared_data)
    collected = collect_source(cfg.sources[0], cfg)
    assert collected.rows.height == good
    assert collected.rejected_by_reason() == rejected
    assert collected.rows_read == good + sum(rejected.values())
    rows = collected.rows
    assert rows["problem"].str.len_chars().min() > 0
    assert rows["answer"].null_count() == 0
    # ids are the stable hash of the normalised text
    assert rows["problem_id"][0] == problem_id(rows["problem"][0])
    assert rows["source_row"].is_sorted()


def test_nested_paths_read_verl_parquet(shared_data):
    cfg = parse_config({"sources": [{"name": "dapo", "kind": "file", "path": "pools/dapo_math_17k.parquet",
                                     "problem": "prompt[0].content", "answer": "reward_model.ground_truth"}]}, shared_data)
    rows = collect_source(cfg.sources[0], cfg).rows
    raw = pl.read_parquet(shared_data / "pools/dapo_math_17k.parquet").row(0, named=True)
    assert rows["problem"][0] == normalize_text(raw["prompt"][0]["content"])
    assert rows["answer"][0] == raw["reward_model"]["ground_truth"].strip()


def test_field_paths():
    assert parse_field_path("prompt[0].content") == ["prompt", 0, "content"]
    assert parse_field_path("a.b[-1]") == ["a", "b", -1]
    row = {"prompt": [{"content": "x"}], "a": {"b": [1, 2]}}
    assert get_field(row, parse_field_path("prompt[0].content")) == "x"
    assert get_field(row, parse_field_path("a.b[-1]")) == 2
    for bad in ["", "a..b", "a[x]"]:
        with pytest.raises(ValueError):
            parse_field_path(bad)


def test_normalisation_and_stable_ids():
    assert normalize_text("  What is\t 2 +  2?\r\n\n\n\nAnswer  ") == "What is 2 + 2?\n\nAnswer"
    # NFC keeps superscripts (NFKC would turn x² into x2 and change the problem)
    assert normalize_text("x\u00b2") == "x\u00b2"
    assert problem_id("What is 2+2?") == problem_id("  what IS   2+2? ")
    assert problem_id("What is 2+2?") != problem_id("What is 2+3?")
    # the same across processes and machines: a fixed value
    assert problem_id("What is 2+2?") == "7b94a8c92aaf10c5"


def test_bad_rows_are_rejected_with_reasons_and_never_crash(tmp_path):
    lines = [
        json.dumps({"problem": "Good one: 1+1?", "answer": "2"}),
        "{not json",
        json.dumps({"problem": "", "answer": "1"}),
        json.dumps({"answer": "1"}),
        json.dumps({"problem": ["a list"], "answer": "1"}),
        json.dumps({"problem": "No answer here"}),
        json.dumps({"problem": "x" * 50, "answer": "1"}),
        json.dumps({"problem": "Numeric answer?", "answer": 27.0}),
        json.dumps({"problem": "Dict answer?", "answer": {"a": 1}}),
        json.dumps([1, 2]),
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(("\n".join(lines) + "\n").encode() + b'{"problem": "bad \xff utf8", "answer": "1"}\n')
    cfg = parse_config({"sources": [{"name": "mixed", "kind": "file", "path": str(path)}], "max_problem_chars": 40}, tmp_path)
    collected = collect_source(cfg.sources[0], cfg)
    assert collected.rows["problem"].to_list() == ["Good one: 1+1?", "Numeric answer?"]
    assert collected.rows["answer"].to_list() == ["2", "27"]
    reasons = dict(zip(collected.rejected["source_row"].to_list(), collected.rejected["reason"].to_list()))
    assert reasons == {
        1: "invalid_json", 2: "empty_problem", 3: "missing_problem", 4: "non_text_problem",
        5: "missing_answer", 6: "oversized_problem", 8: "non_text_answer", 9: "not_an_object", 10: "invalid_utf8",
    }


def test_reasoning_gym_source_is_deterministic():
    cfg = parse_config({"sources": [{"name": "arith", "kind": "reasoning_gym", "task": "basic_arithmetic", "size": 5, "seed": 3}]}, ".")
    a = collect_source(cfg.sources[0], cfg).rows
    b = collect_source(cfg.sources[0], cfg).rows
    assert a.height == 5 and a["problem_id"].to_list() == b["problem_id"].to_list()
    assert a["answer"].null_count() == 0


def test_hf_source_uses_datasets_load_dataset_on_local_files(shared_data):
    # The real hub-loading path: datasets.load_dataset with a builder name and data_files,
    # exactly as a hub id would go through it (the hub itself is unreachable here).
    cfg = parse_config({"sources": [{"name": "aime24_hf", "kind": "hf", "dataset": "json", "split": "train",
                                     "data_files": "benchmarks/aime24.jsonl"}]}, shared_data)
    collected = collect_source(cfg.sources[0], cfg)
    assert collected.rows.height == 30
    assert collected.source_ref.startswith("json:train")


def test_hf_source_unreachable_dataset_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    cfg = parse_config({"sources": [{"name": "numina", "kind": "hf", "dataset": "AI-MO/NuminaMath-1.5-does-not-exist"}]}, ".")
    with pytest.raises(ConfigError, match="source 'numina': key 'dataset'"):
        collect_source(cfg.sources[0], cfg)


@pytest.mark.parametrize(
    "source,message",
    [
        ({"name": "s", "kind": "file", "path": "nope.jsonl"}, "source 's': key 'path': no such file"),
        ({"name": "s", "kind": "file"}, "'s': kind 'file' needs key 'path'"),
        ({"name": "s", "kind": "file", "path": "x.jsonl", "colour": "red"}, "sources 's': unknown key 'colour'"),
        ({"name": "s", "kind": "ftp", "path": "x"}, "sources 's' kind"),
        ({"name": "s", "kind": "reasoning_gym", "task": "no_such_task"}, "source 's': key 'task'"),
    ],
)
def test_bad_config_is_one_clear_error(tmp_path, source, message):
    with pytest.raises(ConfigError, match=message):
        cfg = parse_config({"sources": [source]}, tmp_path)
        collect_source(cfg.sources[0], cfg)


def test_field_missing_from_every_row_is_a_config_error(shared_data):
    cfg = parse_config({"sources": [{"name": "gsm", "kind": "file", "path": "pools/gsm8k_train.jsonl", "problem": "problem"}]}, shared_data)
    with pytest.raises(ConfigError, match="source 'gsm': key 'problem'.*'question'"):
        collect_source(cfg.sources[0], cfg)


def test_r1_config_relative_paths_resolve_against_the_config_folder(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    (data / "p.jsonl").write_text(json.dumps({"problem": "1+1?", "answer": "2"}) + "\n")
    (tmp_path / "conf").mkdir()
    cfg_path = tmp_path / "conf" / "r1.yaml"
    cfg_path.write_text("sources:\n  - {name: p, kind: file, path: ../data/p.jsonl}\n")
    monkeypatch.setenv("R1_CONFIG", str(cfg_path))
    monkeypatch.chdir("/")
    cfg = load_config()
    assert collect_source(cfg.sources[0], cfg).rows.height == 1


def test_packaged_default_config_loads(monkeypatch):
    monkeypatch.delenv("R1_CONFIG", raising=False)
    cfg = load_config()
    assert "reasoning_gym" in {s.kind for s in cfg.sources}
    assert len(cfg.sources) >= 4
    # Files shipped with the default resolve next to it, wherever the process runs.
    for src in cfg.sources:
        if src.kind == "file":
            assert cfg.resolve_path(src.path).is_file()
    assert {s.kind for s in cfg.sources} == {"reasoning_gym", "file"}
    # Three domains offline: the code source is the file packaged beside the config.
    assert {s.domain for s in cfg.sources} == {"math", "code", "puzzle"}
    code = collect_source(next(s for s in cfg.sources if s.domain == "code"), cfg)
    assert code.rows.height == 8 and code.rejected.height == 0 and code.rows["tests"].null_count() == 0
