"""`sr.evaluate` from Python against `sessionrec evaluate`, on a busy machine.

Each case runs in a fresh interpreter (OpenMP reads its wait policy when torch loads):

- ``sessionrec first``: ``import sessionrec as sr`` then ``sr.evaluate`` (a notebook's usual
  order; sessionrec sets ``OMP_WAIT_POLICY=PASSIVE`` before torch loads);
- ``torch first``: ``import torch`` before sessionrec, no policy in the environment (evaluate
  then runs on one torch thread);
- ``reference: before the fix``: torch first with sessionrec's fallback switched off, i.e. the
  library as it was (spinning OpenMP threads, torch's default thread count);
- ``CLI``: ``sessionrec evaluate MODEL DATA`` (its own "predictions: ... in X s" figure).

``--busy N`` keeps N busy-loop processes running during the measurements, so that the cores
are as contended as on a shared machine (the slowdown shows only then).

    python benchmarks/python_api_speed.py --data DATA_DIR --model MODEL_DIR [--busy N] \
        [--repeats 3] [--json FILE]

Without ``--data``/``--model`` it prepares ML-100K (acceptance protocol) and trains GRU4Rec for
one epoch on train+valid into a temporary folder.
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
from pathlib import Path

CASE = """
import sys, time
if {torch_first}:
    import torch
import sessionrec as sr
import sessionrec._threads
if {old}:
    sessionrec._threads._SPINNING = False
from sessionrec.models import load_model
import torch
model = load_model({model!r}); data = sr.PreparedData({data!r})
t0 = time.perf_counter()
res = sr.evaluate(model, data.test)
print(time.perf_counter() - t0, res.predictions, torch.get_num_threads())
"""

CASES = {
    "sessionrec first": {"torch_first": False, "old": False},
    "torch first": {"torch_first": True, "old": False},
    "reference: before the fix": {"torch_first": True, "old": True},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path)
    ap.add_argument("--model", type=Path)
    ap.add_argument("--source", default="ml-100k")
    ap.add_argument("--busy", type=int, default=0, help="Busy-loop processes during the runs.")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if args.data is None or args.model is None:
        tmp = Path(tempfile.mkdtemp(prefix="api-speed-"))
        args.data, args.model = tmp / "data", tmp / "gru4rec"
        sr_cli = [sys.executable, "-m", "sessionrec"]
        subprocess.run(
            [*sr_cli, "prepare", args.source, "--out", str(args.data), "--session-gap", "1h",
             "--split", "time", "--test-days", "21", "--valid-days", "21"],
            check=True, env=env, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        subprocess.run(
            [*sr_cli, "train", str(args.data), "--model", "gru4rec", "--out", str(args.model),
             "-p", "n_epochs=1", "--fit-on", "train+valid"],
            check=True, env=env, stdout=subprocess.DEVNULL,
        )  # fmt: skip
    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)
    ]
    times: dict[str, list[float]] = {name: [] for name in [*CASES, "CLI"]}
    info: dict[str, list[str]] = {}
    try:
        for _ in range(args.repeats):  # cases interleaved: the machine's load drifts
            for name, case in CASES.items():
                code = CASE.format(model=str(args.model), data=str(args.data), **case)
                out = subprocess.run(
                    [sys.executable, "-c", code], check=True, env=env, capture_output=True,
                    text=True,
                ).stdout.split()  # fmt: skip
                times[name].append(float(out[0]))
                info[name] = out
            text = subprocess.run(
                [sys.executable, "-m", "sessionrec", "evaluate", str(args.model), str(args.data)],
                check=True, env={**env, "COLUMNS": "200"}, capture_output=True, text=True,
            ).stdout  # fmt: skip
            found = re.search(r"in ([0-9.]+) s", text)
            assert found, text
            times["CLI"].append(float(found.group(1)))
    finally:
        for p in burners:
            p.kill()
    rows = []
    for name, ts in times.items():
        row: dict[str, object] = {
            "case": name,
            "seconds": ts,
            "seconds_median": statistics.median(ts),
        }
        if name in info:
            row.update(predictions=int(info[name][1]), torch_threads_after=int(info[name][2]))
        rows.append(row)
    ref = statistics.median(times["reference: before the fix"])
    for r in rows:
        r["speedup_vs_reference"] = ref / statistics.median(times[str(r["case"])])
        print(f"{r['case']:28s} {r['seconds_median']:7.2f} s (median of {args.repeats}), "
              f"{r['speedup_vs_reference']:.1f}x the reference")  # fmt: skip
    print(f"busy processes: {args.busy}, cores: {os.cpu_count()}")
    if args.json:
        args.json.write_text(json.dumps({"busy": args.busy, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
