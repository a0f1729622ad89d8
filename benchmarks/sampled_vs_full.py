"""Sampled vs full-ranking metrics on MovieLens-100K: does the ordering of models change?
(Krichene & Rendle, "On Sampled Metrics for Item Recommendation", KDD 2020.)

    PYTHONPATH=src python benchmarks/sampled_vs_full.py [--data PATH] [--k 10] [--json out.json]

Preparation: one session per user (``session="user"``), a k-core (``min_user_events`` =
``min_item_support`` = k, iterated until stable), per-user temporal split (each user's last
10 % of ratings is test; earlier ratings are the history). Every test rating is one prediction
from the user's training history (the test part's context rows):

- full: rank of the held-out item among all items the user has not rated in training (the
  user's other test items compete too);
- sampled (the seed's protocol): rank among 100 negatives drawn, without replacement, in
  proportion to training popularity from the items the user has not rated at all.

Rank = 1 + number of candidates scored strictly higher + number tied (conservative). HR@k and
NDCG@k are averaged over predictions. Models: every model in ``models.REGISTRY`` with its
defaults, plus a few sizes of BPR/ALS and popularity, so there are orderings to compare.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sessionrec.models import REGISTRY, create
from sessionrec.prepare import PreparedData, prepare

ROOT = Path(__file__).resolve().parents[1]
ML100K = next(
    (
        str(p)
        for p in (ROOT.parent / "shared/data/ml-100k", ROOT.parents[1] / "shared/data/ml-100k")
        if p.exists()
    ),
    "ml-100k",
)


def ranks(
    scores: np.ndarray,
    history: list[np.ndarray],
    targets: list[np.ndarray],
    popularity: np.ndarray,
    negatives: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(full, sampled) conservative ranks of every (user, target) pair; ``scores`` (U, n_items)."""
    rng = np.random.default_rng(seed)
    n_items = scores.shape[1]
    full, sampled = [], []
    for u, (h, t) in enumerate(zip(history, targets, strict=True)):
        s = scores[u].astype(np.float64).copy()
        s[h] = -np.inf  # training items are not candidates
        for item in t:
            better = (s > s[item]).sum() + (s == s[item]).sum() - 1
            full.append(1 + better)
        # Negatives: never rated by the user (neither history nor test), ∝ popularity.
        allowed = np.ones(n_items, dtype=bool)
        allowed[h] = False
        allowed[t] = False
        p = popularity * allowed
        cand = np.flatnonzero(p > 0)
        for item in t:
            neg = rng.choice(
                cand, size=min(negatives, len(cand)), replace=False, p=p[cand] / p[cand].sum()
            )
            sn = s[neg]
            sampled.append(1 + (sn > s[item]).sum() + (sn == s[item]).sum())
    return np.asarray(full), np.asarray(sampled)


def metrics(r: np.ndarray, k: int) -> dict[str, float]:
    hit = r <= k
    return {
        f"hr@{k}": float(hit.mean()),
        f"ndcg@{k}": float((hit / np.log2(r + 1)).mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=ML100K)
    ap.add_argument("--core", type=int, default=10)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--negatives", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = prepare(
            args.data,
            Path(tmp) / "prep",
            session="user",
            split="user-time",
            test_fraction=0.1,
            valid_fraction=0.0,
            min_item_support=args.core,
            min_user_events=args.core,
            min_session_length=args.core,
        )
        assert isinstance(data, PreparedData)
        train, test = data.part("train"), data.part("test")
    popularity = train.item_counts().astype(np.float64)
    history = [
        test.session(s)[~test.target[test.offsets[s] : test.offsets[s + 1]]]
        for s in range(test.n_sessions)
    ]
    targets = [
        test.session(s)[test.target[test.offsets[s] : test.offsets[s + 1]]]
        for s in range(test.n_sessions)
    ]
    print(
        f"{args.core}-core ML-100K: {train.n_events:,} train ratings, {sum(map(len, targets)):,} "
        f"test predictions, {test.n_sessions} users, {train.n_items} items"
    )
    candidates: dict[str, tuple[str, dict[str, Any]]] = {"pop": ("pop", {})}
    for name in REGISTRY:
        candidates[name] = (name, {})
    candidates |= {
        "bpr-f16": ("bpr", {"factors": 16}),
        "bpr-f64-lr0.05": ("bpr", {"factors": 64, "learning_rate": 0.05}),
        "als-f16": ("als", {"factors": 16}),
        "als-f32-reg1-alpha10": ("als", {"factors": 32, "reg": 1.0, "alpha": 10.0}),
    }
    results: dict[str, dict[str, float]] = {}
    for label, (name, params) in candidates.items():
        started = time.perf_counter()
        if name == "pop" and "pop" not in REGISTRY:
            scores = np.tile(popularity, (len(history), 1))
        else:
            model = create(name, params).fit(train)
            with torch.no_grad():
                scores = model.score_sessions([h.tolist() for h in history]).cpu().numpy()
        full, sampled = ranks(scores, history, targets, popularity, args.negatives, args.seed)
        results[label] = {
            **{f"full {k}": v for k, v in metrics(full, args.k).items()},
            **{f"sampled {k}": v for k, v in metrics(sampled, args.k).items()},
            "seconds": time.perf_counter() - started,
        }
        print(label, {k: round(v, 4) for k, v in results[label].items()}, flush=True)
    k = args.k
    order_full = sorted(results, key=lambda m: -results[m][f"full ndcg@{k}"])
    order_sampled = sorted(results, key=lambda m: -results[m][f"sampled ndcg@{k}"])
    print(
        f"\n| model | full HR@{k} | full NDCG@{k} | sampled HR@{k} | sampled NDCG@{k} | rank full | rank sampled |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for m in order_full:
        r = results[m]
        print(
            f"| {m} | {r[f'full hr@{k}']:.4f} | {r[f'full ndcg@{k}']:.4f} | "
            f"{r[f'sampled hr@{k}']:.4f} | {r[f'sampled ndcg@{k}']:.4f} | "
            f"{order_full.index(m) + 1} | {order_sampled.index(m) + 1} |"
        )
    from scipy.stats import kendalltau

    tau = kendalltau(
        [order_full.index(m) for m in results], [order_sampled.index(m) for m in results]
    )
    print(f"\nKendall's tau between the two orderings (NDCG@{k}): {tau.statistic:.3f}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "results": results,
                    "order_full": order_full,
                    "order_sampled": order_sampled,
                    "kendall_tau": tau.statistic,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
