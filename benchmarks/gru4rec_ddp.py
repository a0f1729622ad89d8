"""GRU4Rec training throughput: one process on 1 and 2 threads against two distributed ranks.

Each measurement is its own process (or pair of processes: two gloo ranks on this machine,
started with the variables torchrun sets). A run builds a YOOCHOOSE-shaped synthetic log
(Zipf(1) popularity, session lengths 2 + geometric, mean 3.5; ``--events`` clicks over
``--items`` items), trains the first ``--steps`` mini-batches of an epoch at the official
``yoochoose_xe_shared_best`` settings (cross-entropy, layers 480, 2,048 shared samples, logQ)
and reports training events per second over them, from the end of the first mini-batch (the
warm-up) to the report at ``--steps``. Under two ranks the figure is both ranks' events over
the slower rank's wall time, with the time each rank spent in collectives and the bytes it
handed to them per step, for both ways of sending the item tables' rows (``gather``: the
touched rows; ``dense``: a catalogue-sized all-reduce). The configurations alternate within
each repetition, so that the load of other jobs hits all alike.

From the communication volume a second machine is estimated: the step time of one
single-threaded process plus each collective's bytes over a network link (``--gbit``, ring
all-reduce moving 2(W-1)/W of its buffer, all-gather (W-1)/W of the result) and a latency per
collective (``--latency-us``).

    PYTHONPATH=src python benchmarks/gru4rec_ddp.py --events 3000000 --reps 2 \
        --json benchmarks/results/gru4rec_ddp_3m.json
    PYTHONPATH=src python benchmarks/gru4rec_ddp.py --events 33000000 --items 40000 --reps 1 \
        --configs 0 1 2 --json benchmarks/results/gru4rec_ddp_33m.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gru4rec_ml100k import Enough, synthetic_yoochoose

SETTINGS: dict[str, Any] = {
    "loss": "cross-entropy", "constrained_embedding": True, "layers": [480], "batch_size": 48,
    "n_sample": 2048, "sample_alpha": 0.2, "logq": 1.0, "dropout_p_hidden": 0.2,
    "learning_rate": 0.07, "momentum": 0.0, "n_epochs": 1, "elu_param": 0.0,
}  # fmt: skip


def child(args: argparse.Namespace, threads: int, rows: str | None, batch: int) -> dict[str, Any]:
    import torch

    from sessionrec.models.gru4rec import GRU4Rec

    torch.set_num_threads(threads)
    ddp = None
    if rows is not None:
        from sessionrec.training.distributed import init_distributed

        ddp = init_distributed("cpu", rows=rows)
    data = synthetic_yoochoose(args.events, args.items, seed=0)
    model = GRU4Rec.from_params({**SETTINGS, "batch_size": batch})
    model.distributed = ddp
    marks: list[tuple[float, float, int, float, int, int]] = []

    def hook(done: int, total: int, loss: float) -> None:
        comm = (ddp.comm_seconds, ddp.comm_bytes, ddp.comm_calls) if ddp else (0.0, 0, 0)
        marks.append((time.perf_counter(), time.process_time(), done, *comm))
        if done >= args.steps * batch:
            raise Enough

    model.progress_hook = hook
    with contextlib.suppress(Enough):
        model.fit(data)
    first, last = marks[0], marks[-1]  # the model reports every 200 mini-batches
    wall = last[0] - first[0]
    steps = (last[2] - first[2]) / batch
    out = {
        "events": last[2] - first[2],
        "wall": wall,
        "events_per_second": (last[2] - first[2]) / wall,
        "cpu_per_wall": (last[1] - first[1]) / wall,
        "comm_seconds_per_step": (last[3] - first[3]) / steps,
        "comm_bytes_per_step": (last[4] - first[4]) / steps,
        "comm_calls_per_step": (last[5] - first[5]) / steps,
        "rank": ddp.rank if ddp else 0,
    }
    if ddp is not None:
        from sessionrec.training.distributed import shutdown_distributed

        shutdown_distributed()
    return out


def run(args: argparse.Namespace, kind: str, threads: int, rows: str | None, batch: int,
        world: int) -> list[dict[str, Any]]:  # fmt: skip
    cmd = [sys.executable, __file__, "--child", str(threads), rows or "-", str(batch),
           "--events", str(args.events), "--items", str(args.items),
           "--steps", str(args.steps)]  # fmt: skip
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    env.pop("OMP_NUM_THREADS", None)
    if world == 1:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        return [json.loads(out.stdout.strip().splitlines()[-1])]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    with tempfile.TemporaryDirectory() as tmp:
        for rank in range(world):
            renv = {**env, "RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                    "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}  # fmt: skip
            log = open(Path(tmp) / f"r{rank}.out", "w")  # noqa: SIM115
            procs.append((subprocess.Popen(cmd, env=renv, stdout=log, stderr=subprocess.PIPE), log))
        results = []
        for p, log in procs:
            if p.wait() != 0:
                raise RuntimeError(f"{kind}: a rank failed: {p.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            log.close()
            results.append(json.loads(Path(log.name).read_text().strip().splitlines()[-1]))
        return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=3_000_000)
    ap.add_argument("--items", type=int, default=37_000)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--steps", type=int, default=400, help="a multiple of 200")
    ap.add_argument("--gbit", type=float, default=10.0, help="the estimate's link, Gbit/s")
    ap.add_argument("--latency-us", type=float, default=50.0, help="per collective")
    ap.add_argument(
        "--configs", type=int, nargs="+", help="run only these configurations (0-4, in order)"
    )
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        threads, rows, batch = args.child
        res = child(args, int(threads), None if rows == "-" else rows, int(batch))
        print(json.dumps(res), flush=True)
        return
    b = SETTINGS["batch_size"]
    configs = [  # (name, threads, rows, batch per rank, processes)
        ("1 process, 1 thread", 1, None, b, 1),
        ("1 process, 2 threads", 2, None, b, 1),
        ("2 ranks, rows gathered", 1, "gather", b, 2),
        ("2 ranks, rows dense", 1, "dense", b, 2),
        ("2 ranks at batch B/2, rows gathered", 1, "gather", b // 2, 2),
    ]
    if args.configs:
        configs = [configs[i] for i in sorted(set(args.configs))]
    runs: list[dict[str, Any]] = []
    for rep in range(args.reps):
        for name, threads, rows, batch, world in configs:
            load = os.getloadavg()[0]
            ranks = run(args, name, threads, rows, batch, world)
            wall = max(r["wall"] for r in ranks)
            rec = {
                "config": name, "rep": rep, "load_before": load, "batch_per_rank": batch,
                "events_per_second": sum(r["events"] for r in ranks) / wall,
                "comm_seconds_per_step": max(r["comm_seconds_per_step"] for r in ranks),
                "comm_bytes_per_step": ranks[0]["comm_bytes_per_step"],
                "comm_calls_per_step": ranks[0]["comm_calls_per_step"],
                "step_seconds": wall / (ranks[0]["events"] / batch), "ranks": ranks,
            }  # fmt: skip
            runs.append(rec)
            print(json.dumps({k: v for k, v in rec.items() if k != "ranks"}), flush=True)
    summary = []
    base = None
    for name, *_ in configs:
        rs = [r for r in runs if r["config"] == name]
        row = {k: float(np.median([r[k] for r in rs])) for k in
               ("events_per_second", "comm_seconds_per_step", "comm_bytes_per_step",
                "comm_calls_per_step", "step_seconds")}  # fmt: skip
        row["config"] = name
        if base is None:
            base = row
        row["over_1_thread"] = row["events_per_second"] / base["events_per_second"]
        summary.append(row)
    # a second machine: one process per machine, the 1-thread step plus the network's share
    bw = args.gbit * 1e9 / 8
    for row in summary:
        if not row["config"].startswith("2 ranks,"):  # the ranks at batch B (as the 1-thread step)
            continue
        world = 2
        wire = row["comm_bytes_per_step"] * (2 * (world - 1) / world)
        net = wire / bw + row["comm_calls_per_step"] * args.latency_us * 1e-6
        row["two_machines_events_per_second"] = world * b / (base["step_seconds"] + net)
        row["network_seconds_per_step"] = net
    for row in summary:
        print(json.dumps(row), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "cpu_count": os.cpu_count(),
                                         "runs": runs, "summary": summary}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
