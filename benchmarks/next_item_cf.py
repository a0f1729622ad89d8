"""Two-tower, BPR and ALS on MovieLens-100K under two protocols.

    PYTHONPATH=src python benchmarks/next_item_cf.py [--data PATH] [--models two-tower,bpr,als]
        [--json out.json]

1. The TensorFlow Recommenders sequential-retrieval tutorial's protocol
   (``sessionrec.prepare.examples.sequence_examples``): ratings >= 2, timelines >= 3, context of
   up to 10 previous movies, label = next movie, random 90/10 split by example; top-k accuracy
   for k = 1, 5, 10, 50, 100 over the whole catalogue (TFRS's FactorizedTopK), one prediction
   per test example.
2. The acceptance next-item protocol (same as GRU4Rec's table): 1 h session gap, sessions >= 2,
   item support >= 5, last 21 days test, 21 days before that valid; fit on train, every
   position of every test session ranked against all 1,339 items; Recall@20 and MRR@20.

Ranks are conservative (ties count against the target). Until ``sessionrec.evaluation`` lands
the ranking is ``benchmarks/_ranking.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _ranking import Popularity, next_item_ranks, ranking_metrics

from sessionrec.datasets import load
from sessionrec.models import REGISTRY, create
from sessionrec.prepare import PreparedData, prepare
from sessionrec.prepare.examples import sequence_examples

ROOT = Path(__file__).resolve().parents[1]
ML100K = next(
    (
        str(p)
        for p in (ROOT.parent / "shared/data/ml-100k", ROOT.parents[1] / "shared/data/ml-100k")
        if p.exists()
    ),
    "ml-100k",
)


def make(name: str, params: dict[str, Any]) -> Any:
    if name == "pop" and "pop" not in REGISTRY:
        return Popularity()
    return create(name, params)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=ML100K)
    ap.add_argument("--models", default="pop,bpr,als,two-tower")
    ap.add_argument("--params", default="{}", help='JSON {"model": {param: value}}')
    ap.add_argument("--protocols", default="tfrs,acceptance")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    params: dict[str, dict[str, Any]] = json.loads(args.params)
    models = args.models.split(",")
    results: dict[str, Any] = {}
    ds = load(args.data)
    if "tfrs" in args.protocols:
        ex = sequence_examples(ds.events, item_meta=None)
        print(
            f"TFRS examples: {ex.train.n_sessions:,} train, {ex.test.n_sessions:,} test, "
            f"{ex.train.n_items:,} items"
        )
        for name in models:
            started = time.perf_counter()
            m = make(name, params.get(name, {})).fit(ex.train)
            fit_s = time.perf_counter() - started
            r = ranking_metrics(next_item_ranks(m, ex.test), (1, 5, 10, 50, 100))
            results[f"tfrs/{name}"] = {**r, "fit_seconds": fit_s}
            print(
                f"tfrs {name}: "
                + "  ".join(f"top-{k} {r[f'recall@{k}']:.4f}" for k in (1, 5, 10, 50, 100))
                + f"  ({fit_s:.0f} s fit)",
                flush=True,
            )
    if "acceptance" in args.protocols:
        with tempfile.TemporaryDirectory() as tmp:
            data = prepare(
                ds, Path(tmp) / "p", session="1h", min_session_length=2, min_item_support=5,
                split="time", test_days=21, valid_days=21,
            )  # fmt: skip
            assert isinstance(data, PreparedData)
            train, test = data.part("train"), data.part("test")
        print(
            f"acceptance: train {train.n_events:,} events, test {test.n_predictions:,} predictions"
        )
        for name in models:
            started = time.perf_counter()
            m = make(name, params.get(name, {})).fit(train)
            fit_s = time.perf_counter() - started
            ranks = next_item_ranks(m, test)
            assert len(ranks) == test.n_predictions
            r = ranking_metrics(ranks, (5, 10, 20))
            results[f"acceptance/{name}"] = {**r, "fit_seconds": fit_s}
            print(
                f"acceptance {name}: recall@20 {r['recall@20']:.4f}  mrr@20 {r['mrr@20']:.4f}  "
                f"({fit_s:.0f} s fit)",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps({"params": params, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
