"""Real code problems (MBPP, HumanEval) as verifier inputs, and the mutations the verifier must reject."""

from __future__ import annotations

import ast
import json
from pathlib import Path

FENCE = "```"

# Applied to every returned value by the off-by-one mutation: numbers +1, booleans negated,
# strings and sequences one element longer, anything else replaced by a fresh object.
OFF_BY_ONE_HELPER = '''
def __r1_off_by_one(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float, complex)):
        return value + 1
    if isinstance(value, str):
        return value + "#"
    if isinstance(value, list):
        return value + [object()]
    if isinstance(value, tuple):
        return value + (object(),)
    if isinstance(value, (set, frozenset)):
        return type(value)(value) | {object()}
    if isinstance(value, dict):
        return {**value, object(): None}
    return object()
'''


def as_answer(code: str) -> str:
    """A final answer the way a model writes it: some words, then the code in a fence."""
    return f"Here is my solution.\n\n{FENCE}python\n{code}\n{FENCE}\n"


def mbpp_items(shared_data: Path) -> list[dict]:
    """task_id, code (reference solution) and tests (setup code first, then test_list) per MBPP task."""
    items = []
    for line in (shared_data / "code" / "mbpp.jsonl").open():
        row = json.loads(line)
        setup = row["test_setup_code"].strip()
        items.append({"task_id": row["task_id"], "code": row["code"],
                      "tests": ([setup] if setup else []) + row["test_list"]})
    return items


def humaneval_items(shared_data: Path) -> list[dict]:
    """task_id, code (prompt + canonical solution) and tests (``check(entry_point)``)."""
    items = []
    for line in (shared_data / "code" / "humaneval.jsonl").open():
        row = json.loads(line)
        items.append({"task_id": row["task_id"], "code": row["prompt"] + row["canonical_solution"],
                      "tests": [row["test"] + f"\ncheck({row['entry_point']})\n"]})
    return items


class _OffByOne(ast.NodeTransformer):
    def visit_Return(self, node: ast.Return) -> ast.Return:
        self.generic_visit(node)
        value = node.value or ast.Constant(None)
        return ast.copy_location(ast.Return(ast.Call(ast.Name("__r1_off_by_one", ast.Load()), [value], [])), node)


def mutate_off_by_one(code: str) -> str:
    tree = _OffByOne().visit(ast.parse(code))
    return OFF_BY_ONE_HELPER + "\n" + ast.unparse(ast.fix_missing_locations(tree))


def mutate_body_pass(code: str) -> str:
    """Every top-level function's body replaced by ``pass``."""
    tree = ast.parse(code)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            docstring = ast.get_docstring(node)
            node.body = ([ast.Expr(ast.Constant(docstring))] if docstring else []) + [ast.Pass()]
    return ast.unparse(tree)
