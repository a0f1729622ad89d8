"""GRU4Rec training speed on 1 and 2 torch threads, with OpenMP's passive and spinning waits.

Each measurement is its own process (OpenMP reads ``OMP_WAIT_POLICY`` once, at start-up):
it builds a synthetic session log, trains the first ``--steps`` mini-batches of an epoch and
reports training pairs per second over them (from the end of the first mini-batch, which
pays the warm-up, to the model's progress report at ``--steps``).
Runs are interleaved (1 thread, 2 threads, 1 thread, ...) so that a change of machine load
hits both thread counts alike, and the load average is recorded beside each run.

Two settings: the demo's (cross-entropy, one layer of 100, batch 64: small products) and
the official ``yoochoose_xe_shared_best`` file's (layers 480, batch 48, 2,048 shared samples:
large products, where threads pay most).

    OMP_NUM_THREADS= PYTHONPATH=src python benchmarks/gru4rec_threads.py --reps 3 --json t.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gru4rec_ml100k import Enough, synthetic_yoochoose

SETTINGS: dict[str, dict[str, Any]] = {
    "demo": {"loss": "cross-entropy", "layers": [100], "batch_size": 64, "n_sample": 2048,
             "learning_rate": 0.05, "n_epochs": 1},
    "yoochoose_xe": {"loss": "cross-entropy", "constrained_embedding": True, "layers": [480],
                     "batch_size": 48, "n_sample": 2048, "sample_alpha": 0.2, "logq": 1.0,
                     "dropout_p_hidden": 0.2, "learning_rate": 0.07, "momentum": 0.0,
                     "n_epochs": 1},
}  # fmt: skip


def child(setting: str, threads: int, steps: int) -> dict[str, Any]:
    import torch

    from sessionrec.models.gru4rec import GRU4Rec

    torch.set_num_threads(threads)
    params = SETTINGS[setting]
    data = synthetic_yoochoose(400_000, 20_000, seed=0)
    model = GRU4Rec.from_params(params)
    marks: list[tuple[float, float, int]] = []

    def hook(done: int, total: int, loss: float) -> None:
        marks.append((time.perf_counter(), time.process_time(), done))
        if done >= steps * params["batch_size"]:
            raise Enough

    model.progress_hook = hook
    with contextlib.suppress(Enough):
        model.fit(data)
    first, last = marks[0], marks[-1]  # the model reports every 200 mini-batches
    wall = last[0] - first[0]
    return {
        "events_per_second": (last[2] - first[2]) / wall,
        "cpu_per_wall": (last[1] - first[1]) / wall,
        "torch_threads": torch.get_num_threads(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS))
    ap.add_argument("--policies", nargs="+", default=["PASSIVE", "ACTIVE"])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--steps", type=int, default=400, help="a multiple of 200")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        setting, threads = args.child
        print(json.dumps(child(setting, int(threads), args.steps)))
        return
    runs: list[dict[str, Any]] = []
    for setting in args.settings:
        for policy in args.policies:
            for rep in range(args.reps):
                for threads in (1, 2):
                    env = {**os.environ, "OMP_WAIT_POLICY": policy}
                    env.pop("OMP_NUM_THREADS", None)
                    load = os.getloadavg()[0]
                    cmd = [sys.executable, __file__, "--child", setting, str(threads),
                           "--steps", str(args.steps)]  # fmt: skip
                    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
                    run = {"setting": setting, "policy": policy, "threads": threads, "rep": rep,
                           "load_before": load, **json.loads(out.stdout.strip().splitlines()[-1])}  # fmt: skip
                    runs.append(run)
                    print(json.dumps(run), flush=True)
    summary = []
    for setting in args.settings:
        for policy in args.policies:
            row: dict[str, Any] = {"setting": setting, "policy": policy}
            for threads in (1, 2):
                v = [r["events_per_second"] for r in runs
                     if (r["setting"], r["policy"], r["threads"]) == (setting, policy, threads)]  # fmt: skip
                row[f"eps_{threads}"] = float(np.median(v))
            row["ratio_2_over_1"] = row["eps_2"] / row["eps_1"]
            summary.append(row)
            print(json.dumps(row), flush=True)
    result = {"cpu_count": os.cpu_count(), "runs": runs, "summary": summary}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
