"""Distillation and verification: sample splitting, format checks, real labelled data, Dagster runs."""

from __future__ import annotations

import json

import dagster as dg
import polars as pl

from r1_assets.config import VerificationConfig
from r1_assets.distillation import DISTILLATION_SCHEMA, materialize_verified
from r1_assets.verification.format import format_issues, has_degenerate_repetition, split_reasoning
from r1_assets.verification.judge import parse_judge_verdict
from r1_assets.storage import Lineage, Store
from r1_assets.text import problem_id

QWEN_FILE = "samples/qwen25_math_cot_100x8.jsonl"
QWEN_MODEL = "Qwen2.5-Math-7B-Instruct"


# -- splitting and format checks -------------------------------------------------------------------


def test_split_reasoning_think_blocks():
    assert split_reasoning("<think>\nadd them: 4\n</think>\n\nThe answer is $\\boxed{4}$.") == (
        "add them: 4", "The answer is $\\boxed{4}$.")
    # R1 chat templates open <think> in the prompt: the output only closes it.
    assert split_reasoning("add them\n</think>\n\\boxed{4}") == ("add them", "\\boxed{4}")
    # Cut by max_tokens inside the block: reasoning only, no final answer.
    assert split_reasoning("<think>\nstill thinking about") == ("still thinking about", None)
    assert split_reasoning(None) == (None, None)


def test_split_reasoning_without_tags():
    assert split_reasoning("Step 1: 2+2.\n\nStep 2: so 4.\n\nThe answer is \\boxed{4}.") == (
        "Step 1: 2+2.\n\nStep 2: so 4.", "The answer is \\boxed{4}.")
    assert split_reasoning("2+2 = \\boxed{\\frac{8}{2}} done") == ("2+2 = \\boxed{\\frac{8}{2}} done", "$\\boxed{\\frac{8}{2}}$")
    assert split_reasoning("just words") == ("just words", None)


def test_format_issues():
    ok = "<think>\n2+2=4\n</think>\nSo \\boxed{4}."
    r, a = split_reasoning(ok)
    assert format_issues(ok, r, a, "stop", "correct") == []
    cut = "<think>\n2+2 is"
    r, a = split_reasoning(cut)
    assert format_issues(cut, r, a, "length", "unparseable_answer") == ["unclosed_think", "no_final_answer", "truncated"]
    empty = "<think>\n</think>\n\\boxed{4}"
    assert format_issues(empty, *split_reasoning(empty), "stop", "correct") == ["empty_reasoning"]
    plain = "2+2\n\n\\boxed{4}"
    assert format_issues(plain, *split_reasoning(plain), "stop", "correct") == []
    strict = VerificationConfig(require_think=True)
    assert format_issues(plain, *split_reasoning(plain), "stop", "correct", strict) == ["no_think"]
    loop = "<think>\nLet me compute. " + "Wait, let me check again. " * 40
    assert "repetition" in format_issues(loop, *split_reasoning(loop), "length", "unparseable_answer")


def test_degenerate_repetition_detector():
    assert has_degenerate_repetition("solve it " + "1111111111" * 30)
    assert has_degenerate_repetition("intro. " + "So x = 2 and y = 3, hence x + y = 5. " * 10)
    normal = ("We expand $(x+1)^2 = x^2 + 2x + 1$. Then substitute $x = 3$ to get $16$. "
              "Checking: $3^2 = 9$, $2 \\cdot 3 = 6$, $9 + 6 + 1 = 16$. So the answer is $\\boxed{16}$.")
    assert not has_degenerate_repetition(normal)
    assert not has_degenerate_repetition("a = 1, b = 1, c = 1. \\boxed{1}")


def test_parse_judge_verdict():
    assert parse_judge_verdict("They match.\nEQUIVALENT") == "EQUIVALENT"
    assert parse_judge_verdict("These are not equivalent.") == "DIFFERENT"
    assert parse_judge_verdict("At first EQUIVALENT? No.\nDIFFERENT") == "DIFFERENT"
    assert parse_judge_verdict("I cannot tell") == "AMBIGUOUS"
    assert parse_judge_verdict(None) == "AMBIGUOUS"


# -- real labelled solutions as distillations --------------------------------------------------------


def load_labelled_as_distillations(store: Store, path, shard: str) -> dict[str, bool]:
    """Store the file's 100 problems as clean_problems and its 800 solutions as distillations.

    Returns the file's own correctness label per generation_id.
    """
    rows = [json.loads(line) for line in path.open()]
    problems = pl.DataFrame({
        "problem_id": [problem_id(r["question"]) for r in rows], "source": ["qwen25_math_cot"] * len(rows),
        "source_row": [r["idx"] for r in rows], "problem": [r["question"] for r in rows],
        "answer": [r["gt"] for r in rows], "run_id": ["seed"] * len(rows),
    })
    store.replace_partition("clean_problems", problems, where=None, lineage=Lineage(run_id="seed"))
    store.replace_partition("problem_shards", problems.select("problem_id", shard=pl.lit(shard), run_id=pl.lit("seed")),
                            where=None, lineage=Lineage(run_id="seed"))
    samples, labels = [], {}
    for r in rows:
        for i, (text, score) in enumerate(zip(r["code"], r["score"])):
            gid = f"qwen-{r['idx']}-{i}"
            labels[gid] = bool(score)
            reasoning, final = split_reasoning(text)
            samples.append({
                "generation_id": gid, "problem_id": problem_id(r["question"]), "model": QWEN_MODEL,
                "params_hash": "qwen25-math-eval", "params": "{}", "sample_idx": i,
                "prompt": r["question"], "text": text, "reasoning": reasoning, "final_answer": final,
                "n_prompt_tokens": None, "n_tokens": None, "finish_reason": "stop", "shard": shard, "run_id": "seed",
            })
    store.replace_partition("distillations", pl.DataFrame(samples, schema=DISTILLATION_SCHEMA),
                            where={"shard": shard}, lineage=Lineage(run_id="seed"))
    return labels


def test_labelled_solutions_verified_as_distillations(tmp_path, shared_data):
    store = Store(tmp_path)
    labels = load_labelled_as_distillations(store, shared_data / QWEN_FILE, "shard-qwen")
    result = materialize_verified(store, _config(), "shard-qwen", "run-1")
    verified = store.query("SELECT * FROM verified_distillations ORDER BY generation_id")
    assert verified.height == 800
    assert result.shares["timeout"] == 0 and result.shares["unparseable_reference"] == 0
    agree = sum((c is True) == labels[g] for g, c in verified.select("generation_id", "correct").iter_rows())
    assert agree / 800 >= 0.97, agree
    assert set(verified["method"]) <= {"math_verify"}
    # Rollups agree with the labels' own per-problem counts wherever every sample agrees.
    rollups = store.query("SELECT * FROM distillation_rollups")
    assert rollups.height == 100 and (rollups["n_samples"] == 8).all()
    assert int(rollups["correctness_count"].sum()) == int(verified["correct"].sum())
    assert rollups.filter(pl.col("all_agree")).select(
        ((pl.col("correctness_count") == 0) | (pl.col("correctness_count") == 8)).all()).item()
    assert rollups.filter(pl.col("any_correct")).height == rollups.filter(pl.col("correctness_count") > 0).height


def _config(**verification):
    from r1_assets.config import parse_config

    return parse_config({"sources": [{"name": "t", "kind": "reasoning_gym", "task": "basic_arithmetic"}],
                         "verification": {"workers": 2, **verification}}, ".")


# -- Dagster: verified_distillations on hand-built shards (real math-verify, no model) ---------------


def test_verified_distillations_asset_checks(r1_home, shared_data):
    from dagster_project.assets.distillation import verified_distillations
    from dagster_project.resources import EngineResource, R1Resource

    store = Store(r1_home)
    load_labelled_as_distillations(store, shared_data / QWEN_FILE, "shard-00000")
    instance = dg.DagsterInstance.get()
    instance.add_dynamic_partitions("shards", ["shard-00000", "shard-00001"])
    resources = {"r1": R1Resource(), "engine": EngineResource()}
    result = dg.materialize([verified_distillations], partition_key="shard-00000", instance=instance,
                            resources=resources)
    assert result.success
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks["unparseable_reference_share"].passed and checks["verification_timeout_share"].passed
    assert checks["truncated_share"].passed
    meta = result.asset_materializations_for_node("verified_distillations")[0].metadata
    assert meta["dagster/row_count"].value == 800 and meta["correct_share"].value > 0.85

    # A shard whose references are missing and whose samples were all cut: the reference check
    # fails (error) and the truncation check warns.
    pid = problem_id("A problem without a reference answer")
    store.replace_partition("clean_problems", pl.DataFrame({
        "problem_id": [pid], "source": ["t"], "source_row": [0], "problem": ["A problem without a reference answer"],
        "answer": [None], "run_id": ["seed"]}, schema_overrides={"answer": pl.String}),
        where={"source": "t"}, lineage=Lineage(run_id="seed"))
    store.replace_partition("distillations", pl.DataFrame([{
        "generation_id": f"g{i}", "problem_id": pid, "model": "m", "params_hash": "h", "params": "{}",
        "sample_idx": i, "prompt": "p", "text": "<think>\nhmm", "reasoning": "hmm", "final_answer": None,
        "n_prompt_tokens": 5, "n_tokens": 64, "finish_reason": "length", "shard": "shard-00001", "run_id": "seed",
    } for i in range(3)], schema=DISTILLATION_SCHEMA), where={"shard": "shard-00001"}, lineage=Lineage(run_id="seed"))
    result = dg.materialize([verified_distillations], partition_key="shard-00001", instance=instance,
                            resources=resources, raise_on_error=False)
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert not checks["unparseable_reference_share"].passed
    assert checks["unparseable_reference_share"].severity == dg.AssetCheckSeverity.ERROR
    assert not checks["truncated_share"].passed and checks["truncated_share"].severity == dg.AssetCheckSeverity.WARN
    assert checks["verification_timeout_share"].passed
    rows = store.query("SELECT * FROM verified_distillations WHERE shard = 'shard-00001'")
    assert rows.height == 3 and rows["correct"].is_null().all() and set(rows["method"]) == {"none"}
    assert all(set(i) == {"unclosed_think", "no_final_answer", "truncated"} for i in rows["format_issues"].to_list())


def test_distillation_assets_use_shards_and_pools():
    from dagster_project.definitions import build_definitions

    graph = build_definitions().resolve_asset_graph()
    distil = graph.get(dg.AssetKey("distillations")).assets_def
    verify = graph.get(dg.AssetKey("verified_distillations")).assets_def
    assert distil.op.pool == "gpu" and verify.op.pool == "duckdb_writer"
    k8s = distil.op.tags["dagster-k8s/config"]
    k8s = json.loads(k8s) if isinstance(k8s, str) else k8s
    assert k8s["container_config"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    for a in (distil, verify):
        assert a.partitions_def.name == "shards"
    assert {k.to_user_string() for k in distil.asset_deps[dg.AssetKey("distillations")]} == {"pass_rates"}
