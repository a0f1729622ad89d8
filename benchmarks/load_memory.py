"""Peak memory of loading an ML-25M-sized ratings.csv, against the in-memory size of its columns.

Issue 2 asks that loading stay memory-lean: an ML-25M-sized CSV must not need more than about 3x
the in-memory size of its columns. This script writes a synthetic ``ratings.csv`` (userId,
movieId, rating, timestamp; 25M rows by default, ML-25M's shape) plus a small ``movies.csv``
into a temp dir, then loads it in a fresh subprocess per path (the MovieLens folder layout, and
the same file as a generic CSV log) and reports that process's peak RSS.

The reference is the size of the four columns as a typed frame (Int64, Int64, Float64, Int64 =
32 bytes a row, what ``pl.read_csv`` infers); the Events frame itself (user, session, item,
timestamp, row, rating) is also reported, since it is what loading must produce.

    nice -n 10 python benchmarks/load_memory.py [--rows 25000000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

CHILD = r"""
import json, resource, sys, time
import polars as pl
import sessionrec as sr
from sessionrec.datasets import load_table

def peak_rss():
    # VmHWM is this process's own high-water mark; ru_maxrss would also count the parent's
    # RSS at fork time, which Linux carries across exec.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

kind, path = sys.argv[1], sys.argv[2]
base = peak_rss()
t0 = time.perf_counter()
ds = sr.load(path) if kind == "movielens" else load_table(path)
ev = ds.events
seconds = time.perf_counter() - t0
print(json.dumps({
    "kind": kind,
    "rows": ev.height,
    "events_bytes": ev.estimated_size(),
    "peak_rss": peak_rss(),
    "baseline_rss": base,
    "seconds": seconds,
}))
"""


def write_ratings(folder: Path, rows: int, seed: int = 0) -> int:
    """Write ``ratings.csv`` in chunks (to keep this process small); returns the column bytes."""
    rng = np.random.default_rng(seed)
    path = folder / "ratings.csv"
    chunk = 5_000_000
    n_users, n_items = 162_541, 59_047  # ML-25M's counts
    with open(path, "wb") as f:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            # Users in ascending blocks as in the official file; Zipf-ish item popularity.
            users = np.sort(rng.integers(1, n_users + 1, n)) + 0
            items = np.minimum(rng.zipf(1.3, n), n_items)
            df = pl.DataFrame(
                {
                    "userId": users.astype(np.int64),
                    "movieId": items.astype(np.int64),
                    "rating": rng.integers(1, 11, n) / 2.0,
                    "timestamp": rng.integers(789_652_009, 1_574_327_703, n),
                }
            )
            df.write_csv(f, include_header=start == 0)
    (folder / "movies.csv").write_text(
        "movieId,title,genres\n"
        + "".join(
            f'{i},"Movie {i}, The ({1900 + i % 120})",Drama|Comedy\n' for i in range(1, n_items + 1)
        )
    )
    return rows * (8 + 8 + 8 + 8)


def measure(kind: str, path: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, kind, str(path)], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"{kind} load failed:\n{out.stderr}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=25_000_000)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sr-loadmem-") as tmp:
        folder = Path(tmp) / "ml-25m"
        folder.mkdir()
        t0 = time.perf_counter()
        column_bytes = write_ratings(folder, args.rows)
        size = (folder / "ratings.csv").stat().st_size
        print(f"wrote {args.rows:,} rows ({size / 2**20:,.0f} MiB csv) in "
              f"{time.perf_counter() - t0:.0f}s; columns in memory: {column_bytes / 2**20:,.0f} MiB")  # fmt: skip
        results = []
        for kind, path in (("movielens", folder), ("table", folder / "ratings.csv")):
            r = measure(kind, path)
            r["column_bytes"] = column_bytes
            r["csv_bytes"] = size
            r["ratio"] = r["peak_rss"] / column_bytes
            r["ratio_events"] = r["peak_rss"] / r["events_bytes"]
            results.append(r)
            print(
                f"{kind:10s} {r['rows']:,} events in {r['seconds']:.1f}s: "
                f"peak RSS {r['peak_rss'] / 2**20:,.0f} MiB (baseline after imports "
                f"{r['baseline_rss'] / 2**20:,.0f} MiB); Events frame "
                f"{r['events_bytes'] / 2**20:,.0f} MiB; "
                f"peak / columns = {r['ratio']:.2f}x, peak / Events frame = "
                f"{r['ratio_events']:.2f}x"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
