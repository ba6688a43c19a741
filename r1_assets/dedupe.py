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

At scale neither the LSH candidate pairs (5M at 1M rows of a duplicate-heavy pool, hundreds
of millions at 10M) nor the signatures (3.2 GiB at 7.7M distinct problems) fit beside the input
in memory. Signatures and their band keys go to disk batch by batch (``SignatureSpill``, under
``$R1_HOME/tmp``); candidate pairs are produced one band at a time and spilled into one file per
pair of signature blocks (``CandidateSpill``), read back one file at a time, verified against
two blocks of signatures and merged into clusters by a union-find. The exact pass and the
assembly of the output work on numbers (a 64-bit key of ``problem_id``, row numbers, ranks),
and the output's strings are gathered once, in output order. So memory is the input, a few
arrays of n, two signature blocks and one candidate file, whatever the number of pairs. The
clusters do not depend on the order pairs arrive in: the results equal the former
all-in-memory pass exactly (tested, and asserted by tests/bench/bench_dedupe.py).
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
# How a duplicate relates to its representative (DUPLICATE_COLUMNS' method).
METHODS = ("exact", "minhash", "semantic")
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

    def batches(self, texts: pl.Series, log: Log = _noop, take: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """Signatures of ``batch_rows`` rows at a time, (rows, num_perm) uint32, in row order.

        ``take``: sign only these rows of ``texts``, in this order, gathered batch by batch
        (a gathered copy of millions of texts would cost gigabytes).
        """
        n = texts.len() if take is None else len(take)
        step = self.batch_rows
        t0 = time.perf_counter()
        for lo in range(0, n, step):
            batch = texts.slice(lo, step) if take is None else texts.gather(take[lo:lo + step])
            yield self.signatures_from_hashes(*self.shingle_hashes(batch))
            done = min(lo + step, n)
            if done == n or (lo // step) % 10 == 9:
                log(f"minhash: {done:,}/{n:,} rows ({done / max(time.perf_counter() - t0, 1e-9):,.0f} rows/s)")

    def signatures(self, texts: pl.Series, log: Log = _noop, take: np.ndarray | None = None) -> np.ndarray:
        """(n, num_perm) uint32 signatures, all in memory (``batches`` one batch at a time)."""
        out = np.empty((texts.len() if take is None else len(take), self.num_perm), dtype=_U32)
        lo = 0
        for sig in self.batches(texts, log, take):
            out[lo:lo + len(sig)] = sig
            lo += len(sig)
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
    # Sorted positions whose bucket goes on for d more members; each d keeps a subset of the
    # previous one, so the work follows the pairs, not n per distance.
    live = np.flatnonzero(ks[:-1] == ks[1:])
    for d in range(1, max_neighbors + 1):
        if d > 1:
            live = live[live + d < n]
            live = live[ks[live + d] == ks[live]]
        if not len(live):
            return
        yield order[live] * n + order[live + d]


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


# Signature blocks per side of the block-pair grid: one candidate file per pair of blocks,
# B * (B + 1) / 2 files, all open while the bands spill; 31 blocks give 496, under the usual
# open-file limit of 1,024 (past 31 blocks of ``signature_block_rows``, the blocks grow).
_MAX_BLOCKS = 31


def _open_append(path: Path) -> BinaryIO:
    return open(path, "ab")  # noqa: SIM115 (open until read back: appended once per batch or band)


class SignatureSpill:
    """MinHash signatures and their LSH band keys on disk, read back one block of rows at a time.

    At 10M rows the signatures alone (7.7M distinct x 112 x 4 B = 3.2 GiB) do not fit beside the
    input in 8 GiB. ``add`` appends each MinHash batch to one raw uint32 file and its band keys
    to one uint64 file per band; LSH then reads one band at a time (``band_key``) and the
    verification two blocks of ``block_rows`` rows at a time (``pair_jaccard``). Reads are
    sequential and come from the page cache, which the kernel can reclaim; the process holds
    at most two blocks. Use as a context manager: the folder is removed on exit, also on error.
    """

    def __init__(self, root: Path, n: int, cfg: DedupeConfig):
        root.mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix="dedupe-signatures-", dir=root))
        self.n, self.num_perm, self.rows = n, cfg.num_perm, cfg.rows
        self.block_rows = max(cfg.signature_block_rows, -(-n // _MAX_BLOCKS))
        self.blocks = max(1, -(-n // self.block_rows))
        self.written = 0
        self._sig: BinaryIO | None = _open_append(self.folder / "signatures.u32")
        self._keys = [_open_append(self._key_path(b)) for b in range(cfg.bands)]
        self._cache: dict[int, np.ndarray] = {}            # at most two blocks, least recently used first

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self._close()
        self._cache.clear()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _key_path(self, band: int) -> Path:
        return self.folder / f"band-{band:03d}.u64"

    def _close(self) -> None:
        for f in [self._sig, *self._keys]:
            if f is not None:
                f.close()
        self._sig, self._keys = None, []

    def add(self, sig: np.ndarray) -> None:
        """Append the signatures of the next rows (in row order) and their band keys."""
        if self._sig is None or self.written + len(sig) > self.n:
            raise RuntimeError(f"SignatureSpill: {self.written + len(sig):,} rows added to a spill of {self.n:,}")
        sig.astype("<u4", copy=False).tofile(self._sig)
        for b, f in enumerate(self._keys):
            band_key(sig, b, self.rows).astype("<u8", copy=False).tofile(f)
        self.written += len(sig)

    def _finish(self) -> None:
        if self._sig is not None:
            if self.written != self.n:
                raise RuntimeError(f"SignatureSpill: {self.written:,} of {self.n:,} rows added")
            self._close()

    def band_key(self, band: int) -> np.ndarray:
        """(n,) uint64 keys of one band (``band_key`` of the signatures)."""
        self._finish()
        return np.fromfile(self._key_path(band), dtype="<u8")

    def block(self, b: int) -> np.ndarray:
        """Rows ``b * block_rows`` up to ``(b + 1) * block_rows`` of the signatures."""
        self._finish()
        sig = self._cache.pop(b, None)
        if sig is None:
            while len(self._cache) >= 2:
                del self._cache[next(iter(self._cache))]   # freed before the read: two blocks at most
            lo = b * self.block_rows
            rows = min(self.block_rows, self.n - lo)
            sig = np.fromfile(self.folder / "signatures.u32", dtype="<u4", count=rows * self.num_perm,
                              offset=lo * self.num_perm * 4).reshape(rows, self.num_perm)
        self._cache[b] = sig
        return sig

    def pair_jaccard(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """Estimated Jaccard of rows ``left[k]`` and ``right[k]``, one pair of blocks at a time.

        Pairs are grouped by (block of left, block of right), in that order, so that the block
        of ``left`` stays cached while the blocks of ``right`` go by; rows are gathered into
        reused buffers ``_JACCARD_ROWS`` at a time (a gather of millions of rows costs gigabytes
        and page faults).
        """
        out = np.empty(len(left), dtype=np.float64)
        if len(left) == 0:
            return out
        r, p = self.block_rows, self.num_perm
        group = (left // r) * self.blocks + right // r
        if group.min() == group.max():                     # the usual case: one block pair
            order, starts = np.arange(len(left)), np.zeros(1, dtype=np.int64)
        else:
            order = np.argsort(group, kind="stable")
            starts = np.flatnonzero(np.diff(group[order], prepend=-1))
        a, b, eq = np.empty((_JACCARD_ROWS, p), dtype=_U32), np.empty((_JACCARD_ROWS, p), dtype=_U32), _scratch(p)
        for s, e in zip(starts.tolist(), [*starts[1:].tolist(), len(order)], strict=True):
            bl, br = divmod(int(group[order[s]]), self.blocks)
            sig_l, sig_r = self.block(bl), self.block(br)
            for lo in range(s, e, _JACCARD_ROWS):
                idx = order[lo:min(lo + _JACCARD_ROWS, e)]
                m = len(idx)
                np.take(sig_l, left[idx] - bl * r, axis=0, out=a[:m])
                np.take(sig_r, right[idx] - br * r, axis=0, out=b[:m])
                out[idx] = _equal_counts(a[:m], b[:m], eq) / p
        return out


class CandidateSpill:
    """LSH candidate pair codes on disk, one file per pair of signature blocks, read back distinct.

    Codes (``i * n + j``, int64, i < j) are appended band by band to the file of
    (``i // block_rows``, ``j // block_rows``), as raw little-endian int64 (fixed width,
    append-only, read back with one ``np.fromfile``: nothing a Parquet or DuckDB layer would add
    is needed here). Every copy of a pair lands in the same file, so each file is deduplicated on
    its own, and its pairs are verified against two blocks of signatures (``SignatureSpill``).
    Use as a context manager: the folder is removed on exit, also on error.
    """

    def __init__(self, root: Path, n: int, block_rows: int):
        root.mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix="dedupe-pairs-", dir=root))
        self.n, self.block_rows = n, block_rows
        self.blocks = max(1, -(-n // block_rows))
        if self.blocks > _MAX_BLOCKS:
            raise ValueError(f"CandidateSpill: {self.blocks} blocks of {block_rows:,} rows, above {_MAX_BLOCKS}")
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

    @property
    def files(self) -> int:
        """Files written to and not yet read back."""
        return len(self._files)

    def _path(self, part: int) -> Path:
        return self.folder / f"part-{part:06d}.i64"

    def add(self, codes: np.ndarray) -> None:
        i = codes // self.n
        part = (i // self.block_rows) * self.blocks + (codes - i * self.n) // self.block_rows
        del i
        # a stable sort of 16-bit keys is numpy's radix sort: linear, ~5x faster than int64's
        part = part.astype(np.uint16)                      # blocks <= 31, so parts < 31 * 31
        ends = np.cumsum(np.bincount(part, minlength=self.blocks * self.blocks))
        codes = codes[np.argsort(part, kind="stable")]
        del part
        for p in np.flatnonzero(np.diff(ends, prepend=0)).tolist():
            f = self._files.get(p)
            if f is None:
                f = self._files[p] = _open_append(self._path(p))
            codes[ends[p - 1] if p else 0:ends[p]].astype("<i8", copy=False).tofile(f)
        self.written += len(codes)

    def distinct_pairs(self, chunk: int) -> Iterator[np.ndarray]:
        """The distinct pairs, (m, 2) int64 with i < j, at most ``chunk`` per array, block pair
        by block pair (by the lower row's block, then the higher's), in (i, j) order within each."""
        self.close()
        n = self.n
        for p in range(self.blocks * self.blocks):
            path = self._path(p)
            if not path.exists():
                continue
            codes = np.fromfile(path, dtype="<i8")
            path.unlink()                                    # free the disk as we go
            codes.sort()                                     # in place: np.unique would sort a copy
            codes = codes[np.diff(codes, prepend=-1) != 0]
            for lo in range(0, len(codes), chunk):
                c = codes[lo:lo + chunk]
                yield np.stack([c // n, c % n], axis=1)


# Rows compared per step: the two gathered blocks and the equality mask (2 x 2048 x 448 B +
# 2048 x 112 B) stay in cache, and the buffers are reused: 65,536-row steps were 2x slower.
_JACCARD_ROWS = 2048


def _equal_counts(a: np.ndarray, b: np.ndarray, eq: np.ndarray) -> np.ndarray:
    """Per row, how many columns of ``a`` and ``b`` are equal. ``eq``: a zeroed bool scratch of
    at least len(a) rows and num_perm rounded up to 8 columns, so that its rows read as uint64
    words whose set bits (one per equal column) ``bitwise_count`` counts."""
    m, p = a.shape
    np.equal(a, b, out=eq[:m, :p])
    return np.bitwise_count(eq[:m].view(np.uint64)).sum(axis=1, dtype=np.int64)


def _scratch(num_perm: int) -> np.ndarray:
    return np.zeros((_JACCARD_ROWS, -(-num_perm // 8) * 8), dtype=bool)


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray:
    """Row-wise share of equal signature values (the MinHash Jaccard estimate).

    count / num_perm in float64: the same value as the mean of the equality mask.
    """
    out = np.empty(len(sig_a), dtype=np.float64)
    eq = _scratch(sig_a.shape[1])
    for lo in range(0, len(sig_a), _JACCARD_ROWS):
        out[lo:lo + _JACCARD_ROWS] = _equal_counts(sig_a[lo:lo + _JACCARD_ROWS], sig_b[lo:lo + _JACCARD_ROWS], eq) / sig_a.shape[1]
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
    similarity: np.ndarray      # per row: estimated Jaccard to that lowest row (1.0 for itself)
    candidates: int             # distinct LSH candidate pairs
    confirmed: int              # of which confirmed (estimated Jaccard >= threshold)


def spill_root(cfg: DedupeConfig) -> Path:
    """Where signatures and candidate pairs spill: ``dedupe.spill_dir``, else ``$R1_HOME/tmp``."""
    from r1_assets.storage import r1_home

    return Path(cfg.spill_dir).expanduser() if cfg.spill_dir else r1_home() / "tmp"


def confirmed_pairs(signatures: SignatureSpill, cfg: DedupeConfig, log: Log = _noop) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """LSH over ``signatures``, verified: per chunk, (confirmed pairs, their estimated Jaccard, candidates).

    Bands are processed one at a time (one key column in memory) and their candidate pairs
    spill to disk (``CandidateSpill``); the distinct candidates come back in chunks of at most
    ``pair_chunk``, one pair of signature blocks at a time, and only those reaching
    ``threshold`` are yielded. The pair folder is gone when the generator finishes or is closed.
    """
    t0 = time.perf_counter()
    with CandidateSpill(spill_root(cfg), signatures.n, signatures.block_rows) as spill:
        for b in range(cfg.bands):
            for codes in _bucket_pair_codes(signatures.band_key(b), cfg.max_bucket_neighbors):
                spill.add(codes)
        log(f"minhash LSH: {spill.written:,} raw candidate pairs from {cfg.bands} bands spilled to"
            f" {spill.files:,} files ({time.perf_counter() - t0:.1f}s)")
        for pairs in spill.distinct_pairs(cfg.pair_chunk):
            sim = signatures.pair_jaccard(pairs[:, 0], pairs[:, 1])
            keep = sim >= cfg.threshold
            yield pairs[keep], sim[keep], len(pairs)


def near_duplicates(texts: pl.Series, cfg: DedupeConfig, log: Log = _noop, take: np.ndarray | None = None) -> NearDuplicates:
    """MinHash LSH near-duplicate clusters of ``texts`` (all against all, confirmed pairs).

    ``take``: cluster only these rows of ``texts``, in this order (row k of the result is
    ``texts[take[k]]``). Memory is a few arrays of n, two blocks of signatures
    (``SignatureSpill``) and one candidate file: signatures, candidate and confirmed pairs are
    never all in memory.
    """
    n = texts.len() if take is None else len(take)
    t0 = time.perf_counter()
    with SignatureSpill(spill_root(cfg), n, cfg) as signatures:
        for sig in MinHasher.from_config(cfg).batches(texts, log, take):
            signatures.add(sig)
        components = UnionFind(n)
        candidates = confirmed = 0
        with closing(confirmed_pairs(signatures, cfg, log)) as chunks:
            for pairs, _, n_candidates in chunks:
                components.union(pairs[:, 0], pairs[:, 1])
                candidates += n_candidates
                confirmed += len(pairs)
        labels = components.roots()
        similarity = signatures.pair_jaccard(np.arange(n), labels)
    log(f"minhash LSH: {candidates:,} candidate pairs, {confirmed:,} confirmed at J >= {cfg.threshold}"
        f" ({time.perf_counter() - t0:.1f}s with MinHash)")
    return NearDuplicates(labels=labels, similarity=similarity, candidates=candidates, confirmed=confirmed)


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
    configured source order (priority applied by ``source_order``). ``source_row`` is unique
    within a source (as in raw_problems); the input order breaks ties otherwise.

    Everything that spans all rows is numeric (row numbers, a 64-bit key of problem_id, ranks):
    no sort, join or group_by touches the string columns of ``rows``, and the output gathers
    them once, in output order (a 10M-row pool is ~4.2 GiB; each sorted or joined copy of its
    strings would add gigabytes).
    """
    t0 = time.perf_counter()
    order = source_order(sources, cfg.source_priority)
    present = rows["source"].unique().sort()                      # polars' string order: the output's
    unknown = [s for s in present.to_list() if s not in order]
    rank = {s: i for i, s in enumerate(order + unknown)}

    # 1. exact: rows with the same problem_id are one problem, represented by its preferred row
    #    (so "has an answer" when any copy has one). The ids are grouped by a 64-bit hash: at
    #    10M distinct ids a collision has odds of ~3e-6, and the distinct counts are compared
    #    below so that one would fail loudly instead of merging two problems.
    keyed = rows.select(
        _key=pl.col("problem_id").hash(seed=0x5EED),
        _no_answer=pl.col("answer").is_null() | (pl.col("answer").str.strip_chars() == ""),
        _source_rank=pl.col("source").replace_strict(rank, return_dtype=pl.Int32),
        source_row=pl.col("source_row"),
    ).with_row_index("_row")
    ordered = (
        keyed.sort(["_no_answer", "_source_rank", "source_row", "_row"])
        .select("_row", "_key", _distinct=pl.col("_key").is_first_distinct().cum_sum().cast(pl.Int64) - 1)
        .select("_row", _distinct=pl.col("_distinct").first().over("_key"))      # the preferred row's number
    )
    del keyed
    distinct_of = np.empty(rows.height, dtype=np.int64)          # input row -> its distinct problem
    distinct_of[ordered["_row"].to_numpy()] = ordered["_distinct"].to_numpy()
    preferred = ordered.filter(pl.col("_distinct").is_first_distinct())["_row"].to_numpy().astype(np.int64)
    del ordered
    n_distinct = len(preferred)                                  # distinct problems, in preference order
    if n_distinct != (n_ids := rows["problem_id"].n_unique()):
        raise RuntimeError(f"exact: {n_distinct:,} problem_id hashes for {n_ids:,} distinct ids (a hash collision)")
    copies = np.bincount(distinct_of, minlength=n_distinct)
    log(f"exact: {rows.height:,} rows -> {n_distinct:,} distinct problems ({time.perf_counter() - t0:.1f}s)")

    # 2. near: MinHash LSH clusters over the distinct problems, in preference order, so that
    #    the first member of each cluster is its representative.
    near = near_duplicates(rows["problem"], cfg, log, take=preferred)
    rep, sim_to_rep = near.labels, near.similarity             # rep: the lowest, so the preferred, member
    near_stats = {"lsh_candidate_pairs": near.candidates, "confirmed_pairs": near.confirmed}
    del near
    near_method = np.zeros(n_distinct, dtype=np.int8)            # index into METHODS[1:]: minhash or semantic
    if cfg.semantic:
        rep, sim_to_rep, merged = semantic_merge(rows["problem"], preferred, rep, sim_to_rep, cfg, log)
        near_method[merged] = 1
        near_stats["semantic_merged_problems"] = int(merged.sum())
    size_of = np.bincount(rep, weights=copies, minlength=n_distinct).astype(np.int64)   # per representative

    # 3. every input row: kept if it is the preferred row of its cluster's representative
    #    problem, else a duplicate (exact when its problem is the representative's).
    d = distinct_of
    del distinct_of
    row_rep = rep[d]
    kept_mask = np.zeros(rows.height, dtype=bool)
    kept_mask[preferred[rep == np.arange(n_distinct)]] = True
    cluster_row = preferred[row_rep]                             # input row whose problem_id names the cluster
    ids = rows["problem_id"]
    kept_rows = np.flatnonzero(kept_mask)
    kept_rows = kept_rows[ids.gather(kept_rows).arg_sort().to_numpy()]    # by cluster_id: their own problem_id
    cluster_rank = np.empty(rows.height, dtype=np.int64)         # output position of each cluster, by kept row
    cluster_rank[kept_rows] = np.arange(len(kept_rows))

    def domain(at: np.ndarray) -> pl.Series:
        return rows["domain"].gather(at) if "domain" in rows.columns else pl.repeat("math", len(at), eager=True)

    unique = pl.DataFrame({
        "problem_id": ids.gather(kept_rows),
        "cluster_id": ids.gather(kept_rows),
        "source": rows["source"].gather(kept_rows),
        "source_row": rows["source_row"].gather(kept_rows),
        "problem": rows["problem"].gather(kept_rows),
        "answer": rows["answer"].gather(kept_rows),
        "domain": domain(kept_rows),
        "cluster_size": size_of[row_rep[kept_rows]],
    }).cast(UNIQUE_COLUMNS)

    dup_rows = np.flatnonzero(~kept_mask)
    del kept_mask
    dup_exact = rep[d[dup_rows]] == d[dup_rows]
    source_lex = {s: i for i, s in enumerate(present.to_list())}
    by_output = pl.DataFrame({
        "cluster": cluster_rank[cluster_row[dup_rows]],
        "source": rows["source"].gather(dup_rows).replace_strict(source_lex, return_dtype=pl.Int32),
        "source_row": rows["source_row"].gather(dup_rows),
    }).with_row_index("_i").sort(["cluster", "source", "source_row"])["_i"].to_numpy()
    dup_rows, dup_exact = dup_rows[by_output], dup_exact[by_output]
    del by_output
    method = np.where(dup_exact, 0, 1 + near_method[d[dup_rows]])
    duplicates = pl.DataFrame({
        "problem_id": ids.gather(dup_rows),
        "source": rows["source"].gather(dup_rows),
        "source_row": rows["source_row"].gather(dup_rows),
        "cluster_id": ids.gather(cluster_row[dup_rows]),
        "domain": domain(dup_rows),
        "method": pl.Series(METHODS).gather(method),
        "similarity": np.where(dup_exact, 1.0, sim_to_rep[d[dup_rows]]),
    }).cast(DUPLICATE_COLUMNS)
    method_counts = np.bincount(method, minlength=len(METHODS))
    del dup_rows, dup_exact, method

    sizes = size_of[rep == np.arange(n_distinct)]
    cross = (
        pl.DataFrame({"cluster": cluster_row, "source": rows["source"].replace_strict(source_lex, return_dtype=pl.Int32)})
        .group_by("cluster").agg(n_sources=pl.col("source").n_unique())
        .filter(pl.col("n_sources") > 1).height
    )
    stats = {
        "rows_in": rows.height,
        "distinct_problems": n_distinct,
        "kept": unique.height,
        "exact_duplicates": int(method_counts[0]),
        "minhash_duplicates": int(method_counts[1]),
        "semantic_duplicates": int(method_counts[2]),
        **near_stats,
        "clusters_with_duplicates": int((sizes > 1).sum()),
        "cross_source_clusters": cross,
        "largest_cluster": int(sizes.max()) if len(sizes) else 0,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    log(
        f"dedupe: {stats['rows_in']:,} rows -> {stats['kept']:,} kept; {stats['exact_duplicates']:,} exact and"
        f" {stats['minhash_duplicates']:,} near duplicates; {cross:,} clusters span sources ({stats['seconds']}s)"
    )
    return DedupeResult(unique=unique, duplicates=duplicates, stats=stats)
