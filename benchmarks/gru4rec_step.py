"""GRU4Rec's seconds per epoch on one thread, beside the official PyTorch code, with the time
each spends in its matrix products.

The official ``retailrocket_bprmax_shared_best`` settings (BPR-max over ELU scores, the
shared embedding, one layer of 224, batch 80, 2,048 shared samples, Adagrad with momentum;
``--files`` names other official parameter files) on the
ML-100K acceptance protocol's train+valid part (1 h sessions, 21/21 days), one epoch each.

Every run is its own process with one thread (``OMP_NUM_THREADS=1``, passive OpenMP waits);
sessionrec and the official code (hidasib/GRU4Rec_PyTorch_Official, a checkout given by
``--official``, run unchanged through ``gru4rec_ml100k.SHIM``, never vendored) alternate
within each repetition, so that a change of machine load hits both. Seconds per epoch are
each program's own: the official code's printed epoch time, sessionrec's epoch record. Both
read the parameter file: sessionrec with the official semantics (``--param-file``: heavy-ball
momentum, the dropped-out state carried), so that both do the same arithmetic.

**Products.** After the timed runs, one more epoch of each runs under ``torch.profiler``: the
self time of its ``mm``/``addmm`` calls is the time in matrix products (the forward and
backward products of the GRU and of the sampled output layer), printed beside each figure so
that what is left — everything that is not a product — is visible. The official code scores
every one of a step's C = B + 2,048 columns; sessionrec scores each distinct item among them
once (U ≤ C rows), so its products are smaller by U / C; both are shown.

    pip install joblib   # the official run.py imports it
    PYTHONPATH=src python benchmarks/gru4rec_step.py --official GRU4Rec_PyTorch_Official \
        --reps 3 --json benchmarks/results/gru4rec_step.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gru4rec_ml100k import SHIM, official_files, param_string, prepared

PROFILE_SHIM = """
import os, runpy, sys, torch
from torch.profiler import ProfilerActivity, profile
shim = sys.argv.pop(1)
with profile(activities=[ProfilerActivity.CPU]) as prof:
    runpy.run_path(shim, run_name="__main__")
products = sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in ("aten::mm", "aten::addmm"))
print("PRODUCTS_SECONDS", products / 1e6)
"""


def _env() -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[1] / "src")
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OMP_WAIT_POLICY": "PASSIVE",
        "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }


def child_ours(args: argparse.Namespace) -> None:
    """One epoch of sessionrec in this process; prints a JSON line."""
    import torch

    torch.set_num_threads(1)
    from sessionrec.models.gru4rec import GRU4Rec
    from sessionrec.models.gru4rec_official import load_param_file

    data = prepared(args.data, args.work)
    params = {**load_param_file(args.child_ours), "n_epochs": 1, "seed": args.seed}
    model = GRU4Rec.from_params(params, device="cpu")
    records: list[dict[str, Any]] = []
    train = data.part("train+valid")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model.fit(train, callback=lambda r: records.append(r) and None)
        events = prof.key_averages()
        products = sum(
            e.self_cpu_time_total for e in events if e.key in ("aten::mm", "aten::addmm")
        )
        top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:14]
        print(json.dumps({
            "products_seconds": products / 1e6,
            "top_ops": [[e.key, e.self_cpu_time_total / 1e6, e.count] for e in top],
        }))  # fmt: skip
        return
    model.fit(train, callback=lambda r: records.append(r) and None)
    print(json.dumps({"epoch_seconds": records[0]["seconds"], "loss": records[0]["train_loss"]}))


def run_ours(args: argparse.Namespace, param_file: Path, profile: bool) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child-ours", str(param_file), "--data", args.data,
           "--work", str(args.work), "--seed", str(args.seed)]  # fmt: skip
    if profile:
        cmd.append("--profile")
    out = subprocess.run(cmd, capture_output=True, text=True, env=_env(), check=False)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def run_official(args: argparse.Namespace, ps: str, profile: bool) -> dict[str, Any]:
    shim = args.work / "official_shim.py"
    cmd = [sys.executable, str(shim), str(args.official), str(args.work / "train_valid.tsv"),
           "-ps", ps, "-d", "cpu"]  # fmt: skip
    if profile:
        prof = args.work / "official_profile.py"
        prof.write_text(PROFILE_SHIM)
        cmd = [sys.executable, str(prof), *cmd[1:]]
    out = subprocess.run(
        cmd, capture_output=True, text=True, env=_env(), cwd=args.official, check=False
    )
    text = out.stdout + out.stderr
    if out.returncode != 0:
        raise RuntimeError(f"official run failed:\n{text[-3000:]}")
    if profile:
        return {"products_seconds": float(re.findall(r"PRODUCTS_SECONDS ([\d.]+)", text)[-1])}
    seconds = [float(x) for x in re.findall(r"\(([\d.]+)s\)", text)]
    loss = [float(x) for x in re.findall(r"loss: ([\d.]+)", text)]
    return {"epoch_seconds": seconds[0], "loss": loss[0]}


def official_string(param_file: Path) -> str:
    """The official ``-ps`` string of a parameter file, one epoch."""
    from sessionrec.models.gru4rec_official import read_param_file

    return param_string({**read_param_file(param_file), "n_epochs": 1})


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", default="/work/shared/data/ml-100k")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "gru4rec_step")
    ap.add_argument("--official", type=Path, help="a checkout of GRU4Rec_PyTorch_Official")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--files", nargs="+", default=["retailrocket_bprmax_shared_best"])
    ap.add_argument("--no-profile", action="store_true", help="skip the products epochs")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child-ours", help=argparse.SUPPRESS)
    ap.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.child_ours:
        child_ours(args)
        return
    if args.official is None:
        ap.error("--official is required")
    args.official = args.official.resolve()
    data = prepared(args.data, args.work)
    official_files(data, args.work)
    (args.work / "official_shim.py").write_text(SHIM)
    results: dict[str, Any] = {
        "machine": f"{os.cpu_count()} cores, {os.uname().machine}",
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "files": {},
    }
    for stem in args.files:
        param_file = args.official / "paramfiles" / f"{stem}.py"
        ps = official_string(param_file)
        runs: dict[str, list[dict[str, Any]]] = {"sessionrec": [], "official": []}
        for rep in range(args.reps):
            runs["official"].append(run_official(args, ps, profile=False))
            runs["sessionrec"].append(run_ours(args, param_file, profile=False))
            print(stem, rep, {k: v[-1] for k, v in runs.items()}, flush=True)
        row: dict[str, Any] = {"runs": runs}
        for who in runs:
            row[who] = statistics.median(r["epoch_seconds"] for r in runs[who])
        row["ratio"] = row["official"] / row["sessionrec"]
        if not args.no_profile:
            row["products_official"] = run_official(args, ps, profile=True)["products_seconds"]
            profiled = run_ours(args, param_file, profile=True)
            row["products_sessionrec"] = profiled["products_seconds"]
            row["top_ops_sessionrec"] = profiled["top_ops"]
        results["files"][stem] = row
        print(stem, json.dumps({k: v for k, v in row.items() if k != "runs"}), flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
    results["finished"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
