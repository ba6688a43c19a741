"""The main job: materialize every asset of the chain, in dependency order, every partition.

    python -m dagster_project.pipeline [--select KEY ...]

Runs go to the Dagster instance in $DAGSTER_HOME, so the UI (``make ui``) shows them
with their metadata. Each step is one Dagster run of one asset (and one partition); a
failed run stops the pipeline with its error (exit 1; an unknown asset key is exit 2).
Re-running is cheap: a step whose partition Dagster reports fresh (materialized under the
current code version, which includes the config sections it reads, from the current data of
its parents) is skipped; the collecting steps always run, and report a digest of what they
read as their data version, so an unchanged source leaves its descendants fresh.
``--force`` runs every step. Every stage replaces its partition idempotently, and model
outputs resume from the `generations` checkpoint.

The console shows one line per step, a progress bar while a model generates, and a summary
at the end (funnel per source, time per stage, where the data is). Everything else (Dagster's
event log, vLLM's start-up, library warnings) goes to a log file under ``$R1_HOME/logs/``
whose path the first line names. Engines stay loaded from one step to the next
(``keep_engines_open``): the model loads once per pipeline, not once per shard.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import TextIO

from r1_assets.storage import r1_home

FUNNEL_STAGES = ["raw", "unique", "clean", "verified", "stage1_sft", "stage2_sft"]


class Console:
    """The user's terminal, kept apart from stdout/stderr, which go to the log file."""

    def __init__(self, stream: TextIO, log_path: Path):
        self.stream = stream
        self.log_path = log_path
        self.tty = stream.isatty()
        self.bar = None
        self.generation: dict[str, object] = {}  # purpose -> latest GenerationStats of this step

    def say(self, line: str = "") -> None:
        print(line, file=self.stream, flush=True)

    def start_step(self) -> None:
        self.generation = {}

    def end_step(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_generation(self, label: str, purpose: str, stats) -> None:
        """Progress of a model stage (``watch_generation``): samples done, tokens/s, ETA."""
        self.generation[purpose] = stats
        if not self.tty or not stats.to_generate:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=stats.to_generate, desc=f"  {label}", unit="sample", file=self.stream,
                            leave=False, dynamic_ncols=True, mininterval=0.5,
                            bar_format="{desc} {bar} {n_fmt}/{total_fmt} samples [{elapsed}<{remaining}{postfix}]")
        if not stats.finished:
            self.bar.set_postfix_str("loading the model", refresh=True)
            return
        self.bar.set_postfix_str(f"{stats.tokens_per_s:.0f} tok/s", refresh=False)
        self.bar.update(stats.finished - self.bar.n)


def _redirect_output(log_path: Path) -> Console:
    """Point fds 1 and 2 (this process and the engine processes it starts) at the log file."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    console = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout.flush()
    sys.stderr.flush()
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - open for the life of the process
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    return Console(console, log_path)


def _failure_message(result) -> str:
    errors = []
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        while error is not None:
            errors.append(error.message.strip())
            error = error.cause
    lines = "\n".join(errors).splitlines() or ["see the run in the UI"]
    return "\n".join(lines[:20] + ([f"... ({len(lines) - 20} more lines in the log)"] if len(lines) > 20 else []))


def _step_detail(console: Console, load: dict) -> str:
    parts = []
    for stats in console.generation.values():
        if stats.to_generate:
            parts.append(f"{stats.finished} samples at {stats.tokens_per_s:.0f} tok/s")
        if stats.reused:
            parts.append(f"{stats.reused} reused")
        if stats.load_seconds:
            parts.append(f"model loaded in {stats.load_seconds:.0f}s")
        load["load"] += stats.load_seconds
        load["generate"] += stats.seconds
        load["tokens"] += stats.generated_tokens
    return ", ".join(parts)


def stale_status(instance, asset_graph, key, partition: str | None):
    """Dagster's staleness of one asset (partition), as the UI shows it: the pipeline skips what
    is FRESH, and the tests check what a config edit makes STALE, by this one function."""
    # The resolver caches what it read: a new one per call sees the steps run before it.
    from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
    from dagster._core.definitions.data_version import CachingStaleStatusResolver
    from dagster._time import get_current_datetime

    view = AssetGraphView(temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
                          instance=instance, asset_graph=asset_graph)
    resolver = CachingStaleStatusResolver(instance=instance, asset_graph=asset_graph, loading_context=view)
    return resolver.get_status(key, partition)


def _is_fresh(instance, asset_graph, key, partition: str | None) -> bool:
    from dagster._core.definitions.data_version import StaleStatus

    return stale_status(instance, asset_graph, key, partition) == StaleStatus.FRESH


def run_pipeline(select: list[str] | None, console: Console, force: bool = False) -> int:
    import dagster as dg

    from dagster_project.definitions import build_definitions
    from dagster_project.partitions import register_shard_partitions
    from r1_assets.engines import keep_engines_open, watch_generation

    instance = dg.DagsterInstance.get()
    defs = build_definitions()
    # The resource as a run sees it (EnvVar fields resolved).
    r1 = defs.resources["r1"].process_config_and_initialize()
    asset_graph = defs.resolve_asset_graph()
    assets_by_key = {key: asset_graph.get(key).assets_def for key in asset_graph.materializable_asset_keys}
    order = [k for k in asset_graph.toposorted_asset_keys if k in assets_by_key]
    if select:
        wanted = {dg.AssetKey.from_user_string(s) for s in select}
        unknown = wanted - set(order)
        if unknown:
            console.say(f"unknown assets: {sorted(k.to_user_string() for k in unknown)}")
            return 2
        order = [k for k in order if k in wanted]
    started = time.monotonic()
    stage_seconds: dict[str, float] = defaultdict(float)
    model_time = {"load": 0.0, "generate": 0.0, "tokens": 0}
    label = ""
    with keep_engines_open(), watch_generation(lambda purpose, stats: console.on_generation(label, purpose, stats)):
        for key in order:
            assets_def = assets_by_key[key]
            name = key.to_user_string()
            if isinstance(assets_def.partitions_def, dg.DynamicPartitionsDefinition):
                # Shards of an earlier clean_problems run this instance has not seen (another DAGSTER_HOME).
                register_shard_partitions(instance, r1.store())
            partitions_def = assets_def.partitions_def
            keys = [None] if partitions_def is None else list(
                partitions_def.get_partition_keys(dynamic_partitions_store=instance))
            if not keys:
                console.say(f"  {name:<42} skipped: no partitions yet")
                continue
            # Collection reads the world outside (files, the hub, the packaged model): always run.
            collects = not asset_graph.get(key).parent_keys
            for partition in keys:
                label = name + (f" {partition}" if partition else "")
                if not (force or collects) and _is_fresh(instance, asset_graph, key, partition):
                    console.say(f"  {label:<42} {'up to date':>11}")
                    continue
                console.start_step()
                t0 = time.monotonic()
                try:
                    result = dg.materialize(
                        [*defs.assets, *defs.asset_checks], selection=[key], partition_key=partition,
                        instance=instance, resources=defs.resources, raise_on_error=False,
                        tags={"r1/launched_by": "pipeline"},
                    )
                finally:
                    console.end_step()
                seconds = time.monotonic() - t0
                stage_seconds[name] += seconds
                if not result.success:
                    console.say(f"  {label:<42} FAILED after {seconds:.1f}s (run {result.run_id})")
                    console.say("    " + _failure_message(result).replace("\n", "\n    "))
                    console.say(f"  details: {console.log_path} and `make ui` -> Runs")
                    return 1
                counts = [m.metadata["dagster/row_count"].value
                          for m in result.asset_materializations_for_node(assets_def.node_def.name)
                          if "dagster/row_count" in m.metadata]
                rows = f"{counts[0]:>6} rows" if counts else " " * 11
                detail = _step_detail(console, model_time)
                console.say(f"  {label:<42} {rows} {seconds:6.1f}s" + (f"  {detail}" if detail else ""))
    total = time.monotonic() - started
    _summary(console, r1, stage_seconds, model_time, total)
    return 0


def _funnel_lines(con, cfg) -> list[str]:
    """Problems per source at each stage, with the pass-rate bands of the clean problems."""
    import polars as pl

    from r1_assets.analysis import execute_named_query
    from r1_assets.difficulty import band_counts

    funnel = execute_named_query(con, "yield_funnel")
    edges = cfg.difficulty.band_edges
    # A config without the difficulty model (curation only) has no pass-rate bands to show.
    model = cfg.models.get(cfg.difficulty.model)
    rates = con.execute(
        "SELECT c.source, coalesce(c.domain, 'math') AS domain, p.pass_rate, p.reference_status FROM clean_problems c "
        "JOIN pass_rates p USING (problem_id) WHERE p.model = $model", {"model": model.name if model else None},
    ).pl()
    bands = list(band_counts(rates.head(0), edges))
    band_heads = [f"{lo:g}-{hi:g}" for lo, hi in itertools.pairwise(edges)]
    head = ["source", "raw", "unique", "clean", *band_heads, "verified", "stage1", "stage2"]
    table = []
    for source in funnel["source"].unique(maintain_order=True).to_list():
        rows = funnel.filter(pl.col("source") == source)
        got = dict(rows.select("stage", "problems").iter_rows())
        # A domain's total row ("(all math)") counts the bands of that domain's problems.
        if source == "(all)":
            in_source = rates
        elif source.startswith("(all "):
            in_source = rates.filter(pl.col("domain") == rows["domain"][0])
        else:
            in_source = rates.filter(pl.col("source") == source)
        per_band = band_counts(in_source, edges)
        table.append([source, *[got.get(s, 0) for s in FUNNEL_STAGES[:3]], *[per_band[b] for b in bands],
                      *[got.get(s, 0) for s in FUNNEL_STAGES[3:]]])
    table = table[1:] + table[:1]  # the total last
    widths = [max(len(str(row[i])) for row in [head, *table]) for i in range(len(head))]

    def fmt(row: list) -> str:
        return "  " + "  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w) for i, (v, w) in enumerate(zip(row, widths)))

    return [fmt(head), *[fmt(r) for r in table]]


def _ui_command(home: Path) -> str:
    """The command that opens the UI on this R1_HOME, Dagster instance and config."""
    settings = []
    if home != (Path.cwd() / ".r1").resolve():
        settings.append(f"R1_HOME={home}")
    dagster_home = os.environ.get("DAGSTER_HOME")
    if dagster_home and Path(dagster_home).resolve() != home / "dagster":
        settings.append(f"DAGSTER_HOME={Path(dagster_home).resolve()}")
    if os.environ.get("R1_CONFIG"):
        settings.append(f"R1_CONFIG={Path(os.environ['R1_CONFIG']).resolve()}")
    return " ".join(["make ui", *settings]) + "   (http://127.0.0.1:3000)"


def _summary(console: Console, r1, stage_seconds: dict[str, float], model_time: dict, total: float) -> None:
    cfg = r1.pipeline()
    store = r1.store()
    say = console.say
    say()
    say(f"pipeline finished in {total:.0f}s")
    with store.connect(read_only=True) as con:
        say("problems per source: raw -> unique (dedupe) -> clean (decontaminated) -> by pass rate under the "
            "difficulty model -> verified (a correct teacher sample) -> splits")
        for line in _funnel_lines(con, cfg):
            say(line)
        hits = con.execute(
            "SELECT benchmark, method, count(DISTINCT problem_id) FROM removing_contamination GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        benchmarks = con.execute("SELECT benchmark, count(*) FROM benchmark_problems GROUP BY ALL ORDER BY ALL").fetchall()
    if benchmarks:
        removed = ", ".join(f"{b}/{m}: {n}" for b, m, n in hits) or "none"
        checked = ", ".join(f"{b} ({n} rows)" for b, n in benchmarks)
        say(f"decontamination against {checked}: problems removed by benchmark/method: {removed}")
    else:
        say("decontamination: no benchmarks configured")
    times = ", ".join(f"{name} {secs:.0f}s" for name, secs in stage_seconds.items() if secs >= 0.5)
    say(f"time per stage: {times}")
    if model_time["tokens"]:
        load, gen = model_time["load"], model_time["generate"]
        say(f"model: loading {load:.0f}s ({100 * load / total:.0f}% of the run), generating {gen:.0f}s "
            f"({100 * gen / total:.0f}%), {model_time['tokens']} tokens at {model_time['tokens'] / max(gen, 1e-9):.0f} tok/s")
    say(f"data:        {store.location}   (make sql: the duckdb CLI on it, read-only)")
    say(f"exports:     {store.home / 'exports'}/<split>/ (parquet, jsonl, hf)")
    say(f"log:         {console.log_path}")
    say(f"UI:          {_ui_command(store.home)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--select", nargs="*", help="asset keys to run (default: all, in dependency order)")
    parser.add_argument("--force", action="store_true", help="run every step, also those Dagster reports up to date")
    args = parser.parse_args()
    home = r1_home()
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    console = _redirect_output(home / "logs" / f"pipeline-{stamp}.log")
    config = os.environ.get("R1_CONFIG") or "the packaged embedded default (r1_assets/defaults/embedded_default.yaml)"
    console.say(f"r1-curator pipeline on {config}")
    console.say(f"  data: {home}   logs (Dagster, vLLM, libraries): {console.log_path}")
    try:
        code = run_pipeline(args.select, console, force=args.force)
    except Exception as err:  # noqa: BLE001 - a config error, an unwritable R1_HOME: one line, details in the log
        import traceback

        traceback.print_exc()
        console.say(f"pipeline failed: {type(err).__name__}: {err}\n  details: {console.log_path}")
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
