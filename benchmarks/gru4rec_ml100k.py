"""GRU4Rec on the ML-100K acceptance protocol, side by side with the official PyTorch code.

Parts (``--parts``):
  a  the official ``retailrocket_bprmax_shared_best`` settings, 2 epochs, fit on train+valid,
     tested on test, over seeds: Recall/MRR/NDCG@10/20 with and without exclude_seen, events/s;
  b  the official code (hidasib/GRU4Rec_PyTorch_Official, a checkout given by ``--official``,
     never vendored) on the same files with the same settings, in the same run: its own
     printed events/s and Recall/MRR@20 (conservative ties), and the speed ratio;
  c  the seeds' configuration: one-hot input, one GRU layer of 50, dropout 0.1, Adam lr 0.001,
     cross-entropy over all items (``n_sample=-1``: every item is scored at every step, a full
     softmax without sampling), batch 128 and 256;
  d  a short configuration chosen on valid: a small grid around cross-entropy over all items
     (``D_GRID``), each fit on train for 2 epochs (seed 0) and scored on valid (MRR@20);
     the best is fit on train+valid and tested once, over the seeds;
  e  training throughput at YOOCHOOSE scale: a synthetic 33M-event log (Zipf items over
     40k items, geometric session lengths of mean 3.5), events/s and peak memory over a
     fixed number of mini-batches (run in a child process so that its peak RSS is its own);
  f  the six official parameter files (``--official``/paramfiles/*_best.py), read by
     ``sessionrec.models.gru4rec_official`` (official semantics), ``--epochs-f`` epochs,
     official code and sessionrec interleaved seed by seed, fit on train+valid, tested on test:
     Recall/MRR@20 and events/s counted by training pairs;
  g  hidden dropout placement: the ``rsc15_xe_shared_100_best`` settings with the clean
     state carried (``hidden_dropout_placement="output"``) beside part f's official
     placement (``"state"``), same seeds.

The official code's ``run.py`` imports joblib: ``pip install joblib`` beside sessionrec's
environment before parts b and f (it is not one of sessionrec's dependencies).

Usage:
  python benchmarks/gru4rec_ml100k.py --data /work/shared/data/ml-100k --work /tmp/g4b \
      --official /path/to/GRU4Rec_PyTorch_Official --threads 2 --json results.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

RETAILROCKET = {
    "loss": "bpr-max",
    "constrained_embedding": True,
    "embedding": 0,
    "elu_param": 0.5,
    "layers": [224],
    "n_epochs": 2,
    "batch_size": 80,
    "dropout_p_embed": 0.5,
    "dropout_p_hidden": 0.05,
    "learning_rate": 0.05,
    "momentum": 0.4,
    "n_sample": 2048,
    "sample_alpha": 0.4,
    "bpreg": 1.95,
    "logq": 0.0,
}
SEEDS_CONFIG = {
    "loss": "cross-entropy",
    "constrained_embedding": False,
    "embedding": 0,
    "layers": [50],
    "dropout_p_embed": 0.0,
    "dropout_p_hidden": 0.1,
    "optimizer": "adam",
    "learning_rate": 0.001,
    "n_sample": -1,
    "n_epochs": 10,
}
# Part d: a small grid around cross-entropy over all items, chosen on valid.
D_GRID_BASE = {
    "loss": "cross-entropy",
    "n_sample": -1,
    "constrained_embedding": True,
    "layers": [100],
    "momentum": 0.0,
    "dropout_p_embed": 0.0,
    "elu_param": 0,
    "n_epochs": 2,
}
D_GRID_VARIED = [
    {"batch_size": b, "learning_rate": lr, "dropout_p_hidden": dh}
    for b in (32,)
    for lr in (0.05, 0.1)
    for dh in (0.0, 0.2)
]
YOOCHOOSE = {
    "loss": "cross-entropy",
    "constrained_embedding": True,
    "layers": [480],
    "batch_size": 48,
    "dropout_p_hidden": 0.2,
    "learning_rate": 0.07,
    "n_sample": 2048,
    "sample_alpha": 0.2,
    "logq": 1.0,
    "n_epochs": 1,
}

# Runs the official run.py unchanged, with three shims. Its weight initialisation multiplies a float32 array
# by a NumPy float64 scalar, which NumPy 2 promotes to float64 and torch then rejects; the
# shim casts that one helper's result back to float32.
SHIM = """
import runpy, sys
import numpy as np
official = sys.argv[1]
sys.path.insert(0, official)
sys.argv = [official + "/run.py", *sys.argv[2:]]
import gru4rec_pytorch as g
_init = g.GRU4RecModel._init_numpy_weights
g.GRU4RecModel._init_numpy_weights = lambda self, shape: _init(self, shape).astype(np.float32)
# run.py evaluates with 512 session slots, more than ML-100K's 195 test sessions, which its
# iterator does not handle (IndexError); the same evaluation with 64 slots.
# With logq > 0 its fit passes a pandas Series to torch.tensor, which pandas 3 / torch 2.13
# refuse ("could not determine the shape"); the module's torch is given a tensor() that takes
# the Series' values (every other attribute is torch's own, copied, so nothing else slows).
import types, torch
proxy = types.ModuleType("torch")
proxy.__dict__.update(torch.__dict__)
proxy.tensor = lambda data, *a, **kw: torch.tensor(getattr(data, "values", data), *a, **kw)
g.torch = proxy
import evaluation
_eval = evaluation.batch_eval
evaluation.batch_eval = lambda *a, batch_size=512, **kw: _eval(*a, batch_size=64, **kw)
runpy.run_path(official + "/run.py", run_name="__main__")
"""


def prepared(source: str, work: Path) -> Any:
    import sessionrec as sr

    out = work / "ml100k"
    if (out / "meta.json").exists():
        return sr.PreparedData(out)
    return sr.prepare(source, out, session="1h", split="time", test_days=21, valid_days=21)


def evaluate_all(model: Any, test: Any) -> dict[str, Any]:
    from sessionrec.evaluation import evaluate

    out: dict[str, Any] = {}
    for exclude in (False, True):
        res = evaluate(model, test, cutoffs=(10, 20), exclude_seen=exclude)
        key = "exclude_seen" if exclude else "all"
        out[key] = {
            k: v for k, v in res.metrics.items() if k.split("@")[0] in ("recall", "mrr", "ndcg")
        }
        out["predictions"] = res.predictions
        out["eval_seconds_" + key] = res.seconds
    return out


def run_ours(data: Any, params: dict[str, Any], seed: int, fit_on: str) -> dict[str, Any]:
    from sessionrec.models.gru4rec import GRU4Rec

    train = data.part(fit_on)
    model = GRU4Rec.from_params({**params, "seed": seed}, device="cpu")
    records: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    model.fit(train, callback=lambda r: records.append(r) and None)
    seconds = time.perf_counter() - t0
    pairs = sum(r["events_per_second"] * r["seconds"] for r in records)
    fit_seconds = sum(r["seconds"] for r in records)
    return {
        "seed": seed,
        "train_seconds": seconds,
        "events_per_second": pairs / fit_seconds,
        "train_loss": [r["train_loss"] for r in records],
        **evaluate_all(model, data.part("test")),
    }


def run_ours_lean(
    data: Any, params: dict[str, Any], seed: int, fit_on: str, score_on: str
) -> dict[str, Any]:
    """Fit, then Recall/MRR@20 on ``score_on`` (all items, conservative ties) only."""
    from sessionrec.evaluation import evaluate
    from sessionrec.models.gru4rec import GRU4Rec

    model = GRU4Rec.from_params({**params, "seed": seed}, device="cpu")
    records: list[dict[str, Any]] = []

    def keep(record: dict[str, Any]) -> bool:
        records.append(record)
        return False

    model.fit(data.part(fit_on), callback=keep)
    pairs = sum(r["events_per_second"] * r["seconds"] for r in records)
    fit_seconds = sum(r["seconds"] for r in records)
    res = evaluate(model, data.part(score_on), cutoffs=(20,), exclude_seen=False)
    return {
        "seed": seed,
        "pairs": pairs,
        "fit_seconds": fit_seconds,
        "events_per_second": pairs / fit_seconds,
        "train_loss": [r["train_loss"] for r in records],
        "all": {k: res.metrics[k] for k in ("recall@20", "mrr@20")},
    }


def write_tsv(data: Any, part: str, path: Path) -> None:
    """SessionId, ItemId, Time. Time keeps our event order inside a session (ML-100K has many
    equal timestamps): the event's time in seconds plus 1 ms per position."""
    import polars as pl

    d = data.part(part)
    lengths = np.diff(d.offsets)
    pos = np.arange(d.n_events) - np.repeat(d.offsets[:-1], lengths)
    pl.DataFrame(
        {
            "SessionId": np.repeat(np.arange(d.n_sessions), lengths),
            "ItemId": data.items["item_id"].to_numpy()[d.items],
            "Time": d.timestamps / 1e6 + pos * 1e-3,
        }
    ).write_csv(path, separator="\t")


def official_files(data: Any, work: Path) -> None:
    """The official code's input files (train+valid, test) and the shim, in ``work``."""
    train_tsv, test_tsv = work / "train_valid.tsv", work / "test.tsv"
    if not train_tsv.exists():
        write_tsv(data, "train+valid", train_tsv)
        write_tsv(data, "test", test_tsv)
    (work / "official_shim.py").write_text(SHIM)


def run_official(
    official: Path, data: Any, params: dict[str, Any], seed: int, work: Path, threads: int
) -> dict[str, Any]:
    official_files(data, work)
    return _run_official_ps(official, param_string(params), seed, work, threads)


def param_string(params: dict[str, Any]) -> str:
    """The official ``run.py -ps`` string of ``params`` (lists as ``a/b``)."""
    return ",".join(
        f"{k}={'/'.join(map(str, v)) if isinstance(v, list) else v}" for k, v in params.items()
    )


def _run_official_ps(
    official: Path, ps: str, seed: int, work: Path, threads: int
) -> dict[str, Any]:
    train_tsv, test_tsv = work / "train_valid.tsv", work / "test.tsv"
    shim = work / "official_shim.py"
    # The official code seeds itself (numpy seed 42 for the weights); it has no seed option,
    # so its repeated runs differ only by the unseeded torch sampling and dropout.
    cmd = [sys.executable, str(shim), str(official), str(train_tsv), "-ps", ps,
           "-t", str(test_tsv), "-m", "10", "20", "-e", "conservative", "-d", "cpu"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=official, check=False)
    seconds = time.perf_counter() - t0
    text = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"official run failed:\n{text[-3000:]}")
    speeds = [float(x) for x in re.findall(r"\|\s*([\d.]+) e/s\]", text)]
    times = [float(x) for x in re.findall(r"\(([\d.]+)s\)", text)]
    metrics = {
        f"{m.lower()}@{k}": float(v)
        for k, r, v2 in re.findall(r"Recall@(\d+): ([\d.]+) MRR@\d+: ([\d.]+)", text)
        for m, v in (("recall", r), ("mrr", v2))
    }
    events = sum(s * t for s, t in zip(speeds, times, strict=False))
    return {
        "seed": seed,
        "wall_seconds": seconds,
        "epoch_seconds": times,
        "epoch_events_per_second": speeds,
        "events_per_second": events / max(sum(times), 1e-9),
        "all": metrics,
    }


def summarise(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not runs:
        return out
    for metric in runs[0].get(key, {}):
        vals = np.array([r[key][metric] for r in runs])
        out[metric] = {
            "mean": float(vals.mean()),
            "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
        }
    return out


def speed_summary(runs: list[dict[str, Any]]) -> dict[str, float]:
    v = np.array([r["events_per_second"] for r in runs])
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}


def synthetic_yoochoose(n_events: int, n_items: int, seed: int) -> Any:
    """SessionData of about ``n_events`` clicks: Zipf(1) item popularity over ``n_items``,
    session lengths 2 + geometric (mean 3.5), sessions in time order."""
    from sessionrec.prepare.data import SessionData

    rng = np.random.default_rng(seed)
    n_sessions = int(n_events / 3.5)
    lengths = 1 + rng.geometric(1 / 2.5, size=n_sessions)
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    total = int(offsets[-1])
    cdf = np.cumsum(1.0 / np.arange(1, n_items + 1))
    cdf /= cdf[-1]
    items = np.searchsorted(cdf, rng.random(total)).astype(np.int64)
    return SessionData(
        items=items,
        offsets=offsets,
        session_ids=np.arange(n_sessions, dtype=np.int64),
        timestamps=np.repeat(np.arange(n_sessions, dtype=np.int64) * 1_000_000, lengths),
        target=np.ones(total, dtype=bool),
        n_items=n_items,
    )


class Enough(Exception):
    """Raised by a progress hook to end a timed run after enough steps."""


def run_scale(n_events: int, n_items: int, steps: int, params: dict[str, Any]) -> dict[str, Any]:
    """Throughput over the first ``steps`` mini-batches of an epoch (the full schedule is
    built, so its memory counts); the epoch time is extrapolated."""
    from sessionrec.models.gru4rec import GRU4Rec
    from sessionrec.training.batching import session_parallel_schedule

    t0 = time.perf_counter()
    data = synthetic_yoochoose(n_events, n_items, seed=0)
    gen_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    sched = session_parallel_schedule(data.offsets, data.start_times(), params["batch_size"])
    sched_seconds = time.perf_counter() - t0
    n_pairs, n_steps = sched.n_pairs, sched.n_steps
    del sched
    model = GRU4Rec.from_params(params)
    marks: list[tuple[float, int]] = []

    def hook(done: int, total: int, loss: float) -> None:
        marks.append((time.perf_counter(), done))
        if done >= steps * params["batch_size"]:
            raise Enough

    model.progress_hook = hook
    t0 = time.perf_counter()
    with contextlib.suppress(Enough):
        model.fit(data)
    (t_first, d_first), (t_last, d_last) = marks[0], marks[-1]
    eps = (d_last - d_first) / (t_last - t_first)
    return {
        "events": data.n_events,
        "pairs": n_pairs,
        "sessions": data.n_sessions,
        "items": n_items,
        "steps_per_epoch": n_steps,
        "steps_timed": (d_last - d_first) // params["batch_size"],
        "generate_seconds": gen_seconds,
        "schedule_seconds": sched_seconds,
        "setup_seconds": t_first - t0,
        "events_per_second": eps,
        "extrapolated_epoch_hours": n_pairs / eps / 3600,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "params": params,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", default="/work/shared/data/ml-100k")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "gru4rec_bench")
    ap.add_argument("--official", type=Path, help="a checkout of GRU4Rec_PyTorch_Official")
    ap.add_argument("--parts", default="abc", help="letters of the parts to run")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs-f", type=int, default=2, help="epochs of parts f and g")
    ap.add_argument("--files", nargs="+", help="parts f, g: only these parameter files (stems)")
    ap.add_argument(
        "--reuse-log",
        type=Path,
        nargs="+",
        help="parts f, g: runs already printed to these logs (same settings) are not run again",
    )
    ap.add_argument(
        "--d-grid-json", type=Path, help="part d: the valid scores of its grid from an earlier run"
    )
    ap.add_argument("--scale-events", type=int, default=33_000_000)
    ap.add_argument("--scale-steps", type=int, default=600)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--scale-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    if args.scale_child:
        res = run_scale(args.scale_events, 40_000, args.scale_steps, YOOCHOOSE)
        print(json.dumps(res))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    data = prepared(args.data, args.work)
    results: dict[str, Any] = {
        "threads": args.threads,
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
    }

    def report(name: str, value: Any) -> None:
        results[name] = value
        print(name, json.dumps(value, indent=1), flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))

    if "a" in args.parts or "b" in args.parts:
        ours, theirs = [], []
        for seed in args.seeds:
            if "a" in args.parts:
                ours.append(run_ours(data, RETAILROCKET, seed, "train+valid"))
                print("ours", json.dumps(ours[-1]), flush=True)
            if "b" in args.parts and args.official:
                theirs.append(
                    run_official(args.official, data, RETAILROCKET, seed, args.work, args.threads)
                )
                print("official", json.dumps(theirs[-1]), flush=True)
        if ours:
            report("a_retailrocket_bprmax", {
                "params": RETAILROCKET, "runs": ours, "speed": speed_summary(ours),
                "all": summarise(ours, "all"), "exclude_seen": summarise(ours, "exclude_seen"),
            })  # fmt: skip
        if theirs:
            b: dict[str, Any] = {
                "runs": theirs,
                "speed": speed_summary(theirs),
                "all": summarise(theirs, "all"),
            }
            if ours:
                b["speed_ratio_ours_over_official"] = (
                    speed_summary(ours)["mean"] / b["speed"]["mean"]
                )
            report("b_official", b)
    if "c" in args.parts:
        for batch in (128, 256):
            runs = [
                run_ours(data, {**SEEDS_CONFIG, "batch_size": batch}, s, "train+valid")
                for s in args.seeds
            ]
            report(f"c_seeds_config_batch{batch}", {
                "params": {**SEEDS_CONFIG, "batch_size": batch}, "runs": runs, "speed": speed_summary(runs),
                "all": summarise(runs, "all"), "exclude_seen": summarise(runs, "exclude_seen"),
            })  # fmt: skip
    if "e" in args.parts:
        cmd = [sys.executable, __file__, "--scale-child", "--threads", str(args.threads),
               "--scale-events", str(args.scale_events), "--scale-steps", str(args.scale_steps)]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        report("e_yoochoose_scale", json.loads(out.stdout.strip().splitlines()[-1]))
    if "f" in args.parts or "g" in args.parts:
        run_param_files(args, data, report)
    if "d" in args.parts:
        grid = json.loads(args.d_grid_json.read_text()) if args.d_grid_json else []
        for combo in D_GRID_VARIED[len(grid) :]:
            params = {**D_GRID_BASE, **combo}
            run = run_ours_lean(data, params, 0, "train", "valid")
            grid.append({"params": combo, "valid": run["all"]})
            print("d grid", json.dumps(grid[-1]), flush=True)
        best = max(grid, key=lambda g: g["valid"]["mrr@20"])
        params = {**D_GRID_BASE, **best["params"]}
        runs = [run_ours(data, params, s, "train+valid") for s in args.seeds]
        report("d_valid_selected", {
            "grid": grid, "selected_by": "valid mrr@20 (fit on train, seed 0)",
            "params": params, "runs": runs, "speed": speed_summary(runs),
            "all": summarise(runs, "all"), "exclude_seen": summarise(runs, "exclude_seen"),
        })  # fmt: skip


def run_param_files(args: Any, data: Any, report: Any) -> None:
    """Parts f and g (see the module docstring); reports after every run."""
    from sessionrec.models.gru4rec_official import official_params, read_param_file

    files = sorted((args.official / "paramfiles").glob("*_best.py"))
    if args.files:
        files = [f for f in files if f.stem in args.files]
    official_files(data, args.work)
    f: dict[str, Any] = {}
    g: dict[str, Any] = {"state": [], "output": []}
    done: dict[tuple[str, str, int], dict[str, Any]] = {}
    for log_path in args.reuse_log or []:
        for line in log_path.read_text().splitlines():
            m = re.match(r"(f official|f ours|g output) (\S+ )?(\{.*\})$", line)
            if m:
                run = json.loads(m.group(3))
                stem = (m.group(2) or "rsc15_xe_shared_100_best").strip()
                done[(m.group(1), stem, run["seed"])] = run

    def reuse(kind: str, stem: str, seed: int, run: Any, *run_args: Any) -> dict[str, Any]:
        if (kind, stem, seed) in done:
            return done[(kind, stem, seed)]
        result: dict[str, Any] = run(*run_args)
        return result

    for seed in args.seeds:
        for path in files:
            raw = {**read_param_file(path), "n_epochs": args.epochs_f}
            entry = f.setdefault(path.stem, {"params": raw, "official": [], "ours": []})
            if "f" in args.parts:
                ps = param_string(raw)
                entry["official"].append(
                    reuse(
                        "f official",
                        path.stem,
                        seed,
                        _run_official_ps,
                        args.official,
                        ps,
                        seed,
                        args.work,
                        args.threads,
                    )
                )
                print("f official", path.stem, json.dumps(entry["official"][-1]), flush=True)
            ours = official_params(raw)
            if "f" in args.parts or path.stem.startswith("rsc15"):
                entry["ours"].append(
                    reuse(
                        "f ours",
                        path.stem,
                        seed,
                        run_ours_lean,
                        data,
                        ours,
                        seed,
                        "train+valid",
                        "test",
                    )
                )
                print("f ours", path.stem, json.dumps(entry["ours"][-1]), flush=True)
            if "g" in args.parts and path.stem.startswith("rsc15"):
                g["state"].append(entry["ours"][-1])
                out = {**ours, "hidden_dropout_placement": "output"}
                g["output"].append(
                    reuse(
                        "g output",
                        path.stem,
                        seed,
                        run_ours_lean,
                        data,
                        out,
                        seed,
                        "train+valid",
                        "test",
                    )
                )
                print("g output", json.dumps(g["output"][-1]), flush=True)
            summary = {}
            for name, e in f.items():
                row: dict[str, Any] = {"params": e["params"]}
                for who in ("official", "ours"):
                    if e[who]:
                        row[who] = {"all": summarise(e[who], "all"), "runs": e[who]}
                if e["official"] and e["ours"]:
                    # the same training pairs for both: the official code's printed events/s
                    # counts every step as B events, so its speed is taken from its epoch times
                    pairs = np.mean([r["pairs"] for r in e["ours"]])
                    theirs = [pairs / sum(r["epoch_seconds"]) for r in e["official"]]
                    mine = [r["events_per_second"] for r in e["ours"]]
                    row["events_per_second"] = {
                        "official": float(np.mean(theirs)),
                        "ours": float(np.mean(mine)),
                        "ratio_ours_over_official": float(np.mean(mine) / np.mean(theirs)),
                    }
                summary[name] = row
            if "f" in args.parts:
                report("f_param_files", summary)
            if "g" in args.parts and g["output"]:
                report("g_hidden_dropout_placement", {
                    k: {"all": summarise(v, "all"), "runs": v} for k, v in g.items()
                })  # fmt: skip


if __name__ == "__main__":
    main()
