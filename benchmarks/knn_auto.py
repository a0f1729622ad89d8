"""sknn / vsknn ``sample_size``: the default ``auto`` against a fixed m = 500 and exhaustive
search, paired on the same predictions, and where ``auto`` switches from exact to sampled.

Part 1 (accuracy): ML-100K's acceptance protocol (session gap 1 h, min length 2, min support
5, 21/21-day time split), each model fit on train+valid, test scored once with seen items
excluded and kept; every figure beside the paired difference against ``auto`` (session
bootstrap, 1,000 replicates: interval and p-value), and the evaluation's seconds.

Part 2 (cost): synthetic e-commerce logs (``sessionrec.synthetic``, the ``ecommerce`` preset)
at growing sizes: the longest item → sessions list (what ``auto`` decides on), and the
evaluation time of exact search through the index (m = every session) against m = 500 on the
same test predictions, with the paired difference of their MRR@20.

    PYTHONPATH=src python benchmarks/knn_auto.py --data DATA --scales 1 4 16

DATA: ``sessionrec prepare ml-100k --session-gap 1h --split time --test-days 21
--valid-days 21`` (7,117 test predictions). Writes benchmarks/results/knn_auto.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

import sessionrec as sr
from sessionrec.evaluation import paired_difference
from sessionrec.models.sknn import AUTO_EXACT_LIST

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "knn_auto.json"
METRICS = ("recall@20", "mrr@20")


def fit_eval(
    model_name: str, data: Any, work: Path, m: Any, exclude: bool
) -> tuple[Any, Any, float]:
    model = sr.train(model_name, data, work / f"{model_name}-{m}", params={"sample_size": m},
                     fit_on="train+valid", progress=False, overwrite=True)  # fmt: skip
    t0 = time.perf_counter()
    res = sr.evaluate(model, data.test, cutoffs=(20,), exclude_seen=exclude)
    return model, res, time.perf_counter() - t0


def accuracy(data: Any, work: Path) -> list[dict[str, Any]]:
    rows = []
    for name in ("vsknn", "sknn"):
        for exclude in (True, False):
            runs = {m: fit_eval(name, data, work, m, exclude) for m in ("auto", 500, 0)}
            ref = runs["auto"][1]
            for m, (model, res, secs) in runs.items():
                row: dict[str, Any] = {
                    "model": name,
                    "sample_size": m,
                    "m_used": model.sample_m,
                    "seen": "excluded" if exclude else "kept",
                    "predictions": res.predictions,
                    "eval_seconds": round(secs, 2),
                    **{k: res.metrics[k] for k in METRICS},
                }
                if m != "auto":
                    row["vs_auto"] = {
                        k: paired_difference(res, ref, data.test, k, n_boot=1000) for k in METRICS
                    }
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def cost(work: Path, scales: list[float]) -> list[dict[str, Any]]:
    sys.path.insert(0, str(HERE))
    from choose_defaults import prepare_log

    rows = []
    for scale in scales:
        path = prepare_log("ecommerce", work / f"x{scale:g}", scale, 0)
        data = sr.PreparedData(path)
        runs = {}
        for m in ("exact", 500):
            size = data.train.n_sessions + data.valid.n_sessions if m == "exact" else m
            runs[m] = fit_eval("vsknn", data, work / f"x{scale:g}", size, False)
        model = runs["exact"][0]
        assert model.item_sessions is not None
        longest = int(model.item_sessions.indptr.diff().max())
        exact, sampled = runs["exact"][1], runs[500][1]
        row = {
            "log": f"ecommerce x{scale:g}",
            "training_sessions": model.sessions.n_rows if model.sessions is not None else 0,
            "longest_item_list": longest,
            "auto_would_be": "exact" if longest <= AUTO_EXACT_LIST else "m=500",
            "predictions": exact.predictions,
            "exact_ms_per_prediction": 1000 * runs["exact"][2] / max(1, exact.predictions),
            "m500_ms_per_prediction": 1000 * runs[500][2] / max(1, sampled.predictions),
            "exact": {k: exact.metrics[k] for k in METRICS},
            "m500": {k: sampled.metrics[k] for k in METRICS},
            "m500_minus_exact": {
                k: paired_difference(sampled, exact, data.test, k, n_boot=1000) for k in METRICS
            },
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="the ML-100K prepared folder")
    ap.add_argument("--work", type=Path, default=HERE / "_work" / "knn_auto")
    ap.add_argument("--scales", type=float, nargs="*", default=[1, 4])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=RESULTS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = sr.PreparedData(args.data)
    out = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{args.threads} torch thread(s)",
        "date": time.strftime("%Y-%m-%d"),
        "auto_exact_list": AUTO_EXACT_LIST,
        "accuracy_ml100k": accuracy(data, args.work),
        "cost_synthetic": cost(args.work, args.scales),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
