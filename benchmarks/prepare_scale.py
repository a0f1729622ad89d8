"""Preparation at scale: load → sessionize → filter → split → write, sessionrec vs pandas.

Generates a YOOCHOOSE-format click log of the given size (``gen_yoochoose.py``, under /tmp),
then prepares it twice, each in a fresh subprocess whose wall time and peak resident memory
(the kernel's high-water mark for that process, from ``wait4``) are measured:

- **sessionrec**: ``sr.prepare(clicks, out, session="column", min_session_length=2,
  min_item_support=5, split="time", test_days=1, valid_days=1)``;
- **pandas**: the same steps the way GRU4Rec's preprocessing does them, written fairly for
  pandas 3 (pyarrow CSV engine and dtypes, typed columns, ISO times parsed by the reader):
  read, order by session and time (skipped when already in order, as sessionrec does),
  group-by-size filters repeated until stable, sessions split twice by their last event,
  valid/test restricted to training items, item indices, Parquet files.

Both must agree on every count (asserted). Results are printed and written to
``benchmarks/results/prepare_scale_<N>.json``.

    python benchmarks/prepare_scale.py --events 1M
    nice -n 5 python benchmarks/prepare_scale.py --events 33M
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PARAMS: dict[str, Any] = {
    "session": "column",
    "min_session_length": 2,
    "min_item_support": 5,
    "split": "time",
    "test_days": 1,
    "valid_days": 1,
}
PARTS = ("train", "valid", "test")


# --- the two implementations (each runs in its own subprocess) -------------------------------


def run_sessionrec(clicks: Path, out: Path) -> dict[str, Any]:
    import sessionrec as sr

    data = sr.prepare(clicks, out, **PARAMS)
    assert isinstance(data, sr.PreparedData)
    c = data.meta["counts"]
    return {
        "raw_events": data.meta["raw_events"],
        **{f"{p}_events": c[p]["events"] for p in PARTS},
        **{f"{p}_sessions": c[p]["sessions"] for p in PARTS},
        "items": data.n_items,
    }


def run_pandas(clicks: Path, out: Path) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    session, time_, item = "session_id", "timestamp", "item_id"
    df = pd.read_csv(
        clicks, header=None, usecols=[0, 1, 2], engine="pyarrow", dtype_backend="pyarrow"
    )
    df.columns = [session, time_, item]  # int64, timestamp[ms, UTC] (parsed by Arrow), int64
    raw_events = len(df)
    s = df[session].to_numpy()
    t = df[time_].astype("int64[pyarrow]").to_numpy()
    same = s[1:] == s[:-1]
    if not np.all((s[1:] > s[:-1]) | (same & (t[1:] >= t[:-1]))):
        df = df.sort_values([session, time_], kind="stable")
    while True:  # the support filters, until a round removes nothing
        before = len(df)
        support = df.groupby(item, sort=False).size()
        df = df[df[item].isin(support.index[support >= PARAMS["min_item_support"]])]
        length = df.groupby(session, sort=False).size()
        df = df[df[session].isin(length.index[length >= PARAMS["min_session_length"]])]
        if len(df) == before:
            break
    ends = df.groupby(session, sort=False)[time_].max()
    is_test = ends >= ends.max() - pd.Timedelta(days=PARAMS["test_days"])
    rest = ends[~is_test]
    is_valid = rest >= rest.max() - pd.Timedelta(days=PARAMS["valid_days"])
    in_test = df[session].isin(ends.index[is_test])
    in_valid = df[session].isin(rest.index[is_valid])
    parts = {"train": df[~in_test & ~in_valid], "valid": df[in_valid], "test": df[in_test]}
    del df
    train_items = np.sort(parts["train"][item].unique())
    for name in ("valid", "test"):
        part = parts[name]
        part = part[part[item].isin(train_items)]
        length = part.groupby(session, sort=False)[session].transform("size")
        parts[name] = part[length >= 2]
    index = pd.Index(train_items)
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, Any] = {"raw_events": raw_events}
    for name, part in parts.items():
        part = part.assign(item_idx=index.get_indexer(part[item]))
        part[[session, "item_idx", item, time_]].to_parquet(out / f"{name}.parquet", index=False)
        counts[f"{name}_events"] = len(part)
        counts[f"{name}_sessions"] = int(part[session].nunique())
    support = parts["train"].groupby(item).size().reindex(train_items)
    items = pd.DataFrame({"item_idx": np.arange(len(index)), item: index, "count": support.values})
    items.to_parquet(out / "items.parquet", index=False)
    counts["items"] = len(index)
    return {k: counts[k] for k in ("raw_events", *sorted(set(counts) - {"raw_events"}))}


RUNNERS = {"sessionrec": run_sessionrec, "pandas": run_pandas}


def child(impl: str, clicks: Path, out: Path, result: Path) -> None:
    t0 = time.perf_counter()
    counts = RUNNERS[impl](clicks, out)
    result.write_text(json.dumps({"counts": counts, "inner_s": time.perf_counter() - t0}))


# --- the driver -------------------------------------------------------------------------------


def measure(impl: str, clicks: Path, work: Path) -> dict[str, Any]:
    """Run one implementation in a fresh interpreter; wall time and its own peak RSS."""
    out, result = work / f"out-{impl}", work / f"result-{impl}.json"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, __file__, "--child", impl, "--clicks", str(clicks), "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.Popen([*cmd, "--result", str(result)])
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{impl} failed with exit code {proc.returncode}")
    rec = json.loads(result.read_text())
    shutil.rmtree(out, ignore_errors=True)
    return {
        "wall_s": round(wall, 2),
        "inner_s": round(rec["inner_s"], 2),
        # CPU seconds (user + system) of the process: less sensitive than wall time to other
        # processes competing for the cores; on 2 idle cores wall time is at least cpu_s / 2.
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        # ru_maxrss is in KiB on Linux.
        "peak_rss_gb": round(usage.ru_maxrss * 1024 / 1e9, 2),
        "counts": rec["counts"],
    }


def main() -> None:
    sys.path.insert(0, str(HERE))
    from gen_yoochoose import generate, parse_count

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", default="1M", help="log size: 1M, 33M, ... (default 1M)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/sessionrec-scale"))
    ap.add_argument("--keep-data", action="store_true", help="keep the generated log")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", choices=list(RUNNERS), help=argparse.SUPPRESS)
    ap.add_argument("--clicks", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.clicks, args.out, args.result)
        return
    n = parse_count(args.events)
    work = args.work / str(args.events)
    clicks = work / "yoochoose-clicks.dat"
    if not clicks.exists():
        info = generate(clicks, n, seed=args.seed)
        print(f"generated {clicks}: {info['events']:,} events, {info['bytes'] / 1e9:.2f} GB")
    load_before = os.getloadavg()
    runs = {impl: measure(impl, clicks, work) for impl in RUNNERS}
    load_after = os.getloadavg()
    sr_counts, pd_counts = runs["sessionrec"]["counts"], runs["pandas"]["counts"]
    assert sr_counts == pd_counts, (
        f"counts differ:\n  sessionrec {sr_counts}\n  pandas     {pd_counts}"
    )
    import pandas as pd
    import polars as pl

    record = {
        "benchmark": "prepare_scale",
        "events": n,
        "file_gb": round(clicks.stat().st_size / 1e9, 2),
        "params": PARAMS,
        "counts": sr_counts,
        "sessionrec": {k: v for k, v in runs["sessionrec"].items() if k != "counts"},
        "pandas": {k: v for k, v in runs["pandas"].items() if k != "counts"},
        "ratio_wall_pandas_over_sessionrec": round(
            runs["pandas"]["wall_s"] / runs["sessionrec"]["wall_s"], 2
        ),
        "ratio_cpu_pandas_over_sessionrec": round(
            runs["pandas"]["cpu_s"] / runs["sessionrec"]["cpu_s"], 2
        ),
        # inner: the preparation alone, without interpreter start and imports.
        "ratio_inner_pandas_over_sessionrec": round(
            runs["pandas"]["inner_s"] / runs["sessionrec"]["inner_s"], 2
        ),
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1),
            "python": platform.python_version(),
            "polars": pl.__version__,
            "pandas": pd.__version__,
            "loadavg_1min_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
            "nice": os.nice(0),
        },
        "command": "python benchmarks/prepare_scale.py " + " ".join(sys.argv[1:]),
    }
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    path = results / f"prepare_scale_{args.events}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\n{n:,} events ({record['file_gb']} GB), counts agree: {sr_counts}")
    print(f"{'':12} {'wall s':>8} {'inner s':>8} {'CPU s':>8} {'peak RSS GB':>12}")
    for impl in RUNNERS:
        r = runs[impl]
        print(
            f"{impl:12} {r['wall_s']:8.1f} {r['inner_s']:8.1f} {r['cpu_s']:8.1f}"
            f" {r['peak_rss_gb']:12.2f}"
        )
    print(f"pandas / sessionrec wall time: {record['ratio_wall_pandas_over_sessionrec']:.2f}x")
    print(f"load average (1 min) before/after: {load_before[0]:.1f} / {load_after[0]:.1f}")
    print(f"wrote {path}")
    if not args.keep_data:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
