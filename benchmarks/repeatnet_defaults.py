"""RepeatNet's defaults: settings chosen on valid (ML-100K's acceptance protocol and the
synthetic logs of ``choose_defaults.py``), test scored once.

Two stages, each its own command (the first to choose, the second to measure the choice):

    # 1. valid: each run fits on train and scores valid every 2 epochs (patience 3), the best
    #    epoch kept; test is never read
    PYTHONPATH=src python benchmarks/repeatnet_defaults.py --data DATA --work DIR valid \\
        --run a='{"dropout": 0.5, "learning_rate": 0.002}' --run b='{...}'
    # 2. test: the model's defaults (or --params) fit on train+valid, each seed scored once on
    #    test, seen items kept and excluded, 95 % session-bootstrap intervals
    PYTHONPATH=src python benchmarks/repeatnet_defaults.py --data DATA --work DIR test --seeds 0 1 2

DATA: ``sessionrec prepare ml-100k --session 1h --min-session-length 2 --min-item-support 5
--split time --test-days 21 --valid-days 21`` (7,117 test predictions), or ``--log NAME`` for
a log of ``choose_defaults.py`` (prepared once under ``--work``: a synthetic preset at 0.3 of
its size, seed 0's process). Results go to ``--json`` (default
benchmarks/results/repeatnet_defaults.json), merged with what is there.
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
from sessionrec.evaluation.intervals import bootstrap_interval

RESULTS = Path(__file__).resolve().parent / "results" / "repeatnet_defaults.json"
METRICS = ("recall@20", "mrr@20")


MODEL = "repeatnet"


def valid_run(data: Any, work: Path, name: str, params: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    sr.train(MODEL, data, work / name, params=params, fit_on="train",
             valid_metric="recall@20", valid_every=2, patience=3, progress=False,
             overwrite=True)  # fmt: skip
    seconds = time.perf_counter() - t0
    history = [json.loads(line) for line in (work / name / "history.jsonl").open()]
    scored = [h for h in history if "valid_recall@20" in h]
    best = max(scored, key=lambda h: h["valid_recall@20"])
    return {
        "run": name,
        "params": params,
        "best_epoch": best["epoch"],
        "epochs_run": len(history),
        "valid_recall@20": best["valid_recall@20"],
        "valid_mrr@20": best["valid_mrr@20"],
        "valid_curve": [[h["epoch"], h["valid_recall@20"], h["valid_mrr@20"]] for h in scored],
        "seconds": seconds,
    }


def test_seed(data: Any, work: Path, seed: int, params: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    model = sr.train(MODEL, data, work / f"test-seed{seed}", params=params, seed=seed,
                     fit_on="train+valid", progress=False, overwrite=True)  # fmt: skip
    fit_s = time.perf_counter() - t0
    out: dict[str, Any] = {"seed": seed, "params": params, "fit_seconds": fit_s}
    for exclude in (False, True):
        res = sr.evaluate(model, data.test, cutoffs=(20,), exclude_seen=exclude)
        ci = bootstrap_interval(res, data.test, METRICS)
        out["excluded" if exclude else "kept"] = {
            "predictions": res.predictions,
            **{m: ci[m] for m in METRICS},
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, help="a prepared folder (or --log)")
    ap.add_argument("--log", help="ecommerce | media | broad: choose_defaults.py's log")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", default="repeatnet", help="any window model (repeatnet, sasrec)")
    ap.add_argument("--json", type=Path, default=RESULTS)
    sub = ap.add_subparsers(dest="stage", required=True)
    v = sub.add_parser("valid")
    v.add_argument("--run", action="append", default=[], help="NAME=JSON params")
    t = sub.add_parser("test")
    t.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    t.add_argument("--params", default="{}", help="JSON params (default: the model's defaults)")
    t.add_argument("--label", default="defaults")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    global MODEL
    MODEL = args.model
    if args.log:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from choose_defaults import prepare_log

        args.data = prepare_log(args.log, args.work, 0.3, 100_000)
    data = sr.PreparedData(args.data)
    results: dict[str, Any] = json.loads(args.json.read_text()) if args.json.exists() else {}
    results.setdefault("machine", f"{platform.processor() or platform.machine()}, "
                                  f"{os.cpu_count()} cores, {args.threads} torch thread(s)")  # fmt: skip
    if args.stage == "valid":
        for spec in args.run:
            name, _, text = spec.partition("=")
            row = valid_run(data, args.work, name, json.loads(text))
            print(json.dumps({k: row[k] for k in row if k != "valid_curve"}), flush=True)
            results.setdefault("valid_runs", {})[name] = row
    else:
        params = json.loads(args.params)
        rows = [test_seed(data, args.work, s, params) for s in args.seeds]
        for r in rows:
            print(json.dumps(r), flush=True)
        results.setdefault("test", {})[args.label] = rows
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
