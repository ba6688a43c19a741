"""A hang-proof process pool shared by every verifier (math, code, puzzles).

``run_pool(tasks, handler, ...)`` calls ``handler(*task, **handler_kwargs)`` for every task in
worker PROCESSES and returns the ``VerifyResult`` of each, in input order. It never hangs:

- a worker that overruns ``hard_limit_s`` on one task is killed, the task becomes ``timeout``
  and a replacement worker starts (C code an in-worker alarm cannot interrupt, a frozen worker);
- a worker that crashes or exits gives ``error`` for its task and is replaced;
- workers that die before they are ready three times stop the batch with a clear error
  (they would die forever).

Workers fork from a forkserver that preloaded ``preload`` (math-verify and sympy for math), so a
replacement starts in milliseconds and a threaded parent (Dagster) is never forked. A process
has one forkserver, preloaded by the first batch's verifier only, so what a handler must not
import on a sample's deadline belongs in its ``warmup`` (run before a worker announces it is ready).
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing as mp
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait
from typing import Any

from r1_assets.verification.result import VerifyResult

log = logging.getLogger(__name__)

# A worker that has not finished its warm-up after this long is stuck (or the machine is
# overloaded beyond use); it is killed and counted as a start failure.
STARTUP_TIMEOUT_S = 120.0


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _resolve(ref: str) -> Callable:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def _worker_main(conn, handler_ref: str, warmup_ref: str | None, handler_kwargs: dict) -> None:
    # The parent handles Ctrl-C; a worker must not die mid-message on it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    handler = _resolve(handler_ref)
    if warmup_ref:
        # Warm up before announcing readiness, so task deadlines exclude imports.
        _resolve(warmup_ref)()
    conn.send(("ready", None))
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        idx, args = task
        conn.send((idx, handler(*args, **handler_kwargs)))


def _context(preload: Sequence[str]):
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["r1_assets.verification.pool", *preload])
    return ctx


def start_server(preload: Sequence[str]) -> None:
    """Start the forkserver the workers fork from, importing ``preload``, and return at once.

    The imports run in the server (sympy, math-verify and reasoning-gym: ~6 s of a laptop core),
    beside whatever the caller does next, such as generating the samples it will score. A
    server already running is kept (its preload is fixed when it starts)."""
    from multiprocessing import forkserver

    _context(preload)
    forkserver.ensure_running()


class _Worker:
    def __init__(self, ctx, handler_ref: str, warmup_ref: str | None, handler_kwargs: dict):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, handler_ref, warmup_ref, handler_kwargs), daemon=True)
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


def run_pool(
    tasks: Sequence[tuple[Any, ...]],
    handler: str,
    *,
    hard_limit_s: float,
    handler_kwargs: dict | None = None,
    warmup: str | None = None,
    preload: Sequence[str] = (),  # what the server imports if this batch starts it
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    what: str = "verification",
) -> list[VerifyResult]:
    """Results of ``handler(*task, **handler_kwargs)`` for each task, in input order.

    ``handler`` and ``warmup`` are ``"module:function"`` references (picklable by name).
    ``workers`` defaults to the cores this process may use; ``progress(done, total)`` is
    called now and then for logging.
    """
    tasks = list(tasks)
    total = len(tasks)
    if total == 0:
        return []
    kwargs = dict(handler_kwargs or {})
    n_workers = max(1, min(workers or default_workers(), total))
    ctx = _context(preload)
    results: list[VerifyResult | None] = [None] * total
    pending = deque(range(total))
    pool = [_Worker(ctx, handler, warmup, kwargs) for _ in range(n_workers)]
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
                    f"{what} workers exit on start (exit code {worker.proc.exitcode}); "
                    "see the worker traceback above"
                )
        worker.stop(kill=True)
        pool[pool.index(worker)] = _Worker(ctx, handler, warmup, kwargs)

    try:
        while done < total:
            for worker in pool:
                if worker.ready and worker.task is None and pending:
                    idx = pending.popleft()
                    worker.conn.send((idx, tasks[idx]))
                    worker.task = idx
                    worker.deadline = time.monotonic() + hard_limit_s
            watched = [w for w in pool if w.task is not None or not w.ready]
            wake = min((w.deadline for w in watched), default=time.monotonic() + hard_limit_s)
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
                            results[worker.task] = VerifyResult("error", None, detail=f"{what} worker crashed")
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
                            "error", None, detail=f"{what} worker exited with code {code}"
                        )
                        done += 1
                    replace(worker)
                elif not worker.ready and time.monotonic() > worker.deadline:
                    log.warning("a %s worker did not start within %.0fs; replacing it", what, STARTUP_TIMEOUT_S)
                    replace(worker)
                elif worker.task is not None and time.monotonic() > worker.deadline:
                    log.warning("%s of sample %d hung past %.0fs; killing its worker", what, worker.task, hard_limit_s)
                    results[worker.task] = VerifyResult(
                        "timeout", None, detail=f"worker killed after {hard_limit_s:.0f}s (alarm could not interrupt)"
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
