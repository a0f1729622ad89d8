"""Approximate (faiss HNSW) against exact top-k item retrieval: recall, speed, build time.

Item vectors: L2-normalised draws from a mixture of 256 Gaussian clusters in ``--dim``
dimensions (centres N(0, 1), points spread ``--spread`` = 1 around them, so clusters overlap) (learned item embeddings cluster by taste; uniformly random vectors would be the
hardest, least realistic case), ``--items`` of them; queries are fresh draws of the same
mixture. Optionally also a trained model's own vectors and evaluation prefixes (``--model DIR
--data DIR``: the ML-100K two-tower of the README, a 1,339-item catalogue).

For every catalogue: exact top-k (a matrix product and ``torch.topk`` in blocks of 1,024
queries, the reference, measured in the same run) and HNSW at several ``ef_search`` values —
recall@10 / recall@100 against exact, queries per second, build seconds. Searches are
single-threaded (torch and faiss) so the ratio depends less on the machine's other load;
``--threads`` only speeds up building.

    python benchmarks/ann_index.py --items 100000 1000000 --dim 64 --queries 2000 \
        [--model runs/tt --data runs/ml-100k] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sessionrec.ann import ExactIndex, HNSWIndex, index_recall


def mixture(
    n: int, dim: int, rng: np.random.Generator, centres: np.ndarray, spread: float
) -> np.ndarray:
    x = centres[rng.integers(len(centres), size=n)] + spread * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def measure(
    items: np.ndarray, queries: np.ndarray, efs: list[int], m: int, efc: int, threads: int
) -> dict[str, Any]:
    exact = ExactIndex(items)
    t0 = time.perf_counter()
    exact.search(queries, 100)
    exact_qps = len(queries) / (time.perf_counter() - t0)
    hnsw = HNSWIndex(items, m=m, ef_construction=efc, threads=threads)
    import faiss

    faiss.omp_set_num_threads(1)  # searches single-threaded, like the exact reference
    rows = []
    for ef in efs:
        hnsw.ef_search = ef
        t0 = time.perf_counter()
        hnsw.search(queries, 100)
        qps = len(queries) / (time.perf_counter() - t0)
        rows.append(
            {
                "ef_search": ef,
                "recall@10": index_recall(hnsw, exact, queries, 10),
                "recall@100": index_recall(hnsw, exact, queries, 100),
                "queries_per_second": qps,
                "speedup_vs_exact": qps / exact_qps,
            }
        )
        print(f"  ef_search {ef}: " + ", ".join(f"{k} {v:.4g}" for k, v in rows[-1].items()))
    return {
        "items": len(items),
        "dim": items.shape[1],
        "queries": len(queries),
        "exact_queries_per_second": exact_qps,
        "hnsw_m": m,
        "hnsw_ef_construction": efc,
        "hnsw_build_seconds": hnsw.build_seconds,
        "hnsw_build_threads": threads,
        "hnsw": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--ef-search", type=int, nargs="+", default=[100, 200, 400])
    ap.add_argument("--threads", type=int, default=1, help="faiss threads for building.")
    ap.add_argument("--m", type=int, default=32)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--model", type=Path, help="A trained two-tower/bpr/als model dir.")
    ap.add_argument("--data", type=Path, help="Its PreparedData (test prefixes are queries).")
    ap.add_argument(
        "--spread", type=float, default=1.0, help="Within-cluster sd (the centres' is 1)."
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    centres = rng.normal(size=(256, args.dim))
    results = []
    for n in args.items:
        print(f"synthetic catalogue: {n:,} items, dim {args.dim}")
        items = mixture(n, args.dim, rng, centres, args.spread)
        queries = mixture(args.queries, args.dim, rng, centres, args.spread)
        res = measure(items, queries, args.ef_search, args.m, args.ef_construction, args.threads)
        results.append({"catalogue": "synthetic mixture", **res})
        if args.json:  # after every catalogue: a long run keeps what it measured
            args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(
            f"  exact {res['exact_queries_per_second']:,.0f} queries/s; "
            f"hnsw built in {res['hnsw_build_seconds']:.1f} s"
        )
    if args.model is not None:
        import sessionrec as sr
        from sessionrec.ann import item_vectors, prefix_sessions, session_queries
        from sessionrec.models import load_model

        model = load_model(args.model)
        assert args.data is not None, "--model needs --data"
        sessions = prefix_sessions(sr.PreparedData(args.data).part("test"), args.queries)
        q = session_queries(model, sessions).numpy()
        print(f"{model.name} of {args.model}: {model.n_items:,} items, {len(q):,} test prefixes")
        res = measure(
            item_vectors(model).numpy(), q, args.ef_search, args.m, args.ef_construction, 1
        )
        results.append({"catalogue": f"{model.name} {args.model}", **res})
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
