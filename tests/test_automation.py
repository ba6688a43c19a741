"""Automation: the refresh schedule, the source-file sensor (files and drop folders), the shard sensor.

Partitions come from R1_CONFIG when the definitions load, so each scenario runs in a fresh
Python process (``_probe``) against the test's temp R1_HOME/DAGSTER_HOME, with real sensor
and schedule evaluations, real Dagster runs and a real instance.
"""

import json
import os
import subprocess
import sys
import textwrap
import time

import dagster as dg

from dagster_project.automation import REFRESH_EXCLUDED
from tests.conftest import REPO_ROOT

PRELUDE = """
import json, sys
import dagster as dg
from dagster_project import automation
from dagster_project.definitions import defs, resources

instance = dg.DagsterInstance.get()
RAW = dg.AssetKey("raw_problems")

def tick(sensor, cursor=None):
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources,
                                  definitions=defs)
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

def materialize(selection, partition=None):
    from dagster_project.definitions import all_assets, all_asset_checks
    result = dg.materialize(all_assets, selection=selection, partition_key=partition,
                            resources=resources, instance=instance)
    assert result.success

def emit(value):
    print("PROBE-RESULT " + json.dumps(value))
"""


def _probe(body: str, timeout: float = 300):
    code = PRELUDE + textwrap.dedent(body)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("PROBE-RESULT ")]
    assert proc.returncode == 0 and lines, f"probe failed (rc={proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return json.loads(lines[-1][len("PROBE-RESULT "):])


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_source_file_sensor_requests_new_and_changed_files_and_drop_folder_additions(tmp_path, r1_home, write_config):
    drop = tmp_path / "incoming"
    drop.mkdir()
    _jsonl(drop / "batch1.jsonl", [{"problem": "What is 1+1?", "answer": "2"}])
    single = _jsonl(tmp_path / "single.jsonl", [{"problem": "What is 2+2?", "answer": "4"}])
    write_config({"sources": [
        {"name": "dropped", "kind": "file", "path": "incoming"},
        {"name": "single", "kind": "file", "path": "single.jsonl"},
        {"name": "gym", "kind": "reasoning_gym", "task": "chain_sum", "size": 5},
    ]})

    # Already materialized after its file was written: a sensor turned on now leaves it alone.
    first = _probe("""
        materialize(["raw_problems"], "single")
        emit(tick(automation.source_file_sensor))
    """)
    (request,) = first["requests"]
    assert request["partitions"] == {"raw_problems": ["dropped"]}
    assert set(request["unpartitioned"]) <= {"unique_problems", "clean_problems"}
    assert request["tags"]["r1/trigger"] == "source_file_sensor"
    cursor = first["cursor"]

    # Nothing changed: nothing requested.
    again = _probe(f"emit(tick(automation.source_file_sensor, {cursor!r}))")
    assert again["requests"] == [] and "no new or changed" in again["skip"]

    # A new file in the drop folder, then a changed file: each requests its own source.
    _jsonl(drop / "batch2.parquet.tmp", [])  # not a data file: ignored
    _jsonl(drop / "batch2.jsonl", [{"problem": "What is 3+3?", "answer": "6"}])
    dropped = _probe(f"emit(tick(automation.source_file_sensor, {cursor!r}))")
    assert [r["partitions"] for r in dropped["requests"]] == [{"raw_problems": ["dropped"]}]

    time.sleep(0.01)
    _jsonl(single, [{"problem": "What is 2+2?", "answer": "4"}, {"problem": "What is 5+5?", "answer": "10"}])
    changed = _probe(f"emit(tick(automation.source_file_sensor, {dropped['cursor']!r}))")
    assert [r["partitions"] for r in changed["requests"]] == [{"raw_problems": ["single"]}]

    # Removing a file of the folder is a change too.
    (drop / "batch1.jsonl").unlink()
    removed = _probe(f"emit(tick(automation.source_file_sensor, {changed['cursor']!r}))")
    assert [r["partitions"] for r in removed["requests"]] == [{"raw_problems": ["dropped"]}]


def test_refresh_schedule_submits_one_backfill_of_the_whole_chain(tmp_path, r1_home, write_config):
    _jsonl(tmp_path / "a.jsonl", [{"problem": "What is 1+1?", "answer": "2"}])
    write_config({"sources": [
        {"name": "a", "kind": "file", "path": "a.jsonl"},
        {"name": "gym", "kind": "reasoning_gym", "task": "chain_sum", "size": 5},
    ]})
    result = _probe("""
        import datetime as dt
        schedule = defs.get_schedule_def("chain_refresh_schedule")
        ctx = dg.build_schedule_context(instance=instance, scheduled_execution_time=dt.datetime(2026, 1, 2, 3, 0, tzinfo=dt.timezone.utc))
        data = schedule.evaluate_tick(ctx)
        (request,) = data.run_requests
        job = defs.get_job_def(schedule.job_name)
        run = job.execute_in_process(instance=instance, tags=request.tags)
        assert run.success
        (backfill,) = instance.get_backfills()
        target = backfill.asset_backfill_data.target_subset
        emit({
            "job": schedule.job_name, "cron": schedule.cron_schedule, "backfill_id": run.output_for_node("submit_chain_refresh_backfill"),
            "id": backfill.backfill_id, "status": str(backfill.status), "tags": dict(backfill.tags),
            "partitions": {k.to_user_string(): sorted(s.get_partition_keys()) for k, s in target.partitions_subsets_by_asset_key.items()},
            "unpartitioned": sorted(k.to_user_string() for k in target.non_partitioned_asset_keys),
            "all_assets": sorted(k.to_user_string() for k in defs.resolve_asset_graph().materializable_asset_keys),
        })
    """)
    assert result["job"] == "chain_refresh_job" and result["cron"] == os.environ.get("R1_REFRESH_CRON", "0 3 * * *")
    assert result["backfill_id"] == result["id"] and result["status"] == "BulkActionStatus.REQUESTED"
    assert result["tags"] == {"r1/trigger": "chain_refresh_schedule"}
    assert result["partitions"]["raw_problems"] == ["a", "gym"]
    # Every asset is in the refresh except the one-time setup; shard assets with no shards yet are left out.
    in_backfill = set(result["partitions"]) | set(result["unpartitioned"])
    excluded = {k.to_user_string() for k in REFRESH_EXCLUDED}
    assert in_backfill <= set(result["all_assets"]) - excluded
    assert {"raw_problems", "unique_problems", "clean_problems"} <= in_backfill
    assert excluded.isdisjoint(in_backfill)


def test_shard_sensor_registers_shards_after_clean_problems_and_requests_pass_rates(tmp_path, r1_home, write_config):
    rows = [{"problem": f"Compute the sum of {i} and {i * 13 + 7} and report it.", "answer": str(i * 14 + 7)} for i in range(7)]
    _jsonl(tmp_path / "a.jsonl", rows)
    config = {"sources": [{"name": "a", "kind": "file", "path": "a.jsonl"}], "difficulty": {"shard_size": 3}}
    write_config(config)
    result = _probe("""
        if automation.shard_sensor is None:
            emit({"skip": "no shard partitions"}); sys.exit(0)
        before = tick(automation.shard_sensor)
        materialize(["raw_problems"], "a")
        materialize(["unique_problems", "clean_problems"])
        first = tick(automation.shard_sensor)
        second = tick(automation.shard_sensor, first["cursor"])
        emit({"before": before, "first": first, "second": second,
              "shards": instance.get_dynamic_partitions("shards")})
    """)
    if result.get("skip"):
        import pytest

        pytest.skip(result["skip"])
    assert result["before"]["requests"] == [] and "not been materialized" in result["before"]["skip"]
    assert len(result["shards"]) == 3  # 7 clean problems in shards of 3
    (request,) = result["first"]["requests"]
    assert request["partitions"] == {"pass_rates": sorted(result["shards"])}
    assert request["tags"]["r1/trigger"] == "shard_sensor"
    assert result["second"]["requests"] == [] and "no new clean_problems" in result["second"]["skip"]


def test_pools_are_created_with_one_slot_each(r1_home):
    from dagster_project.pools import ensure_pools

    with dg.DagsterInstance.get() as instance:
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
        assert ensure_pools(instance) == {"duckdb_writer": 1, "gpu": 1}
        # A limit someone raised on purpose (a GPU cluster) is kept.
        instance.event_log_storage.set_concurrency_slots("gpu", 8)
        assert ensure_pools(instance) == {"duckdb_writer": 1, "gpu": 8}
