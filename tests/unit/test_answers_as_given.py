"""Answers as datasets give them: list answers, and sources without an answer."""

import json

from r1_assets.config import parse_config
from r1_assets.sources import collect_source
from r1_assets.verification import reference_alternatives, verify_one


def _source(tmp_path, rows, **keys):
    path = tmp_path / "bench.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = parse_config({"sources": [], "benchmarks": [{"name": "b", "kind": "file", "path": str(path), **keys}]}, tmp_path)
    return collect_source(cfg.benchmarks[0], cfg, "benchmark_problems")


def test_list_answers_load_as_given(tmp_path):
    got = _source(tmp_path, [
        {"problem": "p1", "final_answer": ["12"]},
        {"problem": "p2", "final_answer": ["2", "-2"]},
        {"problem": "p3", "final_answer": [3, 4.5]},
        {"problem": "p4", "final_answer": []},
        {"problem": "p5", "final_answer": [{"x": 1}]},
    ], answer="final_answer")
    assert got.rows["answer"].to_list() == ["12", '["2", "-2"]', '["3", "4.5"]']
    assert dict(got.rejected_by_reason()) == {"non_text_answer": 2}


def test_answer_null_needs_no_answer_field(tmp_path):
    got = _source(tmp_path, [{"problem": "p1"}, {"problem": "p2", "answer": None}], answer=None)
    assert got.rows["answer"].to_list() == [None, None] and got.rejected.height == 0


def test_math_verify_accepts_any_item_of_a_list_answer():
    assert reference_alternatives('["2", "-2"]') == ["2", "-2"]
    assert reference_alternatives("[0,1]") == ["[0,1]"]          # an interval stays one answer
    assert verify_one("so $x = \\boxed{-2}$", '["2", "-2"]').correct is True
    assert verify_one("so $x = \\boxed{2}$", '["2", "-2"]').correct is True
    assert verify_one("so $x = \\boxed{3}$", '["2", "-2"]').correct is False
