"""The model's share of a served event: one ``step`` + ``score_rows`` + top-10 per event, as
the service runs it for one session, over every event of ML-100K's test part, in process.

Measured as the thread's CPU time (``time.thread_time``), so that other work on a shared
machine stretches the wall clock but not the figure; beside it the wall-clock percentiles.
Models: vsknn at ``sample_size`` auto (the default) and 500, and gru4rec (a one-epoch fit:
the speed of a step does not depend on how well it was trained) as the reference.

    PYTHONPATH=src python benchmarks/knn_serve_cost.py --data DATA

DATA: ``sessionrec prepare ml-100k --session-gap 1h --split time --test-days 21
--valid-days 21``. Writes benchmarks/results/knn_serve_cost.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import sessionrec as sr

HERE = Path(__file__).resolve().parent
CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("vsknn", {"sample_size": "auto"}),
    ("vsknn", {"sample_size": 500}),
    ("gru4rec", {"n_epochs": 1, "n_sample": 256, "batch_size": 128}),
]


def per_event(model: Any, test: Any) -> tuple[np.ndarray, np.ndarray]:
    cpu, wall = [], []
    row = torch.tensor([0])
    for s in range(test.n_sessions):
        state = model.start(1)
        for item in test.session(s).tolist():
            c0, w0 = time.thread_time(), time.perf_counter()
            state = model.step(state, torch.tensor([item]))
            torch.topk(model.score_rows(state, row)[0], 10)
            cpu.append(time.thread_time() - c0)
            wall.append(time.perf_counter() - w0)
    return np.array(cpu) * 1000, np.array(wall) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=HERE / "_work" / "knn_serve_cost")
    ap.add_argument("--json", type=Path, default=HERE / "results" / "knn_serve_cost.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = sr.PreparedData(args.data)
    rows = []
    for name, params in CONFIGS:
        model = sr.train(name, data, args.work / f"{name}-{params.get('sample_size', '')}",
                         params=params, fit_on="train+valid", progress=False, overwrite=True)  # fmt: skip
        cpu, wall = per_event(model, data.test)
        row = {
            "model": name,
            "params": params,
            "events": len(cpu),
            "cpu_ms": {q: float(np.percentile(cpu, p)) for q, p in (("p50", 50), ("p99", 99))},
            "cpu_ms_mean": float(cpu.mean()),
            "wall_ms": {q: float(np.percentile(wall, p)) for q, p in (("p50", 50), ("p99", 99))},
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f} at the end",
        "date": time.strftime("%Y-%m-%d"),
        "rows": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
