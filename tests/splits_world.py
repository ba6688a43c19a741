"""A small, realistic r1-curator database for the split, SQL and export tests.

A pytest plugin (registered in tests/conftest.py): the fixtures ``splits_world`` (a fresh
populated store per test) and ``built_splits_world`` (both splits built, shared read-only by a
module); tests that need their own variant call ``populate_world`` directly.

``populate_world(store)`` writes every stage table through ``Store.replace_partition``,
exactly as the stage assets do (one partition per source or shard, with lineage rows).
Each named problem exercises one outcome of the split rules in r1_assets/splits.py;
``bulk`` adds plain eligible problems for the cap and choice tests.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field

import polars as pl
import pytest

from r1_assets.config import parse_config
from r1_assets.splits import build_split
from r1_assets.storage import Lineage, Store
from r1_assets.text import problem_id, stable_hash

SMALL = "small_model"  # pass_rates.model of the difficulty model (role 'small')
STRONG = "strong_model"  # pass_rates.model of the stage-2 model (role 'strong')
TEACHER = "teacher_model"
RUN = "run-world"
PROMPT = "{problem}\nPlease reason step by step, and put your final answer within \\boxed{{}}."

# A pipeline config whose models match the names above; tests copy and edit it.
WORLD_CONFIG = {
    "sources": [
        {"name": "gsm", "kind": "file", "path": "unused.jsonl", "problem": "question"},
        {"name": "math", "kind": "file", "path": "unused.jsonl"},
    ],
    "models": {
        "small": {"name": SMALL},
        "strong": {"name": STRONG},
        "teacher": {"name": TEACHER},
    },
    "difficulty": {"model": "small"},
    "distillation": {"model": "teacher"},
    "splits": {"alpha": 0.5, "stage2_model": "strong", "stage2_alpha": 0.5},
}


@dataclass
class Sample:
    """One teacher sample and its verification."""

    n_tokens: int
    correct: bool | None  # None = undecided
    finish_reason: str = "stop"
    format_ok: bool = True
    reasoning: str | None = "default"  # "default" = generated text; None = no <think> block
    verdict: str | None = None  # default follows `correct`
    format_issues: list[str] = field(default_factory=list)


@dataclass
class Problem:
    key: str  # a short name tests refer to
    source: str
    text: str
    answer: str
    # (model, params_hash, k, n_correct, reference_status, shard)
    pass_rates: list[tuple] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    contaminated_by: tuple[str, int, str] | None = None  # (benchmark, row, method)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (source, text) folded into it

    @property
    def problem_id(self) -> str:
        return problem_id(self.text)


def pr(model: str, n_correct: int | None, k: int = 8, status: str = "ok", params: str = "p1", shard: str = "shard-0000"):
    return (model, params, k, n_correct, status, shard)


def named_problems() -> list[Problem]:
    """One problem per outcome (stage 1 alpha = 0.5, stage 2 alpha = 0.5)."""
    mixed = [Sample(300, True), Sample(120, True), Sample(200, False), Sample(90, None, verdict="timeout")]
    return [
        Problem("too_easy", "gsm", "Tom has 3 apples and buys 4 more. How many apples does he have?", "7",
                [pr(SMALL, 7)], [Sample(80, True), Sample(85, True)]),
        Problem("unparseable_ref", "math", "Simplify the expression $\\frac{x^2-1}{x-1}$ for $x \\neq 1$.", "x+1 (x≠1)",
                [pr(SMALL, None, status="unparseable_reference")], [Sample(150, True)]),
        Problem("unscored", "math", "Find the remainder when $2^{100}$ is divided by $7$.", "2", [], [Sample(140, True)]),
        Problem("not_distilled", "gsm", "A train travels 60 miles per hour for 3 hours. How far does it go?", "180",
                [pr(SMALL, 1)], []),
        Problem("no_correct", "math", "How many positive divisors does $360$ have?", "24",
                [pr(SMALL, 0)], [Sample(400, False), Sample(380, False)]),
        Problem("truncated", "math", "Compute $\\sum_{k=1}^{20} k^2$.", "2870",
                [pr(SMALL, 2)], [Sample(512, True, finish_reason="length", format_ok=False, format_issues=["truncated"]),
                                 Sample(200, False)]),
        Problem("bad_format", "gsm", "Sara reads 12 pages a day. How many pages does she read in 9 days?", "108",
                [pr(SMALL, 1)], [Sample(160, True, format_ok=False, reasoning=None, format_issues=["no_think"])]),
        # Pass rates pooled over two sampling settings and shards: (1 + 3) / 16 = 0.25.
        Problem("mixed", "math", "What is the least common multiple of $12$, $18$ and $30$?", "180",
                [pr(SMALL, 1, params="p1", shard="shard-0000"), pr(SMALL, 3, params="p2", shard="shard-0001"),
                 pr(STRONG, 1)], mixed,
                duplicates=[("gsm", "What is the least common multiple of 12, 18, and 30 ?")]),
        Problem("all_correct", "gsm", "Each box holds 6 eggs. How many eggs are in 7 boxes?", "42",
                [pr(SMALL, 0), pr(STRONG, 0)], [Sample(110, True), Sample(130, True)]),
        Problem("strong_easy", "math", "Solve for $x$: $3x + 5 = 20$.", "5",
                [pr(SMALL, 3), pr(STRONG, 8)], [Sample(90, True), Sample(95, False)]),
        Problem("no_strong", "math", "What is $\\binom{10}{3}$?", "120",
                [pr(SMALL, 2)], [Sample(100, True), Sample(105, False)]),
        Problem("contaminated", "math", "How many vertical asymptotes does the graph of $y=\\frac{2}{x^2+x-6}$ have?", "2",
                [pr(SMALL, 0)], [Sample(200, True), Sample(210, False)],
                contaminated_by=("math500", 0, "ngram")),
    ]


def bulk_problems(n: int, seed: int = 0) -> list[Problem]:
    """Eligible problems spread over two sources and all difficulty bands below 0.5."""
    out = []
    for i in range(n):
        a, b = 11 + i, 7 + (i * 3) % 17
        n_correct = i % 4  # 0..3 of 8: bands [0,0.25) and [0.25,0.5)
        samples = [Sample(100 + (i * 37 + j * 53) % 400, j != 2) for j in range(4)]
        out.append(Problem(f"bulk{i}", "gsm" if i % 3 else "math", f"A farmer plants {a} rows of {b} trees each. "
                           f"How many trees does he plant in total? (case {i})", str(a * b),
                           [pr(SMALL, n_correct), pr(STRONG, (i * 5) % 8)], samples))
    return out


def _reasoning(p: Problem, s: Sample, idx: int) -> str:
    steps = [f"Step {j + 1}: consider the quantities in the problem and combine them carefully." for j in range(max(1, s.n_tokens // 20))]
    return f"Let me work on this. ({p.key} sample {idx})\n" + "\n".join(steps) + f"\nSo the result is {p.answer if s.correct else 'something else'}."


def populate_world(store: Store, problems: list[Problem] | None = None) -> dict[str, Problem]:
    """Write every stage table for ``problems`` (default: the named ones). Returns them by key."""
    problems = problems if problems is not None else named_problems()
    lin = Lineage(run_id=RUN, params={"world": True})
    raw, unique, dupes, clean, contam, bench = [], [], [], [], [], []
    pass_rows, dist_rows, ver_rows = [], [], []
    row_no: dict[str, int] = {}

    def next_row(source: str) -> int:
        row_no[source] = row_no.get(source, -1) + 1
        return row_no[source]

    for p in problems:
        pid = p.problem_id
        r = next_row(p.source)
        raw.append(dict(problem_id=pid, source=p.source, source_row=r, problem=p.text, answer=p.answer,
                        source_kind="file", source_ref=f"{p.source}.jsonl", metadata=json.dumps({"key": p.key}), run_id=RUN))
        for dup_source, dup_text in p.duplicates:
            dr = next_row(dup_source)
            raw.append(dict(problem_id=problem_id(dup_text), source=dup_source, source_row=dr, problem=dup_text,
                            answer=p.answer, source_kind="file", source_ref=f"{dup_source}.jsonl", metadata="{}", run_id=RUN))
            dupes.append(dict(problem_id=problem_id(dup_text), source=dup_source, source_row=dr, cluster_id=pid,
                              method="minhash", similarity=0.82, run_id=RUN))
        unique.append(dict(problem_id=pid, cluster_id=pid, source=p.source, source_row=r, problem=p.text,
                           answer=p.answer, cluster_size=1 + len(p.duplicates), run_id=RUN))
        if p.contaminated_by:
            benchmark, brow, method = p.contaminated_by
            bench.append(dict(benchmark=benchmark, benchmark_row=brow, problem_id=pid, problem=p.text, answer=p.answer,
                              source_ref=f"{benchmark}.jsonl", run_id=RUN))
            contam.append(dict(problem_id=pid, matched_problem_id=pid, benchmark=benchmark, benchmark_row=brow, method=method, score=1.0,
                               evidence=" ".join(p.text.split()[:8]), run_id=RUN))
        else:
            clean.append(dict(problem_id=pid, source=p.source, source_row=r, problem=p.text, answer=p.answer, run_id=RUN))
        for model, params_hash, k, n_correct, status, shard in p.pass_rates:
            pass_rows.append(dict(problem_id=pid, model=model, params_hash=params_hash, k=k, n_correct=n_correct,
                                  pass_rate=None if n_correct is None else n_correct / k,
                                  reference_status=status, shard=shard, run_id=RUN))
        for idx, s in enumerate(p.samples):
            gid = stable_hash("distillation", pid, TEACHER, "t1", idx)
            reasoning = _reasoning(p, s, idx) if s.reasoning == "default" else s.reasoning
            final = f"The answer is $\\boxed{{{p.answer if s.correct else '0'}}}$."
            text = (f"<think>\n{reasoning}\n</think>\n\n{final}" if reasoning is not None else final)
            if s.finish_reason == "length":
                text, final = text[: len(text) // 2], None
            prompt = PROMPT.format(problem=p.text)
            dist_rows.append(dict(generation_id=gid, problem_id=pid, model=TEACHER, params_hash="t1",
                                  params=json.dumps({"temperature": 0.6, "top_p": 0.95}), sample_idx=idx,
                                  prompt=prompt, text=text, reasoning=reasoning, final_answer=final,
                                  n_prompt_tokens=len(prompt) // 4, n_tokens=s.n_tokens, finish_reason=s.finish_reason,
                                  shard="shard-0000", run_id=RUN))
            verdict = s.verdict or {True: "correct", False: "wrong", None: "unparseable_answer"}[s.correct]
            ver_rows.append(dict(generation_id=gid, problem_id=pid, correct=s.correct,
                                 method="math_verify" if s.correct is not None else "none", verdict=verdict,
                                 extracted_answer=p.answer if s.correct else "0", format_ok=s.format_ok,
                                 format_issues=s.format_issues, judge_model=None, judge_verdict=None,
                                 shard="shard-0000", run_id=RUN))

    def frame(rows: list[dict], schema: dict | None = None) -> pl.DataFrame:
        return pl.DataFrame(rows, schema_overrides=schema, infer_schema_length=None)

    for source in sorted({r["source"] for r in raw}):
        store.replace_partition("raw_problems", frame([r for r in raw if r["source"] == source]),
                                where={"source": source}, lineage=lin)
    store.replace_partition("unique_problems", frame(unique), where=None, lineage=lin,
                            extra={"duplicate_problems": (frame(dupes), None)} if dupes else None)
    extra = {"contamination": (frame(contam), None)} if contam else {}
    if bench:
        extra["benchmark_problems"] = (frame(bench), None)
    store.replace_partition("clean_problems", frame(clean), where=None, lineage=lin, extra=extra)
    ver_schema = {"format_issues": pl.List(pl.String), "correct": pl.Boolean, "judge_model": pl.String,
                  "judge_verdict": pl.String}
    pass_schema = {"n_correct": pl.Int64, "pass_rate": pl.Float64}
    for shard in sorted({r["shard"] for r in pass_rows}):
        store.replace_partition("pass_rates", frame([r for r in pass_rows if r["shard"] == shard], pass_schema),
                                where={"shard": shard}, lineage=lin)
    for shard in sorted({r["shard"] for r in dist_rows}):
        store.replace_partition("distillations", frame([r for r in dist_rows if r["shard"] == shard],
                                                       {"reasoning": pl.String, "final_answer": pl.String}),
                                where={"shard": shard}, lineage=lin)
        store.replace_partition("verified_distillations", frame([r for r in ver_rows if r["shard"] == shard], ver_schema),
                                where={"shard": shard}, lineage=lin)
    return {p.key: p for p in problems}


@pytest.fixture
def splits_world(tmp_path) -> tuple[Store, dict[str, Problem]]:
    """A fresh store holding the named world, and its problems by key."""
    store = Store(tmp_path / "home")
    return store, populate_world(store)


@pytest.fixture(scope="module")
def built_splits_world(tmp_path_factory) -> tuple[Store, dict[str, Problem]]:
    """The named world with both splits built (WORLD_CONFIG, alpha 0.5), shared read-only by a module."""
    home = tmp_path_factory.mktemp("splits_world") / "home"
    store = Store(home)
    problems = populate_world(store)
    cfg = parse_config(copy.deepcopy(WORLD_CONFIG), home)
    build_split(store, cfg, "stage1_sft", "run-s1")
    build_split(store, cfg, "stage2_sft", "run-s2")
    return store, problems
