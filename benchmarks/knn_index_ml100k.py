"""Session kNN through the item → recent-sessions index: which ``sample_size`` (m) keeps the
exhaustive accuracy on the ML-100K acceptance protocol (BENCHMARKS.md, "Baselines on ML-100K").

For sknn and vsknn (defaults otherwise): fit on train, evaluate test (every position, full
ranking, conservative ties, seen items not excluded — the evaluator's default), exhaustive
(``sample_size=0``) and through the index for several m, each with its 95 % session-bootstrap
interval (``sessionrec.evaluation.bootstrap_interval``, 1000 replicates, seed 0). A value of m
passes when its Recall@20 and MRR@20 lie inside the exhaustive figure's interval.

    PYTHONPATH=src python benchmarks/knn_index_ml100k.py [--data DIR]

Writes ``benchmarks/results/knn_index_ml100k.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baselines_ml100k import prepared

from sessionrec._io import write_json
from sessionrec.evaluation import bootstrap_interval
from sessionrec.evaluation import evaluate as sr_evaluate
from sessionrec.models import create

RESULTS = Path(__file__).resolve().parent / "results" / "knn_index_ml100k.json"
SAMPLE_SIZES = (0, 100, 250, 500, 1000)
METRICS = ("recall@20", "mrr@20")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, help="a prepared ML-100K folder (default: prepare it)")
    args = ap.parse_args()
    data = prepared(args.data)
    train, test = data.train, data.test
    rows: list[dict[str, Any]] = []
    for name in ("sknn", "vsknn"):
        ref: dict[str, dict[str, float]] = {}
        for m in SAMPLE_SIZES:
            model = create(name, {"sample_size": m}).fit(train)
            t0 = time.perf_counter()
            res = sr_evaluate(model, test, cutoffs=(20,))
            seconds = time.perf_counter() - t0
            ci = bootstrap_interval(res, test, METRICS)
            if m == 0:
                ref = ci
            inside = all(ref[k]["low"] <= ci[k]["value"] <= ref[k]["high"] for k in METRICS)
            rows.append(
                {
                    "model": name,
                    "sample_size": m,
                    "predictions": int(res.predictions),
                    **{k: ci[k] for k in METRICS},
                    "inside_exhaustive_interval": inside,
                    "eval_seconds": seconds,
                }
            )
            r, q = ci["recall@20"], ci["mrr@20"]
            print(
                f"{name:6s} m={m:5d}  R@20 {r['value']:.4f} [{r['low']:.4f}, {r['high']:.4f}]"
                f"  MRR@20 {q['value']:.4f} [{q['low']:.4f}, {q['high']:.4f}]"
                f"  inside={inside}  eval {seconds:.1f}s",
                flush=True,
            )
    write_json(
        RESULTS,
        {
            "benchmark": "knn_index_ml100k",
            "command": "python benchmarks/knn_index_ml100k.py " + " ".join(sys.argv[1:]),
            "train_sessions": int(train.n_sessions),
            "load_average": os.getloadavg(),
            "rows": rows,
        },
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
