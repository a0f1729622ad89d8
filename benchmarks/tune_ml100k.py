"""`sessionrec tune` on ML-100K under the acceptance protocol (BENCHMARKS.md, "Tuning").

Protocol: ``prepare ml-100k --session-gap 1h --min-session-length 2 --min-item-support 5
--split time --test-days 21 --valid-days 21``; each model tuned with ``sr.tune`` (TPE, median
pruning for epoch-trained models): trials fit on train and are scored on VALID only; the best
is refit on train+valid and test is scored once, with 95 % session-bootstrap intervals.

    PYTHONPATH=src python benchmarks/tune_ml100k.py --work /tmp/tb --models vsknn:8 sknn:8 \\
        [--space gru4rec=FILE] [--metric mrr@20] [--exclude-seen] [--json out.json]

Prints one Markdown row per model: best valid figure, test figures with intervals, trials
(complete/pruned), wall time of the search and of the refit + test.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import sessionrec as sr
from sessionrec._io import write_json

ML100K = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=ML100K)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--models", nargs="+", default=["vsknn:8", "sknn:8"], help="NAME:TRIALS")
    ap.add_argument("--space", action="append", default=[], help="MODEL=FILE (TOML override)")
    ap.add_argument("--metric", default="mrr@20")
    ap.add_argument("--exclude-seen", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--reference", action="store_true", help="also the defaults, refit and tested the same way"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spaces = dict(s.split("=", 1) for s in args.space)
    prep = args.work / "prep"
    if not (prep / "meta.json").exists():
        sr.prepare(sr.load(str(args.data)), prep, session="1h", min_session_length=2,
                   min_item_support=5, split="time", test_days=21, valid_days=21)  # fmt: skip
    rows = []
    for spec in args.models:
        name, _, n = spec.partition(":")
        t0 = time.perf_counter()
        best = sr.tune(name, prep, args.work / f"tune-{name}", trials=int(n or 8),
                       metric=args.metric, space=spaces.get(name), exclude_seen=args.exclude_seen,
                       device="cpu")  # fmt: skip
        wall = time.perf_counter() - t0
        iv = best["test"]["intervals"]
        row = {
            "model": name,
            "metric": args.metric,
            "exclude_seen": args.exclude_seen,
            "valid": best["valid"][args.metric],
            "test": {m: iv[m] for m in ("recall@20", "mrr@20")},
            "params": best["params"],
            "trials": best["study"]["states"],
            "search_seconds": best["study"]["wall_seconds"],
            "refit_seconds": best["refit"]["seconds"],
            "wall_seconds": wall,
            "space": best["study"]["space_sources"],
        }
        if args.reference:
            row["defaults_test"] = _defaults(name, prep, args.work, args.exclude_seen)
        rows.append(row)
        print(_markdown(row), flush=True)
        if args.json:
            write_json(args.json, rows)


def _defaults(name: str, prep: Path, work: Path, exclude_seen: bool) -> dict:
    """The model's defaults, fit on train+valid, test scored as tune scores it."""
    from sessionrec.evaluation import bootstrap_interval, evaluate

    data = sr.PreparedData(prep)
    model = sr.train(name, data, work / f"defaults-{name}", fit_on="train+valid", device="cpu",
                     progress=False)  # fmt: skip
    res = evaluate(model, data.test, cutoffs=(20,), exclude_seen=exclude_seen)  # type: ignore[arg-type]
    iv = bootstrap_interval(res, data.test, ("recall@20", "mrr@20"))
    print(f"defaults of {name}: {iv}", flush=True)
    return iv


def _markdown(r: dict) -> str:
    t = r["test"]
    trials = ", ".join(f"{v} {k}" for k, v in sorted(r["trials"].items()))
    return (
        f"| {r['model']} | {r['valid']:.4f} | {t['recall@20']['value']:.4f} "
        f"[{t['recall@20']['low']:.4f}, {t['recall@20']['high']:.4f}] | "
        f"{t['mrr@20']['value']:.4f} [{t['mrr@20']['low']:.4f}, {t['mrr@20']['high']:.4f}] | "
        f"{trials} | {r['wall_seconds']:.0f} | {json.dumps(r['params'])} |"
    )


if __name__ == "__main__":
    main()
