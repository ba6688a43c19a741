"""Exact and MinHash near-duplicate removal: datasketch equivalence, clusters, the shared pools."""

import numpy as np
import polars as pl
import pytest
from datasketch import MinHash, MinHashLSH

from r1_assets.config import DedupeConfig, parse_config
from r1_assets.dedupe import (
    MinHasher,
    SignatureSpill,
    candidate_pairs,
    confirmed_pairs,
    connected_components,
    deduplicate,
    near_duplicates,
    spill_root,
)
from r1_assets.sources import collect_source
from r1_assets.text import problem_id, problem_key

pytestmark = pytest.mark.usefixtures("r1_home")   # signatures and candidate pairs spill under $R1_HOME/tmp

BASE = (
    "Let $f(x) = x^3 - 6x^2 + 11x - 6$. Find the sum of the squares of all real roots of $f$, "
    "and then determine the remainder when that sum is divided by the number of sides of a hexagon."
)


def _rows(items: list[tuple[str, int, str, str | None]]) -> pl.DataFrame:
    """(source, source_row, problem, answer) -> the raw_problems columns dedupe reads."""
    return pl.DataFrame(
        {
            "problem_id": [problem_id(p) for _, _, p, _ in items],
            "source": [s for s, _, _, _ in items],
            "source_row": [r for _, r, _, _ in items],
            "problem": [p for _, _, p, _ in items],
            "answer": [a for _, _, _, a in items],
        },
        schema={"problem_id": pl.Utf8, "source": pl.Utf8, "source_row": pl.Int64, "problem": pl.Utf8, "answer": pl.Utf8},
    )


def test_signatures_equal_datasketch_minhash_bit_for_bit():
    hasher = MinHasher(num_perm=112, seed=7, shingle_size=5)
    texts = pl.Series([
        BASE,
        "short one",                                   # fewer tokens than a shingle: one whole-text shingle
        "",                                            # empty still has a signature
        "数学 问题：求 x 的值，使得 x^2 = 4",            # Han characters are single tokens
        " ".join(f"w{i % 997}" for i in range(20_000)),  # longer than one block: folded block by block
    ])
    counts, sh32 = hasher.shingle_hashes(texts)
    sig = hasher.signatures_from_hashes(counts, sh32)
    lo = 0
    for i, c in enumerate(counts.tolist()):
        ref = MinHash(num_perm=112, seed=7, scheme="affine32", hashfunc=int)
        ref.update_batch(sh32[lo:lo + c].tolist())
        lo += c
        assert np.array_equal(ref.hashvalues, sig[i]), f"row {i} differs from datasketch"
    # batched signatures() equals the one-shot path
    assert np.array_equal(MinHasher(112, 7, 5, batch_rows=2).signatures(texts), sig)


def test_near_duplicates_agree_with_datasketch_lsh():
    rng = np.random.default_rng(0)
    words = BASE.split()
    texts = []
    for _ in range(60):
        w = list(words)
        for _ in range(rng.integers(0, 2)):     # at most one word changed: J >= ~0.8
            w[rng.integers(len(w))] = f"edit{rng.integers(1000)}"
        texts.append(" ".join(w))
    texts += [f"Unrelated problem number {i}: compute {i} plus the {i}-th prime and a fixed seven." for i in range(40)]
    cfg = DedupeConfig()
    near = near_duplicates(pl.Series(texts), cfg)
    hasher = MinHasher.from_config(cfg)
    counts, sh32 = hasher.shingle_hashes(pl.Series(texts))
    lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm, params=(cfg.bands, cfg.rows))
    lo, sketches = 0, []
    for i, c in enumerate(counts.tolist()):
        m = MinHash(num_perm=cfg.num_perm, seed=cfg.seed, scheme="affine32", hashfunc=int)
        m.update_batch(sh32[lo:lo + c].tolist())
        lo += c
        sketches.append(m)
        lsh.insert(i, m)
    ref_pairs = {
        (min(i, j), max(i, j)) for i, m in enumerate(sketches) for j in lsh.query(m)
        if i != j and sketches[i].jaccard(sketches[j]) >= cfg.threshold
    }
    sig = hasher.signatures(pl.Series(texts))
    with SignatureSpill(spill_root(cfg), len(sig), cfg) as spilled:
        spilled.add(sig)
        ours = {tuple(p) for pairs, _, _ in confirmed_pairs(spilled, cfg) for p in pairs.tolist()}
    assert ours == ref_pairs and near.confirmed == len(ref_pairs)
    assert np.bincount(near.labels[:60]).max() >= 55      # the edited copies cluster
    assert len(set(near.labels[60:].tolist())) == 40      # the unrelated ones do not


def test_exact_duplicates_by_normalised_text_and_cross_source_clusters():
    near_copy = BASE.replace("hexagon", "regular hexagon")
    rows = _rows([
        ("a", 0, BASE, "2"),
        ("b", 5, BASE.upper(), "2"),                  # same problem_key: exact duplicate
        ("b", 6, near_copy, "2"),                     # near duplicate, other source
        ("a", 1, "What is 2 + 2 in base ten arithmetic, written as a single digit?", "4"),
    ])
    result = deduplicate(rows, DedupeConfig(), ["a", "b"])
    assert result.unique.height == 2
    kept = result.unique.filter(pl.col("problem") == BASE).row(0, named=True)
    assert kept["cluster_size"] == 3 and kept["source"] == "a"
    dups = {(d["source"], d["source_row"]): d for d in result.duplicates.iter_rows(named=True)}
    assert dups[("b", 5)]["method"] == "exact" and dups[("b", 5)]["similarity"] == 1.0
    assert dups[("b", 6)]["method"] == "minhash" and dups[("b", 6)]["cluster_id"] == kept["problem_id"]
    assert result.stats["cross_source_clusters"] == 1


def test_representative_prefers_answer_then_source_priority_then_row():
    near = BASE.replace("Find", "Compute")
    rows = _rows([
        ("first", 0, BASE, None),          # configured first, but no answer
        ("second", 9, near, "14"),
        ("third", 1, BASE + " ", "14"),    # exact copy of row 0 with an answer
    ])
    # With an answer beats source order: 'first' has none, so 'second' (configured before 'third') wins.
    r = deduplicate(rows, DedupeConfig(), ["first", "second", "third"])
    assert r.unique.height == 1 and r.unique["source"].item() == "second"
    # source_priority overrides config order among rows with answers.
    r = deduplicate(rows, DedupeConfig(source_priority=["third"]), ["first", "second", "third"])
    assert r.unique["source"].item() == "third"
    # Equal answer status and source: the lower source_row.
    rows = _rows([("s", 4, BASE, "1"), ("s", 2, near, "1")])
    assert deduplicate(rows, DedupeConfig(), ["s"]).unique["source_row"].item() == 2


def test_large_buckets_stay_connected_with_linear_candidates():
    keys = np.zeros((500, 1), dtype=np.uint64)    # one bucket of 500 identical keys
    pairs = candidate_pairs(keys, max_neighbors=4)
    assert len(pairs) < 500 * 4
    assert set(connected_components(500, pairs).tolist()) == {0}    # one component, labelled by its lowest row


def test_config_rejects_bands_beyond_permutations():
    with pytest.raises(ValueError, match="exceeds num_perm"):
        DedupeConfig(num_perm=64, bands=14, rows=8)


def test_shared_pools_cluster_within_and_across_sources(shared_data):
    cfg = parse_config({"sources": [
        {"name": "math_train", "kind": "file", "path": str(shared_data / "pools/math_train.json")},
        {"name": "aime_old", "kind": "file", "path": str(shared_data / "pools/aime_1983_2023.json")},
        {"name": "deepscaler", "kind": "file", "path": str(shared_data / "pools/deepscaler_subset.json")},
        {"name": "dapo", "kind": "file", "path": str(shared_data / "pools/dapo_math_17k.parquet"),
         "problem": "prompt[0].content", "answer": "reward_model.ground_truth"},
    ]}, shared_data)
    rows = pl.concat([collect_source(s, cfg).rows for s in cfg.sources])
    result = deduplicate(rows, cfg.dedupe, [s.name for s in cfg.sources])
    s = result.stats
    assert s["kept"] + s["exact_duplicates"] + s["minhash_duplicates"] == rows.height
    assert s["exact_duplicates"] > 1000 and s["minhash_duplicates"] > 500
    assert s["cross_source_clusters"] > 500        # DAPO and DeepScaleR re-publish MATH and AIME problems
    # no two kept rows are the same problem; every duplicate points at a kept row
    assert result.unique["problem_id"].n_unique() == result.unique.height
    assert result.unique.select(pl.col("problem").map_elements(problem_key, return_dtype=pl.Utf8)).n_unique() == result.unique.height
    assert result.duplicates["cluster_id"].is_in(result.unique["cluster_id"].implode()).all()
    # the old-AIME pool holds its own repeats (same problem, different years' files): found exactly
    per = {r["source"]: r for r in result.per_source(rows).iter_rows(named=True)}
    assert per["aime_old"]["exact"] > 100
    # confirmed near-duplicates really are similar: check a sample with datasketch directly
    hasher = MinHasher.from_config(cfg.dedupe)
    texts = rows.select("source", "source_row", "problem")
    sample = result.duplicates.filter(pl.col("method") == "minhash").head(20).join(texts, on=["source", "source_row"])
    reps = result.unique.select("cluster_id", rep=pl.col("problem"))
    for row in sample.join(reps, on="cluster_id").iter_rows(named=True):
        a, b = hasher.signatures(pl.Series([row["problem"], row["rep"]]))
        assert (a == b).mean() >= 0.2    # chained clusters: each member is near its neighbour, all near the representative
