"""Evaluation speed on the ML-100K test part (acceptance protocol, 7,117 predictions).

Fits ``pop`` and ``spop`` on train and times ``sessionrec.evaluate`` on test (every position,
full ranking) with the default batch (256 sessions side by side) and, as the reference measured
in the same run, one session at a time (``batch_size=1``), under 1 and 2 torch threads.
Reports the median of ``--repeats`` runs and writes JSON.

    python benchmarks/eval_speed.py [--source ml-100k | --data DIR] [--repeats 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

import sessionrec as sr
from sessionrec.models import create


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="A PreparedData dir; by default ML-100K is prepared here.")
    ap.add_argument("--source", default="ml-100k", help="ML-100K: a name or folder to prepare.")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    if args.data:
        data = sr.PreparedData(args.data)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="eval-speed-"))
        data = sr.prepare(
            args.source, tmp / "ml-100k", session="1h", split="time", test_days=21, valid_days=21
        )
    test = data.test
    print(f"{data}\ntest predictions: {test.n_predictions:,}")
    rows = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for name in ("pop", "spop"):
            model = create(name).fit(data.train)
            for batch in (256, 1):
                times, res = [], None
                for _ in range(args.repeats if batch > 1 else max(1, args.repeats // 2)):
                    t0 = time.perf_counter()
                    res = sr.evaluate(model, test, popularity=data.train.item_counts(),
                                      batch_size=batch)  # fmt: skip
                    times.append(time.perf_counter() - t0)
                assert res is not None and res.predictions == test.n_predictions
                row = {
                    "model": name,
                    "threads": threads,
                    "batch_size": batch,
                    "seconds_median": statistics.median(times),
                    "predictions": res.predictions,
                    "recall@20": res.metrics["recall@20"],
                    "mrr@20": res.metrics["mrr@20"],
                }
                rows.append(row)
                print(
                    f"{name:5s} threads {threads} batch {batch:3d}: "
                    f"{row['seconds_median']:.3f} s median of {len(times)} "
                    f"({res.predictions:,} predictions, Recall@20 {row['recall@20']:.4f})"
                )
    for r in rows:
        if r["batch_size"] > 1:
            ref = next(
                x for x in rows
                if x["batch_size"] == 1 and x["model"] == r["model"] and x["threads"] == r["threads"]
            )  # fmt: skip
            r["speedup_vs_batch_1"] = ref["seconds_median"] / r["seconds_median"]
            print(
                f"{r['model']:5s} threads {r['threads']}: batch 256 is "
                f"{r['speedup_vs_batch_1']:.1f}x faster than one session at a time"
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
