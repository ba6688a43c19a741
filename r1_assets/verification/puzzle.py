"""Puzzle answers: a reasoning-gym task scores its own answers (``dataset.score_answer``).

The entry the task needs (question, answer, metadata) is rebuilt from the raw row: the problem
text, the reference answer and ``raw_problems.metadata`` (reasoning-gym's entry metadata, which
names the task in ``source_dataset``). The answer scored is the final answer part of the sample:
the last ``<answer>...</answer>`` when there is one (reasoning-gym's own format), else the last
``\\boxed{...}``, else the final answer part as written. Correct when the score is at least
``verification.puzzle.min_score``.
"""

from __future__ import annotations

import json
import re
import signal

from r1_assets.verification.format import last_boxed
from r1_assets.verification.pool import run_pool
from r1_assets.verification.result import VerifyResult

VERSION = "puzzle@1"
KILL_MARGIN_S = 3.0
PRELOAD = ("r1_assets.verification.puzzle", "reasoning_gym")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_DATASETS: dict[str, object] = {}


class _ScoreTimeout(BaseException):
    pass


def extract_answer(text: str | None) -> str | None:
    text = (text or "").strip()
    tagged = _ANSWER_TAG.findall(text)
    if tagged:
        return tagged[-1].strip()
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed.strip()
    return text or None


def _dataset(task: str):
    # score_answer is a method of the task's dataset; its config (not its entries) matters, and
    # the default config is what sources build (size and seed pick entries, not rules).
    if task not in _DATASETS:
        import reasoning_gym

        _DATASETS[task] = reasoning_gym.create_dataset(task, size=1, seed=1)
    return _DATASETS[task]


def warm_up() -> None:
    """Import reasoning-gym in a worker before it takes tasks (about 5 s on a laptop core).

    The forkserver's preload is not enough: a process has one forkserver, preloaded by
    whichever verifier ran first, so after a math batch puzzle workers fork without
    reasoning-gym, and its import would count against a sample's deadline."""
    import reasoning_gym  # noqa: F401


def verify_one(answer_text: str, problem: str, reference: str | None, metadata: str | None, *,
               min_score: float = 1.0, timeout_s: int = 5) -> VerifyResult:
    """Verdict of one puzzle sample (call on a process's main thread: the timeout is an alarm)."""
    meta = json.loads(metadata) if isinstance(metadata, str) else (metadata or {})
    task = meta.get("source_dataset") if isinstance(meta, dict) else None
    if not task:
        return VerifyResult("unparseable_reference", None, method="none",
                            detail="no reasoning-gym task in the row's metadata (source_dataset)")
    predicted = extract_answer(answer_text)
    if predicted is None:
        return VerifyResult("unparseable_answer", None, detail="empty final answer", method="score_answer")

    try:
        # Built outside the alarm: the first use of a task imports and sets it up.
        dataset = _dataset(task)
    except Exception as err:  # noqa: BLE001 - an unknown task is this sample's problem only
        return VerifyResult("unparseable_reference", None, detail=f"reasoning-gym task {task!r}: {err}"[:300],
                            method="none")

    def on_alarm(signum, frame):
        raise _ScoreTimeout()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(max(1, int(timeout_s)))
    try:
        entry = {"question": problem, "answer": reference, "metadata": meta}
        score = float(dataset.score_answer(predicted, entry))
    except _ScoreTimeout:
        return VerifyResult("timeout", None, detail=f"score_answer exceeded {timeout_s}s", method="score_answer")
    except Exception as err:  # noqa: BLE001 - one bad sample must not stop a batch
        return VerifyResult("error", None, detail=f"{task}.score_answer: {type(err).__name__}: {str(err)[:300]}",
                            method="score_answer")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    ok = score >= min_score
    return VerifyResult("correct" if ok else "wrong", ok, extracted_answer=predicted[:500],
                        detail=f"{task} score {score:g} (min_score {min_score:g})", method="score_answer")


def verify_batch(items: list[tuple[str, str, str | None, str | None]], *, min_score: float = 1.0,
                 timeout_s: int = 5, workers: int | None = None, progress=None) -> list[VerifyResult]:
    """Verdicts of ``(answer_text, problem, reference, metadata_json)`` items in the process pool."""
    return run_pool(
        items, "r1_assets.verification.puzzle:verify_one", hard_limit_s=timeout_s + KILL_MARGIN_S,
        handler_kwargs={"min_score": min_score, "timeout_s": timeout_s},
        warmup="r1_assets.verification.puzzle:warm_up", preload=PRELOAD, workers=workers, progress=progress,
        what="puzzle verification",
    )
