"""The exploration's plots, drawn from its small tables into PNG bytes.

matplotlib is imported here only, lazily, and drawn on the Agg canvas of a bare ``Figure``:
no pyplot, so a notebook's own backend and global state are left alone.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from sessionrec import _schema as S
from sessionrec.explore.stats import actor_label

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_BLUE, _ORANGE, _GREY = "#1f77b4", "#d95f02", "#888888"
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def draw_all(summary: dict[str, Any], tables: dict[str, pl.DataFrame]) -> dict[str, bytes]:
    """Every plot an exploration's ``summary`` and ``tables`` allow, as ``{name: PNG bytes}``."""
    drawers: dict[str, Callable[[dict[str, Any], dict[str, pl.DataFrame]], Figure]] = {
        "lengths": lengths,
        "gaps": gaps,
        "activity": activity,
        "popularity": popularity,
    }
    if "ratings" in tables:
        drawers["ratings"] = ratings
    return {name: to_png(draw(summary, tables)) for name, draw in drawers.items()}


def new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def to_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _hist(ax: Axes, hist: pl.DataFrame, color: str) -> None:

    if hist.height == 0:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        return
    edges = np.append(hist["lo"].to_numpy(), hist["hi"][-1])
    ax.stairs(hist["count"].to_numpy(), edges, fill=True, color=color, alpha=0.75)
    ax.set_xscale("log")
    ax.set_yscale("log")
    _no_minor(ax)
    ax.grid(True, which="major", alpha=0.3)


def _no_minor(ax: Axes) -> None:
    # log axes make dozens of minor ticks whose layout dominates drawing time; majors suffice
    from matplotlib.ticker import NullLocator

    ax.xaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_minor_locator(NullLocator())


def _mark(ax: Axes, stats: dict[str, Any] | None, keys: tuple[str, ...]) -> None:
    if not stats:
        return
    for key, style in zip(keys, ("-", "--", ":"), strict=False):
        if key in stats:
            ax.axvline(
                stats[key], color="black", ls=style, lw=1, label=f"{key} = {stats[key]:,.4g}"
            )
    ax.legend(fontsize=8, loc="upper right")


def lengths(summary: dict[str, Any], tables: dict[str, pl.DataFrame]) -> Figure:
    """Histograms of events per user and per session, log-log."""
    fig = new_figure(11, 4)
    ax_u, ax_s = fig.subplots(1, 2)
    s = summary
    if "user_length_hist" in tables:
        _hist(ax_u, tables["user_length_hist"], _BLUE)
        _mark(ax_u, s["user_length"], ("p50", "p99", "max"))
        ax_u.set_title(f"events per user ({s['counts']['users']:,} users)")
    else:
        ax_u.text(0.5, 0.5, "no user ids in this log", ha="center", transform=ax_u.transAxes)
        ax_u.set_title("events per user")
    ax_u.set_xlabel("events (log bins)")
    ax_u.set_ylabel("users")
    _hist(ax_s, tables["session_length_hist"], _ORANGE)
    _mark(ax_s, s["session_length"], ("p50", "p99", "max"))
    sess = s["sessions"]
    how = f"gap {sess['gap']}" if sess["by"] == "gap" else "the log's session ids"
    ax_s.set_title(f"events per session ({s['counts']['sessions']:,}; {how})")
    ax_s.set_xlabel("events (log bins)")
    ax_s.set_ylabel("sessions")
    return fig


def gaps(summary: dict[str, Any], tables: dict[str, pl.DataFrame]) -> Figure:
    """Inter-event gap histogram with the candidate gaps; sessions per candidate gap."""
    fig = new_figure(11, 4)
    ax_h, ax_c = fig.subplots(1, 2)
    g = summary["gaps"]
    cand = tables["candidate_gaps"]
    suggested = summary["sessions"]["suggested_gap"]
    _hist(ax_h, tables["gap_hist"], _BLUE)
    for gap, sec in zip(cand["gap"], cand["seconds"], strict=True):
        chosen = gap == suggested
        ax_h.axvline(
            sec, color=_ORANGE if chosen else _GREY, lw=2 if chosen else 0.7, alpha=0.9,
            label=f"suggested gap {gap}" if chosen else None,
        )  # fmt: skip
    ax_h.set_title(
        f"gaps between a {actor_label(g['within'])}'s events "
        f"({g.get('zero_share', 0):.1%} are 0 s, not shown)"
    )
    ax_h.set_xlabel("seconds (log bins); grey lines: candidate gaps")
    ax_h.set_ylabel("gaps")
    ax_h.legend(fontsize=8, loc="upper left")
    x = cand["seconds"].to_numpy()
    ax_c.plot(x, cand["sessions"].to_numpy(), "o-", color=_BLUE)
    ax_c.set_xscale("log")
    ax_c.set_xticks(x, cand["gap"].to_list(), rotation=45, fontsize=8)
    ax_c.minorticks_off()
    ax_c.set_ylabel("sessions", color=_BLUE)
    ax_c.set_xlabel("inactivity gap")
    ax_c.grid(True, alpha=0.3)
    ax_m = ax_c.twinx()
    ax_m.plot(x, cand["median_length"].to_numpy(), "s--", color=_ORANGE, ms=4)
    ax_m.set_ylabel("median session length", color=_ORANGE)
    i = cand["gap"].to_list().index(suggested)
    ax_c.plot([x[i]], [cand["sessions"][i]], "o", ms=14, mfc="none", mec=_ORANGE, mew=2)
    ax_c.set_title(f"sessions per candidate gap (suggested: {suggested})")
    return fig


def activity(summary: dict[str, Any], tables: dict[str, pl.DataFrame]) -> Figure:
    """Events per day or month; events per hour of the day and per weekday (UTC)."""
    from matplotlib.gridspec import GridSpec

    fig = new_figure(11, 6.5)
    grid = GridSpec(2, 3, figure=fig)
    ax_t = fig.add_subplot(grid[0, :])
    ax_h = fig.add_subplot(grid[1, :2])
    ax_w = fig.add_subplot(grid[1, 2])
    per = tables["activity"]
    unit = summary["activity"]["unit"]
    periods, events = per["period"].to_numpy(), per["events"].to_numpy()
    if unit == "day" and per.height > 1:
        ax_t.fill_between(periods, events, step="mid", color=_BLUE, alpha=0.6)
        ax_t.plot(periods, events, drawstyle="steps-mid", color=_BLUE, lw=0.8)
    else:
        ax_t.bar(periods, events, width=20 if unit == "month" else 0.8, color=_BLUE)
    ax_t.set_title(f"events per {unit}")
    ax_t.set_ylabel("events")
    ax_t.grid(True, alpha=0.3)
    h = tables["hour_of_day"]
    ax_h.bar(h["hour"].to_numpy(), h["events"].to_numpy(), color=_ORANGE)
    ax_h.set_xticks(range(0, 24, 2))
    ax_h.set_xlabel("hour of day (UTC)")
    ax_h.set_ylabel("events")
    ax_h.set_title("hour of day")
    w = tables["weekday"]
    ax_w.bar(range(7), w["events"].to_numpy(), color=_GREY)
    ax_w.set_xticks(range(7), _WEEKDAYS)
    ax_w.set_title("weekday (UTC)")
    return fig


def popularity(summary: dict[str, Any], tables: dict[str, pl.DataFrame]) -> Figure:
    """Rank-frequency of items (log-log) with the top 1 % and 10 % marked; the top items."""
    fig = new_figure(11, 4)
    ax_r, ax_c = fig.subplots(1, 2)
    rf = tables["rank_frequency"]
    p = summary["popularity"]
    ax_r.loglog(rf["rank"].to_numpy(), rf["events"].to_numpy(), ".-", color=_BLUE, ms=3, lw=1)
    for key, label in (("top1pct", "top 1 %"), ("top10pct", "top 10 %")):
        ax_r.axvline(
            p[f"{key}_items"] + 0.5, color=_ORANGE, ls="--" if key == "top1pct" else ":",
            label=f"{label}: {p[f'{key}_items']:,} items, {p[f'{key}_share']:.1%} of events",
        )  # fmt: skip
    ax_r.set_xlabel("item rank (1 = most popular)")
    ax_r.set_ylabel("events")
    ax_r.set_title(f"rank-frequency of {p['items']:,} items")
    _no_minor(ax_r)
    ax_r.grid(True, which="major", alpha=0.3)
    ax_r.legend(fontsize=8)
    top = tables["top_items"]
    if "title" in top.columns:
        names = [f"{t or i}"[:38] for i, t in zip(top[S.ITEM], top["title"], strict=True)]
    else:
        names = [str(i) for i in top[S.ITEM]]
    pos = np.arange(len(names))[::-1]
    ax_c.barh(pos, top["events"].to_numpy(), color=_BLUE)
    ax_c.set_yticks(pos, names)
    ax_c.set_title(f"top {top.height} items")
    ax_c.set_xlabel("events")
    ax_c.tick_params(axis="y", labelsize=8)
    return fig


def ratings(summary: dict[str, Any], tables: dict[str, pl.DataFrame]) -> Figure:
    """Events per rating value."""
    fig = new_figure(6, 3.5)
    ax = fig.subplots()
    r = tables["ratings"]
    labels = [f"{v:g}" for v in r[S.RATING].to_list()]
    ax.bar(range(len(labels)), r["events"].to_numpy(), color=_BLUE)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel("rating")
    ax.set_ylabel("events")
    ax.set_title(f"ratings (mean {summary['ratings']['mean']:.2f})")
    return fig
