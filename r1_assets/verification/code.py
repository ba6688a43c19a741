"""Code answers: the last fenced code block of the final answer, run against the problem's tests
in a bubblewrap sandbox.

Tests come in two shapes (``raw_problems.tests``, JSON):
- a list of Python snippets, usually ``assert`` statements (MBPP, HumanEval's ``check``), run in
  order in the namespace the solution defined; the first one that raises fails the sample;
- stdin/stdout cases ``{"inputs": [...], "outputs": [...]}`` (APPS, TACO, CodeContests): the
  solution runs once per case with the input on stdin; its output must equal the expected one
  after whitespace normalisation (each line's runs of blanks collapsed, blank ends dropped).

The sandbox (``bwrap``): no network, a read-only view of the system folders only (``/usr``,
``/etc``, ``/lib*``, ``/bin``; never ``$R1_HOME``, ``/root``, ``/home``, the project), a private
tmpfs ``/tmp``, new PID/IPC/UTS namespaces, killed with its parent, an emptied environment. The
process runs under rlimits on CPU time, address space, processes and file size, and the parent
kills it at ``wall_timeout_s``. As root, the sandbox runs under an unprivileged uid of its own
(process limits are not enforced for root), so a fork bomb hits ``max_processes`` and stops.

Verdicts: ``correct`` (every test passed), ``wrong`` (a test failed or the solution raised; detail
names the first failing test and holds a stderr tail), ``timeout`` (wall clock or CPU limit),
``error`` (the sandbox itself failed: no result came back), ``no_code`` (no fenced block).
Whatever the candidate prints cannot forge a pass: the harness reports through a line prefixed
by a per-run random nonce, and only a complete report with every test passed is ``correct``.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import resource
import secrets
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from r1_assets.verification.pool import run_pool
from r1_assets.verification.result import VerifyResult

VERSION = "code@1"
# Seconds the pool waits beyond the wall timeout before it kills a worker (the worker kills
# the sandbox at the wall timeout itself; this is for a worker that is stuck).
KILL_MARGIN_S = 10.0
PRELOAD = ("r1_assets.verification.code",)
STDERR_TAIL_CHARS = 600
# System folders the sandbox sees, read-only (those that exist on the host).
SYSTEM_DIRS = ("/usr", "/etc", "/lib", "/lib64", "/lib32", "/bin", "/sbin")
# Unprivileged uids for sandboxes started by root, one per run, so the process limit of one
# sandbox does not count the processes of another.
SANDBOX_UID_BASE = 61000
SANDBOX_UID_SPAN = 2000

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+\-.]*)[^\n]*\n(.*?)```", re.DOTALL)


@dataclass(frozen=True)
class SandboxLimits:
    wall_timeout_s: float = 10.0
    cpu_s: int = 10
    memory_bytes: int = 1 << 30
    max_processes: int = 64
    max_file_bytes: int = 16 << 20


class SandboxUnavailable(RuntimeError):
    """bwrap is missing or cannot create its namespaces here."""


# --------------------------------------------------------------------------------------------
# Extraction and tests


def extract_code(answer: str | None) -> str | None:
    """The last fenced code block (```python ... ``` or a bare fence) of ``answer``, or None."""
    blocks = _FENCE.findall(answer or "")
    if not blocks:
        return None
    code = blocks[-1][1]
    return code if code.strip() else None


def parse_tests(tests: str | list | dict | None) -> dict:
    """``{"kind": "asserts", "tests": [...]}`` or ``{"kind": "stdio", "inputs": [...], "outputs": [...]}``.

    ``tests`` is the stored JSON text, its decoded value, or one string of Python; raises
    ValueError on anything else.
    """
    value = tests
    if isinstance(value, str):
        # Stored tests are JSON; a bare string of Python (HumanEval's `test`) is one snippet.
        value = json.loads(value) if value.lstrip()[:1] in ("[", "{") else [value]
    if isinstance(value, list) and value and all(isinstance(t, str) for t in value):
        return {"kind": "asserts", "tests": value}
    if isinstance(value, dict) and isinstance(value.get("inputs"), list) and isinstance(value.get("outputs"), list):
        if len(value["inputs"]) != len(value["outputs"]) or not value["inputs"]:
            raise ValueError(f"stdin/stdout tests need as many outputs as inputs (got {len(value['inputs'])} "
                             f"inputs, {len(value['outputs'])} outputs)")
        return {"kind": "stdio", "inputs": [_case_text(v) for v in value["inputs"]],
                "outputs": [_case_text(v) for v in value["outputs"]]}
    raise ValueError("tests must be a non-empty list of Python statements or {'inputs': [...], 'outputs': [...]}")


def _case_text(value) -> str:
    return "\n".join(map(str, value)) if isinstance(value, list) else str(value)


def normalize_output(text: str) -> str:
    """Whitespace-normalised program output: blanks collapsed per line, blank lines at the ends dropped."""
    return "\n".join(" ".join(line.split()) for line in text.strip().splitlines())


def tests_preview(tests: str | list | dict | None) -> str:
    """Tests as shown to the model in a code prompt: every assert, or the first stdin/stdout case."""
    spec = parse_tests(tests)
    if spec["kind"] == "asserts":
        return "\n".join(spec["tests"])
    return f"Example input:\n{spec['inputs'][0]}\nExample output:\n{spec['outputs'][0]}"


# --------------------------------------------------------------------------------------------
# The harness: runs INSIDE the sandbox, with the system python and the standard library only.

HARNESS = r'''
import io, json, os, subprocess, sys, traceback
nonce = sys.stdin.readline().strip()
report_fd = os.dup(1)
spec = json.load(open(sys.argv[1]))
sys.stdin = io.StringIO("")
def report(result):
    os.write(report_fd, ("\n" + nonce + " " + json.dumps(result) + "\n").encode())
    os._exit(0)
def norm(text):
    return "\n".join(" ".join(line.split()) for line in text.strip().splitlines())
def tail(text):
    return text[-600:]
if spec["kind"] == "asserts":
    captured = io.StringIO()
    sys.stdout = sys.stderr = captured
    namespace = {"__name__": "__main__"}
    try:
        exec(compile(spec["solution"], "solution.py", "exec"), namespace)
    except BaseException:
        report({"passed": 0, "failed": "solution", "error": tail(traceback.format_exc())})
    for i, test in enumerate(spec["tests"]):
        try:
            exec(compile(test, f"test_{i}", "exec"), namespace)
        except BaseException:
            report({"passed": i, "failed": f"test {i}: {test[:200]}", "error": tail(traceback.format_exc()),
                    "stdout": tail(captured.getvalue())})
    report({"passed": len(spec["tests"]), "failed": None})
for i, (given, expected) in enumerate(zip(spec["inputs"], spec["outputs"])):
    try:
        run = subprocess.run([sys.executable, "-c", spec["solution"]], input=given, capture_output=True,
                             text=True, errors="replace", cwd="/tmp")
    except BaseException:
        report({"passed": i, "failed": f"case {i}", "error": tail(traceback.format_exc())})
    if run.returncode != 0:
        report({"passed": i, "failed": f"case {i}: exit code {run.returncode}", "error": tail(run.stderr),
                "signal": -run.returncode if run.returncode < 0 else None})
    if norm(run.stdout) != norm(expected):
        report({"passed": i, "failed": f"case {i}: output differs", "error": tail(run.stderr),
                "expected": norm(expected)[:200], "got": norm(run.stdout)[:200]})
report({"passed": len(spec["inputs"]), "failed": None})
'''


# --------------------------------------------------------------------------------------------
# The sandbox (host side)


def sandbox_python(python: str) -> str:
    """The interpreter the sandbox runs; it must live under a system folder the sandbox sees."""
    path = shutil.which(python) if not os.path.isabs(python) else python
    if not path or not os.path.exists(path):
        raise SandboxUnavailable(f"verification.code.python: no interpreter {python!r} on this machine")
    return path


def check_sandbox(python: str = "/usr/bin/python3") -> None:
    """Fail with a clear error when bubblewrap cannot run here (the asset calls this before a batch)."""
    if shutil.which("bwrap") is None:
        raise SandboxUnavailable(
            "code verification needs bubblewrap (`bwrap`), which is not installed: `apt-get install bubblewrap` "
            "(or set verification.code.sandbox: none to run model-written code unsandboxed, not recommended)")
    result = run_sandboxed("print(1)", {"kind": "asserts", "tests": ["pass"]}, SandboxLimits(wall_timeout_s=30),
                           sandbox="bwrap", python=python)
    if result.verdict != "correct":
        raise SandboxUnavailable(f"bubblewrap cannot start a sandbox here: {result.detail}")


_runs = itertools.count()


def _sandbox_uid() -> int | None:
    """A fresh unprivileged uid for each sandbox started by root: the processes of a sandbox
    that was just killed (a fork bomb takes a moment to die) never count against the next one."""
    if os.geteuid() != 0:
        return None
    return SANDBOX_UID_BASE + (os.getpid() * 7919 + next(_runs)) % SANDBOX_UID_SPAN


def _bwrap_command(python: str, task_dir: str, hidden: list[str]) -> list[str]:
    cmd = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--clearenv",
           "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp", "--setenv", "LANG", "C.UTF-8",
           "--setenv", "PYTHONDONTWRITEBYTECODE", "1", "--setenv", "PYTHONHASHSEED", "0"]
    for folder in SYSTEM_DIRS:
        if os.path.lexists(folder):
            cmd += ["--ro-bind", folder, folder]
    cmd += ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--ro-bind", task_dir, "/task"]
    # $R1_HOME (and so the DuckDB file) must stay invisible even if it lives under a system folder.
    for path in hidden:
        if any(path == d or path.startswith(d + "/") for d in SYSTEM_DIRS) and os.path.isdir(path):
            cmd += ["--tmpfs", path]
    return [*cmd, "--chdir", "/tmp", python, "-I", "-S", "/task/harness.py", "/task/spec.json"]


def _processes_of(uid: int) -> int:
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                count += os.stat(f"/proc/{entry}").st_uid == uid
            except OSError:
                pass
    return count


def _limits(limits: SandboxLimits, uid: int | None):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.max_file_bytes, limits.max_file_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        # RLIMIT_NPROC counts every process of the uid: a private uid (as root) keeps it exact;
        # a normal user's own processes are added so the sandbox still gets max_processes.
        nproc = limits.max_processes + (0 if uid is not None else _processes_of(os.getuid()))
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)

    return apply


def run_sandboxed(solution: str, spec: dict, limits: SandboxLimits, *, sandbox: str = "bwrap",
                  python: str = "/usr/bin/python3") -> VerifyResult:
    """Run ``solution`` against parsed tests ``spec`` and return its verdict (method ``sandbox_tests``)."""
    method = "sandbox_tests" if sandbox == "bwrap" else "unsandboxed_tests"
    nonce = secrets.token_hex(16)
    uid = _sandbox_uid()
    hidden = [str(Path(os.environ.get("R1_HOME", ".r1")).resolve())]
    with tempfile.TemporaryDirectory(prefix="r1-code-") as task_dir:
        os.chmod(task_dir, 0o755)
        (Path(task_dir) / "harness.py").write_text(HARNESS)
        (Path(task_dir) / "spec.json").write_text(json.dumps({**spec, "solution": solution}))
        for name in ("harness.py", "spec.json"):
            os.chmod(Path(task_dir) / name, 0o644)
        if sandbox == "bwrap":
            cmd = _bwrap_command(python, task_dir, hidden)
        else:
            cmd = [python, "-I", "-S", f"{task_dir}/harness.py", f"{task_dir}/spec.json"]
        # Output goes to files, so the file-size limit bounds it (a pipe would not be).
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out, stderr=err,
                                        preexec_fn=_limits(limits, uid),  # noqa: PLW1509 - pool workers are single-threaded
                                        start_new_session=True,
                                        cwd=task_dir if sandbox != "bwrap" else "/")
            except OSError as exc:
                return VerifyResult("error", None, detail=f"cannot start the sandbox: {exc}", method=method)
            timed_out = False
            try:
                proc.communicate(input=(nonce + "\n").encode(), timeout=limits.wall_timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_group(proc)
            out.seek(0)
            err.seek(0)
            stdout = out.read(limits.max_file_bytes).decode("utf-8", "replace")
            stderr = err.read(limits.max_file_bytes).decode("utf-8", "replace")
    report = _find_report(stdout, nonce)
    stderr_tail = stderr[-STDERR_TAIL_CHARS:]
    if timed_out:
        return VerifyResult("timeout", None, detail=f"wall-clock timeout after {limits.wall_timeout_s:g}s; "
                            f"stderr: {stderr_tail}", method=method)
    if report is None:
        code = proc.returncode
        if code in (-signal.SIGXCPU, -signal.SIGKILL) or code == 128 + signal.SIGXCPU:
            return VerifyResult("timeout", None, detail=f"CPU limit ({limits.cpu_s}s) or kill, exit {code}; "
                                f"stderr: {stderr_tail}", method=method)
        if code == 0:
            return VerifyResult("wrong", False, extracted_answer=solution[:2000], method=method,
                                detail=f"the solution exited before its tests finished; stderr: {stderr_tail}")
        return VerifyResult("error", None, detail=f"the sandbox returned no result (exit code {code}); "
                            f"stderr: {stderr_tail}", method=method)
    if report.get("failed") is None:
        return VerifyResult("correct", True, extracted_answer=solution[:2000], method=method)
    if report.get("signal") == signal.SIGXCPU:
        return VerifyResult("timeout", None, detail=f"{report['failed']}: CPU limit ({limits.cpu_s}s)", method=method)
    detail = f"{report['failed']} ({report.get('passed', 0)} passed before it)"
    if "expected" in report:
        detail += f"; expected {report['expected']!r}, got {report['got']!r}"
    detail += f"; stderr: {(report.get('error') or '')[-STDERR_TAIL_CHARS:]}"
    return VerifyResult("wrong", False, extracted_answer=solution[:2000], detail=detail, method=method)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _find_report(stdout: str, nonce: str) -> dict | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith(nonce + " "):
            try:
                return json.loads(line[len(nonce) + 1:])
            except json.JSONDecodeError:
                return None
    return None


# --------------------------------------------------------------------------------------------
# One sample, and the batch


def verify_one(answer: str, tests: str | None, *, limits: SandboxLimits, sandbox: str = "bwrap",
               python: str = "/usr/bin/python3") -> VerifyResult:
    """Verdict of one code answer (the final answer part of a sample) against its stored tests."""
    try:
        spec = parse_tests(tests)
    except (ValueError, TypeError) as err:
        return VerifyResult("unparseable_reference", None, detail=f"tests: {err}", method="none")
    code = extract_code(answer)
    if code is None:
        return VerifyResult("no_code", False, detail="no fenced code block in the final answer", method="extract_code")
    return run_sandboxed(code, spec, limits, sandbox=sandbox, python=python)


def verify_batch(pairs: list[tuple[str, str | None]], *, limits: SandboxLimits = SandboxLimits(),
                 sandbox: str = "bwrap", python: str = "/usr/bin/python3", workers: int | None = None,
                 progress=None) -> list[VerifyResult]:
    """Verdicts of ``(answer_text, tests_json)`` pairs in the process pool, in input order."""
    if not pairs:
        return []
    python = sandbox_python(python)
    if sandbox == "bwrap":
        check_sandbox(python)
    tasks = [(answer or "", tests) for answer, tests in pairs]
    return run_pool(
        tasks, "r1_assets.verification.code:verify_one", hard_limit_s=limits.wall_timeout_s + KILL_MARGIN_S,
        handler_kwargs={"limits": limits, "sandbox": sandbox, "python": python},
        preload=PRELOAD, workers=workers, progress=progress, what="code verification",
    )
