"""Every non-neural baseline on ML-100K under the acceptance protocol (BENCHMARKS.md).

Protocol: ``prepare(ml-100k, session='1h', split='time', test_days=21, valid_days=21)``; fit on
train; next-item prediction at every test position, full ranking over all items, conservative
ties (an item scored equal to the target counts as above it); with and without excluding the
items already in the session. ``--tune`` instead evaluates a small grid per model on the VALID
part (fit on train), which is how the defaults were chosen.

    PYTHONPATH=src python benchmarks/baselines_ml100k.py [--data DIR] [--tune]

Evaluated with ``sessionrec.evaluation.evaluate`` (the defaults were tuned with an equivalent
local evaluator written before it landed: same ranks, conservative ties).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import sessionrec as sr
from sessionrec._io import write_json
from sessionrec.evaluation import evaluate as sr_evaluate
from sessionrec.models import REGISTRY, SessionModel, create
from sessionrec.prepare.data import PreparedData, SessionData

ML100K = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"
RESULTS = Path(__file__).resolve().parent / "results" / "baselines_ml100k.json"
MODELS = ("pop", "spop", "markov", "sr", "itemknn", "sknn", "vsknn")
#: the test table's rows: (model, parameters, what chose the settings)
ROWS: list[tuple[str, dict[str, Any], str]] = [
    ("pop", {}, "no parameters"),
    ("spop", {}, "no parameters"),
    ("markov", {}, "no parameters"),
    ("sr", {}, "defaults (steps tuned on valid, weighting the paper's)"),
    ("sr", {"preset": "session-rec"}, "preset (session-rec's defaults)"),
    ("itemknn", {}, "defaults (GRU4Rec paper's baseline settings)"),
    ("itemknn", {"preset": "gru4rec"}, "preset (GRU4Rec baselines' formula)"),
    ("sknn", {}, "defaults (tuned on valid)"),
    ("vsknn", {}, "defaults (tuned on valid)"),
    ("vsknn", {"preset": "session-rec"}, "preset (session-rec's VMContextKNN)"),
]
CUTOFFS = (10, 20)

#: what --tune tries on the valid part (one parameter at a time around the defaults)
GRID: dict[str, list[dict[str, Any]]] = {
    "markov": [{}],
    "sr": [{"steps": s} for s in (1, 3, 5, 10, 20)]
    + [{"weighting": w} for w in ("same", "quadratic", "linear")],
    "itemknn": [{"k": k, "lmbd": lm} for k in (50, 100, 200, 0) for lm in (0.0, 20.0, 50.0)]
    + [{"alpha": a} for a in (0.25, 0.75)],
    "sknn": [{"k": k} for k in (50, 100, 200, 500)]
    + [{"sample_size": s} for s in (250, 500, 1000)],
    "vsknn": [{"k": k} for k in (50, 100, 200, 500)]
    + [{"weighting": w} for w in ("linear", "quadratic", "same")]
    + [{"weighting_score": w} for w in ("harmonic", "quadratic")]
    + [{"idf_weighting": x} for x in (1.0, 2.0, 5.0)]
    + [{"sample_size": s} for s in (250, 500, 1000)]
    + [{"similarity": "dot"}]
    # then the best of each, together
    + [
        {"k": k, "weighting_score": "harmonic", "idf_weighting": x}
        for k in (30, 50, 100)
        for x in (1.0, 2.0)
    ],
}


def evaluate(model: SessionModel, data: SessionData, *, exclude_seen: bool) -> dict[str, Any]:
    res = sr_evaluate(model, data, cutoffs=CUTOFFS, exclude_seen=exclude_seen)
    return dict(res.to_dict())


def prepared(data_dir: Path | None) -> PreparedData:
    if data_dir is not None:
        return PreparedData(data_dir)
    out = Path(tempfile.mkdtemp(prefix="sessionrec-bl-")) / "ml100k"
    return sr.prepare(
        ML100K,
        out,
        session="1h",
        min_session_length=2,
        min_item_support=5,
        split="time",
        test_days=21,
        valid_days=21,
    )


def run_model(
    name: str, params: dict[str, Any], train: SessionData, evals: SessionData, chosen_by: str = ""
) -> dict[str, Any]:
    model = create(name, params)
    t0 = time.perf_counter()
    model.fit(train)
    fit_s = time.perf_counter() - t0
    row: dict[str, Any] = {
        "model": name,
        "label": label(name, params),
        "chosen_by": chosen_by,
        "params": params,
        "config": dataclasses.asdict(model.config),
        "fit_seconds": fit_s,
    }
    for excl in (True, False):
        t0 = time.perf_counter()
        res = evaluate(model, evals, exclude_seen=excl)
        key = "exclude_seen" if excl else "all_items"
        row[key] = res
        row[f"{key}_eval_seconds"] = time.perf_counter() - t0
    assert row["all_items"]["predictions"] == evals.n_predictions
    return row


def label(name: str, params: dict[str, Any]) -> str:
    return f"{name} ({params['preset']})" if "preset" in params else name


def fmt(x: float) -> str:
    return f"{x:.4f}" if not math.isnan(x) else "–"


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| model | exclude seen | R@10 | MRR@10 | NDCG@10 | R@20 | MRR@20 | NDCG@20 "
        "| fit s | eval s | settings chosen by |\n|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for row in rows:
        for key, excl in (("exclude_seen", "yes"), ("all_items", "no")):
            m = row[key]
            cells = [fmt(m[f"{s}@{k}"]) for k in CUTOFFS for s in ("recall", "mrr", "ndcg")]
            lines.append(
                f"| {row['label']} | {excl} | "
                + " | ".join(cells)
                + f" | {row['fit_seconds']:.2f} | {row[key + '_eval_seconds']:.2f} "
                + f"| {row['chosen_by']} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="an already prepared ML-100K directory")
    ap.add_argument("--tune", action="store_true", help="grid on the valid part instead")
    ap.add_argument("--models", nargs="*", default=list(MODELS), choices=sorted(REGISTRY))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # 2 threads thrash on a loaded 2-core box
    data = prepared(args.data)
    train = data.part("train")
    if args.tune:
        for name in args.models:
            for params in GRID.get(name, [{}]):
                row = run_model(name, params, train, data.part("valid"))
                ex, al = row["exclude_seen"], row["all_items"]
                print(
                    f"{name:8s} {json.dumps(params):40s} excl R@20 {ex['recall@20']:.4f} "
                    f"MRR@20 {ex['mrr@20']:.4f} | all R@20 {al['recall@20']:.4f} "
                    f"MRR@20 {al['mrr@20']:.4f} | fit {row['fit_seconds']:.1f}s",
                    flush=True,
                )
        return 0
    test = data.part("test")
    rows = [
        run_model(name, params, train, test, chosen_by)
        for name, params, chosen_by in ROWS
        if name in args.models
    ]
    md = table(rows)
    print(f"ML-100K test: {test.n_predictions:,} predictions, {data.n_items:,} items\n")
    print(md)
    write_json(
        RESULTS,
        {
            "protocol": "ML-100K, session 1h, time split 21/21 days; fit on train; every test "
            "position, full ranking, conservative ties; popularity tie-break exact (float64)",
            "predictions": test.n_predictions,
            "models": rows,
            "torch_threads": torch.get_num_threads(),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
