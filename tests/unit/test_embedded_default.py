"""The embedded default's pieces that need no model: task settings, eval splits, planted copies."""

from __future__ import annotations

import re

import pytest

from r1_assets.config import ConfigError, load_config, parse_config
from r1_assets.sources import collect_source


def test_reasoning_gym_task_config_reaches_the_generator():
    cfg = parse_config({"sources": [{"name": "add", "kind": "reasoning_gym", "task": "basic_arithmetic", "size": 20,
                                     "task_config": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1,
                                                     "operators": ["+"], "allow_parentheses": False,
                                                     "allow_negation": False}}]}, ".")
    got = collect_source(cfg.sources[0], cfg)
    assert got.rows.height == 20
    assert all(re.fullmatch(r"Calculate \d+ \+ \d+\.", p) for p in got.rows["problem"].to_list())  # only +, 2 terms
    assert "max_digits=1" in got.source_ref


def test_an_unknown_task_setting_names_the_source_and_key():
    cfg = parse_config({"sources": [{"name": "add", "kind": "reasoning_gym", "task": "basic_arithmetic",
                                     "task_config": {"max_digitz": 1}}]}, ".")
    with pytest.raises(ConfigError, match=r"source 'add': key 'task_config'.*max_digitz"):
        collect_source(cfg.sources[0], cfg)


def test_packaged_default_has_eval_splits_and_planted_copies_of_them(monkeypatch):
    monkeypatch.delenv("R1_CONFIG", raising=False)
    cfg = load_config()
    gym = {s.name: s for s in cfg.sources if s.kind == "reasoning_gym"}
    for bench in cfg.benchmarks:
        # Same task and settings as a source, another seed: a held-out split.
        src = gym[bench.name.removeprefix("eval_")]
        assert (bench.task, bench.task_config) == (src.task, src.task_config) and bench.seed != src.seed
    planted = collect_source(cfg.source("planted_copies"), cfg)  # resolves next to the packaged file
    eval_problems = {p for b in cfg.benchmarks for p in collect_source(b, cfg).rows["problem"].to_list()}
    exact = [p for p in planted.rows["problem"].to_list() if p in eval_problems]
    assert len(exact) == 4 and planted.rows.height == 8
