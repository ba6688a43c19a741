"""Cluster deployments of the same assets: engine-step resources per model role, and the Ray
code location (its real cluster run: tests/integration/test_ray_cluster.py)."""

from __future__ import annotations

import json

import dagster as dg

from dagster_project.code_versions import asset_code_version
from dagster_project.definitions import build_definitions
from r1_assets.config import load_config


def _tags(defs: dg.Definitions, key: str) -> dict:
    tags = defs.resolve_asset_graph().get(dg.AssetKey(key)).assets_def.op.tags
    return {k: json.loads(v) if isinstance(v, str) else v for k, v in tags.items()}


def test_each_engine_step_asks_k8s_and_ray_for_its_roles_step_resources(write_config):
    path = write_config({
        "sources": [{"name": "t", "kind": "reasoning_gym", "task": "basic_arithmetic", "size": 5}],
        "models": {
            "small": {"name": "small_model", "step_resources": {"num_gpus": 0.5, "num_cpus": 4, "custom": {"h100": 1}}},
            "teacher": {"name": "r1", "engine": "openai", "base_url": "http://127.0.0.1:9/v1",
                        "step_resources": {"num_gpus": 0}},
        },
        "difficulty": {"model": "small"},
        "distillation": {"model": "teacher"},
    })
    defs = build_definitions(path)
    small = _tags(defs, "pass_rates")
    assert small["dagster-ray/config"] == {"num_gpus": 0.5, "num_cpus": 4, "resources": {"h100": 1}}
    assert small["dagster-k8s/config"]["container_config"]["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    teacher = _tags(defs, "distillations")
    assert teacher["dagster-ray/config"] == {"num_gpus": 0}
    assert teacher["dagster-k8s/config"]["container_config"]["resources"]["limits"] == {}
    # dagster-ray reads the tag as JSON into its own config model: it must accept ours.
    from dagster_ray.configs import RayExecutionConfig

    parsed = RayExecutionConfig.from_tags({"dagster-ray/config": json.dumps(small["dagster-ray/config"])})
    assert (parsed.num_gpus, parsed.num_cpus, parsed.resources) == (0.5, 4, {"h100": 1})


def test_step_resources_change_no_code_version(write_config):
    base = {"sources": [{"name": "t", "kind": "reasoning_gym", "task": "basic_arithmetic", "size": 5}],
            "models": {"small": {"name": "small_model"}}, "difficulty": {"model": "small"}}
    one = load_config(write_config(base, "one.yaml"))
    base["models"]["small"]["step_resources"] = {"num_gpus": 2}
    two = load_config(write_config(base, "two.yaml"))
    assert asset_code_version(one, "pass_rates") == asset_code_version(two, "pass_rates")


def test_ray_deployment_is_the_same_assets_with_the_ray_executor(r1_home, monkeypatch):
    from dagster_project.deployments.ray import defs

    ray_defs, plain = defs(), build_definitions()
    assert set(ray_defs.resolve_asset_graph().get_all_asset_keys()) == set(plain.resolve_asset_graph().get_all_asset_keys())
    executor = ray_defs.resolve_implicit_global_asset_job_def().executor_def
    assert executor.name == "ray"
    # The address is read when a run starts; unset, the run fails naming the variable.
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    unset = executor.config_schema.resolve_config({})
    assert not unset.success and 'environment variable "RAY_ADDRESS"' in unset.errors[0].message
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:8265")
    ray = executor.config_schema.resolve_config({}).value["config"]["ray"]
    assert ray["address"] == "http://127.0.0.1:8265" and ray["env_vars"] == ["R1_CONFIG", "R1_HOME"]
