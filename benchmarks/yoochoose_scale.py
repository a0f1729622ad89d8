"""The whole seed-style run at YOOCHOOSE scale: prepare → fit (train+valid) → evaluate (test).

A YOOCHOOSE-format click log of the given size (``gen_yoochoose.py``, seeded, cached under
``--work``) is prepared as in ``prepare_scale.py`` (sessions from the log's column, sessions ≥ 2
events, items ≥ 5 events, the last day test, the day before valid). Then, per model, each step
runs in a fresh process whose wall time, CPU seconds (user + system) and peak RSS (``wait4``)
are recorded:

- pop, markov, sr, itemknn, sknn, vsknn (indexed, the default ``sample_size``):
  ``sessionrec train DATA -m NAME --fit-on train+valid`` then ``sessionrec evaluate MODEL DATA
  --cutoffs 20 --threads 2`` (every test position, full ranking, conservative ties);
- sknn, vsknn exhaustive (``-p sample_size=0``): trained the same way, evaluated on a fixed random
  sample of test sessions (seed 0, ``--exhaustive-sessions``); the full evaluation's time is
  extrapolated by predictions, and the indexed model is evaluated on the same sample beside it;
- gru4rec (official YOOCHOOSE settings, as ``gru4rec_ml100k.py`` part e): the first
  ``--gru-steps`` mini-batches of an epoch on train+valid, the epoch time extrapolated from the
  throughput after the first report (setup, schedule and the first steps excluded);
- latency: for sknn and vsknn (indexed), one streaming step + the top 20 per prediction
  (``top_k``, the served path), single-threaded, over the test sessions of the sample:
  p50 / p90 / p99 in ms.

    PYTHONPATH=src python benchmarks/yoochoose_scale.py --events 3M
    PYTHONPATH=src nice -n 5 python benchmarks/yoochoose_scale.py --events 33M

Writes ``benchmarks/results/yoochoose_scale_<N>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

PREPARE: dict[str, Any] = {
    "session": "column",
    "min_session_length": 2,
    "min_item_support": 5,
    "split": "time",
    "test_days": 1,
    "valid_days": 1,
}
MODELS = ("pop", "markov", "sr", "itemknn", "sknn", "vsknn")
KNN = ("sknn", "vsknn")
GRU_PARAMS: dict[str, Any] = {
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


# --- children (each runs in its own process) --------------------------------------------------


def child_prepare(clicks: str, out: str) -> dict[str, Any]:
    import sessionrec as sr

    data = sr.prepare(clicks, out, **PREPARE)
    assert isinstance(data, sr.PreparedData)
    c = data.meta["counts"]
    return {
        "raw_events": data.meta["raw_events"],
        **{f"{p}_{k}": c[p][k] for p in ("train", "valid", "test") for k in ("events", "sessions")},
        "items": data.n_items,
    }


def sample_sessions(data: Any, n: int, seed: int = 0) -> Any:
    """The SessionData of ``n`` test sessions drawn without replacement (fixed seed)."""
    import numpy as np

    from sessionrec.prepare.data import SessionData

    rng = np.random.default_rng(seed)
    n = min(n, data.n_sessions)
    chosen = np.zeros(data.n_sessions, dtype=bool)
    chosen[rng.choice(data.n_sessions, size=n, replace=False)] = True
    keep = np.repeat(chosen, data.lengths)
    lengths = data.lengths[chosen]
    return SessionData(
        items=data.items[keep],
        offsets=np.r_[0, np.cumsum(lengths)].astype(np.int64),
        session_ids=data.session_ids[chosen],
        timestamps=data.timestamps[keep],
        target=data.target[keep],
        n_items=data.n_items,
    )


def child_eval_sample(model_dir: str, data_dir: str, n_sessions: int) -> dict[str, Any]:
    """Evaluate a model on a fixed sample of test sessions (exhaustive kNN at scale)."""
    import torch

    import sessionrec as sr
    from sessionrec.evaluation import evaluate

    torch.set_num_threads(2)
    data = sr.PreparedData(data_dir)
    test = data.test
    sample = sample_sessions(test, n_sessions)
    model = sr.load_model(model_dir)
    c0 = time.process_time()
    res = evaluate(model, sample, cutoffs=(20,))
    cpu = time.process_time() - c0
    scale = test.n_predictions / max(res.predictions, 1)
    return {
        "sessions": sample.n_sessions,
        "predictions": res.predictions,
        "seconds": res.seconds,
        "cpu_seconds": cpu,
        "test_predictions": test.n_predictions,
        # by predictions, from wall time (inflated on a busy machine) and from CPU time
        "extrapolated_eval_s": res.seconds * scale,
        "extrapolated_eval_cpu_s": cpu * scale,
        "recall@20": res.metrics["recall@20"],
        "mrr@20": res.metrics["mrr@20"],
    }


def child_latency(model_dir: str, data_dir: str, n_sessions: int) -> dict[str, Any]:
    """One streaming step + the top 20 per prediction (``model.top_k``: what ``sessionrec
    serve`` runs), one thread, one session at a time."""
    import numpy as np
    import torch

    import sessionrec as sr

    torch.set_num_threads(1)
    model = sr.load_model(model_dir)
    sample = sample_sessions(sr.PreparedData(data_dir).test, n_sessions, seed=1)
    wall: list[float] = []
    cpu: list[float] = []
    with torch.inference_mode():
        for s in range(sample.n_sessions):
            items = torch.as_tensor(sample.session(s))
            state = model.start(1)
            for t in range(len(items) - 1):
                t0, c0 = time.perf_counter(), time.thread_time()
                state = model.step(state, items[t : t + 1])
                model.top_k(state, 0, 20)
                cpu.append(time.thread_time() - c0)
                wall.append(time.perf_counter() - t0)
    # wall time includes waiting for a core on a busy machine; the thread's CPU time does not
    out: dict[str, Any] = {"predictions": len(wall)}
    for name, values in (("wall", wall), ("cpu", cpu)):
        ms = np.asarray(values) * 1000
        out.update({f"{name}_p{q}_ms": float(np.percentile(ms, q)) for q in (50, 90, 99)})
        out[f"{name}_mean_ms"] = float(ms.mean())
    return out


class _Enough(Exception):
    pass


def child_gru(data_dir: str, steps: int) -> dict[str, Any]:
    """The first ``steps`` mini-batches of an epoch on train+valid; the epoch extrapolated."""
    import torch

    import sessionrec as sr
    from sessionrec.models.gru4rec import GRU4Rec

    torch.set_num_threads(1)  # the documented recommendation on this shared 2-core machine
    data = sr.PreparedData(data_dir)
    train = data.train.concat(data.valid)
    model = GRU4Rec.from_params(GRU_PARAMS)
    marks: list[tuple[float, int]] = []
    cpu_marks: list[float] = []
    total = [0]

    def hook(done: int, n_pairs: int, loss: float) -> None:
        marks.append((time.perf_counter(), done))
        cpu_marks.append(time.process_time())
        total[0] = n_pairs
        if done >= steps * GRU_PARAMS["batch_size"]:
            raise _Enough

    model.progress_hook = hook
    t0 = time.perf_counter()
    with contextlib.suppress(_Enough):
        model.fit(train)
    (t_first, d_first), (t_last, d_last) = marks[0], marks[-1]
    eps = (d_last - d_first) / (t_last - t_first)
    # the same from the process's CPU time: what wall time would be with a core to itself
    eps_cpu = (d_last - d_first) / (cpu_marks[-1] - cpu_marks[0])
    return {
        "events_per_cpu_second": eps_cpu,
        "extrapolated_epoch_cpu_s": total[0] / eps_cpu,
        "events": train.n_events,
        "pairs": total[0],
        "threads": 1,
        "steps_timed": (d_last - d_first) // GRU_PARAMS["batch_size"],
        "setup_s": t_first - t0,
        "events_per_second": eps,
        "extrapolated_epoch_s": total[0] / eps,
        "params": GRU_PARAMS,
    }


CHILDREN = {
    "prepare": child_prepare,
    "eval_sample": child_eval_sample,
    "latency": child_latency,
    "gru": child_gru,
}


# --- the driver -------------------------------------------------------------------------------


def measure(cmd: list[str], result: Path | None = None) -> dict[str, Any]:
    """Run a command in a fresh process: wall, CPU (user + system) and its own peak RSS."""
    env = {**os.environ, "OMP_WAIT_POLICY": "passive"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    output = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise SystemExit(f"failed ({code}): {' '.join(cmd)}\n{output[-3000:]}")
    rec: dict[str, Any] = {
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_gb": round(usage.ru_maxrss * 1024 / 1e9, 2),  # ru_maxrss is KiB on Linux
    }
    if result is not None:
        rec.update(json.loads(result.read_text()))
    return rec


def child_cmd(name: str, result: Path, *args: Any) -> list[str]:
    return [sys.executable, __file__, "--child", name, "--result", str(result), *map(str, args)]


def cli(*args: Any) -> list[str]:
    return [sys.executable, "-m", "sessionrec", *map(str, args)]


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from gen_yoochoose import parse_count

    n_events = parse_count(args.events)
    work = args.work / args.events
    work.mkdir(parents=True, exist_ok=True)
    clicks = work / "yoochoose-clicks.dat"
    if not clicks.exists():
        log(f"generating {clicks}")
        subprocess.run(
            [sys.executable, str(HERE / "gen_yoochoose.py"), "--events", str(n_events),
             "--out", str(clicks)], check=True)  # fmt: skip
    data = work / "data"
    report: dict[str, Any] = {"steps": {}}
    steps = report["steps"]
    done = work / "steps.json"
    if args.resume and done.exists():
        steps.update(json.loads(done.read_text()))

    def step(key: str, cmd: list[str], result: Path | None = None) -> dict[str, Any]:
        if key in steps:
            log(f"{key}: kept from {done}")
            return dict(steps[key])
        log(f"{key} ...")
        rec = measure(cmd, result)
        rec["load_average"] = [round(x, 2) for x in os.getloadavg()]
        steps[key] = rec
        done.write_text(json.dumps(steps, indent=1))
        log(f"{key}: {json.dumps(rec)}")
        return rec

    res = work / "result.json"
    if "prepare" not in steps or not data.exists():
        steps.pop("prepare", None)
    step("prepare", child_cmd("prepare", res, clicks, data), res)
    for name in args.models:
        variants: list[tuple[str, list[str]]] = [("", [])]
        if name in KNN and args.exhaustive_sessions > 0:
            variants.append(("-exhaustive", ["-p", "sample_size=0"]))
        for suffix, params in variants:
            out = work / f"model-{name}{suffix}"
            step(f"fit {name}{suffix}", cli("train", data, "-m", name, "-o", out,
                 "--fit-on", "train+valid", "--overwrite", "--device", "cpu", *params))  # fmt: skip
            if suffix:
                step(
                    f"evaluate {name}{suffix} (sample)",
                    child_cmd("eval_sample", res, out, data, args.exhaustive_sessions),
                    res,
                )
                step(f"evaluate {name} (same sample)", child_cmd(
                    "eval_sample", res, work / f"model-{name}", data, args.exhaustive_sessions), res)  # fmt: skip
                continue
            js = work / f"eval-{name}.json"
            rec = step(f"evaluate {name}", cli("evaluate", out, data, "--cutoffs", "20",
                       "--threads", "2", "--device", "cpu", "--json", js))  # fmt: skip
            if "recall@20" not in rec:
                ev = json.loads(js.read_text())
                rec.update({k: ev[k] for k in ("predictions", "recall@20", "mrr@20")})
                steps[f"evaluate {name}"] = rec
                done.write_text(json.dumps(steps, indent=1))
            if name in KNN:
                step(f"latency {name}",
                     child_cmd("latency", res, out, data, args.latency_sessions), res)  # fmt: skip
    if args.gru_steps > 0:
        step(
            "fit gru4rec (one epoch, extrapolated)",
            child_cmd("gru", res, data, args.gru_steps),
            res,
        )
    return report


def table(sizes: list[str]) -> str:
    """A Markdown table of the results of two sizes, with the growth of each step."""
    runs = [json.loads((HERE / "results" / f"yoochoose_scale_{n}.json").read_text()) for n in sizes]
    events = [r["steps"]["prepare"]["raw_events"] for r in runs]
    lines = [
        "| step | "
        + " | ".join(f"{n}: wall s | CPU s | peak GB" for n in sizes)
        + " | growth (CPU) | predictions | R@20 | MRR@20 |",
        "|---|" + "---:|---:|---:|" * len(sizes) + "---:|---:|---:|---:|",
    ]
    keys = list(dict.fromkeys(k for r in runs for k in r["steps"]))
    for key in keys:
        recs = [r["steps"].get(key) for r in runs]
        cells = []
        for rec in recs:
            if rec is None:
                cells.append("— | — | —")
            else:
                cells.append(f"{rec['wall_s']:.1f} | {rec['cpu_s']:.1f} | {rec['peak_rss_gb']:.2f}")
        last = recs[-1] or {}
        growth = (
            f"{recs[-1]['cpu_s'] / recs[0]['cpu_s']:.1f}×"
            if all(recs) and recs[0] and recs[0]["cpu_s"] > 0
            else ""
        )
        preds = last.get("predictions", "")
        r20 = f"{last['recall@20']:.4f}" if "recall@20" in last else ""
        m20 = f"{last['mrr@20']:.4f}" if "mrr@20" in last else ""
        lines.append(f"| {key} | " + " | ".join(cells) + f" | {growth} | {preds} | {r20} | {m20} |")
    lines.append(f"\nraw events: {', '.join(f'{e:,}' for e in events)}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", default="3M", help="log size: 3M, 33M, ...")
    ap.add_argument("--work", type=Path, default=Path("/tmp/sessionrec-yoochoose-scale"))
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--exhaustive-sessions", type=int, default=200,
                    help="test sessions of the exhaustive kNN sample (0: skip exhaustive)")  # fmt: skip
    ap.add_argument("--latency-sessions", type=int, default=1000)
    ap.add_argument("--gru-steps", type=int, default=300, help="0: skip gru4rec")
    ap.add_argument("--resume", action="store_true", help="keep steps already measured")
    ap.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    ap.add_argument("--table", nargs="+", metavar="SIZE", help="print the table of these sizes")
    args = ap.parse_args()
    if args.table:
        print(table(args.table))
        return
    if args.child:
        fn: Any = CHILDREN[args.child]
        rest = [int(a) if a.isdigit() else a for a in args.rest]
        args.result.write_text(json.dumps(fn(*rest)))
        return
    t0 = time.time()
    report = run(args)
    report.update(
        {
            "benchmark": "yoochoose_scale",
            "events": args.events,
            "command": "python benchmarks/yoochoose_scale.py " + " ".join(sys.argv[1:]),
            "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t0)),
            "finished_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "python": platform.python_version(),
                "load_average_end": [round(x, 2) for x in os.getloadavg()],
            },
            "exhaustive_sessions": args.exhaustive_sessions,
            "latency_sessions": args.latency_sessions,
            "gru_steps": args.gru_steps,
        }
    )
    path = HERE / "results" / f"yoochoose_scale_{args.events}.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
