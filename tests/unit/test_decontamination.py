"""Decontamination: each method on crafted cases, the known overlaps of the shared data, and
benchmark_problems -> clean_problems through a real Dagster CLI run."""

import dagster as dg
from dagster._core.errors import DagsterAssetCheckFailedError
import numpy as np
import polars as pl
import pytest

from r1_assets.config import ConfigError, DecontaminationConfig, DedupeConfig, parse_config
from r1_assets.decontamination import (
    decontaminate,
    decontaminate_clusters,
    math_similarities,
    number_lists,
    number_shares,
)
from r1_assets.sources import collect_source
from r1_assets.storage import Lineage, Store
from r1_assets.text import math_skeletons, problem_id
from tests.paths import REPO_ROOT, open_data

MATH = (
    "A rectangular garden is surrounded by a path of uniform width. The garden measures 12 meters "
    "by 8 meters and the total area of garden and path together is 221 square meters. How wide is the path?"
)
OTHER = "Find all primes p such that p squared plus two is also a prime number, and prove there are no others."


def _pool(texts: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"problem_id": [problem_id(t) for t in texts], "problem": texts})


def _bench(items: list[tuple[str, str]]) -> pl.DataFrame:
    return pl.DataFrame({
        "benchmark": [b for b, _ in items],
        "benchmark_row": list(range(len(items))),
        "problem": [t for _, t in items],
    })


def _methods(hits: pl.DataFrame, text: str) -> set[str]:
    return set(hits.filter(pl.col("problem_id") == problem_id(text))["method"].to_list())


def test_ngram_hit_names_benchmark_row_and_evidence():
    copy = "Solve this: " + MATH.split(". ", 1)[1]     # a verbatim part of the benchmark problem
    result = decontaminate(_pool([copy, OTHER]), _bench([("b1", OTHER + " extra words here to be longer"), ("b1", MATH)]),
                           DecontaminationConfig(methods=["ngram"]), DedupeConfig())
    hit = result.hits.filter(pl.col("problem_id") == problem_id(copy)).row(0, named=True)
    assert (hit["benchmark"], hit["benchmark_row"], hit["method"]) == ("b1", 1, "ngram")
    assert "shared 8-grams" in hit["evidence"] and 0 < hit["score"] <= 1
    # OTHER is a prefix of benchmark row 0 (17 words): it shares 8-grams with it too
    assert _methods(result.hits, OTHER) == {"ngram"}


def test_short_problems_caught_by_whole_text_in_both_directions():
    short_pool, short_bench = "Compute $\\dbinom{8}{4}$.", "What is $7^3$?"
    bench = _bench([("math", "compute  $\\dbinom{8}{4}$."), ("math", short_bench)])
    result = decontaminate(_pool([short_pool, "WHAT IS $7^3$?", "Compute $\\dbinom{9}{4}$."]), bench,
                           DecontaminationConfig(methods=["ngram"]), DedupeConfig())
    assert _methods(result.hits, short_pool) == {"exact_short"}
    assert _methods(result.hits, "WHAT IS $7^3$?") == {"exact_short"}
    assert _methods(result.hits, "Compute $\\dbinom{9}{4}$.") == set()   # a different number is a different problem
    # Open-R1's rule alone (no whole-text match) could never catch them: fewer than 8 words
    assert result.hits["method"].unique().to_list() == ["exact_short"]


def test_number_changed_copy_caught_by_digit_stripped_only():
    changed = MATH.replace("12", "15").replace("8 meters", "9 meters").replace("221", "300")
    # numbers every few words: no 8-gram survives unchanged in this short problem
    bench_text = "If 3 apples cost 6 dollars and 5 pears cost 10 dollars, what do 7 apples and 2 pears cost?"
    pool_text = "If 4 apples cost 8 dollars and 6 pears cost 15 dollars, what do 9 apples and 3 pears cost?"
    bench = _bench([("gsm", MATH), ("gsm", bench_text)])
    result = decontaminate(_pool([changed, pool_text]), bench, DecontaminationConfig(), DedupeConfig())
    assert "digit_stripped" in _methods(result.hits, changed)
    assert _methods(result.hits, pool_text) == {"digit_stripped"}
    hit = result.hits.filter(pl.col("problem_id") == problem_id(pool_text)).row(0, named=True)
    assert hit["benchmark_row"] == 1 and "if#applescost#dollars" in hit["evidence"]
    # switched off, the copy passes: each method is really switchable
    off = decontaminate(_pool([pool_text]), bench, DecontaminationConfig(methods=["ngram", "minhash"]), DedupeConfig())
    assert off.hits.height == 0


ROTATION = ("A $90^\\circ$ rotation around the origin in the counter-clockwise direction is applied to $7 + 2i.$"
            " What is the resulting complex number?")


def test_digit_stripped_needs_the_same_structure_and_sees_through_appended_text():
    same_shape = ROTATION.replace("90", "180").replace("7 + 2i", "5 + 4i")
    other_shape = ROTATION.replace("7 + 2i", "-6 - 3i")       # the instruction applied to another expression
    appended = ROTATION + " The original answer is in \\frac{m}{n} format, please give the value of m + n."
    result = decontaminate(_pool([same_shape, other_shape, appended]), _bench([("math", ROTATION)]),
                           DecontaminationConfig(methods=["digit_stripped"]), DedupeConfig())
    assert _methods(result.hits, same_shape) == {"digit_stripped"}
    assert _methods(result.hits, other_shape) == set()
    hit = result.hits.filter(pl.col("problem_id") == problem_id(appended)).row(0, named=True)
    assert hit["method"] == "digit_stripped" and "contains the benchmark's" in hit["evidence"]


def test_ngram_hit_on_a_short_benchmark_row_needs_a_run_of_evidence():
    bench_text = "What real values of $x$ are not in the domain of $f(x)=\\frac{1}{|x^2+3x-4|+|x^2+9x+20|}$?"
    template = "What real values of $x$ are not in the domain of $f(x)=\\frac{1}{|x^2-6x+8|+|x^2+x-6|}$?"
    copy = bench_text + " Give the answer in interval notation."
    bench = _bench([("math", bench_text)])
    result = decontaminate(_pool([template, copy]), bench, DecontaminationConfig(methods=["ngram"]), DedupeConfig())
    assert _methods(result.hits, template) == set()            # 4 shared 8-grams (2/3 of the row): its instruction
    assert _methods(result.hits, copy) == {"ngram"}            # every 8-gram of the row: a copy, however short
    loose = decontaminate(_pool([template]), bench, DecontaminationConfig(methods=["ngram"], ngram_min_evidence=1), DedupeConfig())
    assert _methods(loose.hits, template) == {"ngram"}


def test_minhash_catches_reworded_copy():
    reworded = MATH.replace("A rectangular garden", "A garden shaped like a rectangle").replace("How wide", "What is the width")
    cfg = DecontaminationConfig(methods=["minhash"], minhash_threshold=0.5)
    result = decontaminate(_pool([reworded, OTHER]), _bench([("b", MATH)]), cfg, DedupeConfig())
    assert _methods(result.hits, reworded) == {"minhash"} and _methods(result.hits, OTHER) == set()
    assert result.hits["score"].item() >= 0.5


def test_boilerplate_ngrams_are_not_evidence():
    tail = "where $m$ and $n$ are relatively prime positive integers. Find $m+n$."
    bench = _bench([("aime", f"Problem {w} about a {w} configuration of points, expressed as $\\frac{{m}}{{n}}$, {tail}")
                    for w in ["circle", "square", "triangle"]])
    pool = _pool([f"An unrelated counting question with answer $\\frac{{m}}{{n}}$, {tail}"])
    assert decontaminate(pool, bench, DecontaminationConfig(methods=["ngram"]), DedupeConfig()).hits.height == 0
    exact_open_r1 = DecontaminationConfig(methods=["ngram"], ngram_rule="any")
    assert decontaminate(pool, bench, exact_open_r1, DedupeConfig()).hits.height == 3


def test_pool_boilerplate_counts_problems_by_their_numbers_so_copies_count_once():
    polar = ("Convert the point ${}$ in rectangular coordinates to polar coordinates. Enter your answer in the "
             "form $(r,\\theta),$ where $r > 0$ and $0 \\le \\theta < 2 \\pi.$")
    train = ("A train travels {} miles in {} hours. At the same rate, how many additional hours would it take "
             "to travel an additional {} miles?")
    bench = _bench([("math", polar.format("(0,3)")), ("math", train.format(360, 3, 240))])
    # Three exercises of the template, each with its own point: the instruction is phrasing.
    exercises = [polar.format(p) for p in ["(-2,-2)", "(6,2 \\sqrt{3})", "(1,1)"]]
    # One number-changed copy of the train problem held three times (three pools, one of them
    # DAPO-style with an answer-format sentence appended): still one problem.
    copy = train.format(300, 5, 120)
    copies = [copy, copy + " Please put the final answer in a box.", "Question: " + copy]
    hits = decontaminate(_pool(exercises + copies), bench, DecontaminationConfig(methods=["ngram"]), DedupeConfig()).hits
    assert all(_methods(hits, t) == set() for t in exercises), hits
    assert all(_methods(hits, t) == {"ngram"} for t in copies), hits


def test_strip_phrases_remove_harness_instructions():
    instr = "Please reason step by step, and put your final answer within \\boxed{}."
    pool = _pool([f"Let x be a number. {instr}"])
    bench = _bench([("b", f"An entirely different problem about y. {instr}")])
    assert decontaminate(pool, bench, DecontaminationConfig(), DedupeConfig()).hits.height == 0
    # Left in, the instruction's 8-grams are shared; Open-R1's any-8-gram rule then flags the pair.
    kept = DecontaminationConfig(strip_phrases=[], ngram_rule="any")
    assert decontaminate(pool, bench, kept, DedupeConfig()).hits.height > 0


def test_cluster_member_match_removes_the_representative():
    member_text = MATH
    unique = pl.DataFrame({"problem_id": ["rep", "other"], "cluster_id": ["rep", "other"],
                           "problem": ["A kept wording that shares nothing with any benchmark at all.", OTHER]})
    members = pl.DataFrame({"problem_id": ["member"], "cluster_id": ["rep"], "problem": [member_text]})
    out = decontaminate_clusters(unique, members, _bench([("b", MATH)]), DecontaminationConfig(), DedupeConfig())
    assert out.clean["problem_id"].to_list() == ["other"]
    assert set(out.contamination["problem_id"]) == {"rep"} and set(out.contamination["matched_problem_id"]) == {"member"}
    kept_only = decontaminate_clusters(unique, members, _bench([("b", MATH)]), DecontaminationConfig(scope="kept"), DedupeConfig())
    assert kept_only.clean.height == 2


def test_config_needs_a_method():
    with pytest.raises(ValueError, match="at least one"):
        DecontaminationConfig(methods=[])


# -- the paraphrase judge's verdicts (a scripted judge; the real one is in test_model_stages) ----
BENCH_A = ("A farmer has a rectangular field whose length is three times its width, and he walks once "
           "around its edge covering four hundred meters in total. What is the area of the field in square meters?")
BENCH_B = ("Two trains leave the same station at noon travelling in opposite directions, one at sixty "
           "kilometres per hour and the other at eighty. After how many hours are they seven hundred kilometres apart?")
BENCH_C = ("A jar holds red, blue and green marbles in the ratio two to three to five, and there are "
           "twelve more green marbles than red ones. How many marbles of each colour are in the jar?")


def _extended(text: str, tail: str) -> str:
    """The benchmark text inside a longer problem: an ngram hit (every 8-gram), no minhash hit."""
    return (f"{text} Then {tail}, and explain every step of your reasoning in full detail so that a reader who "
            "has never seen this kind of question before can follow along without any difficulty whatsoever.")


def test_judge_verdicts_decide_which_hits_remove_a_problem():
    cfg = DecontaminationConfig(methods=["ngram", "minhash"], judge_model="judge", judge_methods=["ngram"])
    texts = {
        "lifted": _extended(BENCH_A, "compute its diagonal"),         # ngram only, judged DIFFERENT
        "ambiguous": _extended(BENCH_B, "find their speeds' ratio"),  # ngram only, AMBIGUOUS
        "equivalent": _extended(BENCH_C, "count the blue ones"),      # ngram only, EQUIVALENT
        "unanswered": _extended(BENCH_B, "draw a diagram"),            # ngram only, no answer (a failed request)
        "verbatim": BENCH_A,                                           # ngram + minhash, ngram judged DIFFERENT
        "rep": _extended(BENCH_C, "state the total"),                 # its own hit DIFFERENT, its member's EQUIVALENT
        "untouched": OTHER,
    }
    answers = {"lifted": "DIFFERENT", "ambiguous": "AMBIGUOUS", "equivalent": "EQUIVALENT", "verbatim": "DIFFERENT",
               "rep": "DIFFERENT", "member": "EQUIVALENT"}
    unique = pl.DataFrame({"problem_id": list(texts), "cluster_id": list(texts), "problem": list(texts.values())})
    members = pl.DataFrame({"problem_id": ["member"], "cluster_id": ["rep"],
                            "problem": [_extended(BENCH_C, "add them up")]})
    seen: list[pl.DataFrame] = []

    def review(pairs: pl.DataFrame) -> pl.DataFrame:
        seen.append(pairs)
        answered = pairs.filter(pl.col("matched_problem_id").is_in(list(answers)))
        return answered.select("matched_problem_id", "benchmark", "benchmark_row",
                               judge_verdict=pl.col("matched_problem_id").replace_strict(answers),
                               judge_model=pl.lit("judge-model"))

    bench = _bench([("b", BENCH_A), ("b", BENCH_B), ("b", BENCH_C)])
    out = decontaminate_clusters(unique, members, bench, cfg, DedupeConfig(), review=review)

    # Only DIFFERENT lifts a hit, and only a hit of judge_methods: the verbatim copy's minhash hit stands.
    assert sorted(out.clean["problem_id"]) == ["lifted", "untouched"]
    [pairs] = seen
    assert sorted(pairs["matched_problem_id"]) == sorted([*answers, "unanswered"])   # one pair each, ngram hits only
    asked = pairs.filter(pl.col("matched_problem_id") == "lifted").row(0, named=True)
    assert (asked["pool_problem"], asked["benchmark_problem"]) == (texts["lifted"], BENCH_A)
    c = {(r["problem_id"], r["method"]): r for r in out.contamination.iter_rows(named=True)}
    # A rejected hit stays for the audit, with the verdict and the judge.
    assert (c["lifted", "ngram"]["judge_verdict"], c["lifted", "ngram"]["judge_model"]) == ("DIFFERENT", "judge-model")
    assert c["verbatim", "ngram"]["judge_verdict"] == "DIFFERENT" and c["verbatim", "minhash"]["judge_verdict"] is None
    assert c["ambiguous", "ngram"]["judge_verdict"] == "AMBIGUOUS" and c["unanswered", "ngram"]["judge_verdict"] is None
    # The cluster's row is the member's unrejected hit, not the representative's own rejected one.
    assert (c["rep", "ngram"]["matched_problem_id"], c["rep", "ngram"]["judge_verdict"]) == ("member", "EQUIVALENT")
    assert out.reviewed == 7 and out.judge_counts() == {"DIFFERENT": 3, "AMBIGUOUS": 1, "EQUIVALENT": 2}
    assert set(out.judged["method"]) == {"ngram"}

    # Without a judge nothing is reviewed and every hit removes its problem.
    plain = decontaminate_clusters(unique, members, bench, cfg, DedupeConfig())
    assert plain.clean["problem_id"].to_list() == ["untouched"] and plain.contamination["judge_verdict"].is_null().all()


def test_judge_config_errors_name_the_key():
    base = {"sources": [{"name": "s", "kind": "file", "path": "x.jsonl"}], "models": {"teacher": {"name": "m"}}}

    def parse(decontamination: dict):
        return parse_config({**base, "decontamination": decontamination}, REPO_ROOT)

    with pytest.raises(ConfigError, match=r"decontamination: judge_model 'teachr' is not a role in models \(configured: \['teacher'\]\)"):
        parse({"methods": ["ngram", "semantic"], "judge_model": "teachr"})
    with pytest.raises(ConfigError, match=r"decontamination: judge_methods: \['semantic'\]: .* enabled methods"):
        parse({"methods": ["ngram"], "judge_model": "teacher"})
    with pytest.raises(ConfigError, match=r"decontamination judge_methods \[0\]: Input should be 'ngram'"):
        parse({"methods": ["ngram"], "judge_model": "teacher", "judge_methods": ["ngrams"]})
    with pytest.raises(ConfigError, match=r"decontamination: judge_prompt_template: unknown placeholders \['problem'\]"):
        parse({"methods": ["semantic"], "judge_model": "teacher", "judge_prompt_template": "{problem} vs {benchmark_problem}"})
    with pytest.raises(ConfigError, match=r"decontamination: unknown key 'judge_modle'"):
        parse({"judge_modle": "teacher"})
    judged = parse({"methods": ["ngram", "semantic"], "judge_model": "teacher"}).decontamination
    assert judged.judge_methods == ["semantic"] and judged.judge_sampling.temperature == 0 and judged.judge_sampling.n == 1
    assert parse({}).decontamination.judge_model is None   # no judge unless configured


# -- the shared data -------------------------------------------------------------------------
POOLS = {
    "math_train": ("pools/math_train.json", "problem", "answer"),
    "aime_old": ("pools/aime_1983_2023.json", "problem", "answer"),
    "dapo": ("pools/dapo_math_17k.parquet", "prompt[0].content", "reward_model.ground_truth"),
}
BENCHMARKS = {
    "math500": ("benchmarks/math500.jsonl", "problem"),
    "amc23": ("benchmarks/amc23.jsonl", "problem"),
    "aime25_I": ("benchmarks/aime25_I.jsonl", "problem"),
    "aime25_II": ("benchmarks/aime25_II.jsonl", "problem"),
    "aime25_alt": ("benchmarks/aime25_alt_wording.jsonl", "prompt"),
}


@pytest.fixture(scope="module")
def shared_hits():
    from tests.paths import SHARED_DATA

    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    cfg = parse_config({
        "sources": [{"name": n, "kind": "file", "path": str(SHARED_DATA / p), "problem": q, "answer": a}
                    for n, (p, q, a) in POOLS.items()],
        "benchmarks": [{"name": n, "kind": "file", "path": str(SHARED_DATA / p), "problem": q, "answer": "answer"}
                       for n, (p, q) in BENCHMARKS.items()],
    }, SHARED_DATA)
    # Each source on its own (the same problem in two pools is two pool rows here).
    pool = (pl.concat([collect_source(s, cfg).rows for s in cfg.sources])
            .with_columns(problem_id=pl.col("source") + ":" + pl.col("problem_id"))
            .unique("problem_id", keep="first", maintain_order=True))
    bench = pl.concat([collect_source(b, cfg, "benchmark_problems").rows for b in cfg.benchmarks]).select(
        benchmark="source", benchmark_row="source_row", problem="problem")
    result = decontaminate(pool.select("problem_id", "problem"), bench, cfg.decontamination, cfg.dedupe)
    hits = (result.hits.join(pool.select("problem_id", "source", pool_problem="problem"), on="problem_id")
            .join(bench.rename({"problem": "benchmark_problem"}), on=["benchmark", "benchmark_row"]))
    return hits, pool, bench


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def test_math_train_near_copies_of_math500_with_numbers_changed(shared_hits):
    h = shared_hits[0].filter(pl.col("source") == "math_train", pl.col("benchmark") == "math500")
    # Open-R1's any-8-gram rule flagged > 300; most were MATH exercise templates sharing stock
    # phrasing (tests/data/decontamination_labels.jsonl), which the scaled rule leaves alone
    # (32 since the pool boilerplate counts problems by their numbers, 2026-12-03: the 10 more
    # flagged before were "Convert the point ... to polar coordinates" and other exercises).
    assert h["problem_id"].n_unique() >= 30
    changed = h.filter(pl.col("method") == "digit_stripped").filter(
        pl.struct("pool_problem", "benchmark_problem").map_elements(
            lambda r: _digits(r["pool_problem"]) != _digits(r["benchmark_problem"]), return_dtype=pl.Boolean))
    # same words (60+ letters) and math structure, other numbers: only digit_stripped sees these
    # (8 on the shared pools; the letters-only key also matched 7 templates around other expressions)
    assert changed.height >= 6


def test_dapo_holds_math500_and_amc23_verbatim(shared_hits):
    hits, pool, bench = shared_hits
    dapo = pool.filter(pl.col("source") == "dapo")
    # Found independently of the matcher: DAPO rows that contain a benchmark problem's text.
    verbatim = []
    for b in bench.filter(pl.col("benchmark").is_in(["math500", "amc23"])).iter_rows(named=True):
        for pid in dapo.filter(pl.col("problem").str.contains(b["problem"][:200], literal=True))["problem_id"].to_list():
            verbatim.append((pid, b["benchmark"], b["benchmark_row"]))
    per_bench = {name: len({r for _, n, r in verbatim if n == name}) for name in ["math500", "amc23"]}
    assert per_bench["math500"] >= 5 and per_bench["amc23"] >= 10
    # every one of them is caught, by the n-gram method itself, against the right benchmark row
    caught = set(hits.filter(pl.col("method").is_in(["ngram", "exact_short"]))
                 .select("problem_id", "benchmark", "benchmark_row").iter_rows())
    assert set(verbatim) <= caught


def test_old_aime_pool_holds_problems_math_reused(shared_hits):
    h = shared_hits[0].filter(pl.col("source") == "aime_old", pl.col("benchmark") == "math500")
    assert h["benchmark_row"].n_unique() >= 8
    strong = h.filter(pl.col("method").is_in(["digit_stripped", "minhash"]) | (pl.col("score") > 0.5))
    assert strong.height >= 5


def test_aime25_both_wordings_matter(shared_data):
    cfg = parse_config({"sources": [], "benchmarks": [
        {"name": n, "kind": "file", "path": str(shared_data / p), "problem": q, "answer": "answer"}
        for n, (p, q) in BENCHMARKS.items() if n.startswith("aime25")]}, shared_data)
    rows = {b.name: collect_source(b, cfg, "benchmark_problems").rows for b in cfg.benchmarks}
    as_bench = {n: r.select(benchmark="source", benchmark_row="source_row", problem="problem") for n, r in rows.items()}
    alt_pool = rows["aime25_alt"].select("problem_id", "problem")
    # against one wording only, several of the other wording's problems slip through
    one = decontaminate(alt_pool, pl.concat([as_bench["aime25_I"], as_bench["aime25_II"]]), cfg.decontamination, cfg.dedupe)
    assert 20 <= one.hits["problem_id"].n_unique() < 30
    # against both, every problem of either wording is caught
    both = pl.concat(list(as_bench.values()))
    pool = pl.concat([r.select("problem_id", "problem") for r in rows.values()])
    all_hits = decontaminate(pool, both, cfg.decontamination, cfg.dedupe)
    assert all_hits.hits["problem_id"].n_unique() == pool["problem_id"].n_unique() == 60


# -- Dagster ---------------------------------------------------------------------------------
def _seed_raw(cfg, store: Store) -> None:
    """raw_problems as the collection asset writes it (real reader, real store)."""
    for src in cfg.sources:
        collected = collect_source(src, cfg)
        store.replace_partition("raw_problems", collected.rows.with_columns(run_id=pl.lit("seed")),
                                where={"source": src.name}, lineage=Lineage(run_id="seed"))


def test_dagster_clean_problems_and_failing_benchmark(shared_data, r1_home, write_config, materialize):
    config = {
        "sources": [
            {"name": "math_train", "kind": "file", "path": str(shared_data / "pools/math_train.json"), "limit": 2000},
            {"name": "dapo", "kind": "file", "path": str(shared_data / "pools/dapo_math_17k.parquet"),
             "problem": "prompt[0].content", "answer": "reward_model.ground_truth", "limit": 3000},
        ],
        "benchmarks": [
            {"name": "math500", "kind": "file", "path": str(shared_data / "benchmarks/math500.jsonl")},
            {"name": "amc23", "kind": "file", "path": str(shared_data / "benchmarks/amc23.jsonl")},
        ],
        "decontamination": {"labelled_set": str(REPO_ROOT / "tests/data/decontamination_labels.jsonl")},
    }
    path = write_config(config)
    store = Store(r1_home)
    from r1_assets.config import load_config
    _seed_raw(load_config(path), store)
    materialize(["benchmark_problems", "unique_problems", "clean_problems"])

    with open_data(r1_home) as con:
        q = lambda sql: con.execute(sql).fetchall()  # noqa: E731
        raw, unique, dups = q("SELECT (SELECT count(*) FROM raw_problems), (SELECT count(*) FROM unique_problems),"
                              " (SELECT count(*) FROM duplicate_problems)")[0]
        assert unique + dups == raw and dups > 0
        assert q("SELECT benchmark, status, row_count FROM benchmark_loads ORDER BY 1") == [("amc23", "loaded", 40), ("math500", "loaded", 500)]
        hits = dict(q("SELECT benchmark, count(DISTINCT problem_id) FROM contamination GROUP BY 1"))
        # Real copies only at the precision defaults (Open-R1's any-8-gram rule flagged >100 here);
        # the AMC 2023 copies in DAPO lie past its first 3,000 rows.
        # 9 measured (13 before the pool boilerplate counted problems by their numbers: the 4
        # more were "Determine the number of ways to arrange the letters of the word RADII"
        # and two more words, and "In the equation $|x-7| -3 = -2$, what is the product ...").
        assert hits["math500"] >= 8
        clean = q("SELECT count(*) FROM clean_problems")[0][0]
        flagged = q("SELECT count(DISTINCT problem_id) FROM contamination")[0][0]
        assert clean == unique - flagged
        assert q("SELECT count(*) FROM contamination c JOIN clean_problems USING (problem_id)") == [(0,)]
        assert q("SELECT count(*) FROM contamination c LEFT JOIN benchmark_problems b USING (benchmark, benchmark_row)"
                 " WHERE b.problem IS NULL") == [(0,)]
        lineage = {t: (n, json) for t, n, json in q(
            "SELECT table_name, row_count, inputs FROM lineage WHERE table_name IN"
            " ('unique_problems', 'benchmark_problems', 'clean_problems')")}
        assert lineage["unique_problems"][0] == unique and '"raw_problems"' in lineage["unique_problems"][1]
        assert lineage["clean_problems"][0] == clean and '"math500"' in lineage["clean_problems"][1]
        assert lineage["benchmark_problems"][0] == 540

    # The labelled set is configured: clean_problems reports precision and recall on the labelled
    # pairs whose two texts are in this run.
    with dg.DagsterInstance.get() as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("clean_problems"))
        meta = event.asset_materialization.metadata
    assert meta["labelled_pairs_in_run"].value > 0
    assert 0 <= meta["labelled_precision"].value <= 1 and 0 <= meta["labelled_recall"].value <= 1
    # This slice of the pools holds the labelled number-changed copies of MATH-500 and template look-alikes.
    per_category = meta["labelled_per_category"].value
    assert per_category.startswith("| category | pairs | flagged | recall |")
    assert "| changed_numbers |" in per_category and "| clean_template |" in per_category

    # A benchmark file that is not there: the blocking check fails the run, clean_problems is not rewritten.
    config["benchmarks"][1]["path"] = str(shared_data / "benchmarks/amc23_moved.jsonl")
    write_config(config)
    with pytest.raises(DagsterAssetCheckFailedError) as failed:
        materialize(["benchmark_problems", "unique_problems", "clean_problems"])
    assert "benchmarks_loaded" in str(failed.value)
    # The check's own message (in the UI and the run's event log) says which benchmark and why.
    with dg.DagsterInstance.get() as instance:
        run = instance.get_runs(limit=1)[0]
        assert run.status == dg.DagsterRunStatus.FAILURE
        evaluations = [e.dagster_event.event_specific_data for e in instance.all_logs(
            run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)]
    failed_check = next(e for e in evaluations if e.check_name == "benchmarks_loaded")
    assert not failed_check.passed
    assert "'amc23'" in failed_check.description and "amc23_moved.jsonl" in failed_check.description
    with open_data(r1_home) as con:
        assert con.execute("SELECT count(*) FROM clean_problems").fetchone()[0] == clean
        assert con.execute("SELECT status FROM benchmark_loads WHERE benchmark='amc23'").fetchone() == ("failed",)


def test_packaged_cluster_profile_and_shared_example_parse():
    from r1_assets.config import load_config
    from tests.paths import REPO_ROOT

    cluster = load_config(REPO_ROOT / "r1_assets/defaults/cluster.yaml")
    hub = {b.name: (b.dataset, b.config, b.split) for b in cluster.benchmarks}
    assert hub["math500"] == ("HuggingFaceH4/MATH-500", None, "test")
    assert hub["gpqa_diamond"] == ("Idavidrein/gpqa", "gpqa_diamond", "train")
    assert hub["gsm8k_test"] == ("openai/gsm8k", "main", "test")
    assert {"aime24", "aime25_I", "aime25_II", "aime25_alt", "amc23"} <= set(hub)
    assert cluster.model("teacher").engine == "openai"
    example = load_config(REPO_ROOT / "examples/shared_data.yaml")
    assert example.resolve_path(example.benchmarks[0].path) == (REPO_ROOT.parent / "shared/data/benchmarks/math500.jsonl").resolve()
    assert len(example.sources) == 5 and len(example.benchmarks) == 7


# -- telling a copy from another exercise of the template -----------------------------------
def test_math_skeletons_mask_numbers_and_leave_out_bare_numbers():
    texts = pl.Series([r"In the equation $|x-7| -3 = -2$, the $\$500$ and \(60^\circ\) and $12$", "no math"])
    assert math_skeletons(texts).to_list() == ["|x-#|-#=-#", ""]
    assert number_lists(pl.Series(["twelve letters and 12 more, 3.5"])).to_list() == [["12", "12", "3.5"]]
    assert number_shares([["1", "2"], []], [["1", "2", "2"], []]).tolist() == [2 / 3, 1.0]
    sims = math_similarities([r"\frac{k}{m} k+m", "x^{#}-#=p_#(x)", ""], [r"\frac{m}{n} m+n", "x^#+#x^#-#=p_#(x)", "x"])
    assert sims[0] == 1.0 and sims[1] < 0.8 and np.isnan(sims[2])    # names renamed; another polynomial; no math


SETUP = ("where each non-constant polynomial $p_i(x)$ is monic with integer coefficients, and cannot be factored "
         "further over the integers. Compute $p_1(1) + p_2(1) + \\dots + p_k(1).$")


def test_ngram_hit_on_a_template_around_other_math_is_dropped_and_a_number_changed_copy_kept():
    bench = pl.DataFrame({"benchmark": ["b"], "benchmark_row": [0],
                          "problem": ["Let \\[x^8 + 3x^4 - 4 = p_1(x) p_2(x) \\dotsm p_k(x),\\]" + SETUP]})
    other = "Let \\[x^{12} - 1 = p_1(x) p_2(x) \\dotsm p_k(x),\\]" + SETUP.replace("Compute $p_1(1) + p_2(1) + \\dots + p_k(1).$", "Find $k.$")
    copy = "Let \\[x^8 + 5x^4 - 6 = p_1(x) p_2(x) \\dotsm p_k(x),\\]" + SETUP.replace("p_k(1)", "p_k(2)")
    pool = pl.DataFrame({"problem_id": ["other", "copy"], "problem": [other, copy]})
    cfg = DecontaminationConfig(methods=["ngram"], ngram_boilerplate_pool_rows=0)
    result = decontaminate(pool, bench, cfg, DedupeConfig())
    assert result.hits["problem_id"].to_list() == ["copy"], result.hits
    assert "numbers kept" in result.hits["evidence"][0] and result.stats["hits_dropped_as_other_exercises"] == {"ngram": 1}
    unchecked = decontaminate(pool, bench, cfg.model_copy(update={"same_numbers_share": 0.0}), DedupeConfig())
    assert sorted(unchecked.hits["problem_id"]) == ["copy", "other"]


GEOMETRIC = ("The sum of the first $n$ terms in the infinite geometric sequence $\\left\\{\\frac{1}{4},\\frac{1}{8},"
             "\\frac{1}{16},\\dots \\right\\}$ is $\\frac{255}{512}$. Find $n$.")


def test_digit_stripped_finds_the_benchmark_setup_word_for_word_around_edited_math():
    # one more term: the masked key differs, the 13-word setup and the math's shape do not
    copy = GEOMETRIC.replace("\\left\\{\\frac{1}{4}", "\\left\\{1,\\frac{1}{3}").replace("255}{512", "121}{81")
    # the same words around other math ("$\\{\\sin(k\\pi/7)\\}$ ... $\\sqrt{x}+\\log_3 x$")
    other_math = GEOMETRIC.replace("\\left\\{\\frac{1}{4},\\frac{1}{8},\\frac{1}{16},\\dots \\right\\}", "\\{\\sin(k\\pi/7)\\}").replace(
        "\\frac{255}{512}", "\\sqrt{x}+\\log_3 x")
    bench = _bench([("math", GEOMETRIC)])
    cfg = DecontaminationConfig(methods=["digit_stripped"])
    hit = decontaminate(_pool([copy, other_math]), bench, cfg, DedupeConfig()).hits.row(0, named=True)
    assert hit["problem_id"] == problem_id(copy) and "13-word setup word for word, math 0.98" in hit["evidence"], hit
    assert decontaminate(_pool([other_math]), bench, cfg, DedupeConfig()).hits.height == 0
    # three pool problems with that setup and other numbers: a template, not a copy
    exercises = [copy, copy.replace("121}{81", "40}{27"), copy.replace("121}{81", "13}{9")]
    assert decontaminate(_pool(exercises), bench, cfg, DedupeConfig()).hits.height == 0
    assert decontaminate(_pool(exercises), bench, cfg.model_copy(update={"digit_stripped_template_pool_rows": 4}),
                         DedupeConfig()).hits.height == 3
    # a setup shorter than digit_stripped_min_words is an instruction
    short = cfg.model_copy(update={"digit_stripped_min_words": 14})
    assert decontaminate(_pool([copy]), bench, short, DedupeConfig()).hits.height == 0
