"""Exact and near-duplicate removal across all sources (the ``unique_problems`` stage).

Two passes over the rows of every configured source:

1. exact: rows with the same ``problem_id`` (hash of the normalised key) are one problem;
2. near: MinHash LSH over the exact representatives finds rows whose word-shingle sets have
   an estimated Jaccard similarity of at least ``dedupe.threshold``; confirmed pairs are joined
   into clusters (connected components), within and across sources.

Each cluster keeps one representative, chosen deterministically: a row with an answer first,
then the source order (``dedupe.source_priority``, then config order), then the lower
``source_row``. ``cluster_id`` is the representative's ``problem_id``. Every other row is a
duplicate, recorded with how it relates to the representative (``exact`` or ``minhash``).

MinHash is computed in numpy batches with datasketch's own permutation scheme ("affine32":
the 32-bit shingle hash is mixed by the MurmurHash3 finalizer, then ``a*h + b mod 2^32`` per
permutation, with datasketch's ``a, b`` for the seed). Given the same shingle hashes the
signatures equal ``datasketch.MinHash(scheme="affine32")``'s bit for bit (tested), at a
fraction of the per-row Python cost, ``dedupe.batch_rows`` rows at a time.

At scale the LSH candidate pairs, not the signatures, are what grows: 5M at 1M rows of a
duplicate-heavy pool, hundreds of millions at 10M. They are produced one band at a time and
spilled to disk (``CandidateSpill``, under ``$R1_HOME/tmp``), read back one range of rows at a
time, verified ``dedupe.pair_chunk`` pairs at a time and merged into clusters by a union-find,
so memory is the input, the signatures (n x num_perm x 4 B) and a few arrays of n, whatever the
number of pairs. The clusters do not depend on the order pairs arrive in: the results equal
the former all-in-memory pass exactly (tested, and asserted by tests/bench/bench_dedupe.py).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Self

import numpy as np
import polars as pl
import xxhash

from r1_assets.config import DedupeConfig

# Words, single non-space symbols (so ``x^2+1`` and ``x^2-1`` differ) and single Han
# characters (Chinese has no spaces; a run of characters would be one giant token).
SHINGLE_TOKEN_PATTERN = r"\p{Han}|[^\W\p{Han}]+|[^\w\s]"
UNIQUE_COLUMNS = {
    "problem_id": pl.Utf8,
    "cluster_id": pl.Utf8,
    "source": pl.Utf8,
    "source_row": pl.Int64,
    "problem": pl.Utf8,
    "answer": pl.Utf8,
    "domain": pl.Utf8,
    "cluster_size": pl.Int32,
}
DUPLICATE_COLUMNS = {
    "problem_id": pl.Utf8,
    "source": pl.Utf8,
    "source_row": pl.Int64,
    "cluster_id": pl.Utf8,
    "domain": pl.Utf8,
    "method": pl.Utf8,
    "similarity": pl.Float64,
}
Log = Callable[[str], None]

_U64 = np.uint64
_U32 = np.uint32
# Multipliers that place each token of a shingle (odd, from a fixed seed): the shingle hash is
# order-sensitive and stable across runs and machines.
_POSITION_MULTIPLIERS = np.random.RandomState(0x5EED).randint(0, 1 << 62, size=64, dtype=np.uint64) * _U64(2) + _U64(1)


def _noop(_: str) -> None:
    pass


# -- hashing -----------------------------------------------------------------------------
def _fmix64(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> _U64(33))
    x = x * _U64(0xFF51AFD7ED558CCD)
    x = x ^ (x >> _U64(33))
    x = x * _U64(0xC4CEB9FE1A85EC53)
    return x ^ (x >> _U64(33))


def _fmix32(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, as datasketch applies it before its permutations."""
    x = x ^ (x >> _U32(16))
    x = x * _U32(0x85EBCA6B)
    x = x ^ (x >> _U32(13))
    x = x * _U32(0xC2B2AE35)
    return x ^ (x >> _U32(16))


def token_hashes(tokens: pl.Series) -> np.ndarray:
    """64-bit xxhash of each token (a flat Series of strings); stable across versions.

    Each distinct token is hashed once in Python; the mapping back runs in polars.
    """
    if tokens.len() == 0:
        return np.zeros(0, dtype=_U64)
    distinct = tokens.unique()
    hashes = np.fromiter(
        (xxhash.xxh3_64_intdigest(t.encode("utf-8")) for t in distinct.to_list()),
        dtype=_U64, count=distinct.len(),
    )
    mapped = tokens.replace_strict(distinct, pl.Series(hashes, dtype=pl.UInt64), return_dtype=pl.UInt64)
    return mapped.to_numpy()


def tokenize(texts: pl.Series, pattern: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Lower-case ``texts`` and split them: ``pattern`` matches tokens, None splits on whitespace.

    Returns (per-row token counts, flat 64-bit token hashes).
    """
    lowered = texts.fill_null("").str.to_lowercase()
    if pattern is None:
        lists = lowered.str.replace_all(r"\s+", " ").str.strip_chars().str.split(" ")
        lists = lists.list.eval(pl.element().filter(pl.element() != ""))
    else:
        lists = lowered.str.extract_all(pattern)
    counts = lists.list.len().fill_null(0).to_numpy().astype(np.int64)
    flat = lists.explode(empty_as_null=False, keep_nulls=False)
    if flat.len() != int(counts.sum()):  # guards the explode semantics across polars versions
        raise RuntimeError(f"tokenize: {flat.len()} tokens but counts sum to {int(counts.sum())}")
    return counts, token_hashes(flat)


def window_hashes(counts: np.ndarray, tok: np.ndarray, k: int, short: bool) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every run of ``k`` consecutive tokens inside each row.

    A row with fewer than ``k`` tokens yields one hash of all its tokens when ``short`` is
    True (so short problems, even empty ones, still have a shingle), and none otherwise.
    Returns (per-row window counts, flat 64-bit window hashes, rows in order).
    """
    if k > len(_POSITION_MULTIPLIERS):
        raise ValueError(f"shingle/n-gram size {k} is above the supported {len(_POSITION_MULTIPLIERS)}")
    n_tok = len(tok)
    starts = np.zeros(len(counts), dtype=np.int64)
    if len(counts):
        np.cumsum(counts[:-1], out=starts[1:])
    full = np.maximum(counts - k + 1, 0)
    is_short = (counts < k) if short else np.zeros(len(counts), dtype=bool)
    n_win = np.where(is_short, 1, full)
    out = np.empty(int(n_win.sum()), dtype=_U64)
    if len(out) == 0:
        return n_win, out
    first = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(n_win[:-1], out=first[1:])
    # Full windows: one pass of contiguous slices over all positions, then keep the positions
    # whose window ends inside its row.
    if n_tok >= k:
        acc = tok[: n_tok - k + 1] * _POSITION_MULTIPLIERS[0]
        for m in range(1, k):
            acc += tok[m: n_tok - k + 1 + m] * _POSITION_MULTIPLIERS[m]
        acc += _U64((k * 0x9E3779B97F4A7C15) % (1 << 64))
        rows_full = np.flatnonzero(full > 0)
        reps = full[rows_full]
        local = np.arange(int(reps.sum()), dtype=np.int64) - np.repeat(np.cumsum(reps) - reps, reps)
        pos = np.repeat(starts[rows_full], reps) + local
        out[np.repeat(first[rows_full], reps) + local] = acc[pos]
    # Short rows (fewer than k tokens): one window of all their tokens, with their length mixed
    # in so that a 3-token row never equals a 5-token window.
    rows_short = np.flatnonzero(is_short)
    if len(rows_short):
        c = counts[rows_short]
        acc_s = (c.astype(_U64) * _U64(0x9E3779B97F4A7C15))
        padded = np.concatenate([tok, np.zeros(k, dtype=_U64)])
        for m in range(k):
            idx = starts[rows_short] + m
            acc_s += np.where(m < c, padded[idx] * _POSITION_MULTIPLIERS[m], _U64(0))
        out[first[rows_short]] = acc_s
    return n_win, _fmix64(out)


# -- MinHash -----------------------------------------------------------------------------
class MinHasher:
    """Batched MinHash signatures of texts, with datasketch's affine32 permutations.

    ``signatures(texts)`` returns an (n, num_perm) uint32 array; equal rows of two
    signatures estimate the Jaccard similarity of the texts' shingle sets.
    """

    # Shingles per inner block: (block x num_perm) uint32 stays within a few MB of cache.
    _BLOCK = 8192

    def __init__(self, num_perm: int, seed: int, shingle_size: int, batch_rows: int = 20_000):
        from datasketch import MinHash

        self.num_perm, self.seed, self.shingle_size, self.batch_rows = num_perm, seed, shingle_size, batch_rows
        # datasketch's own permutation parameters for this seed: one scheme, not a look-alike.
        a, b = MinHash(num_perm=num_perm, seed=seed, scheme="affine32").permutations
        self.a = np.ascontiguousarray(a, dtype=_U32)
        self.b = np.ascontiguousarray(b, dtype=_U32)

    @classmethod
    def from_config(cls, cfg: DedupeConfig) -> MinHasher:
        return cls(cfg.num_perm, cfg.seed, cfg.shingle_size, cfg.batch_rows)

    def shingle_hashes(self, texts: pl.Series) -> tuple[np.ndarray, np.ndarray]:
        """(per-row shingle counts, flat 32-bit shingle hashes): what ``MinHash.update`` is fed."""
        counts, tok = tokenize(texts, SHINGLE_TOKEN_PATTERN)
        n_sh, sh64 = window_hashes(counts, tok, self.shingle_size, short=True)
        return n_sh, (sh64 ^ (sh64 >> _U64(32))).astype(_U32)

    def signatures_from_hashes(self, counts: np.ndarray, sh32: np.ndarray) -> np.ndarray:
        """MinHash of each row's shingle hashes (``counts`` per row, all >= 1).

        Rows are taken in groups of equal shingle count, so that each block is a dense
        (rows, count, num_perm) array whose minimum over axis 1 is the signature: no
        per-row Python and no segmented reduction.
        """
        n = len(counts)
        sig = np.empty((n, self.num_perm), dtype=_U32)
        if n == 0:
            return sig
        first = np.zeros(n, dtype=np.int64)
        np.cumsum(counts[:-1], out=first[1:])
        hv_all = _fmix32(sh32)
        order = np.argsort(counts, kind="stable")
        sorted_counts = counts[order]
        bounds = np.flatnonzero(np.diff(sorted_counts)) + 1
        for rows in np.split(order, bounds):
            c = int(counts[rows[0]])
            offsets = np.arange(c, dtype=np.int64)
            step = max(1, self._BLOCK // c)
            for lo in range(0, len(rows), step):
                part = rows[lo:lo + step]
                if c <= self._BLOCK:
                    h = hv_all[first[part][:, None] + offsets]                       # (r, c)
                    w = h[:, :, None] * self.a                                       # (r, c, P)
                    w += self.b
                    sig[part] = w.min(axis=1)
                else:  # a very long row: fold its shingles block by block
                    acc = np.full(self.num_perm, np.iinfo(np.uint32).max, dtype=_U32)
                    h_row = hv_all[first[part[0]]:first[part[0]] + c]
                    for b0 in range(0, c, self._BLOCK):
                        w = h_row[b0:b0 + self._BLOCK, None] * self.a
                        w += self.b
                        np.minimum(acc, w.min(axis=0), out=acc)
                    sig[part[0]] = acc
        return sig

    def signatures(self, texts: pl.Series, log: Log = _noop, take: np.ndarray | None = None) -> np.ndarray:
        """(n, num_perm) uint32 signatures, computed ``batch_rows`` rows at a time.

        ``take``: sign only these rows of ``texts``, in this order, gathered batch by batch
        (a gathered copy of millions of texts would cost gigabytes).
        """
        n = texts.len() if take is None else len(take)
        out = np.empty((n, self.num_perm), dtype=_U32)
        step = self.batch_rows
        t0 = time.perf_counter()
        for lo in range(0, n, step):
            batch = texts.slice(lo, step) if take is None else texts.gather(take[lo:lo + step])
            counts, sh32 = self.shingle_hashes(batch)
            out[lo:lo + len(counts)] = self.signatures_from_hashes(counts, sh32)
            done = min(lo + step, n)
            if done == n or (lo // step) % 10 == 9:
                log(f"minhash: {done:,}/{n:,} rows ({done / max(time.perf_counter() - t0, 1e-9):,.0f} rows/s)")
        return out


def band_key(sig: np.ndarray, band: int, rows: int) -> np.ndarray:
    """(n,) uint64 key of one band (signature columns ``band*rows`` to ``(band+1)*rows``)."""
    acc = np.full(sig.shape[0], ((band + 1) * 0x9E3779B97F4A7C15) % (1 << 64), dtype=_U64)
    for j in range(band * rows, (band + 1) * rows):
        acc = (acc ^ sig[:, j].astype(_U64)) * _U64(0x100000001B3)
    return _fmix64(acc)


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, bands) uint64 keys: rows sharing a key in any band are LSH candidates."""
    keys = np.empty((sig.shape[0], bands), dtype=_U64)
    for b in range(bands):
        keys[:, b] = band_key(sig, b, rows)
    return keys


def _bucket_pair_codes(key: np.ndarray, max_neighbors: int) -> Iterator[np.ndarray]:
    """Pairs of rows that share ``key`` (one band), as codes ``i * n + j`` with i < j.

    One array per neighbour distance d: each row is paired with the d-th next member of its
    bucket (buckets in row order), d = 1 .. max_neighbors, so a row is the lower end of at
    most ``max_neighbors`` pairs per band and one array holds at most n codes.
    """
    n = len(key)
    order = np.argsort(key, kind="stable")          # by key, then row (stable)
    ks = key[order]
    del key
    for d in range(1, max_neighbors + 1):
        same = ks[:-d] == ks[d:]
        if not same.any():
            return
        yield order[:-d][same].astype(np.int64) * n + order[d:][same]


def candidate_pairs(keys: np.ndarray, max_neighbors: int) -> np.ndarray:
    """Distinct (i, j), i < j, of rows that share a band key; as an (m, 2) int64 array.

    Within a bucket every pair is a candidate, except that a bucket larger than
    ``max_neighbors + 1`` links each member only to its next ``max_neighbors`` (in row order),
    which keeps its members connected at a linear cost. All in memory: ``near_duplicates``
    streams the same pairs through disk instead.
    """
    n = keys.shape[0]
    found = [c for b in range(keys.shape[1]) for c in _bucket_pair_codes(keys[:, b], max_neighbors)]
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    codes = np.unique(np.concatenate(found))
    return np.stack([codes // n, codes % n], axis=1)


_MAX_SPILL_FILES = 512


class CandidateSpill:
    """LSH candidate pair codes on disk, one file per range of lower rows, read back distinct.

    Codes (``i * n + j``, int64) are appended band by band to the file of ``i // part_rows``,
    as raw little-endian int64 (fixed width, append-only, read back with one ``np.fromfile``:
    nothing a Parquet or DuckDB layer would add is needed here). Every copy of a pair lands in
    the same file, so each file is deduplicated on its own and memory is bounded by one file.
    Use as a context manager: the folder is removed on exit, also on error.
    """

    def __init__(self, root: Path, n: int, part_rows: int):
        root.mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix="dedupe-pairs-", dir=root))
        # Every file stays open until read back: at most _MAX_SPILL_FILES of them (the usual
        # open-file limit is 1,024), so past 512 x part_rows rows the ranges grow instead.
        self.n, self.part_rows = n, max(part_rows, -(-n // _MAX_SPILL_FILES))
        self.parts = max(1, -(-n // self.part_rows))
        self._files: dict[int, BinaryIO] = {}
        self.written = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()

    def _path(self, part: int) -> Path:
        return self.folder / f"part-{part:06d}.i64"

    def add(self, codes: np.ndarray) -> None:
        part = codes // (self.n * self.part_rows)          # == (codes // n) // part_rows
        # a stable sort of 16-bit keys is numpy's radix sort: linear, ~5x faster than int64's
        part = part.astype(np.uint16) if self.parts <= 1 << 16 else part
        ends = np.cumsum(np.bincount(part, minlength=self.parts))
        codes = codes[np.argsort(part, kind="stable")]
        del part
        for p in np.flatnonzero(np.diff(ends, prepend=0)).tolist():
            f = self._files.get(p)
            if f is None:
                # open until read back: one file per row range, appended once per band and distance
                f = self._files[p] = open(self._path(p), "ab")  # noqa: SIM115
            codes[ends[p - 1] if p else 0:ends[p]].astype("<i8", copy=False).tofile(f)
        self.written += len(codes)

    def distinct_pairs(self, chunk: int) -> Iterator[np.ndarray]:
        """The distinct pairs, (m, 2) int64 with i < j, at most ``chunk`` per array, in order."""
        self.close()
        n = self.n
        for p in range(self.parts):
            path = self._path(p)
            if not path.exists():
                continue
            codes = np.unique(np.fromfile(path, dtype="<i8"))
            path.unlink()                                    # free the disk as we go
            for lo in range(0, len(codes), chunk):
                c = codes[lo:lo + chunk]
                yield np.stack([c // n, c % n], axis=1)


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray, chunk: int = 65_536) -> np.ndarray:
    """Row-wise share of equal signature values (the MinHash Jaccard estimate)."""
    out = np.empty(len(sig_a), dtype=np.float64)
    for lo in range(0, len(sig_a), chunk):
        out[lo:lo + chunk] = (sig_a[lo:lo + chunk] == sig_b[lo:lo + chunk]).mean(axis=1)
    return out


def pair_jaccard(sig: np.ndarray, left: np.ndarray, right: np.ndarray, chunk: int = 65_536) -> np.ndarray:
    """``estimated_jaccard(sig[left], sig[right])``, gathering ``chunk`` rows at a time.

    A full gather of millions of rows costs gigabytes and is slower (page faults) than chunks.
    """
    out = np.empty(len(left), dtype=np.float64)
    for lo in range(0, len(left), chunk):
        out[lo:lo + chunk] = estimated_jaccard(sig[left[lo:lo + chunk]], sig[right[lo:lo + chunk]], chunk)
    return out


class UnionFind:
    """Connected components under edges that arrive in chunks, in numpy.

    Each root is its component's lowest node: a union always points the higher root at the
    lower one. Edges whose union lost a write race (two edges re-pointing the same root in
    one vectorised step) are retried until every edge of the chunk joins one component.
    """

    def __init__(self, n: int):
        self.parent = np.arange(n, dtype=np.int64)

    def find(self, x: np.ndarray) -> np.ndarray:
        root = self.parent[x]
        while True:
            up = self.parent[root]
            if np.array_equal(up, root):
                self.parent[x] = root                        # path compression of the queried nodes
                return root
            self.parent[root] = self.parent[up]              # path halving: long chains shrink as they are walked
            root = up

    def union(self, a: np.ndarray, b: np.ndarray) -> None:
        while len(a):
            ra, rb = self.find(a), self.find(b)
            apart = ra != rb
            lo, hi = np.minimum(ra[apart], rb[apart]), np.maximum(ra[apart], rb[apart])
            self.parent[hi] = lo
            a, b = lo, hi

    def roots(self) -> np.ndarray:
        """The lowest node of each node's component."""
        while True:
            up = self.parent[self.parent]
            if np.array_equal(up, self.parent):
                return self.parent
            self.parent = up


def connected_components(n: int, pairs: np.ndarray) -> np.ndarray:
    """Lowest node of each of ``n`` nodes' component under the undirected edges ``pairs``."""
    components = UnionFind(n)
    components.union(pairs[:, 0], pairs[:, 1])
    return components.roots()


@dataclass
class NearDuplicates:
    """Near-duplicate clusters over ``n`` rows, from confirmed LSH candidate pairs."""

    labels: np.ndarray          # per row: the lowest row of its cluster (itself if alone)
    candidates: int             # distinct LSH candidate pairs
    confirmed: int              # of which confirmed (estimated Jaccard >= threshold)
    signatures: np.ndarray      # (n, num_perm) uint32


def spill_root(cfg: DedupeConfig) -> Path:
    """Where candidate pairs spill: ``dedupe.spill_dir``, else ``$R1_HOME/tmp``."""
    from r1_assets.storage import r1_home

    return Path(cfg.spill_dir).expanduser() if cfg.spill_dir else r1_home() / "tmp"


def confirmed_pairs(sig: np.ndarray, cfg: DedupeConfig, log: Log = _noop) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """LSH over ``sig``, verified: per chunk, (confirmed pairs, their estimated Jaccard, candidates).

    Bands are processed one at a time (one key column in memory) and their candidate pairs
    spill to disk (``CandidateSpill``); the distinct candidates come back in chunks of at most
    ``pair_chunk``, in (i, j) order, and only those reaching ``threshold`` are yielded. The spill
    folder is gone when the generator finishes or is closed.
    """
    n = sig.shape[0]
    t0 = time.perf_counter()
    with CandidateSpill(spill_root(cfg), n, cfg.spill_partition_rows) as spill:
        for b in range(cfg.bands):
            for codes in _bucket_pair_codes(band_key(sig, b, cfg.rows), cfg.max_bucket_neighbors):
                spill.add(codes)
        log(f"minhash LSH: {spill.written:,} raw candidate pairs from {cfg.bands} bands spilled to"
            f" {spill.parts:,} files ({time.perf_counter() - t0:.1f}s)")
        for pairs in spill.distinct_pairs(cfg.pair_chunk):
            sim = pair_jaccard(sig, pairs[:, 0], pairs[:, 1], cfg.pair_chunk)
            keep = sim >= cfg.threshold
            yield pairs[keep], sim[keep], len(pairs)


def near_duplicates(texts: pl.Series, cfg: DedupeConfig, log: Log = _noop, take: np.ndarray | None = None) -> NearDuplicates:
    """MinHash LSH near-duplicate clusters of ``texts`` (all against all, confirmed pairs).

    ``take``: cluster only these rows of ``texts``, in this order (row k of the result is
    ``texts[take[k]]``). Memory is the signatures (n x num_perm x 4 B) plus a few arrays of n
    and one spill file: candidate and confirmed pairs are never all in memory.
    """
    sig = MinHasher.from_config(cfg).signatures(texts, log, take)
    components = UnionFind(sig.shape[0])
    candidates = confirmed = 0
    with closing(confirmed_pairs(sig, cfg, log)) as chunks:
        for pairs, _, n_candidates in chunks:
            components.union(pairs[:, 0], pairs[:, 1])
            candidates += n_candidates
            confirmed += len(pairs)
    log(f"minhash LSH: {candidates:,} candidate pairs, {confirmed:,} confirmed at J >= {cfg.threshold}")
    return NearDuplicates(labels=components.roots(), candidates=candidates, confirmed=confirmed, signatures=sig)


def semantic_merge(
    texts: pl.Series, take: np.ndarray, rep_index: np.ndarray, sim_to_rep: np.ndarray, cfg: DedupeConfig, log: Log = _noop,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The optional ``dedupe.semantic`` pass over MinHash clusters (rows ``texts[take]``, in
    preference order; ``rep_index`` the representative of each row).

    Embeds the representatives only, links each to its nearest others at cosine >=
    ``semantic_threshold`` and merges their clusters. Returns (new representative per row,
    similarity to it, mask of rows whose cluster was merged in by this pass: their similarity is
    the cosine of their old representative to the new one).
    """
    from r1_assets.embeddings import embed_texts, top_k_cosine

    t0 = time.perf_counter()
    reps = np.unique(rep_index)
    emb = embed_texts(texts.gather(take[reps]).to_list(), device=cfg.semantic_device)
    idx, sim = top_k_cosine(emb, emb, k=min(8, len(reps)))
    left = np.repeat(np.arange(len(reps)), idx.shape[1])
    hit = (sim.reshape(-1) >= cfg.semantic_threshold) & (idx.reshape(-1) != left)
    components = UnionFind(len(reps))
    components.union(left[hit], idx.reshape(-1)[hit])
    new_rep_of_rep = components.roots()            # the lowest, so the preferred, representative
    position = np.searchsorted(reps, rep_index)
    new_rep = reps[new_rep_of_rep[position]]
    merged = new_rep != rep_index
    cosine = np.einsum("ij,ij->i", emb[position], emb[new_rep_of_rep[position]])
    similarity = np.where(merged, cosine, sim_to_rep)
    log(f"semantic dedupe: {len(reps):,} clusters embedded, {int(hit.sum()):,} links at cosine >= {cfg.semantic_threshold},"
        f" {len(reps) - len(np.unique(new_rep_of_rep)):,} clusters merged ({time.perf_counter() - t0:.1f}s)")
    return new_rep, similarity, merged


# -- the stage ---------------------------------------------------------------------------
@dataclass
class DedupeResult:
    unique: pl.DataFrame                 # UNIQUE_COLUMNS: one row per cluster (its representative)
    duplicates: pl.DataFrame             # DUPLICATE_COLUMNS: every other input row
    stats: dict = field(default_factory=dict)

    def per_source(self, rows_in: pl.DataFrame) -> pl.DataFrame:
        """rows / kept / exact / minhash / semantic duplicates per source."""
        kept = self.unique.group_by("source").agg(kept=pl.len())
        dup = self.duplicates.group_by("source").agg(
            exact=(pl.col("method") == "exact").sum(), minhash=(pl.col("method") == "minhash").sum(),
            semantic=(pl.col("method") == "semantic").sum(),
        )
        return (
            rows_in.group_by("source").agg(rows=pl.len())
            .join(kept, on="source", how="left").join(dup, on="source", how="left")
            .fill_null(0).sort("source")
        )


def source_order(cfg_sources: Iterable[str], priority: Iterable[str]) -> list[str]:
    """Representative preference: ``priority`` first, then the remaining configured sources."""
    ordered = [s for s in priority]
    return ordered + [s for s in cfg_sources if s not in ordered]


def deduplicate(rows: pl.DataFrame, cfg: DedupeConfig, sources: list[str], log: Log = _noop) -> DedupeResult:
    """Exact then MinHash near-duplicate removal over ``rows`` (all sources together).

    ``rows`` needs problem_id, source, source_row, problem, answer (and domain; math when
    absent: a kept row carries the domain of its own source row). ``sources`` is the
    configured source order (priority applied by ``source_order``).
    """
    t0 = time.perf_counter()
    order = source_order(sources, cfg.source_priority)
    unknown = sorted(set(rows["source"].unique().to_list()) - set(order))
    rank = {s: i for i, s in enumerate(order + unknown)}
    # Texts stay in ``rows``: they are gathered only batch by batch for MinHash and for the kept
    # rows at the end (each full copy of a 10M-row pool's texts would cost ~2.5 GB).
    domain = pl.col("domain") if "domain" in rows.columns else pl.lit("math").alias("domain")
    frame = rows.select(
        "problem_id", "source", "source_row", domain,
        _no_answer=pl.col("answer").is_null() | (pl.col("answer").str.strip_chars() == ""),
        _source_rank=pl.col("source").replace_strict(rank, return_dtype=pl.Int32),
    ).with_row_index("_row")
    preference = ["_no_answer", "_source_rank", "source_row", "problem_id"]

    # 1. exact: the preferred row of each problem_id; it inherits "has an answer" from any copy.
    exact = (
        frame.sort(["problem_id", *preference[:-1]])
        .group_by("problem_id", maintain_order=True)
        .agg(pl.all().first(), _copies=pl.len())
        .sort(preference)
        .select("problem_id", "_row", "_copies")
    )
    log(f"exact: {rows.height:,} rows -> {exact.height:,} distinct problems ({time.perf_counter() - t0:.1f}s)")

    # 2. near: MinHash LSH clusters over the distinct problems, in preference order, so that
    #    the first member of each cluster is its representative.
    near = near_duplicates(rows["problem"], cfg, log, take=exact["_row"].to_numpy())
    rep_index = near.labels          # the lowest, so the preferred, member of each cluster
    sim_to_rep = pair_jaccard(near.signatures, np.arange(exact.height), rep_index, cfg.pair_chunk)
    near_stats = {"lsh_candidate_pairs": near.candidates, "confirmed_pairs": near.confirmed}
    del near                         # the signatures: the largest array here
    near_method = np.full(exact.height, "minhash", dtype=object)
    if cfg.semantic:
        rep_index, sim_to_rep, merged = semantic_merge(rows["problem"], exact["_row"].to_numpy(), rep_index, sim_to_rep, cfg, log)
        near_method[merged] = "semantic"
        near_stats["semantic_merged_problems"] = int(merged.sum())
    exact_ids = exact["problem_id"].to_numpy()
    exact = exact.with_columns(
        cluster_id=pl.Series(exact_ids[rep_index], dtype=pl.Utf8),
        _sim=pl.Series(sim_to_rep),
        _near_method=pl.Series(near_method, dtype=pl.Utf8),
    )
    cluster_size = exact.group_by("cluster_id").agg(cluster_size=pl.col("_copies").sum().cast(pl.Int32))

    # 3. every input row: kept if it is the preferred row of its cluster's representative
    #    problem, else a duplicate.
    assigned = frame.join(
        exact.select("problem_id", "cluster_id", "_sim", "_near_method", _preferred_row="_row"), on="problem_id", how="left"
    ).with_columns(
        _kept=(pl.col("_row") == pl.col("_preferred_row")) & (pl.col("problem_id") == pl.col("cluster_id")),
    )
    kept = assigned.filter("_kept").join(cluster_size, on="cluster_id", how="left")
    unique = (
        pl.concat([kept, rows.select(pl.col("problem", "answer").gather(kept["_row"]))], how="horizontal")
        .select(list(UNIQUE_COLUMNS))
        .cast(UNIQUE_COLUMNS)
        .sort(["cluster_id"])
    )
    del kept
    duplicates = (
        assigned.filter(~pl.col("_kept"))
        .with_columns(
            method=pl.when(pl.col("problem_id") == pl.col("cluster_id")).then(pl.lit("exact")).otherwise(pl.col("_near_method")),
        )
        .with_columns(similarity=pl.when(pl.col("method") == "exact").then(1.0).otherwise(pl.col("_sim")))
        .select(list(DUPLICATE_COLUMNS))
        .cast(DUPLICATE_COLUMNS)
        .sort(["cluster_id", "source", "source_row"])
    )
    del assigned
    cross = (
        pl.concat([unique.select("cluster_id", "source"), duplicates.select("cluster_id", "source")])
        .group_by("cluster_id").agg(n_sources=pl.col("source").n_unique())
        .filter(pl.col("n_sources") > 1).height
    )
    stats = {
        "rows_in": rows.height,
        "distinct_problems": exact.height,
        "kept": unique.height,
        "exact_duplicates": int((duplicates["method"] == "exact").sum()),
        "minhash_duplicates": int((duplicates["method"] == "minhash").sum()),
        "semantic_duplicates": int((duplicates["method"] == "semantic").sum()),
        **near_stats,
        "clusters_with_duplicates": int((cluster_size["cluster_size"] > 1).sum()),
        "cross_source_clusters": cross,
        "largest_cluster": int(cluster_size["cluster_size"].max() or 0),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    log(
        f"dedupe: {stats['rows_in']:,} rows -> {stats['kept']:,} kept; {stats['exact_duplicates']:,} exact and"
        f" {stats['minhash_duplicates']:,} near duplicates; {cross:,} clusters span sources ({stats['seconds']}s)"
    )
    return DedupeResult(unique=unique, duplicates=duplicates, stats=stats)
