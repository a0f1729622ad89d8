"""Why GRU4Rec's defaults fall short of the Bayes-optimal ceiling: per-epoch curves on VALID.

For one synthetic preset (prepared as ``benchmarks/choose_defaults.py`` does: seed 0, ``--scale``
of its size, the last tenth of the span test, the tenth before valid) and a few configurations
(the current defaults with some fields changed): fit on **train** for ``--epochs`` epochs with
valid Recall@20 / MRR@20 after every epoch (no early stopping), and state every epoch's train
loss and valid figures as a share of the oracle's on the same valid part. Test is never read.

    PYTHONPATH=src python benchmarks/gru4rec_diagnose.py --work /tmp/acc --preset media \
        --epochs 20 --config defaults='{}' --config layers300='{"layers": [300]}'

Each configuration's curve is cached in ``WORK/diagnose/PRESET__NAME.json``; the script prints
one line per epoch and a summary (best epoch, best shares, train loss at the first and last
epoch). ``--json FILE`` collects every cached curve of the work folder into one file.
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
from sessionrec import synthetic as syn


def prepare(work: Path, preset: str, scale: float, seed: int) -> tuple[Path, Path]:
    """The log and its PreparedData under ``work/preset`` (made once)."""
    base = work / preset
    data = base / "data"
    if not (data / "meta.json").exists():
        spec = syn.PRESETS[preset]
        log = syn.generate(preset, n_sessions=max(200, int(spec.n_sessions * scale)), seed=seed)
        log.save(base / "log")
        days = max(1, spec.days // 10)
        sr.prepare(str(base / "log" / "log.parquet"), data, session="column", split="time",
                   test_days=days, valid_days=days, min_item_support=1)  # fmt: skip
    return base / "log", data


def valid_ceiling(work: Path, preset: str, log_dir: Path, data: Path) -> dict[str, float]:
    cache = work / "diagnose" / f"{preset}__ceiling.json"
    if cache.exists():
        return dict(json.loads(cache.read_text()))
    res = syn.ceiling(syn.SyntheticLog.load(log_dir), data, split="valid", cutoffs=(20,))
    out = {"recall@20": float(res.metrics["recall@20"]), "mrr@20": float(res.metrics["mrr@20"])}
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(out))
    return out


def run(work: Path, preset: str, name: str, params: dict[str, Any], epochs: int) -> dict:
    cache = work / "diagnose" / f"{preset}__{name}.json"
    if cache.exists():
        return dict(json.loads(cache.read_text()))
    log_dir, data = work / preset / "log", work / preset / "data"
    ceil = valid_ceiling(work, preset, log_dir, data)
    t0 = time.perf_counter()
    out = work / preset / "diag" / name
    sr.train("gru4rec", data, out, params={**params, "n_epochs": epochs}, fit_on="train",
             valid_every=1, progress=False, device="cpu", overwrite=True)  # fmt: skip
    hist = [json.loads(x) for x in (out / "history.jsonl").open()]
    curve = [
        {
            "epoch": r["epoch"],
            "train_loss": r["train_loss"],
            "valid_recall@20": r["valid_recall@20"],
            "valid_mrr@20": r["valid_mrr@20"],
            "recall_share": r["valid_recall@20"] / ceil["recall@20"],
            "mrr_share": r["valid_mrr@20"] / ceil["mrr@20"],
        }
        for r in hist
    ]
    row = {"preset": preset, "config": name, "params": params, "ceiling": ceil, "curve": curve,
           "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
    cache.write_text(json.dumps(row, indent=1))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--preset", default="media", choices=list(syn.PRESETS))
    ap.add_argument("--config", action="append", default=[], metavar="NAME=JSON")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--scale", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, help="collect every cached curve into this file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.json:
        rows = [json.loads(f.read_text()) for f in sorted((args.work / "diagnose").glob("*.json"))]
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "command": " ".join(sys.argv),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores shared with other jobs, "
            f"torch threads {args.threads}",
            "protocol": "fit on train, valid after every epoch (seen items kept, full ranking, "
            "conservative ties), no early stopping; shares of the oracle's valid figures",
            "runs": [r for r in rows if "curve" in r],
        }, indent=1) + "\n")  # fmt: skip
        return
    prepare(args.work, args.preset, args.scale, args.seed)
    for spec in args.config:
        name, _, raw = spec.partition("=")
        row = run(args.work, args.preset, name, json.loads(raw or "{}"), args.epochs)
        for c in row["curve"]:
            print(f"{args.preset} {name} epoch {c['epoch']:2d}: loss {c['train_loss']:.4f}  "
                  f"valid R@20 {c['valid_recall@20']:.4f} ({c['recall_share']:.1%})  MRR@20 "
                  f"{c['valid_mrr@20']:.4f} ({c['mrr_share']:.1%})")  # fmt: skip
        best = max(row["curve"], key=lambda c: c["valid_mrr@20"])
        print(f"== {args.preset} {name}: best epoch {best['epoch']}/{len(row['curve'])}, "
              f"shares {best['recall_share']:.1%} / {best['mrr_share']:.1%}, "
              f"{row['seconds']:.0f} s", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
