"""Session-kNN speed through the index: the numpy path (the CPU default) against the torch one.

sknn and vsknn score through the item → recent-sessions index (``sample_size`` > 0). On the CPU
the index is read with numpy (``SKNN._score_numpy``); the same operations in torch
(``torch_index=True``, the path of other devices, and the CPU path before the change) are the
reference, measured in the same run on the same fitted model. Two measurements:

* **latency**: one streaming ``step`` + the top 20 per prediction, one thread, one session at a
  time, over sampled test sessions, three ways: ``top_k`` (what ``sessionrec serve`` runs: the
  neighbours' items and the head of the popularity background only), the numpy scores of every
  item + ``torch.topk``, and the torch-index scores + ``torch.topk`` (the path before). The
  three take turns session by session so that a change of machine load hits all; the script
  asserts the same 20 items. Wall and thread CPU time, p50 / p90 / p99.
* **evaluate**: ``sessionrec.evaluate`` on the test part (every position, full ranking), both
  paths; the script asserts identical ranks, prediction for prediction.

By default ML-100K is prepared under the acceptance protocol and both models fit on train;
``--model DIR --data DIR`` measures a trained folder instead (e.g. the 33 M-event YOOCHOOSE-shaped
log of ``yoochoose_scale.py``).

    OMP_WAIT_POLICY=PASSIVE PYTHONPATH=src python benchmarks/knn_eval_speed.py \\
        [--source ../shared/data/ml-100k] [--model DIR --data DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import sessionrec as sr
from sessionrec.models import create
from sessionrec.models.sknn import SKNN
from sessionrec.prepare.data import SessionData

RESULTS = Path(__file__).resolve().parent / "results" / "knn_eval_speed.json"


def torch_variant(model: SKNN) -> SKNN:
    """``model`` (fitted) scoring through the torch index path, sharing its arrays."""
    base = type(model)

    def _score(self: Any, items: Any, lengths: Any, *, exhaustive: Any = None, **_: Any) -> Any:
        return base._score(self, items, lengths, exhaustive=exhaustive, torch_index=True)

    cls = type(f"{base.__name__}Torch", (base,), {"_score": _score})
    out = cls(model.config, device=model.device)
    out.__dict__.update(model.__dict__)
    return out


def sample_sessions(data: SessionData, n: int, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    picks = rng.choice(data.n_sessions, size=min(n, data.n_sessions), replace=False)
    return [data.session(int(s)) for s in np.sort(picks)]


def latency(model: SKNN, sessions: list[np.ndarray]) -> dict[str, dict[str, float]]:
    """Per prediction: one ``step``, then the top 20 three ways: ``top_k`` (the served path:
    candidates only), numpy scores + ``torch.topk`` over every item, torch-index scores +
    ``torch.topk`` (before). All three must return the same list."""
    row = torch.zeros(1, dtype=torch.long)
    reference = torch_variant(model)

    def served(state: Any) -> list[int]:
        return model.top_k(state, 0, 20)[0]

    def dense(state: Any) -> list[int]:
        return torch.topk(model.score_rows(state, row), 20, dim=1).indices[0].tolist()

    def before(state: Any) -> list[int]:
        return torch.topk(reference.score_rows(state, row), 20, dim=1).indices[0].tolist()

    paths = {"served top_k": served, "numpy scores": dense, "torch scores": before}
    wall: dict[str, list[float]] = {p: [] for p in paths}
    cpu: dict[str, list[float]] = {p: [] for p in paths}
    names = list(paths)
    with torch.inference_mode():
        for i, items in enumerate(sessions):
            t_items = torch.as_tensor(items)
            lists: dict[str, list[list[int]]] = {}
            for name in names[i % 3 :] + names[: i % 3]:  # rotate the order
                top = paths[name]
                state = model.start(1)
                lists[name] = []
                for t in range(len(items) - 1):
                    t0, c0 = time.perf_counter(), time.thread_time()
                    state = model.step(state, t_items[t : t + 1])
                    lists[name].append(top(state))
                    cpu[name].append(time.thread_time() - c0)
                    wall[name].append(time.perf_counter() - t0)
            if not lists[names[0]] == lists[names[1]] == lists[names[2]]:
                raise AssertionError(f"session {i}: the three paths' top-20 lists differ")
    out: dict[str, dict[str, float]] = {}
    for name in names:
        res: dict[str, float] = {"predictions": len(wall[name])}
        for kind, values in (("wall", wall[name]), ("cpu", cpu[name])):
            ms = np.asarray(values) * 1000
            res.update({f"{kind}_p{q}_ms": float(np.percentile(ms, q)) for q in (50, 90, 99)})
            res[f"{kind}_mean_ms"] = float(ms.mean())
        out[name] = res
    return out


def evaluate_both(paths: dict[str, SKNN], test: SessionData, repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ranks: dict[str, np.ndarray] = {}
    for name, model in paths.items():
        times, cpus, res = [], [], None
        for _ in range(repeats):
            c0 = time.process_time()
            res = sr.evaluate(model, test, cutoffs=(20,))
            cpus.append(time.process_time() - c0)
            times.append(res.seconds)
        assert res is not None
        ranks[name] = res.ranks
        out[name] = {
            "seconds_median": statistics.median(times),
            "cpu_seconds_median": statistics.median(cpus),
            "runs": repeats,
            "predictions": res.predictions,
            "recall@20": res.metrics["recall@20"],
            "mrr@20": res.metrics["mrr@20"],
        }
    if not np.array_equal(ranks["numpy"], ranks["torch"]):
        raise AssertionError("the numpy and torch index paths rank differently")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default="ml-100k", help="ML-100K: a name or folder.")
    ap.add_argument("--model", type=Path, help="A trained sknn/vsknn folder (with --data).")
    ap.add_argument("--data", type=Path, help="The PreparedData folder the model belongs to.")
    ap.add_argument("--latency-sessions", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3, help="Evaluations per path.")
    ap.add_argument("--threads", type=int, default=1, help="torch threads while evaluating.")
    ap.add_argument("--no-evaluate", action="store_true")
    ap.add_argument("--json", type=Path, default=RESULTS)
    args = ap.parse_args()

    if args.data:
        data = sr.PreparedData(args.data)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="knn-speed-"))
        prepared = sr.prepare(
            args.source, tmp / "ml-100k", session="1h", split="time", test_days=21, valid_days=21
        )
        assert isinstance(prepared, sr.PreparedData)
        data = prepared
    test = data.part("test")
    models: dict[str, SKNN] = {}
    if args.model:
        loaded = sr.load_model(args.model)
        assert isinstance(loaded, SKNN) and loaded.recent_index is not None
        models[loaded.name] = loaded
    else:
        for name in ("sknn", "vsknn"):
            fitted = create(name).fit(data.part("train"))
            assert isinstance(fitted, SKNN)
            models[name] = fitted
    print(f"{data}\ntest predictions: {test.n_predictions:,}; load {os.getloadavg()[0]:.1f}")
    results: dict[str, Any] = {
        "data": str(args.data or args.source),
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_before": os.getloadavg()[0],
        "models": {},
    }
    sessions = sample_sessions(test, args.latency_sessions)
    for name, model in models.items():
        paths = {"numpy": model, "torch": torch_variant(model)}
        torch.set_num_threads(1)
        lat = latency(model, sessions)
        for path, r in lat.items():
            print(f"{name:5s} latency {path:12s}: p50 / p90 / p99 wall "
                  f"{r['wall_p50_ms']:.2f} / {r['wall_p90_ms']:.2f} / {r['wall_p99_ms']:.2f} ms, "
                  f"CPU p90 {r['cpu_p90_ms']:.2f} ms ({r['predictions']:.0f} predictions)",
                  flush=True)  # fmt: skip
        entry: dict[str, Any] = {"latency": lat}
        entry["latency_p90_ratio_before_over_served"] = (
            lat["torch scores"]["wall_p90_ms"] / lat["served top_k"]["wall_p90_ms"]
        )
        if not args.no_evaluate:
            torch.set_num_threads(args.threads)
            ev = evaluate_both(paths, test, args.repeats)
            for path, r in ev.items():
                print(f"{name:5s} evaluate {path:5s}: {r['seconds_median']:.2f} s wall, "
                      f"{r['cpu_seconds_median']:.2f} CPU s (median of {r['runs']}), "
                      f"R@20 {r['recall@20']:.6f} MRR@20 {r['mrr@20']:.6f}", flush=True)  # fmt: skip
            entry["evaluate"] = ev
            entry["evaluate_ratio_torch_over_numpy"] = (
                ev["torch"]["seconds_median"] / ev["numpy"]["seconds_median"]
            )
        results["models"][name] = entry
    results["load_after"] = os.getloadavg()[0]
    results["threads"] = args.threads
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
