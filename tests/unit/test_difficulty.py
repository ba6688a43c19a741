"""Pass rates: stable shards, scoring with real math-verify, the asset's wiring (the asset on the
real model: tests/integration/test_model_stages.py)."""

from __future__ import annotations

import json

import dagster as dg
import polars as pl

from r1_assets.config import VerificationConfig
from r1_assets.difficulty import assign_shards, band_counts, histogram_markdown, score_pass_rates, sync_shards
from r1_assets.storage import Store
from tests.store_support import put_clean_problems




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


# -- the asset's wiring --------------------------------------------------------------------------


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
