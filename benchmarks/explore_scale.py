"""Time `sessionrec.explore` on a synthetic log of any size (statistics, then plots and report).

    python benchmarks/explore_scale.py --events 33000000 [--sessions-only] [--out DIR]

The log is generated in memory (vectorised numpy): users or sessions with Zipf item popularity,
events in random source order over 180 days, bursts of equal timestamps. It prints wall times
and the process's peak resident memory (``ru_maxrss``). The reference measured in the same run
is a plain polars ``sort`` of the same frame by (actor, timestamp, row): the one full pass that
exploration cannot avoid, so the ratio says how many such passes the statistics cost.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from datetime import UTC, datetime

import numpy as np
import polars as pl

from sessionrec import _schema as S
from sessionrec.explore import explore


def synthetic_events(n: int, *, sessions_only: bool, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n_actors = max(1, n // 20)
    actor = rng.integers(0, n_actors, n)
    base = int(datetime(2014, 4, 1, tzinfo=UTC).timestamp()) * 1_000_000
    seconds = rng.integers(0, 180 * 86400, n)
    seconds[rng.random(n) < 0.3] //= 60  # a share of events collides on coarse timestamps
    t = base + seconds * 1_000_000 + rng.integers(0, 1000, n) * 1000
    items = (rng.zipf(1.3, n) % max(1, n // 600)).astype(np.int64)
    none = pl.Series([None] * n, dtype=pl.Int64)
    actors = pl.Series(actor.astype(np.int64))
    return pl.DataFrame(
        {
            S.USER: none if sessions_only else actors,
            S.SESSION: actors if sessions_only else none,
            S.ITEM: items,
            S.TIME: pl.Series(t).cast(S.TIME_DTYPE),
            S.ROW: np.arange(n, dtype=np.int64),
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--sessions-only", action="store_true", help="a YOOCHOOSE-like log")
    ap.add_argument("--out", help="where to save the report (default: a temp dir)")
    args = ap.parse_args()
    ev = synthetic_events(args.events, sessions_only=args.sessions_only)
    actor = S.SESSION if args.sessions_only else S.USER

    t0 = time.perf_counter()
    ev.sort([actor, *S.TIME_ORDER])
    sort_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    ex = explore(ev)
    stats_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = ex.save(args.out or tempfile.mkdtemp(prefix="explore-bench-"))
    report_s = time.perf_counter() - t0
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    result = {
        "events": ev.height,
        "actor": actor,
        "reference_sort_s": round(sort_s, 2),
        "explore_s": round(stats_s, 2),
        "explore_over_sort": round(stats_s / sort_s, 2),
        "plots_and_report_s": round(report_s, 2),
        "peak_rss_gb": round(peak_gb, 2),
        "suggested_gap": ex.summary["sessions"]["suggested_gap"],
        "report": str(out),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
