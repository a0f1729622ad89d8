"""Choose GRU4Rec's defaults on VALID across several logs (BENCHMARKS.md, "How defaults were chosen").

Logs: ML-100K under the acceptance protocol (1 h sessions, time split 21/21 days), the three
presets of ``sessionrec.synthetic`` (``--scale`` of their size; the last tenth of the span is
test, the tenth before valid), and a YOOCHOOSE-shaped click log (``gen_yoochoose.py``; Zipf
popularity, geometric lengths, immediate repeats). For every candidate configuration and log:
fit on **train** with valid MRR@20 after every epoch, early stopping (``--patience``) and the
best epoch restored; its best valid Recall@20 / MRR@20 and best epoch are recorded. Test is
never read.

Score of a configuration: the mean over logs of its valid MRR@20 as a share of the best
candidate's on that log, averaged with the same for Recall@20 (so every log weighs the same,
whatever its scale). The highest score wins; the new default ``n_epochs`` is the median best
epoch of the winner over the logs.

    PYTHONPATH=src python benchmarks/choose_defaults.py --work /tmp/cd [--configs A B ...]
        [--logs ml100k ecommerce ...] [--epochs 10] [--patience 2] [--summary]

Results are cached per (configuration, log) in ``WORK/results/`` so that runs can be split
over processes and resumed; ``--summary`` writes benchmarks/results/choose_defaults.json and
prints the Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

import sessionrec as sr
from sessionrec import synthetic as syn

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "choose_defaults.json"
ML100K = HERE.parents[1] / "shared" / "data" / "ml-100k"
LOGS = ("ml100k", "ecommerce", "media", "broad", "yoochoose")

#: The old defaults (before this selection), the base every candidate varies.
OLD = {
    "loss": "cross-entropy", "constrained_embedding": True, "layers": [100], "batch_size": 64,
    "learning_rate": 0.05, "momentum": 0.0, "n_sample": 2048, "sample_alpha": 0.5,
    "dropout_p_embed": 0.0, "dropout_p_hidden": 0.0, "elu_param": 0.0, "bpreg": 1.0,
}  # fmt: skip
#: Candidates: one or two changes from the old defaults at a time, plus the official
#: retailrocket bpr-max settings and combinations of the single changes that helped.
CONFIGS: dict[str, dict[str, Any]] = {
    "old": {},
    "lr0.1": {"learning_rate": 0.1},
    "lr0.1-drop0.2": {"learning_rate": 0.1, "dropout_p_hidden": 0.2},
    "drop0.2": {"dropout_p_hidden": 0.2},
    "mom0.3": {"momentum": 0.3},
    "bs32": {"batch_size": 32},
    "layers200": {"layers": [200]},
    "alpha0": {"sample_alpha": 0.0},
    "ns512": {"n_sample": 512},
    "full": {"n_sample": -1},
    "full-layers200": {"n_sample": -1, "layers": [200]},
    "full-lr0.1-drop0.2": {"n_sample": -1, "learning_rate": 0.1, "dropout_p_hidden": 0.2},
    "full-bs32-lr0.1-drop0.2": {
        "n_sample": -1,
        "batch_size": 32,
        "learning_rate": 0.1,
        "dropout_p_hidden": 0.2,
    },
    "bprmax-rr": {
        "loss": "bpr-max",
        "layers": [224],
        "batch_size": 80,
        "n_sample": 2048,
        "sample_alpha": 0.4,
        "bpreg": 1.95,
        "elu_param": 0.5,
        "dropout_p_embed": 0.5,
        "dropout_p_hidden": 0.05,
        "learning_rate": 0.05,
        "momentum": 0.4,
    },
    "bs32-lr0.1-drop0.2": {"batch_size": 32, "learning_rate": 0.1, "dropout_p_hidden": 0.2},
    "bs32-lr0.1-drop0.2-mom0.3": {
        "batch_size": 32,
        "learning_rate": 0.1,
        "dropout_p_hidden": 0.2,
        "momentum": 0.3,
    },
    "lr0.1-drop0.2-mom0.3": {"learning_rate": 0.1, "dropout_p_hidden": 0.2, "momentum": 0.3},
    "lr0.2-drop0.2": {"learning_rate": 0.2, "dropout_p_hidden": 0.2},
    "bs32-lr0.2-drop0.2": {"batch_size": 32, "learning_rate": 0.2, "dropout_p_hidden": 0.2},
    # after the per-epoch diagnosis on the media preset's valid part (benchmarks/
    # gru4rec_diagnose.py): train loss keeps falling while valid peaks, a wider layer peaks
    # higher but sooner, and hidden dropout lets the wider layer keep its gain
    "full-layers300-drop0.5": {"n_sample": -1, "layers": [300], "dropout_p_hidden": 0.5},
    "full-layers200-drop0.5": {"n_sample": -1, "layers": [200], "dropout_p_hidden": 0.5},
    "full-drop0.5": {"n_sample": -1, "dropout_p_hidden": 0.5},
    # after the synthetic logs at 4x and 16x their selection size (stop 21): the share of the
    # ceiling grows with the log, and a layer of 500 gets further on the larger logs (the
    # official parameter files for the large public logs use 480-512 units)
    "full-layers500-drop0.5": {"n_sample": -1, "layers": [500], "dropout_p_hidden": 0.5},
}

#: Other models' candidates (``MODEL:VARIANT``), each against the model's current defaults
#: (``MODEL:defaults``): only the settings the ML-100K valid grid left open (BENCHMARKS.md,
#: "Baselines"), now scored on every log.
OTHER: dict[str, dict[str, dict[str, Any]]] = {
    "sr": {"defaults": {}, "linear": {"weighting": "linear"}, "steps20": {"steps": 20}},
    "vsknn": {"defaults": {}, "k50": {"k": 50}, "idf0": {"idf_weighting": 0.0}},
    "sknn": {"defaults": {}, "k50": {"k": 50}, "k200": {"k": 200}},
    "itemknn": {"defaults": {}, "k200": {"k": 200}, "alpha0.75": {"alpha": 0.75}},
}


def prepare_log(name: str, work: Path, scale: float, yc_events: int) -> Path:
    """Prepare one log under ``work/name/data`` (once) and return that folder."""
    out = work / name / "data"
    if (out / "meta.json").exists():
        return out
    if name == "ml100k":
        sr.prepare(sr.load(str(ML100K)), out, session="1h", min_session_length=2,
                   min_item_support=5, split="time", test_days=21, valid_days=21)  # fmt: skip
    elif name == "yoochoose":
        dat = work / name / "yoochoose-clicks.dat"
        subprocess.run([sys.executable, str(HERE / "gen_yoochoose.py"), "--events",
                        str(yc_events), "--items", "10000", "--days", "30", "--out", str(dat)],
                       check=True)  # fmt: skip
        sr.prepare(sr.load(str(dat)), out, session="column", min_session_length=2,
                   min_item_support=5, split="time", test_days=3, valid_days=3)  # fmt: skip
    else:
        spec = syn.PRESETS[name]
        log = syn.generate(name, n_sessions=max(200, int(spec.n_sessions * scale)))
        folder = log.save(work / name / "log")
        days = max(1, spec.days // 10)  # as benchmarks/synthetic_ceiling.py
        sr.prepare(str(folder / "log.parquet"), out, session="column", split="time",
                   test_days=days, valid_days=days, min_item_support=1)  # fmt: skip
    return out


def run_one(cfg: str, log: str, data: Path, work: Path, epochs: int, patience: int) -> dict:
    model, _, variant = cfg.rpartition(":")
    t0 = time.perf_counter()
    if model:  # another model's variant: fitted once, valid scored once
        sr.train(model, data, work / log / "runs" / cfg, params=OTHER[model][variant],
                 fit_on="train", progress=False, device="cpu", overwrite=True)  # fmt: skip
    else:
        params = {**OLD, **CONFIGS[cfg], "n_epochs": epochs}
        sr.train("gru4rec", data, work / log / "runs" / cfg, params=params, fit_on="train",
                 patience=patience, valid_every=1, progress=False, device="cpu",
                 overwrite=True)  # fmt: skip
    seconds = time.perf_counter() - t0
    hist = [json.loads(x) for x in (work / log / "runs" / cfg / "history.jsonl").open()]
    best = max(hist, key=lambda r: r["valid_mrr@20"])
    return {
        "config": cfg,
        "log": log,
        "valid_mrr@20": best["valid_mrr@20"],
        "valid_recall@20": best["valid_recall@20"],
        "best_epoch": best["epoch"],
        "epochs_run": len(hist),
        "curve": [[r["epoch"], r["valid_recall@20"], r["valid_mrr@20"]] for r in hist],
        "seconds": round(seconds, 1),
    }


def summarise(runs: list[dict], logs: list[str], candidates: list[str]) -> dict[str, Any]:
    """Rank ``candidates`` (one model's) by their mean share of the best valid figure per log."""
    by = {(r["config"], r["log"]): r for r in runs}
    configs = [c for c in candidates if all((c, lg) in by for lg in logs)]
    if not configs:
        return {"ranking": [], "winner": None}
    best = {
        lg: {m: max(by[c, lg][m] for c in configs) for m in ("valid_mrr@20", "valid_recall@20")}
        for lg in logs
    }
    table = []
    for c in configs:
        shares = {
            lg: {m: by[c, lg][m] / best[lg][m] for m in ("valid_mrr@20", "valid_recall@20")}
            for lg in logs
        }
        score = statistics.mean(
            (s["valid_mrr@20"] + s["valid_recall@20"]) / 2 for s in shares.values()
        )
        model, _, variant = c.rpartition(":")
        table.append({"config": c, "params": OTHER[model][variant] if model else CONFIGS[c],
                      "score": score, "shares": shares,
                      "valid": {lg: {m: by[c, lg][m] for m in best[lg]} for lg in logs},
                      "best_epochs": {lg: by[c, lg]["best_epoch"] for lg in logs},
                      "seconds": sum(by[c, lg]["seconds"] for lg in logs)})  # fmt: skip
    table.sort(key=lambda r: -r["score"])
    winner = table[0]
    return {
        "best_per_log": best,
        "ranking": table,
        "winner": winner["config"],
        "winner_n_epochs": int(statistics.median(winner["best_epochs"].values())),
    }


def defaults_test(work: Path, json_out: Path, seed: int = 0) -> None:
    """The CURRENT defaults (no parameters; ``seed`` the run's seed) on the acceptance protocol:
    fit on train+valid, test scored once with seen items kept and once without (95 %
    session-bootstrap intervals)."""
    from sessionrec.evaluation import bootstrap_interval, evaluate

    data = sr.PreparedData(prepare_log("ml100k", work, 1.0, 0))
    t0 = time.perf_counter()
    folder = work / "ml100k" / f"defaults-test-seed{seed}"
    model = sr.train("gru4rec", data, folder, fit_on="train+valid", seed=seed, progress=False,
                     device="cpu", overwrite=True)  # fmt: skip
    out: dict[str, Any] = {"command": " ".join(sys.argv), "fit_seconds": time.perf_counter() - t0,
                           "config": json.loads((folder / "config.json").read_text())}  # fmt: skip
    for exclude in (False, True):
        res = evaluate(model, data.test, cutoffs=(20,), exclude_seen=exclude)  # type: ignore[arg-type]
        iv = bootstrap_interval(res, data.test, ("recall@20", "mrr@20"))
        out["exclude_seen" if exclude else "seen_kept"] = iv
        print(("seen excluded" if exclude else "seen kept"), iv, flush=True)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(out, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS))
    ap.add_argument("--logs", nargs="+", default=list(LOGS))
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--patience", type=int, default=2)
    ap.add_argument("--scale", type=float, default=0.3)
    ap.add_argument("--yc-events", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--summary", action="store_true")
    ap.add_argument(
        "--defaults-test",
        type=Path,
        metavar="JSON",
        help="instead: the current defaults on the acceptance protocol's test part, to JSON",
    )
    ap.add_argument("--seed", type=int, default=0, help="with --defaults-test: the model's seed")
    ap.add_argument("--json", type=Path, default=RESULTS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.defaults_test:
        defaults_test(args.work, args.defaults_test, args.seed)
        return
    cache = args.work / "results"  # one file per (configuration, log): processes never clash
    if args.summary:
        runs = [json.loads(f.read_text()) for f in sorted(cache.glob("*.json"))]
        out = {
            "command": " ".join(sys.argv),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores shared with other agents' "
            f"jobs, torch threads {args.threads}",
            "protocol": "fit on train, valid MRR@20 / Recall@20 after every epoch (seen items "
            f"kept, full ranking), early stopping patience {args.patience}, at most "
            f"{args.epochs} epochs, best epoch kept; test never read",
            "base": OLD,
            "logs": args.logs,
            "gru4rec": summarise(runs, args.logs, list(CONFIGS)),
            **{m: summarise(runs, args.logs, [f"{m}:{v}" for v in OTHER[m]]) for m in OTHER},
            "runs": runs,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
        print("| configuration | score | " + " | ".join(args.logs) + " | best epochs |")
        print("| --- | ---: |" + " ---: |" * len(args.logs) + " --- |")
        for r in [r for m in ("gru4rec", *OTHER) for r in out[m]["ranking"]]:
            cells = [
                f"{r['shares'][lg]['valid_recall@20']:.0%} / {r['shares'][lg]['valid_mrr@20']:.0%}"
                for lg in args.logs
            ]
            ep = ", ".join(str(r["best_epochs"][lg]) for lg in args.logs)
            print(f"| {r['config']} | {r['score']:.3f} | " + " | ".join(cells) + f" | {ep} |")
        return
    for cfg in args.configs:
        for log in args.logs:
            done = cache / f"{cfg}__{log}.json"
            if done.exists():
                continue
            data = prepare_log(log, args.work, args.scale, args.yc_events)
            row = run_one(cfg, log, data, args.work, args.epochs, args.patience)
            print(f"{cfg} {log}: valid R@20 {row['valid_recall@20']:.4f} MRR@20 "
                  f"{row['valid_mrr@20']:.4f} best epoch {row['best_epoch']}/{row['epochs_run']} "
                  f"{row['seconds']:.0f} s", flush=True)  # fmt: skip
            cache.mkdir(parents=True, exist_ok=True)
            tmp = done.with_suffix(".tmp")
            tmp.write_text(json.dumps(row, indent=1))
            tmp.replace(done)


if __name__ == "__main__":
    main()
