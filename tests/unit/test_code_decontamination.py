"""Code decontamination: MBPP's test split and HumanEval as benchmarks, the same methods as math."""

from __future__ import annotations

import polars as pl

from r1_assets.config import DecontaminationConfig, DedupeConfig, parse_config
from r1_assets.decontamination import decontaminate
from r1_assets.sources import collect_source


def _config(shared_data):
    code = shared_data / "code"
    return parse_config({
        "sources": [
            # 30 copies of MBPP test problems (task_ids 11-40) and 30 train problems (601-630).
            {"name": "leaked", "kind": "file", "domain": "code", "path": str(code / "mbpp.jsonl"), "problem": "text",
             "tests": "test_list", "skip": 10, "limit": 30},
            {"name": "train", "kind": "file", "domain": "code", "path": str(code / "mbpp.jsonl"), "problem": "text",
             "tests": "test_list", "skip": 600, "limit": 30},
            {"name": "he_copy", "kind": "file", "domain": "code", "path": str(code / "humaneval.jsonl"),
             "problem": "prompt", "tests": "test", "limit": 10},
        ],
        "benchmarks": [
            {"name": "mbpp_test", "kind": "file", "domain": "code", "path": str(code / "mbpp.jsonl"),
             "problem": "text", "answer": None, "skip": 10, "limit": 500},
            {"name": "humaneval", "kind": "file", "domain": "code", "path": str(code / "humaneval.jsonl"),
             "problem": "prompt", "answer": None},
        ],
    }, ".")


def test_mbpp_test_split_and_humaneval_copies_are_removed(shared_data):
    cfg = _config(shared_data)
    pools = {s.name: collect_source(s, cfg).rows for s in cfg.sources}
    bench_rows = []
    for b in cfg.benchmarks:
        rows = collect_source(b, cfg).rows
        bench_rows.append(rows.select("problem", benchmark=pl.lit(b.name), benchmark_row="source_row"))
    benchmarks = pl.concat(bench_rows)
    assert benchmarks.filter(pl.col("benchmark") == "mbpp_test").height == 500
    assert benchmarks.filter(pl.col("benchmark") == "humaneval").height == 164
    pool = pl.concat([p.select("problem_id", "problem") for p in pools.values()])
    hits = decontaminate(pool, benchmarks, DecontaminationConfig(), DedupeConfig()).hits
    flagged = set(hits["problem_id"])
    assert set(pools["leaked"]["problem_id"]) <= flagged
    assert set(pools["he_copy"]["problem_id"]) <= flagged
    assert set(hits.filter(pl.col("problem_id").is_in(pools["he_copy"]["problem_id"].to_list()))["benchmark"]) == {
        "humaneval"}
    # MBPP's train split repeats one test task word for word ("Write a python function to find the
    # first repeated character in a given string."): every method finds it, and nothing else in
    # the train rows is flagged. They share 8-grams of MBPP phrasing ("write a function to check
    # if the given"), which Open-R1's any-8-gram rule would remove (ngram_rule: any).
    train = hits.filter(pl.col("problem_id").is_in(pools["train"]["problem_id"].to_list()))
    repeated = pools["train"].filter(pl.col("problem").str.contains("first repeated character"))["problem_id"][0]
    assert set(train.filter(pl.col("problem_id") == repeated)["method"]) == {"ngram", "digit_stripped", "minhash", "semantic"}
    # the lexical methods flag nothing else; the semantic method one more train task (a reworded
    # near-twin of a test task: not yet read, docs/benchmarks.md 2026-12-04)
    assert set(train.filter(pl.col("method") != "semantic")["problem_id"]) == {repeated}
    assert train["problem_id"].n_unique() <= 2
    anyrule = decontaminate(pools["train"].select("problem_id", "problem"), benchmarks,
                            DecontaminationConfig(methods=["ngram"], ngram_rule="any"), DedupeConfig()).hits
    assert anyrule["problem_id"].n_unique() > 1
