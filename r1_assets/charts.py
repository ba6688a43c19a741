"""Small PNG charts for materialization metadata (no Dagster imports).

The Dagster UI renders markdown metadata, including images given as ``data:`` URIs, so
``png_markdown(chart)`` puts a chart on the asset page. Charts are drawn with matplotlib's
object API (``Figure`` + Agg canvas): no pyplot global state, safe in any thread or process.
They are small (about 600x300 px, 10-40 KB) so that run storage stays light.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # headless; must precede any backend use

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

WIDTH_IN, HEIGHT_IN, DPI = 7.5, 3.6, 80
# At most this many groups get their own colour; the rest are summed into "other".
MAX_GROUPS = 6
OTHER = "other"


def _figure() -> tuple[Figure, object]:
    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def png_markdown(png: bytes, alt: str) -> str:
    """Markdown that shows ``png`` inline (a base64 ``data:`` URI)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def _top_groups(frame: pl.DataFrame, group: str, weight: str) -> pl.DataFrame:
    """Keep the MAX_GROUPS heaviest groups; fold the others into OTHER."""
    totals = frame.group_by(group).agg(pl.col(weight).sum()).sort([weight, group], descending=[True, False])
    if totals.height <= MAX_GROUPS:
        return frame
    keep = totals[group].head(MAX_GROUPS - 1).to_list()
    return frame.with_columns(
        pl.when(pl.col(group).is_in(keep)).then(pl.col(group)).otherwise(pl.lit(OTHER)).alias(group)
    )


def binned_bar_chart(
    frame: pl.DataFrame,
    *,
    bin_start: str,
    bin_width: float,
    count: str,
    group: str | None = None,
    title: str,
    xlabel: str,
    ylabel: str = "count",
) -> bytes:
    """Stacked bars from pre-binned counts (one row per bin and group), e.g. a SQL histogram."""
    fig, ax = _figure()
    if frame.is_empty():
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    else:
        if group is None:
            frame = frame.with_columns(pl.lit("all").alias("_group"))
            group = "_group"
        frame = _top_groups(frame.filter(pl.col(bin_start).is_not_null()), group, count)
        data = frame.group_by([group, bin_start]).agg(pl.col(count).sum())
        bins = sorted(data[bin_start].unique().to_list())
        bottom = {b: 0 for b in bins}
        groups = data.group_by(group).agg(pl.col(count).sum()).sort(count, descending=True)[group].to_list()
        for name in groups:
            part = dict(data.filter(pl.col(group) == name).select(bin_start, count).iter_rows())
            heights = [part.get(b, 0) for b in bins]
            ax.bar(bins, heights, width=bin_width * 0.95, align="edge", bottom=[bottom[b] for b in bins], label=str(name))
            for b, h in zip(bins, heights):
                bottom[b] += h
        if group != "_group":
            ax.legend(fontsize=8, frameon=False)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.tick_params(labelsize=8)
    return _png(fig)


def histogram_chart(
    values: Sequence[float] | pl.Series,
    *,
    bins: int | Sequence[float] = 20,
    groups: Sequence[str] | pl.Series | None = None,
    title: str,
    xlabel: str,
) -> bytes:
    """Histogram of raw values (e.g. a split's token lengths), stacked by group when given."""
    frame = pl.DataFrame({"value": list(values), "group": list(groups) if groups is not None else ["all"] * len(values)})
    frame = frame.filter(pl.col("value").is_not_null())
    if frame.is_empty():
        return binned_bar_chart(pl.DataFrame({"b": [], "n": []}), bin_start="b", bin_width=1, count="n", title=title, xlabel=xlabel)
    if isinstance(bins, int):
        lo, hi = float(frame["value"].min()), float(frame["value"].max())
        width = (hi - lo) / bins if hi > lo else 1.0
        edges = [lo + i * width for i in range(bins + 1)]
    else:
        edges = [float(e) for e in bins]
    # Bin by the left edge; the top edge is closed, values outside the edges go to the end bins.
    index = np.clip(np.searchsorted(edges, frame["value"].to_numpy(), side="right") - 1, 0, len(edges) - 2)
    binned = frame.with_columns(bin_start=pl.Series(np.asarray(edges)[index])).group_by("group", "bin_start").len("n")
    widths = min(b - a for a, b in zip(edges, edges[1:]))
    return binned_bar_chart(
        binned,
        bin_start="bin_start",
        bin_width=widths,
        count="n",
        group="group" if groups is not None else None,
        title=title,
        xlabel=xlabel,
    )


def funnel_chart(frame: pl.DataFrame, *, stage: str, count: str, group: str | None = None, title: str) -> bytes:
    """Horizontal bars per funnel stage (in the frame's order), grouped by ``group`` if given."""
    fig, ax = _figure()
    stages = list(dict.fromkeys(frame[stage].to_list()))
    offset = 0.0
    if group is None:
        totals = dict(frame.group_by(stage).agg(pl.col(count).sum()).iter_rows())
        values = [totals.get(s, 0) for s in stages]
        bars = ax.barh(range(len(stages)), values, color="#4c72b0")
        for bar, v in zip(bars, values):
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {v:,}", va="center", fontsize=8)
    else:
        frame = _top_groups(frame, group, count).group_by(group, stage, maintain_order=True).agg(pl.col(count).sum())
        names = list(dict.fromkeys(frame[group].to_list()))
        height = 0.8 / max(1, len(names))
        for i, name in enumerate(names):
            part = dict(frame.filter(pl.col(group) == name).select(stage, count).iter_rows())
            ax.barh([j + i * height for j in range(len(stages))], [part.get(s, 0) for s in stages], height=height, label=str(name))
        if names:
            ax.legend(fontsize=8, frameon=False)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        offset = (len(names) - 1) * height / 2
    ax.set_yticks([j + offset for j in range(len(stages))], stages, fontsize=8)
    ax.invert_yaxis()  # first stage on top
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("problems", fontsize=9)
    ax.tick_params(labelsize=8)
    return _png(fig)
