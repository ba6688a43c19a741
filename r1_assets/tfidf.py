"""TF-IDF cosine of word unigrams and bigrams against a fixed set of key texts: the cheap first
pass of semantic decontamination, which picks the pool rows worth embedding.

Why it is safe to skip the rest: two texts whose all-MiniLM-L6-v2 embeddings reach cosine 0.9
share most of their content words. On the labelled set (docs/decontamination.md) every pair at
embedding cosine >= 0.9 has a TF-IDF cosine of at least 0.59, while on the shared pools only about
1% of rows reach 0.5 against some benchmark row (docs/benchmarks.md). Embedding is ~100-1,000x
dearer per row than this pass on a CPU, so the semantic method embeds only those rows.

Terms are hashed into ``N_FEATURES`` columns (the hashing trick: no vocabulary to fit or store);
a collision only adds a little weight to an unrelated pair, and at 2^22 columns against the
~60k distinct terms of all public benchmarks it is rare. The IDF comes from the key texts (the
benchmarks), so it is fixed however the pool is chunked; a term no key text holds gets the
largest IDF, and counts only in the pool row's norm (it cannot be shared).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import sparse

N_FEATURES = 1 << 22
_WORD = r"\w+"
# Rows per sparse product: bounds the (rows x keys) result a chunk materialises.
_PRODUCT_ROWS = 8192


def _term_counts(texts: pl.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, column, count) of every distinct term of each of ``texts``."""
    words = pl.DataFrame({"w": texts.fill_null("").str.to_lowercase().str.extract_all(_WORD)}).with_row_index("r")
    tokens = words.explode("w").drop_nulls("w")
    bigrams = tokens.with_columns(pl.col("w") + " " + pl.col("w").shift(-1).over("r")).drop_nulls("w")
    terms = pl.concat([tokens, bigrams]).select(
        "r", col=(pl.col("w").hash(seed=0) % N_FEATURES).cast(pl.Int64)
    ).group_by("r", "col").agg(tf=pl.len())
    return terms["r"].to_numpy().astype(np.int64), terms["col"].to_numpy(), terms["tf"].to_numpy()


def _weights(rows: np.ndarray, cols: np.ndarray, counts: np.ndarray, idf: np.ndarray, n_texts: int) -> np.ndarray:
    """The L2-normalised sublinear-TF x IDF weight of each (row, column, count)."""
    weight = (1.0 + np.log(counts.astype(np.float64))) * idf[cols]
    norm = np.sqrt(np.bincount(rows, weights=weight * weight, minlength=n_texts))
    return (weight / np.maximum(norm[rows], 1e-12)).astype(np.float32)


@dataclass
class TfidfIndex:
    """The key texts' TF-IDF vectors over the columns they hold (transposed for the product)."""

    keys_t: sparse.csc_matrix    # (key columns x keys)
    idf: np.ndarray              # (N_FEATURES,): smoothed IDF of the key texts
    compact: np.ndarray          # (N_FEATURES,) int64: column -> row of keys_t, -1 where no key holds it

    @classmethod
    def fit(cls, keys: pl.Series) -> TfidfIndex:
        rows, cols, counts = _term_counts(keys)
        df = np.bincount(cols, minlength=N_FEATURES)
        # scikit-learn's smoothed IDF: ln((1 + N) / (1 + df)) + 1
        idf = np.log((1.0 + len(keys)) / (1.0 + df)) + 1.0
        held = np.flatnonzero(df)
        compact = np.full(N_FEATURES, -1, dtype=np.int64)
        compact[held] = np.arange(len(held))
        weight = _weights(rows, cols, counts, idf, len(keys))
        keys_t = sparse.csc_matrix((weight, (compact[cols], rows)), shape=(len(held), len(keys)))
        return cls(keys_t=keys_t, idf=idf, compact=compact)

    def pairs(self, texts: pl.Series, min_cosine: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every (text, key) pair at TF-IDF cosine >= ``min_cosine``: (text rows, key rows, cosines)."""
        found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        if len(texts) and self.keys_t.shape[1]:
            rows, cols, counts = _term_counts(texts)
            weight = _weights(rows, cols, counts, self.idf, len(texts))
            # a term no key text holds is in the row's norm already and cannot add to a dot product
            shared = self.compact[cols] >= 0
            matrix = sparse.csr_matrix((weight[shared], (rows[shared], self.compact[cols[shared]])),
                                       shape=(len(texts), self.keys_t.shape[0]))
            for lo in range(0, matrix.shape[0], _PRODUCT_ROWS):
                product = (matrix[lo:lo + _PRODUCT_ROWS] @ self.keys_t).tocsr()
                # read straight off the CSR arrays (no per-row sort, no dense copy)
                keep = product.data >= min_cosine
                row_of = np.repeat(np.arange(product.shape[0], dtype=np.int64), np.diff(product.indptr))
                found.append((row_of[keep] + lo, product.indices[keep].astype(np.int64), product.data[keep]))
        if not found:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
        return tuple(np.concatenate(part) for part in zip(*found))
