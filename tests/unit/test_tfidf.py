"""The TF-IDF pass that picks the pairs semantic decontamination embeds (r1_assets/tfidf.py)."""

import numpy as np
import polars as pl
import pytest

from r1_assets.tfidf import TfidfIndex

KEYS = pl.Series([
    "find the number of ordered triples of positive integers a b c such that a b c is at most 3 6",
    "six points a b c d e f lie in a straight line in that order find the area of triangle bge",
    "what is the remainder when 1 2 3 10 is divided by 9",
    "find the number of positive integers n such that n 2 is a multiple of 7",
])


def test_cosines_are_scikit_learns_tfidf():
    # An independent implementation with the same definition: word unigrams and bigrams,
    # sublinear TF, smoothed IDF fitted on the keys, L2 rows.
    text = pytest.importorskip("sklearn.feature_extraction.text")
    vec = text.TfidfVectorizer(ngram_range=(1, 2), token_pattern=r"(?u)\b\w+\b", sublinear_tf=True)
    dense = vec.fit_transform(KEYS.to_list())
    expected = (dense @ dense.T).toarray()
    rows, keys, cosines = TfidfIndex.fit(KEYS).pairs(KEYS, 1e-6)
    got = np.zeros_like(expected)
    got[rows, keys] = cosines
    assert np.allclose(got, expected, atol=1e-5)


def test_pairs_above_the_floor_only_and_unseen_words_weigh_in_the_norm():
    index = TfidfIndex.fit(KEYS)
    copy = KEYS[0]
    reworded = "count the ordered triples a b c of positive integers each at most 3 6 modulo 1000"
    unrelated = "a train travels 360 miles in 3 hours"
    rows, keys, cosines = index.pairs(pl.Series([copy, reworded, unrelated]), 0.3)
    found = {(int(r), int(k)): float(c) for r, k, c in zip(rows, keys, cosines)}
    assert found[(0, 0)] == pytest.approx(1.0, abs=1e-5)
    assert (1, 0) in found and found[(1, 0)] < 0.9          # "count", "modulo" are in its norm
    assert not any(r == 2 for r, _ in found)                # shares only "a", "3", "in"
    assert all(c >= 0.3 for c in found.values())
    empty = index.pairs(pl.Series([], dtype=pl.Utf8), 0.3)
    assert all(len(part) == 0 for part in empty)
