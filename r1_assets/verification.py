"""Answer verification with math-verify, Open-R1's extraction settings, in a hang-proof process pool.

``verify_batch(pairs)`` scores (prediction_text, reference_answer) pairs and never hangs:

- math-verify runs only in worker PROCESSES, on their main thread, because its timeouts use
  ``signal.alarm`` (threads raise "signal only works in main thread").
- Each sample gets one ``timeout_s`` budget, enforced by an alarm inside the worker that covers
  parsing the reference, parsing the prediction and comparing them. math-verify's own
  per-call timeouts are switched off so that a timeout is reported as verdict ``timeout``
  instead of being silently turned into "wrong" (which is what math-verify does by default).
- An alarm cannot interrupt C code (a huge sympy integer power, a regex that backtracks), so the
  parent also kills a worker that overruns ``timeout_s + KILL_MARGIN_S``, records ``timeout`` and
  starts a replacement; a worker that crashes gives ``error``. The batch always completes.

Extraction follows Open-R1's accuracy reward: the reference is parsed with
``extraction_mode="first_match"``; the prediction with ``LatexExtractionConfig(boxed_match_priority=0,
normalization boxed="all", units; Open-R1 also sets equations=True, a deprecated no-op in
math-verify 0.9)`` plus ``ExprExtractionConfig``. A reference that
cannot be parsed is never counted as correct or wrong (open-r1 issue 293: it used to score 1).
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import re
import signal
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Literal

log = logging.getLogger(__name__)

Verdict = Literal["correct", "wrong", "unparseable_reference", "unparseable_answer", "timeout", "error"]
VERDICTS: tuple[str, ...] = ("correct", "wrong", "unparseable_reference", "unparseable_answer", "timeout", "error")

# Extra seconds the parent waits beyond timeout_s before killing a worker: the in-worker alarm
# normally fires first; the kill is for code the alarm cannot interrupt.
KILL_MARGIN_S = 3.0
# A worker that has not imported math-verify after this long is stuck (or the machine is
# overloaded beyond use); it is killed and counted as a start failure.
STARTUP_TIMEOUT_S = 120.0
# Stored extracted answers are cut to this many characters (a pathological answer can be huge).
MAX_EXTRACTED_CHARS = 500


@dataclass(frozen=True)
class VerifyResult:
    verdict: Verdict
    # True/False only when the verdict is correct/wrong; None when nothing was decided.
    correct: bool | None
    # The prediction's extracted answer as text (math-verify's string match), when one was found.
    extracted_answer: str | None = None
    detail: str | None = None
    # How the prediction's answer was found: "math_verify" (Open-R1 extraction) or
    # "last_number" (lenient fallback); None when no answer was extracted.
    method: str | None = None


# --------------------------------------------------------------------------------------------
# Reference answers


_GSM8K_ANSWER = re.compile(r"####\s*(.+?)\s*$", re.S)
_LATEX_ANCHORS = ("\\boxed", "$", "\\(", "\\[")


def reference_answer(answer: str) -> str:
    """The bare reference answer: GSM8K ``"...reasoning... #### 1,234"`` becomes ``"1234"``.

    Other answers are returned stripped; LaTeX is kept as written.
    """
    text = (answer or "").strip()
    match = _GSM8K_ANSWER.search(text)
    if match:
        text = match.group(1).strip()
        # GSM8K writes thousands separators ("1,234"); a comma inside a bare number is never a tuple there.
        if re.fullmatch(r"-?[\d,]+(\.\d+)?", text):
            text = text.replace(",", "")
    return text


def reference_alternatives(reference: str) -> list[str]:
    """The accepted answers: a JSON list of strings (how sources store a list-valued answer of
    two or more items, e.g. ``["2", "-2"]``) is each of its items; any other text is itself.

    Only a list of *quoted* items counts, so an interval such as ``[0,1]`` stays one answer.
    """
    text = (reference or "").strip()
    if text.startswith('["') and text.endswith('"]'):
        try:
            items = json.loads(text)
        except json.JSONDecodeError:
            return [reference]
        if isinstance(items, list) and items and all(isinstance(i, str) for i in items):
            return items
    return [reference]


def _gold_text(reference: str) -> str:
    """Reference text as math-verify should see it: bare answers are wrapped in ``$...$``.

    Open-R1 parses gold *solutions* that carry ``\\boxed{}``; a bare answer such as
    ``(3,\\frac{\\pi}{2})`` or ``2 \\sqrt{3}`` is not found (or found as ``2``) without an anchor.
    """
    ref = reference_answer(reference)
    if any(anchor in ref for anchor in _LATEX_ANCHORS):
        return ref
    return f"${ref}$"


# --------------------------------------------------------------------------------------------
# Work done inside a worker process (main thread).


class _SampleTimeout(BaseException):
    """Raised by the per-sample alarm; a BaseException so math-verify's ``except Exception`` lets it through."""


_CONFIGS: dict | None = None
_LAST_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")


def _configs() -> dict:
    global _CONFIGS
    if _CONFIGS is None:
        import math_verify.grader
        import math_verify.parser
        from math_verify import ExprExtractionConfig, LatexExtractionConfig, LatexNormalizationConfig

        # We enforce one alarm per sample ourselves; silence the "timeout disabled" warning.
        math_verify.parser.TIMEOUT_WARNING_SHOWN = True
        math_verify.grader.TIMEOUT_WARNING_SHOWN = True
        _CONFIGS = {
            "prediction": [
                LatexExtractionConfig(
                    normalization_config=LatexNormalizationConfig(
                        nits=False, malformed_operators=False, basic_latex=True,
                        boxed="all", units=True,
                    ),
                    boxed_match_priority=0,
                    try_extract_without_anchor=False,
                ),
                ExprExtractionConfig(),
            ],
        }
    return _CONFIGS


def _answer_text(parsed: list) -> str | None:
    if not parsed:
        return None
    strings = [p for p in parsed if isinstance(p, str)]
    text = strings[-1] if strings else str(parsed[0])
    return text[:MAX_EXTRACTED_CHARS]


def _last_number(text: str) -> str | None:
    numbers = _LAST_NUMBER.findall(text or "")
    return numbers[-1].replace(",", "") if numbers else None


def _judge(prediction: str, reference: str, lenient: bool) -> VerifyResult:
    """Verify one pair. Call only on a process's main thread inside the sample alarm."""
    from math_verify import ExprExtractionConfig, parse, verify

    configs = _configs()
    golds = [g for g in (parse(_gold_text(ref), extraction_mode="first_match", parsing_timeout=None)
                         for ref in reference_alternatives(reference)) if g]
    if not golds:
        return VerifyResult("unparseable_reference", None, detail=f"reference {reference[:200]!r} not parseable")
    pred = parse(prediction or "", extraction_config=configs["prediction"],
                 extraction_mode="first_match", parsing_timeout=None)
    method = "math_verify"
    if not pred and lenient:
        number = _last_number(prediction)
        if number is not None:
            pred = parse(number, extraction_config=[ExprExtractionConfig()], parsing_timeout=None)
            method = "last_number"
    if not pred:
        return VerifyResult("unparseable_answer", None, detail="no answer found in the prediction")
    extracted = _answer_text(pred)
    ok = any(verify(gold, pred, timeout_seconds=None) for gold in golds)
    return VerifyResult("correct" if ok else "wrong", bool(ok), extracted_answer=extracted, method=method)


def verify_one(prediction: str, reference: str, timeout_s: int = 5, lenient: bool = False) -> VerifyResult:
    """Verify one pair in THIS process under a ``timeout_s`` alarm (main thread only).

    Used by the pool workers and by single-process baselines; from threaded code use ``verify_batch``.
    """

    def on_alarm(signum, frame):
        raise _SampleTimeout()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(max(1, int(timeout_s)))
    try:
        return _judge(prediction, reference, lenient)
    except _SampleTimeout:
        return VerifyResult("timeout", None, detail=f"verification exceeded {timeout_s}s")
    except Exception as err:  # noqa: BLE001 - one bad sample must not stop a batch
        return VerifyResult("error", None, detail=f"{type(err).__name__}: {str(err)[:300]}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _worker_main(conn, timeout_s: int, lenient: bool) -> None:
    # The parent handles Ctrl-C; a worker must not die mid-message on it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _configs()
    import math_verify  # noqa: F401 - import before announcing readiness, so deadlines exclude it

    conn.send(("ready", None))
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        idx, prediction, reference = task
        conn.send((idx, verify_one(prediction, reference, timeout_s, lenient)))


# --------------------------------------------------------------------------------------------
# The pool (parent side).


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _context():
    # forkserver: workers fork from a clean server that preloaded math-verify/sympy, so a
    # replacement for a killed worker starts in milliseconds, and we never fork a threaded
    # parent (Dagster runs threads).
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["r1_assets.verification", "math_verify", "sympy"])
    return ctx


class _Worker:
    def __init__(self, ctx, timeout_s: int, lenient: bool):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, timeout_s, lenient), daemon=True)
        self.proc.start()
        child.close()
        self.ready = False
        self.task: int | None = None
        self.deadline = time.monotonic() + STARTUP_TIMEOUT_S

    def stop(self, kill: bool = False) -> None:
        if not kill and self.proc.is_alive():
            try:
                self.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            self.proc.join(1.0)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5.0)
        self.conn.close()


def verify_batch(
    pairs: list[tuple[str, str]],
    timeout_s: int = 5,
    workers: int | None = None,
    lenient: bool = False,
    progress=None,
) -> list[VerifyResult]:
    """Verify ``(prediction_text, reference_answer)`` pairs; results come back in input order.

    ``workers`` defaults to the cores this process may use. ``progress(done, total)`` is called
    now and then for logging. A sample that hangs becomes ``timeout``; a crash becomes ``error``.
    """
    pairs = list(pairs)
    total = len(pairs)
    if total == 0:
        return []
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    n_workers = max(1, min(workers or default_workers(), total))
    hard_limit = timeout_s + KILL_MARGIN_S
    ctx = _context()
    results: list[VerifyResult | None] = [None] * total
    pending = deque(range(total))
    pool = [_Worker(ctx, timeout_s, lenient) for _ in range(n_workers)]
    done = 0
    next_report = time.monotonic() + 10.0

    startup_failures = 0

    def replace(worker: _Worker) -> None:
        nonlocal startup_failures
        if not worker.ready:
            # A worker that dies before announcing readiness will keep dying: stop, do not loop.
            startup_failures += 1
            if startup_failures >= 3:
                raise RuntimeError(
                    f"verification workers exit on start (exit code {worker.proc.exitcode}); "
                    "see the worker traceback above"
                )
        worker.stop(kill=True)
        pool[pool.index(worker)] = _Worker(ctx, timeout_s, lenient)

    try:
        while done < total:
            for worker in pool:
                if worker.ready and worker.task is None and pending:
                    idx = pending.popleft()
                    prediction, reference = pairs[idx]
                    worker.conn.send((idx, prediction or "", reference or ""))
                    worker.task = idx
                    worker.deadline = time.monotonic() + hard_limit
            watched = [w for w in pool if w.task is not None or not w.ready]
            wake = min((w.deadline for w in watched), default=time.monotonic() + hard_limit)
            handles = [w.conn for w in pool] + [w.proc.sentinel for w in pool]
            ready = set(wait(handles, timeout=max(0.0, wake - time.monotonic())))
            for worker in list(pool):
                if worker.conn in ready:
                    try:
                        tag, payload = worker.conn.recv()
                    except (EOFError, OSError):
                        tag = None
                    if tag is None:  # the worker died while we were reading
                        if worker.task is not None:
                            results[worker.task] = VerifyResult("error", None, detail="verification worker crashed")
                            done += 1
                        replace(worker)
                    elif tag == "ready":
                        worker.ready = True
                    else:
                        results[tag] = payload
                        worker.task = None
                        done += 1
                elif worker.proc.sentinel in ready:
                    code = worker.proc.exitcode
                    if worker.task is not None:
                        results[worker.task] = VerifyResult(
                            "error", None, detail=f"verification worker exited with code {code}"
                        )
                        done += 1
                    replace(worker)
                elif not worker.ready and time.monotonic() > worker.deadline:
                    log.warning("a verification worker did not start within %.0fs; replacing it", STARTUP_TIMEOUT_S)
                    replace(worker)
                elif worker.task is not None and time.monotonic() > worker.deadline:
                    log.warning("verification of sample %d hung past %.0fs; killing its worker", worker.task, hard_limit)
                    results[worker.task] = VerifyResult(
                        "timeout", None, detail=f"worker killed after {hard_limit:.0f}s (alarm could not interrupt)"
                    )
                    done += 1
                    replace(worker)
            if progress is not None and time.monotonic() >= next_report:
                progress(done, total)
                next_report = time.monotonic() + 10.0
    finally:
        for worker in pool:
            worker.stop()
    if progress is not None:
        progress(done, total)
    return results  # type: ignore[return-value]
