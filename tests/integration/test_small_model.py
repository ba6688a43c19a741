"""The small_model asset: real GGUF -> HF conversion, idempotent skip, hashes in lineage."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from r1_assets.small_model import (
    MANIFEST,
    SmallModelError,
    packaged_gguf_path,
    resolve_model_path,
    sha256_file,
    small_model_dir,
)


def test_resolve_model_path(tmp_path):
    with pytest.raises(SmallModelError, match="materialize the `small_model` asset"):
        resolve_model_path("small_model", tmp_path)
    assert resolve_model_path("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", tmp_path) == "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
    local = tmp_path / "my-model"
    local.mkdir()
    assert resolve_model_path(str(local), tmp_path) == str(local.resolve())


@pytest.mark.model
def test_small_model_asset_converts_once_and_records_hashes(r1_home):
    from dagster_project.assets.models import small_model
    from dagster_project.resources import R1Resource
    from r1_assets.storage import Store

    first = dg.materialize([small_model], resources={"r1": R1Resource()})
    assert first.success
    meta = first.asset_materializations_for_node("small_model")[0].metadata
    folder = small_model_dir(r1_home)
    manifest = json.loads((folder / MANIFEST).read_text())
    gguf_sha = sha256_file(packaged_gguf_path())
    assert meta["gguf_sha256"].value == manifest["gguf_sha256"] == gguf_sha
    assert meta["skipped"].value is False
    weights = folder / "model.safetensors"
    assert meta["weights_sha256"].value == {"model.safetensors": sha256_file(weights)}
    assert 200e6 < weights.stat().st_size < 320e6  # bf16, ~260 MB
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (folder / name).is_file()
    # The chat template carried over, so vLLM can apply it.
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    rendered = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert "<|im_start|>user\nhi<|im_end|>" in rendered and rendered.rstrip().endswith("assistant")

    mtime = weights.stat().st_mtime_ns
    second = dg.materialize([small_model], resources={"r1": R1Resource()})
    meta2 = second.asset_materializations_for_node("small_model")[0].metadata
    assert meta2["skipped"].value is True and weights.stat().st_mtime_ns == mtime
    assert meta2["gguf_sha256"].value == gguf_sha

    lineage = Store(r1_home).query("SELECT * FROM lineage WHERE table_name = 'small_model' ORDER BY created_at")
    assert lineage.height == 2
    assert json.loads(lineage["inputs"][0])[0]["sha256"] == gguf_sha
    assert json.loads(lineage["params"][1])["skipped"] is True

    # A damaged weights file is detected and the folder rebuilt.
    with open(weights, "r+b") as fh:
        fh.seek(1000)
        fh.write(b"\0" * 16)
    third = dg.materialize([small_model], resources={"r1": R1Resource()})
    assert third.asset_materializations_for_node("small_model")[0].metadata["skipped"].value is False
    assert sha256_file(weights) == manifest["files"]["model.safetensors"]["sha256"]
