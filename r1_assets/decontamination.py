"""Benchmark decontamination of the pool (the ``clean_problems`` stage).

A pool problem is contaminated when it matches a benchmark problem by any enabled method
(``decontamination.methods``); every match is one row naming the benchmark row it matched:

- ``ngram`` (Open-R1): lower-case, split on whitespace, and flag a pool problem that shares any
  word ``n``-gram with a benchmark problem. A text shorter than ``n`` words has no ``n``-gram,
  so a pair where either side is that short is compared on its whole text instead, and
  recorded as ``exact_short``;
- ``digit_stripped`` (after Light-R1): the text with every number masked equals or contains a
  benchmark row's, which catches copies whose numbers were changed ("Find 3+4" vs "Find 5+6"),
  or the benchmark row's worded setup is kept word for word around math of nearly the same shape
  (``_setup_hits``: a sign or a term changed with the numbers);
- ``minhash``: estimated Jaccard similarity of the dedupe shingles (``dedupe.shingle_size``,
  ``num_perm``, ``seed``) at or above ``minhash_threshold``, found through an LSH index of the
  benchmarks and confirmed on the signatures; catches reworded copies.
- ``semantic`` (on by default): cosine of all-MiniLM-L6-v2 embeddings at or above
  ``semantic_threshold``; catches paraphrases. Only the (pool, benchmark) pairs at TF-IDF
  cosine >= ``semantic_min_tfidf`` are embedded (r1_assets/tfidf.py), ~1.5% of the shared pools.

An optional LLM judge (``decontamination.judge_model``, ``r1_assets.contamination_judge``)
reviews the hits of ``judge_methods`` in ``decontaminate_clusters``: a hit it calls DIFFERENT is
kept with its verdict but removes nothing (``removes_problem``).

Hits that may be another exercise of the benchmark row's template (semantic hits, partial ngram
hits) are then checked for the benchmark's numbers and math (``_confirm_hits``).

The benchmark side is indexed once (sorted hash arrays, a few MB for all public benchmarks).
The pool is streamed through in chunks of ``decontamination.batch_rows``: every step of a chunk
is vectorised (polars string kernels, numpy hashing and ``searchsorted`` look-ups), so memory
stays bounded by the chunk, and 1M rows take a couple of minutes on two cores.
"""

from __future__ import annotations

import difflib
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from collections.abc import Callable

import numpy as np
import polars as pl

from r1_assets.config import ConfigError, DecontaminationConfig, DedupeConfig
from r1_assets.dedupe import MinHasher, band_keys, estimated_jaccard, token_hashes, window_hashes
from r1_assets.embeddings import MODEL_NAME, embed_texts
from r1_assets.text import comparison_texts, math_skeletons, normalize_text, problem_id, setup_keys
from r1_assets.tfidf import TfidfIndex

CONTAMINATION_COLUMNS = {
    "problem_id": pl.Utf8,
    "benchmark": pl.Utf8,
    "benchmark_row": pl.Int64,
    "method": pl.Utf8,
    "score": pl.Float64,
    "evidence": pl.Utf8,
}
METHOD_LABELS = ["ngram", "exact_short", "digit_stripped", "minhash", "semantic"]
Log = Callable[[str], None]


def _noop(_: str) -> None:
    pass


# -- text keys ---------------------------------------------------------------------------
def strip_phrases(texts: pl.Series, phrases: list[str]) -> pl.Series:
    """Remove harness instructions (exact substrings) that are not part of the problem."""
    texts = texts.fill_null("")
    if phrases:
        texts = texts.str.replace_many(phrases, [""] * len(phrases))
    return texts


def matching_texts(texts: pl.Series, cfg: DecontaminationConfig) -> pl.Series:
    """What every method compares: harness phrases removed, then the canonical comparison form."""
    return comparison_texts(strip_phrases(texts, cfg.strip_phrases))


def word_lists(texts: pl.Series) -> pl.Series:
    """Open-R1's normalisation: lower-case, collapse whitespace, split into words."""
    lowered = texts.str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars()
    return lowered.str.split(" ").list.eval(pl.element().filter(pl.element() != ""))


def word_ngram_hashes(words: pl.Series, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(per-row word counts, per-row n-gram counts, flat n-gram hashes in row order)."""
    counts = words.list.len().fill_null(0).to_numpy().astype(np.int64)
    flat = words.explode(empty_as_null=False, keep_nulls=False)
    n_win, hashes = window_hashes(counts, token_hashes(flat), n, short=False)
    return counts, n_win, hashes


# A number as digits (with a decimal part): what digit_stripped masks and number_signatures reads.
_DIGITS = r"\d+(?:\.\d+)?"


def digit_stripped_keys(texts: pl.Series) -> pl.Series:
    """The number-changed key: every number masked as ``#``, whitespace and LaTeX braces removed,
    all else kept.

    Light-R1 kept letters only; keeping the math's symbols means a hit has the same structure
    (signs, operators, how many terms) with other numbers, as a number-changed copy does, and not
    merely the same instruction around another expression ("rotation ... applied to $-6-3i$" /
    "... to $7+2i$").
    """
    return texts.str.to_lowercase().str.replace_all(_DIGITS, "#").str.replace_all(r"[\s{}]+", "")


_NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
                 "sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety "
                 "hundred thousand million half third quarter").split()
_NUMBER = _DIGITS + r"|\b(?:" + "|".join(_NUMBER_WORDS) + r")\b"


def number_signatures(texts: pl.Series) -> pl.Series:
    """Which problem a row states, as far as the boilerplate count needs: the hash of the numbers
    in its comparison text, in order. Copies of one problem (a pool holding it twice, DAPO's
    reformatted copy with an appended instruction) carry the same numbers; the exercises of a
    template ("Convert the point $(0,3)$ ... to polar coordinates") carry others. Numbers count
    as digits or as English number words ("twelve more green marbles"); a row with neither is
    known by its whole text."""
    numbers = pl.col("t").str.extract_all(_NUMBER).list.join(",")
    return pl.DataFrame({"t": texts}).select(pl.when(numbers == "").then(pl.col("t")).otherwise(numbers).hash(seed=0))["t"]


_WORD_VALUES = {w: str(i) for i, w in enumerate(_NUMBER_WORDS[:20])} | {
    w: str(10 * i) for i, w in enumerate(_NUMBER_WORDS[20:28], start=2)} | {"hundred": "100", "thousand": "1000", "million": "1000000"}


def number_lists(texts: pl.Series) -> pl.Series:
    """The numbers of each comparison text in order, number words written as digits ("twelve"
    -> "12"), so the two public wordings of an AIME problem carry the same numbers."""
    found = texts.str.extract_all(_NUMBER)
    return found.list.eval(pl.element().replace(_WORD_VALUES))


def number_shares(pool_numbers: list[list[str]], bench_numbers: list[list[str]]) -> np.ndarray:
    """Per pair, the share of the benchmark row's numbers (counted with repeats) that the pool row
    holds; 1.0 when the benchmark row has none."""
    out = np.ones(len(pool_numbers), dtype=np.float64)
    for i, (p, b) in enumerate(zip(pool_numbers, bench_numbers)):
        if b:
            out[i] = sum((Counter(p) & Counter(b)).values()) / len(b)
    return out


# Longer math (an [asy] figure's coordinates inlined as math) is compared on its first characters:
# difflib is quadratic, and a changed structure shows early.
_MAX_SKELETON_CHARS = 2000


# A one-letter name in math ("$\\frac{k}{m}$" / "$\\frac{m}{n}$"); a LaTeX command stays as it is.
_MATH_NAME = re.compile(r"\\[a-z]+|[a-z]")


def _names_masked(skeleton: str) -> str:
    return _MATH_NAME.sub(lambda m: m.group(0) if len(m.group(0)) > 1 else "v", skeleton[:_MAX_SKELETON_CHARS])


def math_similarities(pool_skeletons: list[str], bench_skeletons: list[str]) -> np.ndarray:
    """Per pair, difflib's ratio of the two ``math_skeletons`` with one-letter names masked (a
    renamed variable is a reformatting), the better of the segments in order and sorted; NaN when
    either side has no math, which is no evidence either way (a paraphrase may write it in words)."""
    out = np.full(len(pool_skeletons), np.nan)
    for i, (p, b) in enumerate(zip(pool_skeletons, bench_skeletons)):
        if p and b:
            p, b = _names_masked(p), _names_masked(b)
            # in the order written, and with the segments sorted: a paraphrase may state the
            # same expressions in another order ("$a,b,c\\leq3^6$ ... $3^7$ divides $a^3+b^3+c^3$")
            in_order = difflib.SequenceMatcher(None, p, b, autojunk=False).ratio()
            p, b = " ".join(sorted(p.split(" "))), " ".join(sorted(b.split(" ")))
            out[i] = max(in_order, difflib.SequenceMatcher(None, p, b, autojunk=False).ratio())
    return out


def _letter_counts(keys: pl.Series) -> pl.Series:
    return keys.str.count_matches(r"[^\W\d_#]")


# -- the benchmark index -----------------------------------------------------------------
@dataclass
class BenchmarkIndex:
    """Everything the pool is matched against, built once from the benchmark rows."""

    rows: pl.DataFrame               # benchmark, benchmark_row, problem (position = bench index)
    ngram_hashes: np.ndarray         # sorted n-gram hashes
    ngram_rows: np.ndarray           # bench index of each hash (same order)
    ngram_text: list[str]            # the n-gram's words, same order (evidence)
    ngram_unique: np.ndarray         # sorted distinct hashes (fast membership)
    boilerplate: list[str]           # n-grams left out: in >= ngram_boilerplate_rows benchmark rows
    ngram_count: np.ndarray          # distinct n-grams per bench row that are evidence (boilerplate left out)
    whole: pl.DataFrame              # _text (normalised words joined), _bench, _short
    digit: pl.DataFrame              # _key, _bench
    setup: pl.DataFrame              # _setup, _words, _bench: rows with a worded setup and math (digit_stripped)
    band_hashes: np.ndarray          # sorted distinct LSH band keys
    band_frame: pl.DataFrame         # _band_key, _bench
    signatures: np.ndarray | None    # (B, num_perm) uint32
    # method semantic: the TF-IDF pass that picks the pairs worth embedding, and the benchmark
    # rows' embeddings, computed the first time a pool row pairs with them
    tfidf: TfidfIndex | None = None
    embeddings: np.ndarray | None = None  # (B, 384) float32, L2-normalised where embedded
    embedded: np.ndarray | None = None    # (B,) bool


def build_index(benchmarks: pl.DataFrame, cfg: DecontaminationConfig, dedupe_cfg: DedupeConfig) -> BenchmarkIndex:
    """Index ``benchmarks`` (benchmark, benchmark_row, problem) for every enabled method."""
    if "minhash" in cfg.methods and cfg.minhash_bands * cfg.minhash_rows > dedupe_cfg.num_perm:
        raise ConfigError(
            f"decontamination: minhash_bands*minhash_rows ({cfg.minhash_bands}*{cfg.minhash_rows})"
            f" exceeds dedupe.num_perm ({dedupe_cfg.num_perm})"
        )
    rows = benchmarks.select("benchmark", "benchmark_row", "problem")
    texts = matching_texts(rows["problem"], cfg)
    bench_idx = np.arange(rows.height, dtype=np.int64)

    words = word_lists(texts)
    n_words, n_win, hashes = word_ngram_hashes(words, cfg.ngram)
    win_rows = np.repeat(bench_idx, n_win)
    ngram_text: list[str] = []
    for w_list, k in zip(words.to_list(), n_win.tolist()):
        ngram_text.extend(" ".join(w_list[j:j + cfg.ngram]) for j in range(k))
    keep = np.ones(len(hashes), dtype=bool)
    boilerplate: list[str] = []
    if cfg.ngram_rule == "scaled" and cfg.ngram_boilerplate_rows:
        per_hash = pl.DataFrame({"h": pl.Series(hashes, dtype=pl.UInt64), "r": win_rows}).group_by("h").agg(
            pl.col("r").n_unique().alias("n")
        ).filter(pl.col("n") >= cfg.ngram_boilerplate_rows)
        keep = ~np.isin(hashes, per_hash["h"].to_numpy())
        boilerplate = sorted({ngram_text[i] for i in np.flatnonzero(~keep).tolist()})
    order = np.flatnonzero(keep)[np.argsort(hashes[keep], kind="stable")]
    ngram_text = [ngram_text[i] for i in order.tolist()]
    evidence_count = np.zeros(rows.height, dtype=np.int64)
    if len(order):
        distinct = pl.DataFrame({"h": pl.Series(hashes[order], dtype=pl.UInt64), "r": win_rows[order]}).unique()
        np.add.at(evidence_count, distinct["r"].to_numpy(), 1)
    whole = pl.DataFrame({
        "_text": words.list.join(" "),
        "_bench": bench_idx,
        "_short": n_words < cfg.ngram,
    })
    digit_keys = digit_stripped_keys(texts)
    digit = pl.DataFrame({"_key": digit_keys, "_bench": bench_idx}).filter(
        _letter_counts(digit_keys) >= cfg.digit_stripped_min_chars
    )
    raw = strip_phrases(rows["problem"], cfg.strip_phrases)
    setups = setup_keys(raw)
    setup = pl.DataFrame({"_setup": setups, "_words": setups.str.count_matches(r"[^\s#]+"), "_bench": bench_idx}).filter(
        (pl.col("_words") >= cfg.digit_stripped_min_words) & (math_skeletons(raw) != ""))

    signatures = None
    band_frame = pl.DataFrame(schema={"_band_key": pl.UInt64, "_bench": pl.Int64})
    if "minhash" in cfg.methods:
        signatures = MinHasher.from_config(dedupe_cfg).signatures(texts)
        keys = band_keys(signatures, cfg.minhash_bands, cfg.minhash_rows)
        band_frame = pl.DataFrame({
            "_band_key": pl.Series(keys.reshape(-1), dtype=pl.UInt64),
            "_bench": np.repeat(bench_idx, keys.shape[1]),
        }).unique()
    semantic = "semantic" in cfg.methods
    return BenchmarkIndex(
        tfidf=TfidfIndex.fit(texts) if semantic else None,
        embeddings=np.zeros((rows.height, 384), dtype=np.float32) if semantic else None,
        embedded=np.zeros(rows.height, dtype=bool) if semantic else None,
        rows=rows,
        ngram_hashes=hashes[order],
        ngram_rows=win_rows[order],
        ngram_text=ngram_text,
        ngram_unique=np.unique(hashes[order]),
        boilerplate=boilerplate,
        ngram_count=evidence_count,
        whole=whole,
        digit=digit,
        setup=setup,
        band_hashes=np.unique(band_frame["_band_key"].to_numpy()) if band_frame.height else np.zeros(0, np.uint64),
        band_frame=band_frame,
        signatures=signatures,
    )


def _member(sorted_unique: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Boolean mask of ``values`` found in ``sorted_unique`` (binary search, no sort of values)."""
    if len(sorted_unique) == 0 or len(values) == 0:
        return np.zeros(len(values), dtype=bool)
    pos = np.searchsorted(sorted_unique, values)
    pos[pos == len(sorted_unique)] = 0
    return sorted_unique[pos] == values


# -- matching one chunk ------------------------------------------------------------------
def _ngram_pairs(index: BenchmarkIndex, words: pl.Series, variants: np.ndarray, n: int,
                 row_offset: int) -> tuple[pl.DataFrame, np.ndarray]:
    """(every shared n-gram occurrence: _row, _bench, _hash, _pos, and _variant, the pool row's
    ``number_signatures`` value, by which the pool boilerplate is counted; per-row word counts)."""
    n_words, n_win, hashes = word_ngram_hashes(words, n)
    hit = _member(index.ngram_unique, hashes)
    if not hit.any():
        return pl.DataFrame(schema=_NGRAM_PAIR_SCHEMA), n_words
    local = np.repeat(np.arange(len(n_win), dtype=np.int64), n_win)[hit]
    rows = local + row_offset
    hashes = hashes[hit]
    # Every benchmark row holding each shared n-gram: the range of equal hashes in the index.
    lo = np.searchsorted(index.ngram_hashes, hashes, side="left")
    hi = np.searchsorted(index.ngram_hashes, hashes, side="right")
    reps = hi - lo
    pos = np.repeat(lo - np.cumsum(reps) + reps, reps) + np.arange(int(reps.sum()))
    return pl.DataFrame({
        "_row": np.repeat(rows, reps),
        "_bench": index.ngram_rows[pos],
        "_hash": pl.Series(np.repeat(hashes, reps), dtype=pl.UInt64),
        "_pos": pos,
        "_variant": np.repeat(variants[local], reps),
    }, schema=_NGRAM_PAIR_SCHEMA), n_words


_NGRAM_PAIR_SCHEMA = {"_row": pl.Int64, "_bench": pl.Int64, "_hash": pl.UInt64, "_pos": pl.Int64, "_variant": pl.UInt64}


def _ngram_hits(index: BenchmarkIndex, pairs: pl.DataFrame, cfg: DecontaminationConfig) -> tuple[pl.DataFrame, list[str]]:
    """Aggregate shared n-gram occurrences into (_row, _bench, score, evidence) hits.

    ``score`` is the share of the benchmark row's evidence n-grams (its distinct n-grams less the
    boilerplate) that the pool row holds: 1.0 for a copy whatever its length.
    - ``ngram_rule: scaled`` (default): n-grams shared by ``ngram_boilerplate_pool_rows`` or more
      distinct pool problems (rows with other numbers: ``number_signatures``) are phrasing, not
      copies, and are left out first (returned for the
      report, and taken out of the benchmark row's count too); a pair is a hit when its score
      reaches ``ngram_min_share`` or it shares at least ``ngram_min_shared`` evidence n-grams;
    - ``ngram_rule: any`` (Open-R1): one shared n-gram is a hit, every n-gram counts.
    """
    empty = pl.DataFrame(schema={"_row": pl.Int64, "_bench": pl.Int64, "score": pl.Float64, "shared": pl.UInt32, "evidence": pl.Utf8})
    frequent: list[str] = []
    bench_count = index.ngram_count
    scaled = cfg.ngram_rule == "scaled"
    if scaled and cfg.ngram_boilerplate_pool_rows and pairs.height:
        per_hash = pairs.group_by("_hash").agg(n=pl.col("_variant").n_unique(), _pos=pl.col("_pos").first())
        common = per_hash.filter(pl.col("n") >= cfg.ngram_boilerplate_pool_rows)
        if common.height:
            frequent = sorted({index.ngram_text[p] for p in common["_pos"].to_list()})
            pairs = pairs.join(common.select("_hash"), on="_hash", how="anti")
            # The benchmark rows holding them have that many fewer evidence n-grams.
            lo = np.searchsorted(index.ngram_hashes, common["_hash"].to_numpy(), side="left")
            hi = np.searchsorted(index.ngram_hashes, common["_hash"].to_numpy(), side="right")
            held = np.concatenate([index.ngram_rows[a:b] for a, b in zip(lo.tolist(), hi.tolist())])
            drop = pl.DataFrame({"h": np.repeat(common["_hash"].to_numpy(), hi - lo), "r": held}).unique()["r"].to_numpy()
            bench_count = bench_count.copy()
            np.subtract.at(bench_count, drop, 1)
    if pairs.height == 0:
        return empty, frequent
    per_pair = pairs.group_by("_row", "_bench").agg(shared=pl.col("_hash").n_unique(), _pos=pl.col("_pos").min())
    score = per_pair["shared"].to_numpy() / np.maximum(bench_count[per_pair["_bench"].to_numpy()], 1)
    per_pair = per_pair.with_columns(score=pl.Series(np.minimum(score, 1.0)))
    if scaled:
        per_pair = per_pair.filter(
            ((pl.col("score") >= cfg.ngram_min_share) & (pl.col("shared") >= cfg.ngram_min_evidence))
            | (pl.col("score") >= 1.0) | (pl.col("shared") >= cfg.ngram_min_shared)
        )
    per_pair = (
        # Strongest matches first: a pool problem near many benchmark rows keeps the best few.
        per_pair.sort(["_row", "score", "shared", "_bench"], descending=[False, True, True, False])
        .group_by("_row", maintain_order=True)
        .head(cfg.max_matches_per_problem)
    )
    if per_pair.height == 0:
        return empty, frequent
    evidence = [index.ngram_text[p] for p in per_pair["_pos"].to_list()]
    return per_pair.select(
        "_row", "_bench", "score", "shared",
        evidence=pl.Series(
            [f"{s} shared {cfg.ngram}-grams, e.g. '{e}'" for s, e in zip(per_pair["shared"].to_list(), evidence)],
            dtype=pl.Utf8,
        ),
    ), frequent


def _short_hits(index: BenchmarkIndex, words: pl.Series, n_words: np.ndarray, n: int) -> pl.DataFrame:
    """Whole-text matches where the pool or the benchmark text has fewer than ``n`` words."""
    pool = pl.DataFrame({"_text": words.list.join(" "), "_row": np.arange(len(n_words)), "_pool_short": n_words < n})
    return (
        pool.join(index.whole, on="_text", how="inner")
        .filter(pl.col("_pool_short") | pl.col("_short"))
        .select(
            "_row", "_bench", score=pl.lit(1.0),
            evidence=pl.lit("whole text equal (fewer than ") + pl.lit(str(n)) + pl.lit(" words): '")
            + pl.col("_text").str.slice(0, 200) + pl.lit("'"),
        )
    )


def _digit_hits(index: BenchmarkIndex, texts: pl.Series, min_chars: int) -> pl.DataFrame:
    """Pool rows whose number-masked key holds a benchmark row's key (equal, or with text added
    around it: an appended answer-format instruction, a harness prefix)."""
    keys = digit_stripped_keys(texts)
    pool = pl.DataFrame({"_key": keys, "_row": np.arange(texts.len())}).filter(_letter_counts(keys) >= min_chars)
    empty = pl.DataFrame(schema={"_row": pl.Int64, "_bench": pl.Int64, "score": pl.Float64, "evidence": pl.Utf8})
    if pool.height == 0 or index.digit.height == 0:
        return empty
    # Aho-Corasick over all benchmark keys at once; overlapping so a key inside another is found too.
    found = pool.with_columns(_key_bench=pl.col("_key").str.extract_many(pl.lit(index.digit["_key"].unique().implode()), overlapping=True))
    found = found.explode("_key_bench").drop_nulls("_key_bench")
    if found.height == 0:
        return empty
    return found.join(index.digit, left_on="_key_bench", right_on="_key", how="inner").select(
        "_row", "_bench", score=pl.lit(1.0),
        evidence=pl.when(pl.col("_key") == pl.col("_key_bench")).then(pl.lit("number-masked text equal: '"))
        .otherwise(pl.lit("number-masked text contains the benchmark's: '"))
        + pl.col("_key_bench").str.slice(0, 120) + pl.lit("'"),
    ).unique(["_row", "_bench"])


def _setup_pairs(index: BenchmarkIndex, raw: pl.DataFrame, variants: np.ndarray, row_offset: int) -> pl.DataFrame:
    """(_row, _bench, _variant) of the pool rows whose ``setup_keys`` equals a benchmark row's
    (``raw``: the harness-stripped pool texts; ``variants``: their ``number_signatures``)."""
    return pl.DataFrame({"_setup": setup_keys(raw), "_variant": pl.Series(variants, dtype=pl.UInt64)}).with_row_index(
        "_row").join(index.setup.select("_setup", "_bench"), on="_setup", how="inner").select(
        pl.col("_row").cast(pl.Int64) + row_offset, "_bench", "_setup", "_variant")


def _setup_hits(index: BenchmarkIndex, pairs: pl.DataFrame, pool: pl.DataFrame, cfg: DecontaminationConfig) -> pl.DataFrame:
    """Number-changed copies whose math was edited too (a sign, a term): the benchmark row's
    worded setup (``setup_keys``, ``digit_stripped_min_words`` words or more) word for word,
    around math at least ``digit_stripped_min_math_similarity`` alike (``math_similarities``;
    both sides must have math), unless ``digit_stripped_template_pool_rows`` distinct pool
    problems (other numbers: ``number_signatures``) share that setup, which makes it a template
    ("Convert the point $(0,3)$ in rectangular coordinates to polar coordinates. Enter your
    answer ...": 4 in MATH train). Runs on the whole pool's pairs, as the template count needs."""
    empty = pl.DataFrame(schema={"_row": pl.Int64, "_bench": pl.Int64, "score": pl.Float64, "evidence": pl.Utf8})
    if pairs.height == 0:
        return empty
    templates = pairs.group_by("_setup").agg(n=pl.col("_variant").n_unique()).filter(
        pl.col("n") >= cfg.digit_stripped_template_pool_rows)
    pairs = pairs.join(templates, on="_setup", how="anti").select("_row", "_bench").unique(maintain_order=True).join(
        index.setup.select("_bench", "_words"), on="_bench", how="left", maintain_order="left")
    if pairs.height == 0:
        return empty
    pool_raw = strip_phrases(pool["problem"].gather(pairs["_row"]), cfg.strip_phrases)
    bench_raw = strip_phrases(index.rows["problem"].gather(pairs["_bench"]), cfg.strip_phrases)
    math = math_similarities(math_skeletons(pool_raw).to_list(), math_skeletons(bench_raw).to_list())
    return pairs.with_columns(score=pl.Series(math)).filter(
        pl.col("score") >= cfg.digit_stripped_min_math_similarity).select(
        "_row", "_bench", "score",
        evidence=pl.format("the benchmark's {}-word setup word for word, math {} alike with numbers masked",
                           pl.col("_words"), pl.col("score").round(2)))


def _minhash_hits(
    index: BenchmarkIndex, texts: pl.Series, cfg: DecontaminationConfig, dedupe_cfg: DedupeConfig
) -> pl.DataFrame:
    sig = MinHasher.from_config(dedupe_cfg).signatures(texts)
    keys = band_keys(sig, cfg.minhash_bands, cfg.minhash_rows)
    flat = keys.reshape(-1)
    hit = _member(index.band_hashes, flat)
    empty = pl.DataFrame(schema={"_row": pl.Int64, "_bench": pl.Int64, "score": pl.Float64, "evidence": pl.Utf8})
    if not hit.any():
        return empty
    cand = (
        pl.DataFrame({
            "_band_key": pl.Series(flat[hit], dtype=pl.UInt64),
            "_row": np.repeat(np.arange(texts.len(), dtype=np.int64), keys.shape[1])[hit],
        })
        .join(index.band_frame, on="_band_key", how="inner")
        .select("_row", "_bench")
        .unique()
    )
    r, b = cand["_row"].to_numpy(), cand["_bench"].to_numpy()
    sim = estimated_jaccard(sig[r], index.signatures[b])
    keep = sim >= cfg.minhash_threshold
    if not keep.any():
        return empty
    return pl.DataFrame({
        "_row": r[keep], "_bench": b[keep], "score": sim[keep],
        "evidence": [
            f"estimated Jaccard {s:.2f} of {dedupe_cfg.shingle_size}-token shingles ({dedupe_cfg.num_perm} perm)"
            for s in sim[keep].tolist()
        ],
    })


def _semantic_hits(index: BenchmarkIndex, texts: pl.Series, raw: pl.Series, cfg: DecontaminationConfig) -> tuple[pl.DataFrame, int]:
    """Pool rows whose embedding is within ``semantic_threshold`` cosine of a benchmark row
    (at most ``semantic_top_k`` per row, best first), and how many pool rows were embedded.

    Only the (pool, benchmark) pairs at TF-IDF cosine >= ``semantic_min_tfidf`` (of the
    comparison texts ``texts``) are compared, so only their two sides are embedded (of the
    harness-stripped texts ``raw``): r1_assets/tfidf.py says why no hit is lost.
    """
    empty = pl.DataFrame(schema={"_row": pl.Int64, "_bench": pl.Int64, "score": pl.Float64, "evidence": pl.Utf8})
    rows, benches, lexical = index.tfidf.pairs(texts, cfg.semantic_min_tfidf)
    if not len(rows):
        return empty, 0
    pool_rows = np.unique(rows)
    pool_emb = embed_texts(raw.gather(pool_rows).to_list(), device=cfg.semantic_device)
    missing = np.setdiff1d(np.unique(benches), np.flatnonzero(index.embedded))
    if len(missing):
        bench_texts = strip_phrases(index.rows["problem"].gather(missing), cfg.strip_phrases)
        index.embeddings[missing] = embed_texts(bench_texts.to_list(), device=cfg.semantic_device)
        index.embedded[missing] = True
    cosine = np.einsum("ij,ij->i", pool_emb[np.searchsorted(pool_rows, rows)], index.embeddings[benches])
    hits = (
        pl.DataFrame({"_row": rows, "_bench": benches, "score": cosine.astype(np.float64), "_lexical": lexical})
        .filter(pl.col("score") >= cfg.semantic_threshold)
        .sort(["_row", "score"], descending=[False, True])
        .group_by("_row", maintain_order=True).head(cfg.semantic_top_k)
    )
    if not hits.height:
        return empty, len(pool_rows)
    return hits.select("_row", "_bench", "score", evidence=pl.format(
        f"cosine {{}} of {MODEL_NAME} embeddings (TF-IDF {{}})", pl.col("score").round(3), pl.col("_lexical").round(2))
    ), len(pool_rows)


def _confirm_hits(hits: pl.DataFrame, pool: pl.DataFrame, index: BenchmarkIndex,
                  cfg: DecontaminationConfig) -> tuple[pl.DataFrame, dict[str, int]]:
    """Keep the hits that state the benchmark's problem, not another exercise of its template.

    A checked hit (``_check``) stands when the pool row keeps the benchmark row's numbers
    (``same_numbers_share`` of them) or, where it has a ``_math_floor``, when their
    ``math_skeletons`` are at least that alike (or either has no math):
    - semantic hits have no floor: a paraphrase rewords a problem and keeps its numbers, while a
      look-alike exercise ("Compute $\\arcsin(-\\frac{\\sqrt{3}}{2})$" / "...$(-\\frac{1}{2})$", cosine
      0.91) changes them. Its math is no test: a paraphrase moves math into words and reorders it;
    - ngram hits on part of the benchmark row (score < 1) need ``ngram_min_math_similarity``
      (``ngram_long_run_min_math_similarity`` with ``ngram_min_shared`` evidence n-grams or
      more): a number-changed copy keeps the expression's shape ("$|x-7|-3=-2$" /
      "$|x-4|-10=2$"), a template's instruction around another expression does not ("Let
      $x^{12}-1 = p_1(x) \\dotsm p_k(x)$, where each non-constant polynomial ...").

    Returns the hits kept, the checked ones with their numbers and math in the evidence, and how
    many hits of each method were dropped.
    """
    todo = hits.filter("_check")
    if todo.height == 0:
        return hits.drop("_check", "_math_floor"), {}
    pairs = todo.select("_row", "_bench").unique(maintain_order=True)
    pool_raw = strip_phrases(pool["problem"].gather(pairs["_row"]), cfg.strip_phrases)
    bench_raw = strip_phrases(index.rows["problem"].gather(pairs["_bench"]), cfg.strip_phrases)
    pool_numbers = number_lists(comparison_texts(pool_raw)).to_list()
    bench_numbers = number_lists(comparison_texts(bench_raw)).to_list()
    pairs = pairs.with_columns(
        _numbers=pl.Series(number_shares(pool_numbers, bench_numbers)),
        _math=pl.Series(math_similarities(math_skeletons(pool_raw).to_list(), math_skeletons(bench_raw).to_list())),
    )
    same_numbers = pl.col("_numbers") >= cfg.same_numbers_share
    same_math = pl.col("_math_floor").is_not_null() & (pl.col("_math").is_nan() | (pl.col("_math") >= pl.col("_math_floor")))
    judged = todo.join(pairs, on=["_row", "_bench"], how="left").with_columns(
        _keep=same_numbers | same_math,
        evidence=pl.col("evidence") + pl.format("; numbers kept {}, math {}", pl.col("_numbers").round(2),
                                                pl.when(pl.col("_math").is_nan()).then(pl.lit("n/a"))
                                                .otherwise(pl.col("_math").round(2).cast(pl.Utf8))),
    )
    dropped = dict(judged.filter(~pl.col("_keep")).group_by("method").len().iter_rows())
    kept = judged.filter("_keep").select(hits.columns)
    return pl.concat([hits.filter(~pl.col("_check")), kept]).drop("_check", "_math_floor"), dropped


# -- the stage ---------------------------------------------------------------------------
@dataclass
class DecontaminationResult:
    hits: pl.DataFrame                   # CONTAMINATION_COLUMNS, one row per (problem, benchmark row, method)
    stats: dict = field(default_factory=dict)

    def per_benchmark(self, benchmarks: pl.DataFrame) -> pl.DataFrame:
        """benchmark | benchmark rows | hits per method | distinct pool problems flagged."""
        loaded = benchmarks.group_by("benchmark").agg(benchmark_rows=pl.len())
        by_method = (
            self.hits.group_by("benchmark", "method").agg(n=pl.col("problem_id").n_unique())
            .pivot(on="method", index="benchmark", values="n")
            if self.hits.height else pl.DataFrame(schema={"benchmark": pl.Utf8})
        )
        for m in METHOD_LABELS:
            if m not in by_method.columns:
                by_method = by_method.with_columns(pl.lit(0, dtype=pl.UInt32).alias(m))
        flagged = self.hits.group_by("benchmark").agg(problems_flagged=pl.col("problem_id").n_unique())
        return (
            loaded.join(by_method, on="benchmark", how="left").join(flagged, on="benchmark", how="left")
            .select("benchmark", "benchmark_rows", *METHOD_LABELS, "problems_flagged")
            .fill_null(0).sort("benchmark")
        )


def decontaminate(
    pool: pl.DataFrame,
    benchmarks: pl.DataFrame,
    cfg: DecontaminationConfig,
    dedupe_cfg: DedupeConfig,
    log: Log = _noop,
) -> DecontaminationResult:
    """Match ``pool`` (problem_id, problem) against ``benchmarks`` (benchmark, benchmark_row, problem).

    Returns every hit of every enabled method. Pool rows are processed ``cfg.batch_rows`` at a time.
    """
    t0 = time.perf_counter()
    empty = pl.DataFrame(schema=CONTAMINATION_COLUMNS)
    if benchmarks.height == 0 or pool.height == 0:
        return DecontaminationResult(hits=empty, stats={"pool_rows": pool.height, "benchmark_rows": benchmarks.height})
    index = build_index(benchmarks, cfg, dedupe_cfg)
    log(f"decontamination: indexed {benchmarks.height:,} benchmark rows ({len(index.ngram_unique):,} {cfg.ngram}-grams,"
        f" {len(index.boilerplate)} boilerplate left out) in {time.perf_counter() - t0:.1f}s; methods {cfg.methods}")
    bench_keys = index.rows.select("benchmark", "benchmark_row").with_row_index("_bench").with_columns(
        pl.col("_bench").cast(pl.Int64)
    )
    ids_all = pool["problem_id"].to_numpy()
    found: list[pl.DataFrame] = []       # per chunk: _row (global), _bench, method, score, evidence
    # aggregated after the pass, as their template counts are pool-wide
    ngram_pairs: list[pl.DataFrame] = []
    setup_pairs: list[pl.DataFrame] = []
    semantic_rows_embedded = 0
    for lo in range(0, pool.height, cfg.batch_rows):
        chunk = pool.slice(lo, cfg.batch_rows)
        raw = strip_phrases(chunk["problem"], cfg.strip_phrases)
        texts = comparison_texts(raw)
        variants = number_signatures(texts).to_numpy() if {"ngram", "digit_stripped"} & set(cfg.methods) else None
        parts: list[pl.DataFrame] = []
        if "ngram" in cfg.methods:
            words = word_lists(texts)
            pairs, n_words = _ngram_pairs(index, words, variants, cfg.ngram, lo)
            ngram_pairs.append(pairs)
            parts.append(_short_hits(index, words, n_words, cfg.ngram).with_columns(method=pl.lit("exact_short")))
        if "digit_stripped" in cfg.methods:
            parts.append(_digit_hits(index, texts, cfg.digit_stripped_min_chars).with_columns(method=pl.lit("digit_stripped")))
            setup_pairs.append(_setup_pairs(index, raw, variants, lo))
        if "minhash" in cfg.methods:
            parts.append(_minhash_hits(index, texts, cfg, dedupe_cfg).with_columns(method=pl.lit("minhash")))
        if "semantic" in cfg.methods:
            semantic, embedded = _semantic_hits(index, texts, raw, cfg)
            parts.append(semantic.with_columns(method=pl.lit("semantic")))
            semantic_rows_embedded += embedded
        found.extend(
            p.select(pl.col("_row").cast(pl.Int64) + lo, "_bench", "method", pl.col("score").cast(pl.Float64), "evidence",
                     _check=pl.col("method") == "semantic", _math_floor=pl.lit(None, dtype=pl.Float64))
            for p in parts if p.height
        )
        done = min(lo + cfg.batch_rows, pool.height)
        log(f"decontamination: {done:,}/{pool.height:,} pool rows"
            f" ({done / max(time.perf_counter() - t0, 1e-9):,.0f} rows/s)")
    if setup_pairs:
        setup = _setup_hits(index, pl.concat(setup_pairs), pool, cfg)
        found.append(setup.select("_row", "_bench", method=pl.lit("digit_stripped"), score="score", evidence="evidence",
                                  _check=pl.lit(False), _math_floor=pl.lit(None, dtype=pl.Float64)))
    frequent: list[str] = []
    if "ngram" in cfg.methods:
        ngram, frequent = _ngram_hits(index, pl.concat(ngram_pairs), cfg)
        if ngram.height:
            # a long run (ngram_min_shared evidence n-grams, 19 words) needs less of the math: a
            # DAPO copy's rewritten answer format ("in the form \\(\\frac{k}{m}\\) ... \\(k+m\\)")
            # (Open-R1's rule is reproduced as it is: no check)
            found.append(ngram.select(
                "_row", "_bench", method=pl.lit("ngram"), score="score", evidence="evidence",
                _check=(pl.col("score") < 1.0) & (cfg.ngram_rule == "scaled"),
                _math_floor=pl.when(pl.col("shared") >= cfg.ngram_min_shared).then(cfg.ngram_long_run_min_math_similarity)
                .otherwise(cfg.ngram_min_math_similarity).cast(pl.Float64)))
    dropped: dict[str, int] = {}
    if found:
        all_hits, dropped = _confirm_hits(pl.concat(found), pool, index, cfg)
    if found and all_hits.height:
        hits = (
            all_hits.with_columns(problem_id=pl.Series(ids_all[all_hits["_row"].to_numpy()], dtype=pl.Utf8))
            .join(bench_keys, on="_bench", how="left")
            .select(list(CONTAMINATION_COLUMNS)).cast(CONTAMINATION_COLUMNS)
            .unique(["problem_id", "benchmark", "benchmark_row", "method"], keep="first", maintain_order=True)
            .sort(["benchmark", "benchmark_row", "problem_id", "method"])
        )
    else:
        hits = empty
    seconds = time.perf_counter() - t0
    stats = {
        "pool_rows": pool.height,
        "benchmark_rows": benchmarks.height,
        "hits": hits.height,
        "problems_flagged": hits["problem_id"].n_unique() if hits.height else 0,
        "boilerplate_ngrams": index.boilerplate,
        "frequent_pool_ngrams": frequent,
        "hits_dropped_as_other_exercises": dropped,
        **({"semantic_rows_embedded": semantic_rows_embedded,
            "semantic_benchmark_rows_embedded": int(index.embedded.sum())} if "semantic" in cfg.methods else {}),
        "seconds": round(seconds, 2),
        "rows_per_s": round(pool.height / max(seconds, 1e-9)),
    }
    if dropped:
        log(f"decontamination: hits dropped as another exercise of the benchmark row's template"
            f" (other numbers or other math): {dropped}")
    log(f"decontamination: {stats['problems_flagged']:,} of {pool.height:,} problems match a benchmark"
        f" ({hits.height:,} hits, {stats['seconds']}s)")
    return DecontaminationResult(hits=hits, stats=stats)


# -- clusters ----------------------------------------------------------------------------
CLUSTER_CONTAMINATION_COLUMNS = {
    "problem_id": pl.Utf8,           # the kept representative (unique_problems row) removed
    "matched_problem_id": pl.Utf8,   # the member whose text matched
    "benchmark": pl.Utf8,
    "benchmark_row": pl.Int64,
    "method": pl.Utf8,
    "score": pl.Float64,
    "evidence": pl.Utf8,
    "judge_verdict": pl.Utf8,        # EQUIVALENT | DIFFERENT | AMBIGUOUS; NULL = not judged
    "judge_model": pl.Utf8,
}
# The one verdict that lifts a hit: AMBIGUOUS, EQUIVALENT and not judged all keep it.
REJECTED = "DIFFERENT"
# The judge: pairs (matched_problem_id, benchmark, benchmark_row, pool_problem, benchmark_problem)
# in, the verdicts of those it answered out (contamination_judge.VERDICT_COLUMNS). The asset
# binds contamination_judge.judge_pairs to the store and engine, so this module needs neither.
Review = Callable[[pl.DataFrame], pl.DataFrame]
# Every member hit the judge answered.
JUDGED_COLUMNS = {"matched_problem_id": pl.Utf8, "benchmark": pl.Utf8, "benchmark_row": pl.Int64, "method": pl.Utf8,
                  "judge_verdict": pl.Utf8, "judge_model": pl.Utf8}


def removes_problem() -> pl.Expr:
    """A contamination row that keeps its problem out of clean_problems: one the judge did not reject."""
    return pl.col("judge_verdict").is_null() | (pl.col("judge_verdict") != REJECTED)


@dataclass
class CleanResult:
    clean: pl.DataFrame            # unique rows whose cluster matched no benchmark
    contamination: pl.DataFrame    # CLUSTER_CONTAMINATION_COLUMNS
    members_checked: int
    result: DecontaminationResult
    judged: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=JUDGED_COLUMNS))  # empty without a judge
    reviewed: int = 0              # (member, benchmark row) pairs sent to the judge

    def judge_counts(self) -> dict[str, int]:
        """Judged pairs per verdict."""
        pairs = self.judged.unique(["matched_problem_id", "benchmark", "benchmark_row"])
        return dict(pairs.group_by("judge_verdict").len().iter_rows()) if pairs.height else {}


def decontaminate_clusters(
    unique: pl.DataFrame,
    members: pl.DataFrame,
    benchmarks: pl.DataFrame,
    cfg: DecontaminationConfig,
    dedupe_cfg: DedupeConfig,
    log: Log = _noop,
    review: Review | None = None,
) -> CleanResult:
    """Remove every cluster of ``unique`` with a member that matches a benchmark.

    ``unique`` holds the kept rows (problem_id, cluster_id, ...); ``members`` (problem_id,
    cluster_id, problem) the other cluster members to check as well (ignored for scope=kept).
    A hit on any member is recorded against the kept row, with the member in ``matched_problem_id``;
    per (kept row, benchmark row, method) the strongest hit is kept.

    ``review`` (the LLM judge, ``contamination_judge.judge_pairs``) is given every member hit of
    ``cfg.judge_methods`` as a (member, benchmark row) pair with both texts; a hit it answers
    DIFFERENT is kept in ``contamination`` with its verdict but removes nothing.
    """
    pool = unique.select("problem_id", "cluster_id", "problem")
    if cfg.scope == "clusters" and members.height:
        pool = pl.concat([pool, members.select("problem_id", "cluster_id", "problem")]).unique("problem_id", keep="first", maintain_order=True)
    result = decontaminate(pool.select("problem_id", "problem"), benchmarks, cfg, dedupe_cfg, log)
    owner = pool.select(matched_problem_id="problem_id", kept_id="cluster_id")
    rep = unique.select(kept_id="cluster_id", rep_id="problem_id")
    hits = result.hits.rename({"problem_id": "matched_problem_id"})
    judged, reviewed = _review_hits(hits, pool, benchmarks, cfg, review, log)
    contamination = (
        hits.join(judged, on=["matched_problem_id", "benchmark", "benchmark_row", "method"], how="left")
        .join(owner, on="matched_problem_id", how="left")
        .join(rep, on="kept_id", how="left")
        .with_columns(problem_id=pl.col("rep_id"))
        # a hit the judge did not reject first, then the representative's own match, then the strongest
        .with_columns(_lifted=~removes_problem(), _own=pl.col("matched_problem_id") != pl.col("problem_id"))
        .sort(["problem_id", "benchmark", "benchmark_row", "method", "_lifted", "_own", "score"],
              descending=[False, False, False, False, False, False, True])
        .unique(["problem_id", "benchmark", "benchmark_row", "method"], keep="first", maintain_order=True)
        .select(list(CLUSTER_CONTAMINATION_COLUMNS))
        .cast(CLUSTER_CONTAMINATION_COLUMNS)
    )
    clean = unique.join(contamination.filter(removes_problem()).select("problem_id").unique(), on="problem_id", how="anti")
    log(f"clean: {unique.height:,} unique problems ({pool.height:,} cluster members checked) ->"
        f" {clean.height:,} clean; {unique.height - clean.height:,} removed")
    return CleanResult(clean=clean, contamination=contamination, members_checked=pool.height, result=result,
                       judged=judged, reviewed=reviewed)


def _review_hits(hits: pl.DataFrame, pool: pl.DataFrame, benchmarks: pl.DataFrame, cfg: DecontaminationConfig,
                 review: Review | None, log: Log) -> tuple[pl.DataFrame, int]:
    """(the judge's verdict per member hit of cfg.judge_methods, pairs sent) for ``review``."""
    empty = pl.DataFrame(schema=JUDGED_COLUMNS)
    to_review = hits.filter(pl.col("method").is_in(cfg.judge_methods)) if review is not None else hits.clear()
    pairs = to_review.select("matched_problem_id", "benchmark", "benchmark_row").unique(maintain_order=True)
    if pairs.is_empty():
        return empty, 0
    pairs = (
        pairs.join(pool.select(matched_problem_id="problem_id", pool_problem="problem"), on="matched_problem_id")
        .join(benchmarks.select("benchmark", "benchmark_row", benchmark_problem="problem"), on=["benchmark", "benchmark_row"])
    )
    log(f"decontamination: LLM judge on {pairs.height:,} pairs found by {cfg.judge_methods}")
    verdicts = review(pairs)
    judged = to_review.select("matched_problem_id", "benchmark", "benchmark_row", "method").join(
        verdicts.select("matched_problem_id", "benchmark", "benchmark_row", "judge_verdict", "judge_model"),
        on=["matched_problem_id", "benchmark", "benchmark_row"], how="inner",
    ).cast(JUDGED_COLUMNS)
    counts = dict(verdicts.group_by("judge_verdict").len().iter_rows()) if verdicts.height else {}
    log(f"decontamination: judge verdicts {counts} ({pairs.height - verdicts.height} pairs unanswered, their hits stand)")
    return judged, pairs.height


# -- measurement against a labelled set ---------------------------------------------------
CONTAMINATED = "contaminated"


def load_labels(path: str) -> pl.DataFrame:
    """A labelled set (JSONL: pool_problem, benchmark_problem, label, category, ...) keyed by text ids."""
    try:
        labels = pl.read_ndjson(path)
    except Exception as err:  # polars raises several types for a missing or broken file
        raise ConfigError(f"decontamination: key 'labelled_set': cannot read {path}: {err}") from None
    missing = {"pool_problem", "benchmark_problem", "label", "category"} - set(labels.columns)
    if missing:
        raise ConfigError(f"decontamination: key 'labelled_set': {path} lacks fields {sorted(missing)}")
    return labels.with_columns(
        _pool_key=pl.col("pool_problem").map_elements(lambda t: problem_id(normalize_text(t)), return_dtype=pl.Utf8),
        _bench_key=pl.col("benchmark_problem").map_elements(lambda t: problem_id(normalize_text(t)), return_dtype=pl.Utf8),
    )


def labels_in_run(labels: pl.DataFrame, pool: pl.DataFrame, benchmarks: pl.DataFrame) -> pl.DataFrame:
    """The labelled pairs whose pool text is in ``pool`` and benchmark text in ``benchmarks``."""
    def keys(frame: pl.DataFrame, name: str) -> pl.DataFrame:
        return frame.select(pl.col("problem").map_elements(problem_id, return_dtype=pl.Utf8).alias(name)).unique()
    return labels.join(keys(pool, "_pool_key"), on="_pool_key", how="semi").join(keys(benchmarks, "_bench_key"), on="_bench_key", how="semi")


def label_scores(labels: pl.DataFrame, flagged: pl.DataFrame) -> dict:
    """Precision, recall per category, of ``flagged`` pairs (_pool_key, _bench_key) on ``labels``.

    Pass ``labels_in_run(...)`` to count only the pairs whose two texts were in the run. A pair
    is predicted contaminated when some hit links its pool text to its benchmark text.
    """
    seen = labels.join(flagged.unique().with_columns(_hit=pl.lit(True)), on=["_pool_key", "_bench_key"], how="left").with_columns(
        pl.col("_hit").fill_null(False), _pos=pl.col("label") == CONTAMINATED)
    tp = seen.filter(pl.col("_hit") & pl.col("_pos")).height
    fp = seen.filter(pl.col("_hit") & ~pl.col("_pos")).height
    positives = seen.filter(pl.col("_pos")).height
    per_category = {
        r["category"]: {"pairs": r["n"], "flagged": r["hit"], "recall" if r["pos"] else "false_positive_rate": round(r["hit"] / r["n"], 3)}
        for r in seen.group_by("category").agg(n=pl.len(), hit=pl.col("_hit").sum(), pos=pl.col("_pos").first()).sort("category").iter_rows(named=True)
    }
    return {
        "pairs": seen.height, "contaminated": positives, "flagged": tp + fp,
        "precision": round(tp / (tp + fp), 3) if tp + fp else 1.0,
        "recall": round(tp / positives, 3) if positives else 1.0,
        "per_category": per_category,
    }


def hit_pairs(hits: pl.DataFrame, pool: pl.DataFrame, benchmarks: pl.DataFrame, method: str | None = None) -> pl.DataFrame:
    """(_pool_key, _bench_key) text ids of ``hits`` (problem_id, benchmark, benchmark_row, method)."""
    if method is not None:
        hits = hits.filter(pl.col("method") == method)
    pool_keys = pool.select("problem_id", _pool_key=pl.col("problem").map_elements(lambda t: problem_id(t), return_dtype=pl.Utf8))
    bench_keys = benchmarks.select("benchmark", "benchmark_row",
                                   _bench_key=pl.col("problem").map_elements(lambda t: problem_id(t), return_dtype=pl.Utf8))
    return hits.join(pool_keys, on="problem_id").join(bench_keys, on=["benchmark", "benchmark_row"]).select("_pool_key", "_bench_key")
