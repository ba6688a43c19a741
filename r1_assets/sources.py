"""Raw collection: read a configured source and normalise it into the problem schema.

Three kinds of source (see ``SourceConfig``):
- ``file``: jsonl, json array or parquet;
- ``hf``: ``datasets.load_dataset`` with config, split, revision;
- ``reasoning_gym``: a procedural task with size, seed and its settings (``task_config``).

A bad row never stops a source: it becomes a ``rejected_rows`` row with a reason.
A bad config (missing file, a field that no row has) is one ``ConfigError`` naming the
source and the key.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from r1_assets.config import ConfigError, PipelineConfig, SourceConfig
from r1_assets.text import normalize_text, problem_id
from r1_assets.verification.code import parse_tests
from r1_assets.verification.mcq import answer_letter, parse_choices

RAW_COLUMNS = {
    "problem_id": pl.Utf8,
    "source": pl.Utf8,
    "source_row": pl.Int64,
    "problem": pl.Utf8,
    "answer": pl.Utf8,
    "domain": pl.Utf8,
    "tests": pl.Utf8,
    "choices": pl.Utf8,
    "source_kind": pl.Utf8,
    "source_ref": pl.Utf8,
    "metadata": pl.Utf8,
}
REJECTED_COLUMNS = {
    "source": pl.Utf8,
    "source_row": pl.Int64,
    "stage": pl.Utf8,
    "reason": pl.Utf8,
    "detail": pl.Utf8,
}
_PATH_TOKEN = re.compile(r"([^.\[\]]+)|\[(-?\d+)\]")
_MISSING = object()


class _BadRow:
    """A row that could not even be decoded; carries the reason instead of a mapping."""

    def __init__(self, reason: str, detail: str):
        self.reason, self.detail = reason, detail


@dataclass
class CollectedSource:
    """The outcome of reading one source: good rows, rejected rows, and where it came from."""

    rows: pl.DataFrame
    rejected: pl.DataFrame
    source_ref: str
    rows_read: int

    def rejected_by_reason(self) -> dict[str, int]:
        return dict(Counter(self.rejected["reason"].to_list())) if self.rejected.height else {}


# -- field paths -------------------------------------------------------------------------
def parse_field_path(path: str) -> list[str | int]:
    """``prompt[0].content`` -> ['prompt', 0, 'content']."""
    tokens: list[str | int] = []
    pos = 0
    for m in _PATH_TOKEN.finditer(path):
        if m.start() != pos and path[pos:m.start()] != ".":
            raise ValueError(f"cannot parse field path {path!r}")
        tokens.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    if not tokens or pos != len(path):
        raise ValueError(f"cannot parse field path {path!r}")
    return tokens


def get_field(row: Any, tokens: list[str | int]) -> Any:
    """Follow a parsed field path; ``_MISSING`` when any step is absent."""
    node = row
    for tok in tokens:
        if isinstance(tok, int):
            if not isinstance(node, (list, tuple)) or not -len(node) <= tok < len(node):
                return _MISSING
            node = node[tok]
        else:
            if not isinstance(node, dict) or tok not in node:
                return _MISSING
            node = node[tok]
    return node


# -- readers -----------------------------------------------------------------------------
def _read_jsonl(path: Path) -> Iterator[Any]:
    with path.open("rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as err:
                yield _BadRow("invalid_utf8", str(err)[:200])
                continue
            try:
                yield json.loads(text)
            except json.JSONDecodeError as err:
                yield _BadRow("invalid_json", f"{err.msg} at column {err.colno}: {text[:120]!r}")


FILE_SUFFIXES = (".jsonl", ".json", ".parquet")


def source_files(src: SourceConfig, cfg: PipelineConfig) -> list[Path]:
    """The files of a ``kind: file`` source: its file, or every supported file of its folder.

    A folder is a drop folder: each ``*.jsonl``/``*.json``/``*.parquet`` directly inside it
    (hidden files skipped) belongs to the source, in name order. A file that resolves outside
    the folder (a symlink) is refused, so a drop folder cannot be used to read anything else.
    """
    path = _resolve(src, cfg, src.path, "path")
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ConfigError(f"source '{src.name}': key 'path': no such file or folder {path}")
    files = []
    for entry in sorted(path.iterdir()):
        if entry.name.startswith(".") or entry.suffix not in FILE_SUFFIXES:
            continue
        target = entry.resolve()
        if target.parent != path:
            raise ConfigError(f"source '{src.name}': key 'path': {entry} points outside the folder {path}")
        if target.is_file():
            files.append(target)
    return files


def _read_one_file(src: SourceConfig, path: Path) -> Iterator[Any]:
    suffix = path.suffix
    if suffix == ".jsonl":
        return _read_jsonl(path)
    if suffix == ".json":
        try:
            data = json.loads(path.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ConfigError(f"source '{src.name}': key 'path': {path} is not valid JSON: {err}") from None
        if isinstance(data, dict):
            # Common layouts: {"data": [...]} or {"rows": [...]}; otherwise it is one row.
            lists = [v for v in data.values() if isinstance(v, list)]
            data = lists[0] if len(lists) == 1 else [data]
        return iter(data)
    if suffix == ".parquet":
        try:
            frame = pl.read_parquet(path)
        except Exception as err:  # polars raises several error types for a broken file
            raise ConfigError(f"source '{src.name}': key 'path': cannot read parquet {path}: {err}") from None
        return frame.iter_rows(named=True)
    raise ConfigError(f"source '{src.name}': key 'path': unsupported file type '{path.suffix}' (jsonl, json, parquet)")


def _read_folder(src: SourceConfig, files: list[Path]) -> Iterator[Any]:
    # Rows of a drop folder say which file they came from (kept in raw_problems.metadata).
    for path in files:
        for row in _read_one_file(src, path):
            if isinstance(row, dict):
                row = {**row, "source_file": path.name}
            yield row


def _resolve(src: SourceConfig, cfg: PipelineConfig, path: str, key: str) -> Path:
    try:
        return cfg.resolve_path(path)
    except ConfigError as err:
        raise ConfigError(f"source '{src.name}': key '{key}': {err}") from None


def _read_file(src: SourceConfig, cfg: PipelineConfig) -> tuple[Iterator[Any], str]:
    path = _resolve(src, cfg, src.path, "path")
    files = source_files(src, cfg)
    if path.is_dir():
        return _read_folder(src, files), str(path)
    return _read_one_file(src, path), str(path)


def _read_hf(src: SourceConfig, cfg: PipelineConfig) -> tuple[Iterator[Any], str]:
    import datasets

    # A local loader script/folder name ("json", "parquet") takes data_files relative to the config.
    data_files = src.data_files
    if data_files is not None:
        files = [data_files] if isinstance(data_files, str) else list(data_files)
        data_files = [str(_resolve(src, cfg, f, "data_files")) for f in files]
    try:
        ds = datasets.load_dataset(
            src.dataset, name=src.config, split=src.split, revision=src.revision, data_files=data_files
        )
    except Exception as err:  # the hub client raises many types; all mean "cannot load"
        raise ConfigError(
            f"source '{src.name}': key 'dataset': cannot load {src.dataset!r}"
            f" (config={src.config!r}, split={src.split!r}, revision={src.revision!r}): {err}"
        ) from None
    ref = src.dataset + (f"/{src.config}" if src.config else "") + f":{src.split}"
    if src.revision:
        ref += f"@{src.revision}"
    fingerprint = getattr(ds, "_fingerprint", None)
    return iter(ds), ref + (f"#{fingerprint}" if fingerprint else "")


def _read_reasoning_gym(src: SourceConfig, cfg: PipelineConfig) -> tuple[Iterator[Any], str]:
    import reasoning_gym

    try:
        ds = reasoning_gym.create_dataset(src.task, size=src.size, seed=src.seed, **src.task_config)
    except Exception as err:  # unknown task names and settings raise from the registry
        key = "task_config" if src.task_config else "task"
        raise ConfigError(f"source '{src.name}': key '{key}': cannot create reasoning-gym task {src.task!r}"
                          f"{f' with {src.task_config}' if src.task_config else ''}: {err}") from None
    rows = ({"problem": e["question"], "answer": e["answer"], "metadata": e.get("metadata")} for e in ds)
    settings = "".join(f":{k}={v}" for k, v in sorted(src.task_config.items()))
    return rows, f"reasoning_gym:{src.task}:size={src.size}:seed={src.seed}{settings}"


_READERS = {"file": _read_file, "hf": _read_hf, "reasoning_gym": _read_reasoning_gym}


# -- domain fields (code tests, mcq choices) ---------------------------------------------
_LETTERED = re.compile(r"(?:^|\s)\(?([A-Z])[).:]\s")


def _domain_field(value: Any, to_json) -> tuple[str | None, str | None]:
    """(JSON text, None) or (None, why it is unusable)."""
    if value is _MISSING or value is None:
        return None, "missing"
    try:
        return to_json(value), None
    except (ValueError, TypeError) as err:
        return None, str(err)[:200]


def _tests_json(value: Any) -> str:
    spec = parse_tests(value)  # APPS/TACO store their cases as a JSON string, HumanEval one snippet
    if spec["kind"] == "asserts":
        return json.dumps(spec["tests"], ensure_ascii=False)
    return json.dumps({"inputs": spec["inputs"], "outputs": spec["outputs"]}, ensure_ascii=False)


def split_lettered_options(text: str) -> list[str]:
    """``"A) 1 B) 2 C) 3"`` -> ['1', '2', '3'] (letters in order from A)."""
    marks = [m for m in _LETTERED.finditer(" " + text)]
    letters = [m.group(1) for m in marks]
    if len(marks) < 2 or letters != [chr(ord("A") + i) for i in range(len(marks))]:
        raise ValueError(f"cannot split lettered options from {text[:80]!r}")
    bounds = [m.start() for m in marks[1:]] + [len(text) + 1]
    return [(" " + text)[m.end():end].strip() for m, end in zip(marks, bounds)]


def _choices_json(value: Any) -> str:
    if isinstance(value, str):
        value = split_lettered_options(value)
    elif isinstance(value, dict):  # {"A": "...", "B": "..."}
        value = [value[k] for k in sorted(value)]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        # AQuA writes "A)21" into each option; the letter is the position, not part of the text.
        value = [re.sub(r"^\(?[A-Z][).]\s*", "", v) if re.match(r"^\(?[A-Z][).]", v) else v for v in value]
    return json.dumps([normalize_text(str(c)) for c in parse_choices(value)], ensure_ascii=False)


# -- normalisation -----------------------------------------------------------------------
def _as_text(value: Any) -> str | None:
    """Text for str and plain numbers (answers such as 27.0); None for anything else.

    A list-valued answer is taken as the dataset gives it: a one-element list is its element;
    a longer list of texts/numbers is kept as JSON text of its items as strings
    (``["2", "-2"]``), and verification accepts any of them (``reference_alternatives``).
    """
    if isinstance(value, (list, tuple)):
        items = [_as_text(v) for v in value]
        if not items or any(i is None for i in items):
            return None
        return items[0] if len(items) == 1 else json.dumps(items, ensure_ascii=False)
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return None


def collect_source(src: SourceConfig, cfg: PipelineConfig, stage: str = "raw_problems") -> CollectedSource:
    """Read and normalise one source. Bad rows are returned, not raised."""
    try:
        problem_path = parse_field_path(src.problem)
        answer_path = parse_field_path(src.answer) if src.answer else None
        tests_path = parse_field_path(src.tests) if src.tests else None
        choices_path = parse_field_path(src.choices) if src.choices else None
    except ValueError as err:
        raise ConfigError(f"source '{src.name}': {err}") from None
    rows_iter, source_ref = _READERS[src.kind](src, cfg)

    good: dict[str, list] = {k: [] for k in RAW_COLUMNS}
    bad: dict[str, list] = {k: [] for k in REJECTED_COLUMNS}
    problem_seen = answer_seen = False
    first_keys: list[str] = []
    rows_read = 0

    def reject(i: int, reason: str, detail: str = "") -> None:
        bad["source"].append(src.name)
        bad["source_row"].append(i)
        bad["stage"].append(stage)
        bad["reason"].append(reason)
        bad["detail"].append(detail[:300])

    for i, row in enumerate(rows_iter):
        if i < src.skip:
            continue
        if src.limit is not None and i >= src.skip + src.limit:
            break
        rows_read += 1
        if isinstance(row, _BadRow):
            reject(i, row.reason, row.detail)
            continue
        if not isinstance(row, dict):
            reject(i, "not_an_object", f"row is {type(row).__name__}")
            continue
        if not first_keys:
            first_keys = list(row)
        raw_problem = get_field(row, problem_path)
        if raw_problem is _MISSING or raw_problem is None:
            reject(i, "missing_problem", f"no field {src.problem!r}")
            continue
        problem_seen = True
        if not isinstance(raw_problem, str):
            reject(i, "non_text_problem", f"{src.problem!r} is {type(raw_problem).__name__}")
            continue
        problem = normalize_text(raw_problem)
        if not problem:
            reject(i, "empty_problem")
            continue
        if len(problem) > cfg.max_problem_chars:
            reject(i, "oversized_problem", f"{len(problem)} chars > max_problem_chars={cfg.max_problem_chars}")
            continue
        answer = None
        if answer_path is not None:
            raw_answer = get_field(row, answer_path)
            if raw_answer is _MISSING or raw_answer is None:
                reject(i, "missing_answer", f"no field {src.answer!r}")
                continue
            answer_seen = True
            answer = _as_text(raw_answer)
            if answer is None:
                reject(i, "non_text_answer", f"{src.answer!r} is {type(raw_answer).__name__}")
                continue
            answer = answer.strip()
            if not answer:
                reject(i, "missing_answer", "empty answer")
                continue
            if len(answer) > cfg.max_answer_chars:
                reject(i, "oversized_answer", f"{len(answer)} chars > max_answer_chars={cfg.max_answer_chars}")
                continue
        tests = choices = None
        if tests_path is not None:
            tests, why = _domain_field(get_field(row, tests_path), _tests_json)
            if why:
                reject(i, "invalid_tests", f"{src.tests!r}: {why}")
                continue
        if choices_path is not None:
            choices, why = _domain_field(get_field(row, choices_path), _choices_json)
            if why:
                reject(i, "invalid_choices", f"{src.choices!r}: {why}")
                continue
            try:
                answer = answer_letter(answer, len(json.loads(choices)))
            except ValueError as err:
                reject(i, "invalid_answer", str(err))
                continue
        used = {str(problem_path[0])} | ({str(answer_path[0])} if answer_path else set())
        used |= {str(p[0]) for p in (tests_path, choices_path) if p}
        meta = {k: v for k, v in row.items() if k not in used}
        if src.kind == "reasoning_gym":
            meta = row.get("metadata") or {}
        good["problem_id"].append(problem_id(problem))
        good["source"].append(src.name)
        good["source_row"].append(i)
        good["problem"].append(problem)
        good["answer"].append(answer)
        good["domain"].append(src.domain)
        good["tests"].append(tests)
        good["choices"].append(choices)
        good["source_kind"].append(src.kind)
        good["source_ref"].append(source_ref)
        good["metadata"].append(json.dumps(meta, default=str, ensure_ascii=False) if meta else None)

    # A field that no row has is a config mistake, not a thousand bad rows.
    decodable = rows_read - sum(1 for r in bad["reason"] if r in ("invalid_json", "invalid_utf8", "not_an_object"))
    if decodable > 0 and not problem_seen:
        raise ConfigError(f"source '{src.name}': key 'problem': field {src.problem!r} is in no row (fields: {first_keys})")
    if decodable > 0 and answer_path is not None and problem_seen and not answer_seen and not good["problem"]:
        raise ConfigError(f"source '{src.name}': key 'answer': field {src.answer!r} is in no row (fields: {first_keys})")

    return CollectedSource(
        rows=pl.DataFrame(good, schema=RAW_COLUMNS),
        rejected=pl.DataFrame(bad, schema=REJECTED_COLUMNS),
        source_ref=source_ref,
        rows_read=rows_read,
    )
