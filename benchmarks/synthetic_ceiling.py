"""Every model's default accuracy on synthetic logs, as a share of the Bayes-optimal ceiling.

For each preset of ``sessionrec.synthetic`` (differently shaped logs with a known next-item
process): generate the log, prepare it (the log's own sessions, time split, nothing filtered
but items unseen in train), fit each model **with its defaults** on train+valid (no tuning on
any of these logs; ``--fit-on train``: on train, so that a model that stops early stops on
valid, as ``sessionrec train`` does by default), evaluate every test position (full ranking,
conservative ties, seen items kept), and divide each figure by the oracle's (``OracleModel``:
ranks by the true predictive probability, the best any model can do in expectation).

    PYTHONPATH=src python benchmarks/synthetic_ceiling.py [--presets ecommerce media broad]
        [--models pop markov sr itemknn sknn vsknn gru4rec] [--scale 1.0] [--seed 0] [--json FILE]
        [--fit-on train+valid|train]

``--models counts`` adds a reference learner told the sessions' intents, the item sets and the
noise rate, which only counts (``synthetic.estimate_process``, smoothing chosen on valid): what
this much data allows a model that knows the structure.

``--scale`` multiplies each preset's number of sessions (a quick look at 0.3). ``--seed`` draws
another process of the same shape (new intents, chains and popularity): the defaults were chosen
on seed 0's logs (``benchmarks/choose_defaults.py``), so seed 1 is a log nobody tuned them on.
Writes benchmarks/results/synthetic_ceiling.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import sessionrec as sr
from sessionrec import synthetic as syn

RESULTS = Path(__file__).resolve().parent / "results" / "synthetic_ceiling.json"
MODELS = ("pop", "markov", "sr", "itemknn", "sknn", "vsknn", "gru4rec")
CUTOFF = 20
#: the smoothings ``--models counts`` chooses from on valid
SMOOTHING = (0.001, 0.01, 0.03, 0.1, 0.3, 1.0)


def run_preset(
    name: str, models: list[str], scale: float, work: Path, seed: int = 0,
    fit_on: str = "train+valid",
) -> dict[str, Any]:  # fmt: skip
    spec = syn.PRESETS[name]
    log = syn.generate(name, n_sessions=max(200, int(spec.n_sessions * scale)), seed=seed)
    folder = log.save(work / name / "log")
    days = max(1, spec.days // 10)  # the last tenth of the span is test, the one before valid
    data = sr.prepare(str(folder / "log.parquet"), work / name / "data", session="column",
                      split="time", test_days=days, valid_days=days, min_item_support=1)  # fmt: skip
    assert isinstance(data, sr.PreparedData)
    kw: dict[str, Any] = {"cutoffs": (CUTOFF,)}
    oracle = syn.ceiling(log, data, **kw)
    ceil_r, ceil_m = oracle.metrics[f"recall@{CUTOFF}"], oracle.metrics[f"mrr@{CUTOFF}"]
    rows: list[dict[str, Any]] = []
    for model_name in models:
        if model_name == "counts":
            rows.append(counts_reference(log, data, kw, ceil_r, ceil_m, name))
            continue
        t0 = time.perf_counter()
        model = sr.train(model_name, data, work / name / model_name, fit_on=fit_on,
                         progress=False)  # fmt: skip
        fit_s = time.perf_counter() - t0
        res = sr.evaluate(model, data.test, **kw)
        r, m = res.metrics[f"recall@{CUTOFF}"], res.metrics[f"mrr@{CUTOFF}"]
        rows.append({"model": model_name, "recall": r, "mrr": m, "recall_share": r / ceil_r,
                     "mrr_share": m / ceil_m, "fit_seconds": fit_s,
                     "epochs": getattr(model, "epochs_done", None)})  # fmt: skip
        print(f"  {name} {model_name}: R@20 {r:.4f} ({r / ceil_r:.1%}), "
              f"MRR@20 {m:.4f} ({m / ceil_m:.1%}), fit {fit_s:.1f} s", flush=True)  # fmt: skip
    return {
        "preset": name,
        "spec": {**spec.__dict__, "n_sessions": log.spec.n_sessions},
        "events": log.events.height,
        "train_events": data.train.n_events,
        "test_predictions": oracle.predictions,
        "ceiling": {"recall": ceil_r, "mrr": ceil_m},
        "models": rows,
    }


def counts_reference(
    log: syn.SyntheticLog, data: Any, kw: dict[str, Any], ceil_r: float, ceil_m: float, name: str
) -> dict[str, Any]:
    """``--models counts``: the process re-estimated from the counts of train+valid, told the
    sessions' intents, the item sets and the noise rate (``synthetic.estimate_process``); its
    smoothing chosen on valid MRR@20 (estimated on train). What the best count model could
    learn from this much data: a reference, not a bound."""
    gen = data.items.sort("item_idx")["item_id"].to_numpy() - 1
    tried = {}
    for a in SMOOTHING:
        proc = syn.estimate_process(log, data.train, gen, a)
        res = sr.evaluate(syn.OracleModel.for_data(proc, data.items), data.valid, **kw)
        tried[a] = res.metrics[f"mrr@{CUTOFF}"]
    best = max(tried, key=lambda a: tried[a])
    proc = syn.estimate_process(log, data.part("train+valid"), gen, best)
    res = sr.evaluate(syn.OracleModel.for_data(proc, data.items), data.test, **kw)
    r, m = res.metrics[f"recall@{CUTOFF}"], res.metrics[f"mrr@{CUTOFF}"]
    print(f"  {name} counts (smoothing {best} on valid): R@20 {r:.4f} ({r / ceil_r:.1%}), "
          f"MRR@20 {m:.4f} ({m / ceil_m:.1%})", flush=True)  # fmt: skip
    return {"model": "counts", "smoothing": best, "valid_mrr_by_smoothing": tried, "recall": r,
            "mrr": m, "recall_share": r / ceil_r, "mrr_share": m / ceil_m}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", nargs="+", default=list(syn.PRESETS))
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=RESULTS)
    ap.add_argument("--fit-on", default="train+valid", choices=["train+valid", "train"],
                    help="train: each model's defaults for a fit on train, so models that stop "
                    "early do so on valid (sessionrec train's default)")  # fmt: skip
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out: dict[str, Any] = {
        "command": " ".join(sys.argv),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared), torch threads "
        f"{args.threads}",
        "protocol": "time split (last tenth of the span test, the tenth before valid), fit on "
        f"{args.fit_on} with each model's defaults (chosen on nothing here), every test position, "
        "full ranking, conservative ties, seen items kept; ceiling = the Bayes-optimal oracle",
        "presets": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.presets:
            print(f"{name}:", flush=True)
            out["presets"].append(run_preset(name, args.models, args.scale, Path(tmp), args.seed,
                                              args.fit_on))  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print("\n| log | events | ceiling R@20 / MRR@20 | " + " | ".join(args.models) + " |")
    print("|---|---:|---:|" + "---:|" * len(args.models))
    for p in out["presets"]:
        cells = [f"{r['recall_share']:.0%} / {r['mrr_share']:.0%}" for r in p["models"]]
        c = p["ceiling"]
        print(f"| {p['preset']} | {p['events']:,} | {c['recall']:.3f} / {c['mrr']:.3f} | "
              + " | ".join(cells) + " |")  # fmt: skip


if __name__ == "__main__":
    main()
