"""Automation in process: the source-file sensor, the refresh condition, config-aware staleness.

Every test builds the real definitions from its own config (``build_definitions``), runs real
materializations into a real instance, and evaluates the real sensor and automation conditions.
"""

from __future__ import annotations

import datetime as dt
import json
import time

import dagster as dg
import yaml
from dagster._core.definitions.data_version import StaleStatus

from dagster_project.definitions import build_definitions
from dagster_project.pipeline import stale_status

UTC = dt.UTC


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _tick(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None = None) -> dict:
    sensor = defs.get_sensor_def("source_file_sensor")
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources=defs.resources, definitions=defs)
    data = sensor.evaluate_tick(ctx)
    requests = []
    for r in data.run_requests or []:
        subset = r.asset_graph_subset
        requests.append({
            "partitions": {k.to_user_string(): sorted(s.get_partition_keys())
                           for k, s in subset.partitions_subsets_by_asset_key.items()},
            "unpartitioned": sorted(k.to_user_string() for k in subset.non_partitioned_asset_keys),
            "tags": dict(r.tags or {}),
        })
    return {"requests": requests, "cursor": data.cursor, "skip": data.skip_message}


def test_source_file_sensor_requests_new_and_changed_files_and_drop_folder_additions(
    tmp_path, write_config, dagster_instance, materialize
):
    drop = tmp_path / "incoming"
    drop.mkdir()
    _jsonl(drop / "batch1.jsonl", [{"problem": "What is 1+1?", "answer": "2"}])
    single = _jsonl(tmp_path / "single.jsonl", [{"problem": "What is 2+2?", "answer": "4"}])
    write_config({"sources": [
        {"name": "dropped", "kind": "file", "path": "incoming"},
        {"name": "single", "kind": "file", "path": "single.jsonl"},
        {"name": "gym", "kind": "reasoning_gym", "task": "chain_sum", "size": 5},
    ]})
    defs = build_definitions()

    # Already materialized after its file was written: a sensor turned on now leaves it alone.
    materialize(["raw_problems"], "single")
    first = _tick(defs, dagster_instance)
    (request,) = first["requests"]
    assert request["partitions"] == {"raw_problems": ["dropped"]}
    assert set(request["unpartitioned"]) <= {"unique_problems", "clean_problems"}
    assert request["tags"]["r1/trigger"] == "source_file_sensor"
    cursor = first["cursor"]

    # Nothing changed: nothing requested.
    again = _tick(defs, dagster_instance, cursor)
    assert again["requests"] == [] and "no new or changed" in again["skip"]

    # A new file in the drop folder, then a changed file: each requests its own source.
    _jsonl(drop / "batch2.parquet.tmp", [])  # not a data file: ignored
    _jsonl(drop / "batch2.jsonl", [{"problem": "What is 3+3?", "answer": "6"}])
    dropped = _tick(defs, dagster_instance, cursor)
    assert [r["partitions"] for r in dropped["requests"]] == [{"raw_problems": ["dropped"]}]

    time.sleep(0.01)
    _jsonl(single, [{"problem": "What is 2+2?", "answer": "4"}, {"problem": "What is 5+5?", "answer": "10"}])
    changed = _tick(defs, dagster_instance, dropped["cursor"])
    assert [r["partitions"] for r in changed["requests"]] == [{"raw_problems": ["single"]}]

    # Removing a file of the folder is a change too.
    (drop / "batch1.jsonl").unlink()
    removed = _tick(defs, dagster_instance, changed["cursor"])
    assert [r["partitions"] for r in removed["requests"]] == [{"raw_problems": ["dropped"]}]


def _curation_config(tmp_path) -> dict:
    rows = [{"problem": f"A farmer has {i} cows and buys {i * 3 + 1} more each week for {i % 5 + 2} weeks. "
                        f"How many cows are there at the end (case {i})?", "answer": str(i + (i * 3 + 1) * (i % 5 + 2))}
            for i in range(7)]
    _jsonl(tmp_path / "a.jsonl", rows)
    _jsonl(tmp_path / "bench.jsonl", [{"problem": "Prove that the square root of two is irrational.", "answer": "proof"}])
    return {
        "sources": [{"name": "a", "kind": "file", "path": "a.jsonl"}],
        "benchmarks": [{"name": "bench", "kind": "file", "path": "bench.jsonl", "answer": "answer"}],
        "difficulty": {"shard_size": 3},
    }


def _requested(result) -> dict[str, list[str]]:
    out = {}
    for r in result.results:
        if r.true_subset.size:
            key = r.key.to_user_string()
            out[key] = sorted(r.true_subset.expensively_compute_partition_keys() or []) if r.true_subset.is_partitioned else []
    return out


def test_clean_problems_registers_shards_and_refresh_requests_only_missing_or_stale_work(
    tmp_path, write_config, dagster_instance, materialize
):
    config = _curation_config(tmp_path)
    path = write_config(config)
    defs = build_definitions()
    before_tick = dt.datetime(2026, 1, 2, 2, 0, tzinfo=UTC)
    first = dg.evaluate_automation_conditions(defs=defs, instance=dagster_instance, evaluation_time=before_tick)
    assert first.total_requested == 0  # no cron tick has passed yet

    materialize(["raw_problems"], "a")
    clean = materialize(["benchmark_problems", "unique_problems", "clean_problems"])
    # Shard assignment is part of the clean_problems step: 7 clean problems in shards of 3.
    assert dagster_instance.get_dynamic_partitions("shards") == ["shard-00000", "shard-00001", "shard-00002"]
    (mat,) = clean.asset_materializations_for_node("clean_problems")
    assert mat.metadata["new_shards"].value == "shard-00000, shard-00001, shard-00002"

    after_tick = dt.datetime(2026, 1, 2, 3, 1, tzinfo=UTC)
    second = dg.evaluate_automation_conditions(defs=defs, instance=dagster_instance, evaluation_time=after_tick,
                                               cursor=first.cursor)
    # Only the missing root runs now; pass_rates waits for small_model, the splits for pass_rates.
    assert _requested(second) == {"small_model": []}

    # Edit one section. The refresh waits for the next cron tick, then requests clean_problems
    # (which reads that section), and nothing that is fresh; small_model is still missing.
    config["decontamination"] = {"ngram": 9}
    path.write_text(yaml.safe_dump(config))
    edited = build_definitions()
    third = dg.evaluate_automation_conditions(defs=edited, instance=dagster_instance,
                                              evaluation_time=after_tick + dt.timedelta(minutes=1), cursor=second.cursor)
    assert _requested(third) == {}
    next_day = dg.evaluate_automation_conditions(defs=edited, instance=dagster_instance,
                                                 evaluation_time=after_tick + dt.timedelta(days=1), cursor=third.cursor)
    assert _requested(next_day) == {"clean_problems": [], "small_model": []}


def test_a_config_edit_marks_exactly_the_assets_that_read_it_and_their_descendants_stale(
    tmp_path, write_config, dagster_instance, materialize
):
    """Dagster 1.13 marks an asset stale when its own code version changed, and a child stale once
    a parent has a new data version. So after an edit, exactly the assets that read the edited
    section are stale; re-materializing what is stale, round by round, reaches exactly their
    descendants, and every other asset stays fresh throughout."""
    config = _curation_config(tmp_path)
    path = write_config(config)
    materialize(["raw_problems"], "a")
    materialize(["benchmark_problems", "unique_problems", "clean_problems"])
    # The split stages run on empty model tables: they are materialized, with their code versions.
    chain = ["raw_problems", "benchmark_problems", "unique_problems", "clean_problems", "stage1_sft",
             "stage2_sft", "split_exports"]
    materialize(chain[4:])

    def stale_assets() -> set[str]:
        defs = build_definitions()
        graph = defs.resolve_asset_graph()
        stale = set()
        for name in chain:
            key = dg.AssetKey(name)
            pdef = graph.get(key).partitions_def
            partition = pdef.get_partition_keys()[0] if pdef else None
            if stale_status(dagster_instance, graph, key, partition) == StaleStatus.STALE:
                stale.add(name)
        return stale

    assert stale_assets() == set()
    edits = {
        # section.key edited -> (assets that read it, everything re-materialized until nothing is stale)
        ("decontamination", "ngram"): (9, {"clean_problems"}, {"clean_problems", "stage1_sft", "stage2_sft", "split_exports"}),
        ("splits", "alpha"): (0.9, {"stage1_sft", "stage2_sft"}, {"stage1_sft", "stage2_sft", "split_exports"}),
        ("export", "formats"): (["parquet"], {"split_exports"}, {"split_exports"}),
        ("dedupe", "threshold"): (0.8, {"unique_problems"},
                                  {"unique_problems", "clean_problems", "stage1_sft", "stage2_sft", "split_exports"}),
    }
    for (section, key), (value, readers, cascade) in edits.items():
        config = {**config, section: {**config.get(section, {}), key: value}}
        path.write_text(yaml.safe_dump(config))
        assert stale_assets() == readers, f"editing {section}.{key}"
        rematerialized = set()
        while stale := stale_assets():
            assert not stale & rematerialized, f"{section}.{key}: {stale} stale twice"
            rematerialized |= stale
            materialize([name for name in chain if name in stale])
        assert rematerialized == cascade, f"editing {section}.{key}"


def test_pools_are_created_with_one_slot_each(dagster_instance):
    from dagster_project.pools import ensure_pools

    assert dagster_instance.get_concurrency_config().pool_config.default_pool_limit == 1
    assert ensure_pools(dagster_instance) == {"duckdb_writer": 1, "gpu": 1}
    # A limit someone raised on purpose (a GPU cluster) is kept.
    dagster_instance.event_log_storage.set_concurrency_slots("gpu", 8)
    assert ensure_pools(dagster_instance) == {"duckdb_writer": 1, "gpu": 8}
