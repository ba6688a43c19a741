"""How often SmolLM2-135M solves candidate reasoning-gym tasks: the numbers behind embedded_default.yaml.

    flock /tmp/r1-heavy.lock python -m tests.bench.measure_embedded_tasks [--problems 30] [--k 4]

One vLLM load for everything: every (task, settings, prompt) candidate's problems x k samples
go through ``VllmEngine.generate`` in one stream, then ``verify_batch`` scores them the way
``pass_rates`` and ``verified_distillations`` do (lenient: last number when nothing is boxed).
Prints, per candidate, the mean pass rate, how many problems fall in each quarter band, mean
tokens, the share of samples that stopped on their own and, for the teacher prompt, the share
of correct samples whose format passes the distillation checks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from r1_assets.config import ModelConfig, SamplingConfig
from r1_assets.distillation import format_issues, split_reasoning
from r1_assets.engines import SampleRequest, VllmEngine, sample_seed
from r1_assets.small_model import small_model_dir
from r1_assets.verification import verify_batch

SHORT = "{problem}\nGive only the final answer."
COT = "{problem}\nThink step by step, then write the final answer on its own line."
# The distillation checks need a final answer apart from the reasoning: a last paragraph or a
# boxed answer (distillation.split_reasoning).
COT_BOXED = "{problem}\nExplain your steps briefly, then give the final answer as \\boxed{{answer}}."
COT_ANSWER = "{problem}\nExplain your steps briefly.\n\nThen, after an empty line, write: Answer: <number>"

CANDIDATES = {
    "add_sub_1digit_2terms": ("basic_arithmetic", {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1,
                                                       "operators": ["+", "-"], "allow_parentheses": False, "allow_negation": False}),
    "add_sub_2digit_2terms": ("basic_arithmetic", {"min_terms": 2, "max_terms": 2, "min_digits": 2, "max_digits": 2,
                                                       "operators": ["+", "-"], "allow_parentheses": False, "allow_negation": False}),
    "mixed_1digit_3terms": ("basic_arithmetic", {"min_terms": 3, "max_terms": 3, "min_digits": 1, "max_digits": 1,
                                                     "operators": ["+", "-", "*"], "allow_parentheses": False, "allow_negation": False}),
    "chain_sum_1digit_3terms": ("chain_sum", {"min_terms": 3, "max_terms": 3, "min_digits": 1, "max_digits": 1}),
    "chain_sum_2digit_2terms": ("chain_sum", {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2}),
    "equations_small": ("simple_equations", {"min_terms": 2, "max_terms": 2, "min_value": 1, "max_value": 10,
                                                 "operators": ["+", "-"], "operators_weights": [0.5, 0.5]}),
    "products_1x1": ("products", {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}),
    "products_2x1": ("products", {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2}),
    "legs_2animals": ("leg_counting", {"min_animals": 1, "max_animals": 2, "max_instances": 3}),
    "gcd_small": ("gcd", {"min_value": 2, "max_value": 30}),
}


def main() -> None:
    import reasoning_gym

    parser = argparse.ArgumentParser()
    parser.add_argument("--problems", type=int, default=30)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--short-tokens", type=int, default=48)
    parser.add_argument("--cot-tokens", type=int, default=192)
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--prompts", nargs="*", default=["short", "cot"])
    parser.add_argument("--cot-problems", type=int, default=12, help="problems per candidate for the teacher prompt")
    parser.add_argument("--cot-k", type=int, default=2, help="samples per problem for the teacher prompt")
    args = parser.parse_args()
    # The folder the converted_small_model test fixture converts into (tests/model_support.py).
    home = REPO / ".pytest_cache" / "d" / "r1-small-model"
    if not small_model_dir(home).exists():
        sys.exit(f"no converted model in {home}: run a @pytest.mark.model test once")
    engine = VllmEngine(ModelConfig(name="small_model", enforce_eager=True, max_model_len=2048, batch_size=64), home)
    prompts = {"short": (SHORT, args.short_tokens), "cot": (COT, args.cot_tokens),
               "cot_boxed": (COT_BOXED, args.cot_tokens), "cot_answer": (COT_ANSWER, args.cot_tokens)}
    work = []  # (candidate, prompt kind, problem idx, sample idx, prompt, answer)
    for name, (task, settings) in CANDIDATES.items():
        if args.only and name not in args.only:
            continue
        ds = reasoning_gym.create_dataset(task, size=args.problems, seed=101, **settings)
        for i, item in enumerate(ds):
            for kind in args.prompts:
                template, _ = prompts[kind]
                for s in range(max(args.k, args.cot_k)):
                    work.append((name, kind, i, s, template.format(problem=item["question"]), str(item["answer"])))
    for kind in args.prompts:
        template, max_tokens = prompts[kind]
        sampling = SamplingConfig(n=args.k, temperature=0.7, top_p=0.95, max_tokens=max_tokens, seed=0)
        phase = [w for w in work if w[1] == kind and w[2] < (args.problems if kind == "short" else args.cot_problems)
                 and w[3] < (args.k if kind == "short" else args.cot_k)]
        reqs = [SampleRequest(key=f"{w[0]}|{w[2]}", sample_idx=w[3], prompt=w[4], seed=sample_seed(0, f"{w[0]}|{w[2]}", w[3]))
                for w in phase]
        answers = {(f"{w[0]}|{w[2]}", w[3]): w[5] for w in phase}
        started = time.monotonic()
        out = list(engine.generate(reqs, sampling))
        seconds = time.monotonic() - started
        tokens = sum(r.n_tokens or 0 for r in out)
        print(f"[{kind}: {template!r}, max_tokens {max_tokens}] {len(out)} samples, {tokens} tokens in {seconds:.0f}s "
              f"= {tokens / seconds:.0f} tok/s (model load {engine.load_seconds:.0f}s)", flush=True)
        report(kind, out, verify_batch([(r.text or "", answers[(r.key, r.sample_idx)]) for r in out], timeout_s=5, lenient=True))
    engine.close()


def report(kind: str, out: list, verdicts: list) -> None:
    per = defaultdict(lambda: defaultdict(list))
    for r, v in zip(out, verdicts):
        cand, idx = r.key.split("|")
        reasoning, final = split_reasoning(r.text)
        fmt_ok = not format_issues(r.text, reasoning, final, r.finish_reason, v.verdict)
        per[cand][idx].append((v.correct is True, r.n_tokens or 0, r.finish_reason == "stop", fmt_ok))
    print(f"  {'candidate':26} mean  problems per band [0,.25) [.25,.5) [.5,.75) [.75,1]  tokens  stop  format_ok of correct")
    summary = {}
    for cand, problems in per.items():
        rates = [sum(c for c, *_ in s) / len(s) for s in problems.values()]
        bands = [sum(lo <= r < hi for r in rates) for lo, hi in [(0, .25), (.25, .5), (.5, .75), (.75, 1.01)]]
        samples = [x for s in problems.values() for x in s]
        correct = [x for x in samples if x[0]]
        fmt = sum(x[3] for x in correct) / max(len(correct), 1)
        mean = sum(rates) / len(rates)
        tok = sum(x[1] for x in samples) / len(samples)
        stop = sum(x[2] for x in samples) / len(samples)
        print(f"  {cand:26} {mean:.2f}  {bands}  {tok:5.0f}  {stop:.2f}  {fmt:.2f}", flush=True)
        summary[cand] = {"mean": round(mean, 3), "bands": bands, "tokens": round(tok), "stop": round(stop, 2),
                         "format_ok_of_correct": round(fmt, 2)}
    print(json.dumps({kind: summary}), flush=True)


if __name__ == "__main__":
    main()
