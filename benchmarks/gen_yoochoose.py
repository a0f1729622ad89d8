"""Generate a synthetic click log in the YOOCHOOSE layout (``yoochoose-clicks.dat``).

No header; one click per line: ``session_id,timestamp,item_id,category`` with ISO-8601 times in
UTC ending in ``Z`` (``1,2014-04-07T10:51:09.277Z,214536502,0``), as in the RecSys Challenge 2015
log. The shape follows YOOCHOOSE's: Zipf-distributed item popularity over ~50k items, geometric
session lengths with mean ~3.5 (so about 30 % of sessions have a single click), sessions spread
over ~180 days with ids increasing with their start time, clicks within a session seconds to
minutes apart, and some immediate repeats of the same item.

Generation is vectorised numpy in chunks of sessions, each written with polars' CSV writer, so
33 M events take well under a few minutes and about a gigabyte of memory. Seeded: the same
arguments give the same file, byte for byte.

    python benchmarks/gen_yoochoose.py --events 1000000 --out /tmp/yc-1m/yoochoose-clicks.dat
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import polars as pl

START = np.datetime64("2014-04-01T00:00:00", "ms").astype(np.int64)
DAY_MS = 86_400_000


def item_catalogue(rng: np.random.Generator, n_items: int, zipf: float) -> tuple[np.ndarray, ...]:
    """Item ids (by popularity rank), their categories and the Zipf CDF over ranks.

    Returns:
        ids: (n_items,) int64 YOOCHOOSE-like 9-digit ids, in popularity-rank order.
        categories: (n_items,) str category of each item: mostly "0", some "S" (special offer),
            some 1..12.
        cdf: (n_items,) float64 cumulative popularity, cdf[-1] == 1.
    """
    ids = 214_500_000 + rng.choice(1_000_000, size=n_items, replace=False).astype(np.int64)
    u = rng.random(n_items)
    cats = np.where(u < 0.8, "0", np.where(u < 0.85, "S", rng.integers(1, 13, n_items).astype(str)))
    weights = 1.0 / np.arange(1, n_items + 1, dtype=np.float64) ** zipf
    cdf = np.cumsum(weights)
    return ids, cats.astype(object), cdf / cdf[-1]


def session_chunk(
    rng: np.random.Generator,
    first_id: int,
    starts: np.ndarray,
    lengths: np.ndarray,
    items: tuple[np.ndarray, ...],
    repeat: float,
) -> pl.DataFrame:
    """One chunk of sessions as a frame (session_id, timestamp, item_id, category).

    Args:
        first_id: id of the chunk's first session (ids run consecutively).
        starts: (S,) int64 start time of each session, ms since the epoch, ascending.
        lengths: (S,) int64 clicks per session (>= 1).
    """
    ids, cats, cdf = items
    n = int(lengths.sum())
    sess = np.repeat(np.arange(first_id, first_id + len(lengths), dtype=np.int64), lengths)
    # Gaps between consecutive clicks: log-normal, median ~40 s, from a second to many minutes.
    gaps = np.exp(rng.normal(np.log(40_000), 1.2, n)).astype(np.int64)
    first = np.zeros(n, dtype=bool)
    offsets = np.r_[0, np.cumsum(lengths)[:-1]]
    first[offsets] = True
    gaps[first] = 0
    t = np.cumsum(gaps)
    t = t - np.repeat(t[offsets], lengths) + np.repeat(starts, lengths)
    rank = np.minimum(np.searchsorted(cdf, rng.random(n)), len(cdf) - 1)
    # Immediate repeats (a user clicking the same item again) take the item of the last
    # non-repeat click before them; a session's first click is never a repeat.
    rep = (rng.random(n) < repeat) & ~first
    src = np.where(rep, 0, np.arange(n))
    np.maximum.accumulate(src, out=src)
    rank = rank[src]
    return pl.DataFrame(
        {
            "session_id": sess,
            "timestamp": pl.Series(t, dtype=pl.Int64).cast(pl.Datetime("ms")),
            "item_id": ids[rank],
            "category": pl.Series(cats[rank], dtype=pl.Utf8),
        }
    )


def generate(
    out: Path,
    n_events: int,
    *,
    n_items: int = 50_000,
    mean_length: float = 3.5,
    days: int = 180,
    zipf: float = 1.0,
    repeat: float = 0.08,
    seed: int = 0,
    chunk_sessions: int = 500_000,
) -> dict[str, float]:
    """Write ``n_events`` clicks to ``out``; returns a summary (events, sessions, seconds)."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    items = item_catalogue(rng, n_items, zipf)
    # Enough sessions for n_events with a margin; the last session is cut at n_events.
    n_sessions = int(n_events / mean_length * 1.05) + 10
    lengths = rng.geometric(1.0 / mean_length, n_sessions).astype(np.int64)
    ends = np.cumsum(lengths)
    n_sessions = int(np.searchsorted(ends, n_events)) + 1
    lengths = lengths[:n_sessions]
    lengths[-1] -= int(ends[n_sessions - 1]) - n_events
    starts = np.sort(rng.integers(0, days * DAY_MS, n_sessions)) + START
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb") as fh:
        for lo in range(0, n_sessions, chunk_sessions):
            hi = min(lo + chunk_sessions, n_sessions)
            df = session_chunk(rng, lo + 1, starts[lo:hi], lengths[lo:hi], items, repeat)
            df.write_csv(fh, include_header=False, datetime_format="%Y-%m-%dT%H:%M:%S%.3fZ")
    tmp.replace(out)
    return {
        "events": n_events,
        "sessions": n_sessions,
        "bytes": out.stat().st_size,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def parse_count(text: str) -> int:
    """``1M``, ``33M``, ``500k`` or a plain number."""
    t = text.strip().lower().replace("_", "")
    for suffix, mult in (("k", 1_000), ("m", 1_000_000)):
        if t.endswith(suffix):
            return int(float(t[:-1]) * mult)
    return int(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=parse_count, default=1_000_000, help="e.g. 1M, 33M")
    ap.add_argument("--out", type=Path, required=True, help="the yoochoose-clicks.dat to write")
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--days", type=int, default=180)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    info = generate(args.out, args.events, n_items=args.items, days=args.days, seed=args.seed)
    print(
        f"wrote {args.out}: {info['events']:,} events in {info['sessions']:,} sessions, "
        f"{info['bytes'] / 1e9:.2f} GB, {info['seconds']:.1f} s"
    )


if __name__ == "__main__":
    main()
