"""Four domains through the chain after generation: real sources, real dedupe, shards, the real
verifiers (math-verify, the bubblewrap sandbox, option letters, reasoning-gym scoring) in a
Dagster run of verified_distillations, pass rates on the same path, and stage-1 rows carrying domain."""

from __future__ import annotations

import json
import shutil

import dagster as dg
import polars as pl
import pytest

from r1_assets.config import load_config
from r1_assets.dedupe import deduplicate
from r1_assets.difficulty import score_pass_rates, shard_problems, sync_shards
from r1_assets.distillation import DISTILLATION_SCHEMA
from r1_assets.sources import collect_source
from r1_assets.splits import build_split
from r1_assets.storage import Lineage, Store
from r1_assets.verification.math import reference_answer
from r1_assets.verification.mcq import LETTERS, shuffle_seed, shuffled_letter

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")


def _config(shared_data) -> dict:
    return {
        "sources": [
            {"name": "gsm8k", "kind": "file", "path": str(shared_data / "pools/gsm8k_train.jsonl"),
             "problem": "question", "answer": "answer", "limit": 4},
            {"name": "mbpp", "kind": "file", "domain": "code", "path": str(shared_data / "code/mbpp.jsonl"),
             "problem": "text", "tests": "test_list", "skip": 600, "limit": 4},
            {"name": "sat", "kind": "file", "domain": "mcq", "path": str(shared_data / "science/sat_math_test.jsonl"),
             "problem": "question", "choices": "options", "answer": "Answer", "limit": 4},
            {"name": "arith", "kind": "reasoning_gym", "domain": "puzzle", "task": "basic_arithmetic", "size": 4},
        ],
        "models": {"small": {"name": "small_model"}, "teacher": {"name": "small_model"}},
        "verification": {"workers": 2},
        "splits": {"alpha": 1.0, "stage2_model": "small", "stage2_alpha": 1.0},
    }


def _answers(row: dict, idx: int) -> tuple[str, str]:
    """(a correct final answer, a wrong one) for sample ``idx`` of a problem in its domain's format."""
    domain = row["domain"]
    if domain == "math":
        gold = reference_answer(row["answer"])
        return f"The total is $\\boxed{{{gold}}}$.", f"The total is $\\boxed{{{int(gold) + 1}}}$."
    if domain == "code":
        code = json.loads(row["metadata"])["code"]
        return f"```python\n{code}\n```", "```python\ndef nothing():\n    pass\n```"
    if domain == "mcq":
        gold = shuffled_letter(row["answer"], len(json.loads(row["choices"])), shuffle_seed(row["problem_id"], idx))
        return f"\\boxed{{{gold}}}", f"\\boxed{{{LETTERS[(LETTERS.index(gold) + 1) % 4]}}}"
    return f"<answer>{row['answer']}</answer>", "<answer>not it</answer>"


def test_each_domain_is_verified_by_its_own_verifier(r1_home, write_config, shared_data):
    from dagster_project.assets.distillation import verified_distillations
    from dagster_project.resources import EngineResource, R1Resource

    write_config(_config(shared_data))
    cfg = load_config()
    store = Store(r1_home)
    for src in cfg.sources:
        rows = collect_source(src, cfg).rows.with_columns(run_id=pl.lit("seed"))
        store.replace_partition("raw_problems", rows, where={"source": src.name}, lineage=Lineage(run_id="seed"))
    raw = store.query("SELECT problem_id, source, source_row, problem, answer, domain FROM raw_problems")
    unique = deduplicate(raw, cfg.dedupe, [s.name for s in cfg.sources]).unique
    assert dict(unique.group_by("domain").len().iter_rows()) == {"math": 4, "code": 4, "mcq": 4, "puzzle": 4}
    store.replace_partition("clean_problems", unique.select("problem_id", "source", "source_row", "problem",
                            "answer", "domain", run_id=pl.lit("seed")), where=None, lineage=Lineage(run_id="seed"))
    [shard], _ = sync_shards(store, 100)
    problems = shard_problems(store, shard)

    # Two samples per problem: sample 0 right, sample 1 wrong, each as a reasoning model writes it.
    rows = []
    for row in problems.iter_rows(named=True):
        for idx in (0, 1):
            final = _answers(row, idx)[idx]
            text = f"<think>\nLet me work this out.\n</think>\n\n{final}"
            rows.append({"generation_id": f"{row['problem_id']}-{idx}", "problem_id": row["problem_id"],
                         "model": "small_model", "params_hash": "h", "params": "{}", "sample_idx": idx,
                         "prompt": row["problem"], "text": text, "reasoning": "Let me work this out.",
                         "final_answer": final, "n_prompt_tokens": 10, "n_tokens": 20 + idx,
                         "finish_reason": "stop", "shard": shard, "run_id": "seed"})
    samples = pl.DataFrame(rows, schema=DISTILLATION_SCHEMA)
    store.replace_partition("distillations", samples, where={"shard": shard}, lineage=Lineage(run_id="seed"))

    instance = dg.DagsterInstance.get()
    instance.add_dynamic_partitions("shards", [shard])
    result = dg.materialize([verified_distillations], partition_key=shard, instance=instance,
                            resources={"r1": R1Resource(), "engine": EngineResource()})
    assert result.success
    meta = result.asset_materializations_for_node("verified_distillations")[0].metadata
    assert "| code | 8 |" in meta["domains"].value and "code_sandbox_warning" not in meta

    verified = store.query("SELECT v.*, d.sample_idx FROM verified_distillations v JOIN distillations d "
                           "USING (generation_id)")
    prefixes = {"math": "math@1 math-verify", "code": "code@1 bwrap", "mcq": "mcq@1", "puzzle": "puzzle@1 reasoning-gym"}
    methods = {"math": {"math_verify"}, "code": {"sandbox_tests"}, "mcq": {"mcq_boxed"}, "puzzle": {"score_answer"}}
    for domain, group in verified.group_by("domain"):
        domain = domain[0]
        assert all(v.startswith(prefixes[domain]) for v in group["verifier"]), domain
        assert set(group["method"]) == methods[domain], (domain, group.select("method", "detail"))
        by_idx = dict(group.select("generation_id", "correct").iter_rows())
        assert all(by_idx[g] is (g.endswith("-0")) for g in by_idx), (domain, group.select("generation_id", "verdict", "detail"))

    # pass_rates: the same verifiers on the same path (the samples as a small model's generations).
    generations = samples.select("problem_id", "sample_idx", "text", error=pl.lit(None, pl.String))
    rates = score_pass_rates(problems, generations, model="small_model", params_hash="h", k=2, shard=shard,
                             run_id="seed", verification=cfg.verification)
    assert (rates["pass_rate"] == 0.5).all() and rates["domain"].n_unique() == 4
    store.replace_partition("pass_rates", rates, where={"shard": shard}, lineage=Lineage(run_id="seed"))

    split = build_split(store, cfg, "stage1_sft", "run-1")
    stage1 = store.query("SELECT domain, count(*) AS n FROM stage1_sft GROUP BY ALL")
    assert dict(stage1.iter_rows()) == {"math": 4, "code": 4, "mcq": 4, "puzzle": 4}, split.outcome_counts()
