"""Rating prediction on MovieLens-100K, 5-fold CV: ours beside Surprise on the same folds.

    PYTHONPATH=src python benchmarks/rating_ml100k.py [--data PATH] [--folds 5] [--seed 1]
        [--models baseline,svd,svdpp,autorec] [--surprise BaselineOnly,SVD,SVDpp] [--json out.json]

Every fold is cut once (``sessionrec.rating.kfold``) and handed to both sides, so the numbers
differ only by the algorithms. Surprise (``scikit-surprise``) is the reference: BaselineOnly
(ALS), SVD and SVDpp with their defaults. Fit times are wall-clock on a shared machine; the ratio to
Surprise's time in the same fold is the fairer figure.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from sessionrec.datasets import load
from sessionrec.rating import Ratings, create_rating_model, kfold, rating_metrics

ROOT = Path(__file__).resolve().parents[1]
#: The shared copy beside the checkout (main: ../shared, worktrees: ../../shared), else the cache.
ML100K = next(
    (
        str(p)
        for p in (ROOT.parent / "shared/data/ml-100k", ROOT.parents[1] / "shared/data/ml-100k")
        if p.exists()
    ),
    "ml-100k",
)

#: Our tuned AutoRec (I-AutoRec: item-based, sigmoid code, linear output, L2), see BENCHMARKS.md.
AUTOREC: dict[str, Any] = {}


def surprise_fold(algo_name: str, train: Ratings, test: Ratings) -> tuple[np.ndarray, float]:
    import pandas as pd
    from surprise import SVD, BaselineOnly, Dataset, Reader, SVDpp

    df = pd.DataFrame({"u": train.users, "i": train.items, "r": train.ratings.astype(float)})
    trainset = Dataset.load_from_df(df, Reader(rating_scale=train.scale)).build_full_trainset()
    algo = {
        "BaselineOnly": lambda: BaselineOnly(bsl_options={"method": "als"}, verbose=False),
        "SVD": lambda: SVD(random_state=0),
        "SVDpp": lambda: SVDpp(random_state=0),
    }[algo_name]()
    started = time.perf_counter()
    algo.fit(trainset)
    seconds = time.perf_counter() - started
    testset = list(
        zip(test.users.tolist(), test.items.tolist(), test.ratings.tolist(), strict=True)
    )
    pred = np.array([p.est for p in algo.test(testset)])
    return pred, seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=ML100K)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--models", default="baseline,svd,autorec")
    ap.add_argument("--no-surprise", action="store_true")
    ap.add_argument(
        "--surprise", default="BaselineOnly,SVD", help="Surprise references (also: SVDpp)."
    )
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    data = Ratings.from_dataset(load(args.data))
    ours = [m for m in args.models.split(",") if m]
    refs = [] if args.no_surprise else [f"Surprise {n}" for n in args.surprise.split(",") if n]
    rows: dict[str, list[dict[str, float]]] = {m: [] for m in ours + refs}
    for k, (train, test) in enumerate(kfold(data, args.folds, args.seed), start=1):
        for name in ours:
            model = create_rating_model(name, AUTOREC if name == "autorec" else None)
            started = time.perf_counter()
            model.fit(train)
            seconds = time.perf_counter() - started
            rows[name].append({**model.evaluate(test), "fit_seconds": seconds})
        for name in refs:
            pred, seconds = surprise_fold(name.split()[1], train, test)
            rows[name].append(
                {**rating_metrics(test.users, test.ratings, pred), "fit_seconds": seconds}
            )
        print(f"fold {k}: " + "  ".join(f"{n} {r[-1]['rmse']:.4f}" for n, r in rows.items()))
    summary = {
        name: {
            key: float(np.mean([r[key] for r in rs]))
            for key in ("rmse", "mae", "fcp", "fit_seconds")
        }
        | {"rmse_std": float(np.std([r["rmse"] for r in rs]))}
        for name, rs in rows.items()
    }
    print(
        f"\nML-100K, {len(data):,} ratings, {args.folds}-fold CV (seed {args.seed}), mean of folds"
    )
    print("| model | RMSE | MAE | FCP | fit s / fold |")
    print("| --- | --- | --- | --- | --- |")
    for name, s in summary.items():
        print(
            f"| {name} | {s['rmse']:.4f} ± {s['rmse_std']:.4f} | {s['mae']:.4f} | "
            f"{s['fcp']:.4f} | {s['fit_seconds']:.2f} |"
        )
    if args.json:
        args.json.write_text(
            json.dumps({"folds": rows, "mean": summary, "autorec": AUTOREC}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
