"""The named SQL analysis queries (sql/analysis) on a real materialized DuckDB store.

Expected numbers are derived from the world's problem definitions (tests/splits_world.py),
not from running the SQL, so a wrong join or filter fails here.
"""

from __future__ import annotations

import copy
import json
from collections import Counter

import duckdb
import polars as pl
import pytest

from r1_assets.analysis import (
    QueryError,
    execute_named_query,
    get_query,
    named_queries,
    run_named_query,
)
from r1_assets.config import parse_config
from r1_assets.splits import build_split
from r1_assets.storage import SQL_DIR
from tests.splits_world import SMALL, STRONG, TEACHER, WORLD_CONFIG

QUERIES = {"row_lineage", "token_lengths", "token_length_histogram", "pass_rate_histogram", "yield_funnel",
           "contamination_report", "contamination_review", "verification_failures", "cost_per_kept_sample"}


def _samples(problems):
    return [s for p in problems.values() for s in p.samples]


def test_every_query_is_named_documented_and_in_the_readme():
    assert set(named_queries()) == QUERIES
    readme = (SQL_DIR / "README.md").read_text()
    for name, query in named_queries().items():
        assert query.description, name
        assert "Columns:" in query.sql, name
        assert f"analysis/{name}.sql" in readme, name
        for param in query.params:
            assert f"getvariable('{param}')" in query.sql, (name, param)
    assert get_query("yield_funnel").params["alpha"].startswith("DOUBLE: the difficulty threshold")


def test_parameters_are_checked_and_do_not_leak_between_calls(built_splits_world):
    store, _ = built_splits_world
    with pytest.raises(QueryError, match="no analysis query named 'funnel'"):
        run_named_query("funnel", store=store)
    with pytest.raises(QueryError, match=r"query 'token_lengths' has no parameter\(s\) \['alpha'\]"):
        run_named_query("token_lengths", {"alpha": 0.5}, store=store)
    with store.connect(read_only=True) as con:
        strong = execute_named_query(con, "pass_rate_histogram", {"model": STRONG})
        every = execute_named_query(con, "pass_rate_histogram")
    assert set(strong["model"]) == {STRONG}
    assert set(every["model"]) == {SMALL, STRONG}


def test_yield_funnel_counts_each_step_per_source(built_splits_world):
    store, _ = built_splits_world
    funnel = run_named_query("yield_funnel", store=store)
    got = {(r["source"], r["stage"]): r["problems"] for r in funnel.iter_rows(named=True)}
    # gsm: too_easy, not_distilled, bad_format, all_correct + mixed's near-duplicate (folded at step 2).
    # math: unparseable_ref, unscored, no_correct, truncated, mixed, strong_easy, no_strong, contaminated.
    expected = {
        "gsm": [5, 4, 4, 4, 3, 2, 1, 1, 0],
        "math": [8, 8, 7, 5, 5, 5, 3, 3, 1],
    }
    stages = ["raw", "unique", "clean", "scored", "passed_difficulty", "distilled", "verified", "stage1_sft", "stage2_sft"]
    for source, counts in expected.items():
        assert [got[(source, s)] for s in stages] == counts, source
    assert [got[("(all)", s)] for s in stages] == [a + b for a, b in zip(expected["gsm"], expected["math"])]
    assert funnel["source"][0] == "(all)"
    math = funnel.filter(funnel["source"] == "math")
    assert math["pct_of_previous"].to_list()[2] == pytest.approx(100 * 7 / 8, abs=0.01)
    # alpha defaults to the last stage-1 run's (0.5); a stricter one narrows step 5 only.
    strict = run_named_query("yield_funnel", {"alpha": 0.2}, store=store)
    strict_all = {r["stage"]: r["problems"] for r in strict.filter(strict["source"] == "(all)").iter_rows(named=True)}
    # < 0.2 = at most 1 of 8: not_distilled, bad_format, all_correct, no_correct, mixed(0.25) no.
    assert strict_all["passed_difficulty"] == 4
    assert strict_all["scored"] == 9 and strict_all["stage1_sft"] == 4


def test_pass_rate_histogram_by_source(built_splits_world):
    store, p = built_splits_world
    hist = run_named_query("pass_rate_histogram", {"model": SMALL}, store=store)
    got = {(r["source"], r["bin"]): r["problems"] for r in hist.iter_rows(named=True)}
    scored = [q for q in p.values() if any(m == SMALL for m, *_ in q.pass_rates)]
    assert sum(got.values()) == len(scored) == 11
    assert got[("math", "unparseable")] == 1  # its reference answer did not parse
    assert got[("(not in clean_problems)", "[0,0.125)")] == 1  # the contaminated one
    assert got[("gsm", "[0.875,1]")] == 1  # too_easy: 7 of 8, the closed top bin
    assert got[("math", "[0.25,0.375)")] == 3  # mixed (pooled 4/16), truncated and no_strong (2/8)
    wide = run_named_query("pass_rate_histogram", {"model": STRONG, "bin_width": 0.5}, store=store)
    assert {(r["source"], r["bin"]): r["problems"] for r in wide.iter_rows(named=True)} == {
        ("gsm", "[0,0.5)"): 1, ("math", "[0,0.5)"): 1, ("math", "[0.5,1]"): 1}


def test_token_lengths_by_model_and_correctness(built_splits_world):
    store, p = built_splits_world
    lengths = run_named_query("token_lengths", store=store)
    samples = _samples(p)
    by_class = Counter("correct" if s.correct else "undecided" if s.correct is None else "wrong" for s in samples)
    got = {r["correctness"]: r for r in lengths.iter_rows(named=True)}
    assert set(lengths["model"]) == {TEACHER}
    assert {k: v["samples"] for k, v in got.items()} == dict(by_class)
    assert got["correct"]["max_tokens"] == max(s.n_tokens for s in samples if s.correct)
    assert got["correct"]["truncated"] == 1
    assert got["wrong"]["mean_tokens"] == pytest.approx(
        sum(s.n_tokens for s in samples if s.correct is False) / by_class["wrong"], abs=0.05)
    assert run_named_query("token_lengths", {"model": "other"}, store=store).is_empty()


def test_token_length_histogram_bins_cover_every_sample(built_splits_world):
    store, p = built_splits_world
    hist = run_named_query("token_length_histogram", {"bins": 10}, store=store)
    samples = _samples(p)
    assert hist["samples"].sum() == len(samples)
    width = (hist["bin_end"] - hist["bin_start"]).unique().to_list()
    assert len(width) == 1 and width[0] == -(-(max(s.n_tokens for s in samples) + 1) // 10)
    assert hist["bin_start"].max() <= max(s.n_tokens for s in samples) < hist["bin_end"].max()
    correct = hist.filter(hist["correctness"] == "correct")["samples"].sum()
    assert correct == sum(1 for s in samples if s.correct)
    assert hist.columns[:3] == ["model", "domain", "correctness"] and set(hist["domain"]) == {"math"}


def test_contamination_report_by_benchmark_and_method(built_splits_world):
    store, p = built_splits_world
    report = run_named_query("contamination_report", store=store)
    rows = {r["method"]: r for r in report.iter_rows(named=True)}
    assert set(report["benchmark"]) == {"math500"} and set(rows) == {"ngram", "(any)"}
    assert rows["ngram"]["hits"] == rows["ngram"]["problems"] == 1
    assert rows["ngram"]["only_this_method"] == 1 and rows["(any)"]["only_this_method"] is None
    assert rows["ngram"]["example_problem"] == p["contaminated"].text
    assert rows["ngram"]["pct_of_unique"] == pytest.approx(100 / 12, abs=0.001)
    assert rows["ngram"]["sources"] == "math"


def test_verification_failure_reasons(built_splits_world):
    store, p = built_splits_world
    failures = run_named_query("verification_failures", store=store)
    got = {(r["kind"], r["reason"]): r["samples"] for r in failures.iter_rows(named=True)}
    samples = _samples(p)
    assert got[("verdict", "wrong")] == sum(1 for s in samples if s.correct is False)
    assert got[("verdict", "timeout")] == 1
    assert got[("format_issue", "truncated")] == 1 and got[("format_issue", "no_think")] == 1
    assert got[("finish_reason", "length")] == 1
    # Correct samples the splits cannot use: the truncated one and the one without <think>.
    assert got[("split_exclusion", "not_stop")] == 1
    assert got[("split_exclusion", "format_not_ok")] == 2
    assert got[("split_exclusion", "empty_reasoning")] == 1
    assert ("verdict", "correct") not in got
    pct = failures.filter(failures["reason"] == "timeout")["pct_of_samples"][0]
    assert pct == pytest.approx(100 / len(samples), abs=0.01)


def test_row_lineage_shows_the_full_path_of_a_split_row(built_splits_world):
    store, p = built_splits_world
    mixed = p["mixed"]
    gid = store.scalar("SELECT generation_id FROM stage2_sft WHERE problem_id = $problem_id", {"problem_id": mixed.problem_id})
    by_problem = run_named_query("row_lineage", {"problem_id": mixed.problem_id}, store=store)
    by_generation = run_named_query("row_lineage", {"generation_id": gid}, store=store)
    assert by_problem.equals(by_generation)
    records = Counter(by_problem["record"])
    assert records == {
        "raw_problems": 1, "raw_problems (duplicate)": 1,  # its source row and the folded duplicate
        "unique_problems": 1, "duplicate_problems": 1,  # its dedupe cluster
        "contamination check": 1,
        "pass_rates": 3,  # small model over two settings/shards, strong model
        "distillations": 4, "verified_distillations": 4,
        "stage1_sft": 1, "stage2_sft": 1,
        "lineage": 2,  # the selection params of both split runs
    }
    rows = {}
    for r in by_problem.iter_rows(named=True):
        rows.setdefault(r["record"], []).append(json.loads(r["row"]))
    assert rows["raw_problems (duplicate)"][0]["source"] == "gsm"
    assert rows["duplicate_problems"][0]["cluster_id"] == mixed.problem_id
    assert rows["contamination check"][0] == {"hits": 0, "in_clean_problems": True}
    assert {r["model"] for r in rows["pass_rates"]} == {SMALL, STRONG}
    assert gid in {r["generation_id"] for r in rows["verified_distillations"]}
    assert rows["stage2_sft"][0]["generation_id"] == gid
    assert {r["params"]["split"] for r in rows["lineage"]} == {"stage1_sft", "stage2_sft"}
    assert by_problem["step"].to_list() == sorted(by_problem["step"].to_list())


def test_row_lineage_of_a_contaminated_problem(built_splits_world):
    store, p = built_splits_world
    trail = run_named_query("row_lineage", {"problem_id": p["contaminated"].problem_id}, store=store)
    rows = {r["record"]: json.loads(r["row"]) for r in trail.iter_rows(named=True)}
    assert rows["contamination"]["benchmark"] == "math500"
    assert rows["contamination check"] == {"hits": 1, "in_clean_problems": False}
    assert "stage1_sft" not in rows
    unknown = run_named_query("row_lineage", {"problem_id": "nope"}, store=store)
    assert unknown["record"].to_list() == ["contamination check"]
    assert json.loads(unknown["row"][0]) == {"hits": 0, "in_clean_problems": False}


def test_queries_run_as_plain_sql_files_like_the_cli(built_splits_world):
    """What `make sql` then `SET VARIABLE ...; .read sql/analysis/X.sql` does."""
    store, _ = built_splits_world
    con = store.open_reader()
    try:
        con.execute("SET VARIABLE model = 'strong_model'")
        via_file = con.execute((SQL_DIR / "analysis" / "pass_rate_histogram.sql").read_text()).pl()
    finally:
        con.close()
    assert via_file.equals(run_named_query("pass_rate_histogram", {"model": STRONG}, store=store))



def test_cost_per_kept_sample_joins_teacher_spend_to_what_survived(splits_world):
    """Dollars per kept SFT row: every distillation generation priced at $1 per million output
    tokens, one failed (unpriced) generation; counts come from the world's own tables."""
    store, _ = splits_world
    cfg = parse_config(copy.deepcopy(WORLD_CONFIG), store.home)
    build_split(store, cfg, "stage1_sft", "run-s1")
    build_split(store, cfg, "stage2_sft", "run-s2")
    with store.connect() as con:
        con.execute("""
            INSERT INTO generations BY NAME
            SELECT generation_id, 'distillation' AS purpose, problem_id, model, params_hash, params, sample_idx, prompt,
                   text, n_prompt_tokens, n_tokens, n_tokens // 2 AS n_reasoning_tokens, n_tokens / 1e6 AS cost_usd,
                   finish_reason, 'run' AS run_id, now()::TIMESTAMP AS created_at
            FROM distillations""")
        con.execute("""
            INSERT INTO generations BY NAME
            SELECT 'failed-1' AS generation_id, 'distillation' AS purpose, d.problem_id, model, params_hash, params,
                   99 AS sample_idx, prompt, 'HTTP 500' AS error, 'run' AS run_id, now()::TIMESTAMP AS created_at
            FROM stage1_sft s JOIN distillations d USING (generation_id) ORDER BY d.problem_id LIMIT 1""")
        dist = con.execute("SELECT sum(n_tokens), sum(n_tokens // 2), count(*) FROM distillations").fetchone()
        verified = con.execute("SELECT count(*) FROM verified_distillations WHERE correct").fetchone()[0]
        kept = dict(con.execute("SELECT source || ' ' || difficulty_band, count(*) FROM stage1_sft GROUP BY 1").fetchall())
        n_stage2 = con.execute("SELECT count(*) FROM stage2_sft").fetchone()[0]
    cost = run_named_query("cost_per_kept_sample", store=store)
    total = cost.filter(pl.col("source") == "(all)").row(0, named=True)
    assert total["teacher_model"] == TEACHER and total["difficulty_band"] == "(all)"
    assert total["samples"] == dist[2] + 1 and total["failed_samples"] == 1 and total["priced_samples"] == dist[2]
    assert total["completion_tokens"] == dist[0] and total["reasoning_tokens"] == dist[1]
    assert total["cost_usd"] == pytest.approx(dist[0] / 1e6, abs=1e-6)
    assert total["verified_samples"] == verified and total["stage2_rows"] == n_stage2
    assert total["stage1_rows"] == sum(kept.values()) > 0
    assert total["usd_per_kept_row"] == pytest.approx(dist[0] / 1e6 / sum(kept.values()), abs=1e-6)
    # The query's bands are stage1_sft's own: every kept row lands in its split band.
    groups = cost.filter(pl.col("source") != "(all)")
    got = {f"{r['source']} {r['difficulty_band']}": r["stage1_rows"] for r in groups.iter_rows(named=True) if r["stage1_rows"]}
    assert got == kept
    for r in groups.iter_rows(named=True):
        if r["stage1_rows"]:
            assert r["usd_per_kept_row"] == pytest.approx(r["cost_usd"] / r["stage1_rows"], abs=1e-6)
        else:
            assert r["usd_per_kept_row"] is None
def test_contamination_review_puts_each_flag_beside_its_best_match():
    """Hand-built contamination rows: the best match is the benchmark row most methods agree on."""
    con = duckdb.connect()
    con.execute((SQL_DIR / "schema.sql").read_text())
    con.execute("INSERT INTO unique_problems (problem_id, cluster_id, source, source_row, problem, answer, cluster_size,"
                " run_id) VALUES ('p1','p1','pool',0,'copy of A',NULL,1,'r'),"
                " ('p2','p2','pool',1,'template like B',NULL,1,'r'), ('p3','p3','pool',2,'clean',NULL,1,'r')")
    con.execute("INSERT INTO benchmark_problems (benchmark, benchmark_row, problem_id, problem, answer, source_ref, run_id)"
                " VALUES ('b',0,'x','A text',NULL,'f','r'), ('b',1,'y','B text',NULL,'f','r')")
    con.execute("INSERT INTO contamination (problem_id, matched_problem_id, benchmark, benchmark_row, method, score,"
                " evidence, run_id, judge_verdict, judge_model) VALUES"
                " ('p1','p1','b',0,'ngram',1.0,'e1','r',NULL,NULL), ('p1','p1','b',0,'minhash',0.9,'e2','r',NULL,NULL),"
                " ('p1','p1','b',1,'ngram',0.99,'e3','r',NULL,NULL), ('p2','m2','b',1,'digit_stripped',1.0,'e4','r',NULL,NULL),"
                # p3: its one hit (a stronger one than p1's) judged DIFFERENT, so it stays clean
                " ('p3','p3','b',0,'semantic',0.97,'e5','r','DIFFERENT','judge-model'),"
                # p1 also has a judged hit on its best pair: the verdict shows, the pair still removes
                " ('p1','p1','b',0,'semantic',0.95,'e6','r','EQUIVALENT','judge-model')")
    review = execute_named_query(con, "contamination_review")
    rows = {r["problem_id"]: r for r in review.iter_rows(named=True)}
    assert set(rows) == {"p1", "p2", "p3"}                        # every flagged row once
    assert review["problem_id"].to_list() == ["p3", "p2", "p1"]   # the judge's lift, then weakest evidence first
    assert (rows["p3"]["removed"], rows["p3"]["judge_verdict"], rows["p3"]["judge_model"]) == (False, "DIFFERENT", "judge-model")
    assert (rows["p1"]["removed"], rows["p1"]["judge_verdict"]) == (True, "EQUIVALENT")
    assert (rows["p2"]["removed"], rows["p2"]["judge_verdict"]) == (True, None)
    p1 = rows["p1"]
    assert (p1["benchmark_row"], p1["benchmark_problem"], p1["problem"]) == (0, "A text", "copy of A")
    assert (p1["ngram_score"], p1["minhash_score"], p1["digit_stripped_score"]) == (1.0, 0.9, None)
    assert p1["methods_agreeing"] == 3 and p1["methods"] == "minhash, ngram, semantic" and p1["benchmark_rows_matched"] == 2
    assert rows["p2"]["matched_problem_id"] == "m2" and rows["p2"]["methods_agreeing"] == 1
