"""Dedupe with spilled signatures and candidate pairs: the multi-block, chunked path equals the in-memory one."""

import os

import numpy as np
import polars as pl
import pytest

from r1_assets.config import DedupeConfig
from r1_assets.dedupe import (
    CandidateSpill,
    MinHasher,
    SignatureSpill,
    UnionFind,
    band_keys,
    candidate_pairs,
    confirmed_pairs,
    deduplicate,
    estimated_jaccard,
    near_duplicates,
    spill_root,
)
from r1_assets.text import problem_id

WORDS = ["let", "find", "the", "number", "of", "positive", "integers", "x", "y", "such", "that", "sum", "product", "is", "divisible", "by", "seven", "prime", "square", "root", "triangle", "area", "circle", "radius"]


def _pool(n_base: int, copies: int, seed: int) -> list[str]:
    """``n_base`` random problems, each with ``copies`` variants of 0-2 word edits, shuffled."""
    rng = np.random.default_rng(seed)
    texts = []
    for _ in range(n_base):
        base = list(rng.choice(WORDS, size=int(rng.integers(25, 50))))
        for _ in range(copies):
            w = list(base)
            for _ in range(int(rng.integers(0, 3))):
                w[int(rng.integers(len(w)))] = str(rng.choice(WORDS))
            texts.append(" ".join(w))
    rng.shuffle(texts)
    return texts


def _in_memory_clusters(sig: np.ndarray, cfg: DedupeConfig) -> tuple[np.ndarray, set]:
    """The single-pass reference: all candidates in memory, one gather, scipy components."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as scipy_components

    pairs = candidate_pairs(band_keys(sig, cfg.bands, cfg.rows), cfg.max_bucket_neighbors)
    sim = estimated_jaccard(sig[pairs[:, 0]], sig[pairs[:, 1]])
    kept = pairs[sim >= cfg.threshold]
    n = sig.shape[0]
    graph = coo_matrix((np.ones(len(kept)), (kept[:, 0], kept[:, 1])), shape=(n, n))
    _, labels = scipy_components(graph, directed=False)
    return labels, {tuple(p) for p in kept.tolist()}, len(pairs)


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Two labelings group the nodes identically."""
    return len(set(zip(a.tolist(), b.tolist()))) == len(set(a.tolist())) == len(set(b.tolist()))


def test_spilled_multi_block_chunked_path_equals_single_pass(r1_home):
    texts = pl.Series(_pool(n_base=40, copies=12, seed=1))
    tiny = DedupeConfig(signature_block_rows=7, pair_chunk=5, max_bucket_neighbors=3)
    sig = MinHasher.from_config(tiny).signatures(texts)
    ref_labels, ref_pairs, ref_candidates = _in_memory_clusters(sig, tiny)
    assert len(ref_pairs) > 200 and ref_candidates > len(ref_pairs)    # the data has real work in it

    with SignatureSpill(spill_root(tiny), len(sig), tiny) as spilled:
        spilled.add(sig)
        assert spilled.blocks == 30 and spilled.block_rows == 16       # 480 rows: blocks grow to stay <= 31
        chunks = list(confirmed_pairs(spilled, tiny))
        assert np.array_equal(spilled.band_key(3), band_keys(sig, tiny.bands, tiny.rows)[:, 3])
        left, right = np.random.default_rng(0).integers(0, len(sig), (2, 1_000))
        mean = (sig[left] == sig[right]).mean(axis=1)                   # the plain formula, bit for bit
        assert np.array_equal(spilled.pair_jaccard(left, right), mean) and np.array_equal(estimated_jaccard(sig[left], sig[right]), mean)
    assert len(chunks) > 50                                            # many files, many chunks
    assert all(n_candidates <= tiny.pair_chunk for _, _, n_candidates in chunks)
    assert {tuple(p) for pairs, _, _ in chunks for p in pairs.tolist()} == ref_pairs
    assert sum(c for _, _, c in chunks) == ref_candidates
    assert all((sim >= tiny.threshold).all() for _, sim, _ in chunks)

    near = near_duplicates(texts, tiny)
    assert near.confirmed == len(ref_pairs) and near.candidates == ref_candidates
    assert _same_partition(near.labels, ref_labels)
    # each label is its cluster's lowest row: deduplicate's representative rule depends on it
    for label in set(near.labels.tolist()):
        assert label == np.flatnonzero(near.labels == label).min()
    assert np.array_equal(near.similarity, (sig == sig[near.labels]).mean(axis=1))
    # defaults (one block, one file, one chunk) give the same clusters
    default = near_duplicates(texts, DedupeConfig(max_bucket_neighbors=3))
    assert np.array_equal(default.labels, near.labels) and np.array_equal(default.similarity, near.similarity)
    # ``take`` signs rows of a larger Series in a given order, as a gathered copy would
    take = np.random.default_rng(0).permutation(texts.len())[:300]
    taken, gathered = near_duplicates(texts, tiny, take=take), near_duplicates(texts.gather(take), tiny)
    assert np.array_equal(taken.labels, gathered.labels) and np.array_equal(taken.similarity, gathered.similarity)
    assert not list((r1_home / "tmp").iterdir())                     # spill folders removed


def test_deduplicate_identical_with_tiny_spill_files_and_chunks(r1_home):
    texts = _pool(n_base=30, copies=8, seed=2)
    texts += texts[:20]                                              # exact duplicates too
    rows = pl.DataFrame({
        "problem_id": [problem_id(t) for t in texts],
        "source": [("a", "b", "c")[i % 3] for i in range(len(texts))],
        "source_row": range(len(texts)),
        "problem": texts,
        "answer": [None if i % 4 == 0 else str(i % 5) for i in range(len(texts))],
    }, schema={"problem_id": pl.Utf8, "source": pl.Utf8, "source_row": pl.Int64, "problem": pl.Utf8, "answer": pl.Utf8})
    big = deduplicate(rows, DedupeConfig(), ["a", "b", "c"])
    tiny = deduplicate(rows, DedupeConfig(signature_block_rows=3, pair_chunk=2), ["a", "b", "c"])
    assert big.stats["minhash_duplicates"] > 50 and big.stats["exact_duplicates"] >= 20
    assert tiny.unique.equals(big.unique) and tiny.duplicates.equals(big.duplicates)
    drop = {"seconds"}
    assert {k: v for k, v in tiny.stats.items() if k not in drop} == {k: v for k, v in big.stats.items() if k not in drop}


def test_spill_folders_removed_on_error_and_honour_spill_dir(tmp_path):
    spill_dir = tmp_path / "fast-disk"
    cfg = DedupeConfig(spill_dir=str(spill_dir), signature_block_rows=4, pair_chunk=3)
    texts = pl.Series(_pool(n_base=5, copies=6, seed=3))
    sig = MinHasher.from_config(cfg).signatures(texts)
    with pytest.raises(RuntimeError, match="consumer failed"):
        with SignatureSpill(spill_dir, len(sig), cfg) as spilled:
            spilled.add(sig)
            chunks = confirmed_pairs(spilled, cfg)
            next(chunks)
            folders = sorted(spill_dir.iterdir())                      # signatures and pairs are on disk, in spill_dir
            assert [f.name.split("-")[1] for f in folders] == ["pairs", "signatures"] and all(any(f.iterdir()) for f in folders)
            chunks.throw(RuntimeError("consumer failed"))              # an error while verifying
    assert not any(f.exists() for f in folders)

    with CandidateSpill(spill_dir, n=10, block_rows=4) as spill:       # blocks 0-3, 4-7, 8-9
        spill.add(np.array([1 * 10 + 2, 5 * 10 + 9, 1 * 10 + 2, 9 * 10 + 9 - 0, 2 * 10 + 5], dtype=np.int64))
        assert sorted(os.listdir(spill.folder)) == ["part-000000.i64", "part-000001.i64", "part-000005.i64", "part-000008.i64"]
        assert [p.tolist() for p in spill.distinct_pairs(chunk=10)] == [[[1, 2]], [[2, 5]], [[5, 9]], [[9, 9]]]
        assert not list(spill.folder.iterdir())                         # each file deleted once read
    assert not list(spill_dir.iterdir())
    with SignatureSpill(spill_dir, 100_000, DedupeConfig(signature_block_rows=1)) as spilled:   # open files stay under the usual limit
        assert spilled.blocks * (spilled.blocks + 1) // 2 <= 512 and spilled.blocks * spilled.block_rows >= 100_000
        with pytest.raises(RuntimeError, match="1 of 100,000 rows added"):
            spilled.add(np.zeros((1, cfg.num_perm), dtype=np.uint32))
            spilled.band_key(0)


def test_union_find_lowest_root_under_write_races():
    rng = np.random.default_rng(0)
    n = 2_000
    a, b = rng.integers(0, n, 3_000), rng.integers(0, n, 3_000)
    a[:500] = 1_999                                                    # a star: many unions of one root at once
    components = UnionFind(n)
    for lo in range(0, len(a), 97):
        components.union(a[lo:lo + 97], b[lo:lo + 97])
    roots = components.roots()
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as scipy_components

    _, ref = scipy_components(coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n)), directed=False)
    assert _same_partition(roots, ref)
    for r in set(roots.tolist()):
        assert r == np.flatnonzero(roots == r).min()
    chain = UnionFind(1_000)                                           # a chain built in one step, then walked
    chain.union(np.arange(999), np.arange(1, 1_000))
    chain.union(np.array([999]), np.array([500]))
    assert set(chain.roots().tolist()) == {0}


def test_estimated_jaccard_equals_the_mask_mean_for_any_num_perm():
    rng = np.random.default_rng(0)
    for num_perm in (1, 100, 112, 131):                                # padded to whole uint64 words inside
        a = rng.integers(0, 4, (5_000, num_perm), dtype=np.uint32)
        b = rng.integers(0, 4, (5_000, num_perm), dtype=np.uint32)
        assert np.array_equal(estimated_jaccard(a, b), (a == b).mean(axis=1))
