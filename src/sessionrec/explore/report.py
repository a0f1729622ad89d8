"""The exploration report: one list of blocks rendered as Markdown or as self-contained HTML,
so that both always say the same thing; ``summary.json`` holds the same numbers."""

from __future__ import annotations

from typing import Any

import polars as pl

from sessionrec import _schema as S
from sessionrec._report import Block, Heading, Image, Para, Table, blocks_html, blocks_markdown
from sessionrec.explore.stats import GAP_QUANTILES, QUANTILES, actor_label

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def n(x: float | int | None) -> str:
    """A count or measure for people: 12,345 / 3.5 / 0.25; '-' for None."""
    if x is None:
        return "-"
    if isinstance(x, int) or float(x).is_integer():
        return f"{int(x):,}"
    return f"{x:,.3g}" if abs(x) < 1000 else f"{x:,.0f}"


def pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def duration(seconds: float | None) -> str:
    """Seconds in the largest unit that keeps the number readable: 0 s, 42 s, 7.5 min, 3.2 h."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def blocks(name: str, s: dict[str, Any], t: dict[str, pl.DataFrame]) -> list[Block]:
    """The report's content, top to bottom, from an exploration's name, summary and tables."""
    c, sess = s["counts"], s["sessions"]
    actor = actor_label(s["actor"])
    out: list[Block] = [Heading(f"Exploration of {name}", 1)]
    who = f" by {n(c['users'])} users" if c["users"] is not None else ""
    out.append(
        Para(
            f"{n(c['events'])} events{who} on {n(c['items'])} items, from {c['first']} to "
            f"{c['last']} ({c['days']:.1f} days). Times are UTC."
        )
    )
    how = (
        "the log's own session ids"
        if sess["by"] == "column"
        else f"cut per {actor} after more than {sess['gap']} of inactivity"
        + (" (given)" if sess.get("given") else " (the suggested gap)")
    )
    out.append(Para(f"Sessions: {how}."))
    out.append(
        Table(
            ["", "value"],
            [
                ["events", n(c["events"])],
                ["users", n(c["users"])],
                ["sessions", n(c["sessions"])],
                ["items", n(c["items"])],
                ["first event", c["first"]],
                ["last event", c["last"]],
                ["span (days)", f"{c['days']:.1f}"],
                [
                    "consecutive repeats of an item",
                    pct(s["repeats"]["consecutive_repeat_share"]),
                ],
                [
                    "exact duplicate rows",
                    f"{n(s['duplicates']['events'])} ({pct(s['duplicates']['share'])})",
                ],
            ],
        )
    )

    out.append(Heading("Lengths"))
    keys = ["min", *[f"p{q * 100:g}" for q in QUANTILES], "mean", "max"]
    rows = []
    for label, key in (
        ("events per user", "user_length"),
        ("events per session", "session_length"),
    ):
        if s[key]:
            rows.append([label, *[n(s[key].get(k)) for k in keys]])
    out.append(Table(["", *keys], rows))
    out.append(Para(f"Sessions: {how}; suggested gap: {sess['suggested_gap']}."))
    out.append(Image("lengths", "histograms of events per user and per session, log-log"))

    g = s["gaps"]
    out.append(Heading("Gaps between events"))
    if g["count"]:
        out.append(
            Para(
                f"{n(g['count'])} gaps between consecutive events of the same {actor}, in stable "
                f"time order (timestamp, then source row). {pct(g['zero_share'])} are 0 s "
                f"(identical timestamps); {pct(g['under_1s_share'])} are under 1 s."
            )
        )
        qkeys = [f"p{q * 100:g}_s" for q in GAP_QUANTILES]
        out.append(
            Table(
                [k.removesuffix("_s") for k in qkeys] + ["mean", "max"],
                [[duration(g[k]) for k in [*qkeys, "mean_s", "max_s"]]],
                align_left=0,
            )
        )
    else:
        out.append(Para(f"No {actor} has more than one event: there are no gaps."))
    out.append(
        Para(
            "Sessions that each candidate inactivity gap would cut (per "
            f"{actor}); 'cut per doubling' is the share of those sessions that a twice as long "
            "gap would merge:"
        )
    )
    cand = t["candidate_gaps"]
    out.append(
        Table(
            ["gap", "sessions", "median length", "mean length", "cut per doubling"],
            [
                [
                    r["gap"],
                    n(r["sessions"]),
                    n(r["median_length"]),
                    n(r["mean_length"]),
                    pct(r["cut_per_doubling"]),
                ]
                for r in cand.iter_rows(named=True)
            ],
        )
    )
    out.append(
        Para(f"Suggested gap: {sess['suggested_gap']}, by the rule: {sess['suggestion_rule']}.")
    )
    out.append(Image("gaps", "gap histogram with the candidate gaps; sessions per candidate gap"))

    a = s["activity"]
    out.append(Heading("Activity over time"))
    out.append(
        Para(
            f"Busiest {a['unit']}: {a['busiest_period']}; busiest hour: {a['busiest_hour_utc']}:00 "
            f"UTC; busiest weekday: {_WEEKDAYS[a['busiest_weekday'] - 1]}."
        )
    )
    out.append(Image("activity", f"events per {a['unit']}, per hour of day and per weekday"))

    p = s["popularity"]
    out.append(Heading("Item popularity"))
    out.append(
        Para(
            f"The top 1 % of items ({n(p['top1pct_items'])}) receive {pct(p['top1pct_share'])} "
            f"of the events, the top 10 % ({n(p['top10pct_items'])}) {pct(p['top10pct_share'])}. "
            f"{n(p['single_event_items'])} items ({pct(p['single_event_items_share'])}) have a "
            f"single event; the median item has {n(p['median_item_events'])}."
        )
    )
    top = t["top_items"]
    has_title = S.TITLE in top.columns
    out.append(
        Table(
            ["rank", "item", *(["title"] if has_title else []), "events", "share"],
            [
                [
                    str(i),
                    str(r[S.ITEM]),
                    *([str(r[S.TITLE] or "")] if has_title else []),
                    n(r["events"]),
                    pct(r["share"]),
                ]
                for i, r in enumerate(top.iter_rows(named=True), 1)
            ],
            align_left=3 if has_title else 2,
        )
    )
    out.append(Image("popularity", "item rank-frequency, log-log, and the top items"))

    b = s["bursts"]
    out.append(Heading("Bursty and heavy users"))
    for window in ("second", "minute"):
        w = b[window]
        out.append(
            Para(
                f"Bursts within one {window}: {n(w['actors'])} {actor}s ({pct(w['actors_share'])}) "
                f"have at least {w['threshold']} events in the same calendar {window}; "
                f"{pct(w['events_share'])} of all events lie in such bursts; the most in one "
                f"{window} is {n(w['max_in_window'])}."
            )
        )
    if "bursty" in t and t["bursty"].height:
        out += _frame_table(t["bursty"], f"The most bursty {actor}s:")
    h = s["heavy_users"]
    if h["users"] is not None:
        out.append(
            Para(
                f"Heavy users ({h['rule']}, {n(h['days_in_log'])}): {n(h['users'])} "
                f"({pct(h['users_share'])} of users) with {pct(h['events_share'])} of the events."
            )
        )
        if "heavy_users" in t and t["heavy_users"].height:
            out += _frame_table(t["heavy_users"], "The heaviest users:")

    if "ratings" in t:
        r = t["ratings"]
        out.append(Heading("Ratings"))
        out.append(
            Table(
                ["rating", "events", "share"],
                [[f"{v:g}", n(e), pct(sh)] for v, e, sh in r.iter_rows()],
                align_left=0,
            )
        )
        out.append(Para(f"Mean rating: {s['ratings']['mean']:.3f}."))
        out.append(Image("ratings", "events per rating value"))
    return out


def _frame_table(df: pl.DataFrame, caption: str) -> list[Block]:
    headers = [_HEADERS.get(str(c), str(c).replace("_", " ")) for c in df.columns]
    rows = [[n(v) if isinstance(v, int | float) else str(v) for v in row] for row in df.iter_rows()]
    return [Para(caption), Table(headers, rows)]


_HEADERS = {
    "burst_second_events": "events in 1-s bursts",
    "burst_minute_events": "events in 1-min bursts",
    "max_in_second": "most in 1 s",
    "max_in_minute": "most in 1 min",
    "per_day": "events per day",
}


def render_markdown(
    name: str,
    summary: dict[str, Any],
    tables: dict[str, pl.DataFrame],
    figures: dict[str, bytes],
    images: str = "inline",
) -> str:
    """Markdown; ``images`` ``"files"`` links ``NAME.png``, ``"inline"`` embeds data URIs."""
    return blocks_markdown(blocks(name, summary, tables), figures, images)


def render_html(
    name: str,
    summary: dict[str, Any],
    tables: dict[str, pl.DataFrame],
    figures: dict[str, bytes],
    full_page: bool = True,
) -> str:
    """One self-contained HTML document (or a ``<div>`` for a notebook), images as base64."""
    return blocks_html(blocks(name, summary, tables), figures, f"Exploration of {name}", full_page)


__all__ = ["actor_label", "blocks", "render_html", "render_markdown"]
