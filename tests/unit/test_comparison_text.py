"""The canonical comparison form: LaTeX formatting cannot hide a copy, and stored text stays as given."""

import polars as pl

from r1_assets.config import DecontaminationConfig, DedupeConfig
from r1_assets.decontamination import decontaminate
from r1_assets.text import comparison_text, comparison_texts, problem_id


def test_formatting_differences_compare_equal():
    same = [
        ("For how many real values of $x$ is $\\sqrt{120 - \\sqrt{x}}$ an integer?",
         "For how many real values of $x$ is $\\sqrt{120-\\sqrt{x}}$ an integer?"),
        ("Flora the frog starts at \\(0\\) on the number line", "Flora the frog starts at 0 on the number line"),
        ("Find $\\dfrac{1}{2} + \\tfrac{1}{3}$.", "Find $\\frac{1}{2}+\\frac{1}{3}$."),
        ("A width of $3\\text{ cm}$ and $\\mathrm{d}x$", "A width of $3cm$ and $dx$"),
        ("$\\left( x \\right)$ squared", "$(x)$ squared"),
        ("It costs \\$1,000,000 or 12{,}345 or 1\\,000.", "It costs 1000000 or 12345 or 1000."),
        ("\\[ a + b \\]  and $$c = d$$", "$a+b$ and $c=d$"),
    ]
    for a, b in same:
        assert comparison_text(a) == comparison_text(b), (a, b)
    # what makes a different problem stays different
    assert comparison_text("$x^2 + 1$") != comparison_text("$x^2 - 1$")
    assert comparison_text("the points (1,2) and (3,4)") == "the points (1,2) and (3,4)"   # not thousands
    assert comparison_text("$\\rightarrow$ and \\leftarrow") == "\\rightarrow and \\leftarrow"
    assert comparison_texts(pl.Series([None, ""], dtype=pl.Utf8)).to_list() == ["", ""]


def test_a_latex_reformatted_copy_scores_as_a_copy_and_the_stored_text_is_unchanged():
    bench_text = ("Flora the frog starts at 0 on the number line and makes a sequence of jumps to the right. "
                  "In any one jump, independent of previous jumps, Flora leaps a positive integer distance $m$ "
                  "with probability $\\frac{1}{2^m}$. What is the probability that Flora will eventually land at 10?")
    pool_text = bench_text.replace("at 0 on", "at \\(0\\) on").replace("$\\frac{1}{2^m}$", "\\( \\dfrac{1}{2^m} \\)")
    pool = pl.DataFrame({"problem_id": [problem_id(pool_text)], "problem": [pool_text]})
    bench = pl.DataFrame({"benchmark": ["amc23"], "benchmark_row": [0], "problem": [bench_text]})
    hits = decontaminate(pool, bench, DecontaminationConfig(methods=["ngram"]), DedupeConfig()).hits
    assert hits["score"].item() >= 0.9          # was 0.41 on the raw text
    assert pool["problem"].item() == pool_text  # comparison only; nothing stored is rewritten
