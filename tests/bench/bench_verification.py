"""Benchmark: math-verify verification rate, process pool vs a single process, same run.

    nice python tests/bench/bench_verification.py [--repeat 1] [--hangs 8] [--timeout 5]

Input: the 800 labelled Qwen2.5-Math solutions of ../shared/data/samples/qwen25_math_cot_100x8.jsonl
(the real mix of LaTeX answers a verifier sees), optionally plus ``--hangs`` answers that
exhaust the per-sample timeout (a tower of powers), the pathological case a pool is for.

Modes, each on the same pairs, in this order:
- ``inline``: ``verify_one`` in a loop in this process (main thread, per-sample alarm): the
  single-process baseline, no IPC;
- ``pool-1``: ``verify_batch(workers=1)``: one worker process (isolation, no parallelism);
- ``pool-N``: ``verify_batch(workers=N)``, N = the cores this process may use.
Times include starting the workers. Prints a markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from r1_assets.verification import default_workers, verify_batch, verify_one  # noqa: E402

DATA = Path(os.environ.get("R1_SHARED_DATA", REPO.parent / "shared" / "data")) / "samples" / "qwen25_math_cot_100x8.jsonl"
POWER_TOWER = "\\boxed{" + "2^{" * 7 + "2" + "}" * 7 + "}"


def load_pairs(repeat: int, hangs: int) -> tuple[list[tuple[str, str]], list[bool | None]]:
    pairs, labels = [], []
    for line in DATA.open():
        row = json.loads(line)
        for text, score in zip(row["code"], row["score"]):
            pairs.append((text, row["gt"]))
            labels.append(bool(score))
    pairs, labels = pairs * repeat, labels * repeat
    # Spread the hanging answers through the batch, as they would occur.
    step = max(1, len(pairs) // max(hangs, 1))
    for i in range(hangs):
        pairs.insert(i * step + i, (POWER_TOWER, "5"))
        labels.insert(i * step + i, None)
    return pairs, labels


def run(mode: str, pairs, timeout_s: int):
    started = time.monotonic()
    if mode == "inline":
        results = [verify_one(p, r, timeout_s=timeout_s) for p, r in pairs]
    else:
        results = verify_batch(pairs, timeout_s=timeout_s, workers=int(mode.split("-")[1]))
    return results, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=1, help="times the 800 pairs are repeated")
    parser.add_argument("--hangs", type=int, default=8, help="answers that exhaust the timeout, added to the batch")
    parser.add_argument("--timeout", type=int, default=5)
    args = parser.parse_args()
    pairs, labels = load_pairs(args.repeat, args.hangs)
    n_workers = default_workers()
    modes = ["inline", "pool-1", f"pool-{n_workers}"]
    print(f"{len(pairs)} pairs ({args.hangs} hanging), timeout {args.timeout}s, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    rows = []
    baseline = None
    for mode in modes:
        results, seconds = run(mode, pairs, args.timeout)
        rate = len(pairs) / seconds
        baseline = baseline or rate
        labelled = [(r, label) for r, label in zip(results, labels) if label is not None]
        agree = sum((r.correct is True) == label for r, label in labelled) / len(labelled)
        timeouts = sum(r.verdict == "timeout" for r in results)
        rows.append((mode, seconds, rate, rate / baseline, agree, timeouts))
        print(f"{mode}: {seconds:.1f}s, {rate:.1f} samples/s, x{rate / baseline:.2f}, agreement {agree:.4f}, "
              f"timeouts {timeouts}", flush=True)
    print("\n| mode | seconds | samples/s | vs inline | label agreement | timeouts |")
    print("|---|---|---|---|---|---|")
    for mode, seconds, rate, ratio, agree, timeouts in rows:
        print(f"| {mode} | {seconds:.1f} | {rate:.1f} | {ratio:.2f}x | {agree:.2%} | {timeouts} |")


if __name__ == "__main__":
    main()
