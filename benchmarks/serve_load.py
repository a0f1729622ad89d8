"""Load test of `sessionrec serve` on loopback: events/s and latency percentiles.

Trains pop, vsknn and gru4rec on the ML-100K acceptance protocol (session gap 1 h, min length
2, min support 5, 21/21-day time split), then for each model, session store and worker count
starts `sessionrec serve` as its own process and streams the test part's events into it with
`wrk` (Debian package; one load-generator thread, C): every request is
``POST /v1/sessions/{id}/events`` with the next event of one of the test sessions, the sessions
interleaved so that many are live at once (the events of ``--live`` sessions in round robin).
Each run reports requests/s, wrk's p50/p90/p99 latency (client side, loopback), non-2xx
answers, the CPU the load generator used (its user + system time over the run's wall time)
and the CPU the server used per event, and (from the server's /metrics) how many events its
batcher answered together on average. With several workers, the busiest worker process's
share of the server's CPU (0.5 for two sharing evenly, 1.0 when one took every connection).

``--rate R`` paces wrk at R requests/s in all (a schedule shared by the connections, in its
Lua script): latency at a target rate, rather than at saturation; ``late`` counts requests
that could not leave on time (the server fell behind). ``--baseline REF`` also serves every
configuration from the ``src/`` of git ref REF (``git archive``), alternating with this
checkout, so that before and after are measured in the same run on the same machine load.

    PYTHONPATH=src python benchmarks/serve_load.py --source ../shared/data/ml-100k \\
        --seconds 10 --workers 1 2 --stores sqlite redis --rate 0 1000 --baseline main

Writes benchmarks/results/serve_load.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: label → (registered model, its parameters; None: the defaults)
MODELS: dict[str, tuple[str, dict[str, Any] | None]] = {
    "pop": ("pop", None),
    "vsknn": ("vsknn", None),  # sample_size auto: exact search on ML-100K
    "vsknn-m500": ("vsknn", {"sample_size": 500}),  # the m = 500 sample, for comparison
    # a short fit (the default architecture, one layer of 300 units): the service's speed
    # does not depend on how well the weights were trained
    "gru4rec": ("gru4rec", {"n_epochs": 1, "n_sample": 256, "batch_size": 128}),
}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def train(source: str, work: Path, names: list[str]) -> tuple[Path, list[tuple[str, Any]]]:
    """Model folders for every model, and the test part's events as (session, item id)."""
    import sessionrec as sr
    from sessionrec.models import create

    data = sr.prepare(
        source,
        work / "prepared",
        session="1h",
        split="time",
        test_days=21,
        valid_days=21,
        overwrite=True,  # the same parameters: the same folder again
    )
    ids = data.items.sort("item_idx")["item_id"].to_list()
    for name in names:
        kind, params = MODELS[name]
        out = work / name
        if not (out / "config.json").exists():
            model = create(kind, params).fit(data.train)
            model.items = data.items
            model.save(out)
    test = data.test
    events = []
    for s in range(test.n_sessions):
        lo, hi = int(test.offsets[s]), int(test.offsets[s + 1])
        events += [(str(s), ids[i]) for i in test.items[lo:hi]]
    return work, events


def interleave(events: list[tuple[str, Any]], live: int) -> list[tuple[str, Any]]:
    """Round robin over ``live`` sessions at a time: each event comes after its session's
    previous one, and ``live`` sessions receive events concurrently."""
    by: dict[str, list[Any]] = {}
    for sid, item in events:
        by.setdefault(sid, []).append(item)
    queue = list(by.items())
    active: list[tuple[str, list[Any]]] = []
    out: list[tuple[str, Any]] = []
    nxt = 0
    while queue[nxt:] or active:
        while len(active) < live and nxt < len(queue):
            sid, items = queue[nxt]
            active.append((sid, list(items)))
            nxt += 1
        keep = []
        for sid, items in active:
            out.append((sid, items.pop(0)))
            if items:
                keep.append((sid, items))
        active = keep
    return out


# Pacing: one schedule of send times, one every 1000/rate ms, shared by the connections of
# the (single) wrk thread; a request whose time has passed leaves at once and counts as late.
PACE = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } sr_timespec;
int clock_gettime(int clk, sr_timespec *tp);
]]
local ts = ffi.new("sr_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
local interval = 1000 / RATE
local next_t = nil
late = 0
delay = function()
  local t = now_ms()
  if next_t == nil then next_t = t end
  next_t = next_t + interval
  local d = next_t - t
  if d < 0 then
    late = late + 1
    return 0
  end
  return d
end
local threads = {}
setup = function(thread) table.insert(threads, thread) end
done = function(summary, latency, requests)
  local n = 0
  for _, thread in ipairs(threads) do n = n + (thread:get("late") or 0) end
  io.write(string.format("late requests: %d\\n", n))
end
"""


def wrk_script(
    path: Path, stream: list[tuple[str, Any]], run_id: str, k: int, rate: float = 0
) -> None:
    lines = [PACE.replace("RATE", repr(float(rate)))] if rate > 0 else []
    lines += [
        "local reqs = {}",
        'local h = {["Content-Type"] = "application/json"}',
        "init = function(args)",
    ]
    for sid, item in stream:
        body = json.dumps({"item": item, "k": k}).replace("\\", "\\\\").replace('"', '\\"')
        lines.append(
            f'  reqs[#reqs + 1] = wrk.format("POST", "/v1/sessions/{run_id}-{sid}/events", h, "{body}")'
        )
    lines += [
        "end",
        "local i = 0",
        "request = function()",
        "  i = i % #reqs + 1",
        "  return reqs[i]",
        "end",
    ]
    path.write_text("\n".join(lines) + "\n")


def start_server(
    folder: Path, state: str, workers: int, port: int, log: Path, src: Path = ROOT / "src"
) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-c",
        "from sessionrec.cli import main; main()",
        "serve",
        str(folder),
        "--port",
        str(port),
        "--state",
        state,
        "--workers",
        str(workers),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(src)}
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=out, env=env)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"serve did not start: {log.read_text()[-2000:]}")


def parse_wrk(text: str) -> dict[str, Any]:
    def ms(v: str) -> float:
        m = re.match(r"([\d.]+)(us|ms|s)", v)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]

    out: dict[str, Any] = {}
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", text, re.M)
        out[f"p{pct}_ms"] = ms(m.group(1)) if m else float("nan")
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    out["requests_per_s"] = float(m.group(1)) if m else float("nan")
    m = re.search(r"(\d+) requests in", text)
    out["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: (.*)", text)
    out["socket_errors"] = m.group(1).strip() if m else ""
    m = re.search(r"late requests: (\d+)", text)
    out["late"] = int(m.group(1)) if m else None
    return out


def server_cpu(pid: int) -> float:
    """User + system CPU seconds of the server process and its workers so far."""
    return sum(process_cpu(pid).values())


def process_cpu(pid: int) -> dict[int, float]:
    """User + system CPU seconds so far of the server process and of each of its children."""
    import psutil

    root = psutil.Process(pid)
    out = {}
    for p in [root, *root.children(recursive=True)]:
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return out


def batch_counts(port: int) -> tuple[float, float] | None:
    """(events, batches) answered so far by the server's event batcher, from ``/metrics``
    (summed over the workers); None for a version without the batcher."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    total = count = None
    for line in text.splitlines():
        if line.startswith("sessionrec_event_batch_size_sum"):
            total = float(line.split()[-1])
        elif line.startswith("sessionrec_event_batch_size_count"):
            count = float(line.split()[-1])
    return None if total is None or count is None else (total, count)


def run_wrk(port: int, script: Path, seconds: int, connections: int, pid: int) -> dict[str, Any]:
    batches_before = batch_counts(port)
    each_before = process_cpu(pid)
    server_before = sum(each_before.values())
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out = parse_wrk(res.stdout)
    out["loadgen_cores"] = round(cpu / wall, 2)
    each_after = process_cpu(pid)
    server = sum(each_after.values()) - server_before
    # the busiest worker process's share of the server's CPU over the run: with two workers
    # 0.5 when they share the load evenly, 1.0 when one took every connection
    each = [each_after[p] - each_before.get(p, 0.0) for p in each_after if p != pid]
    out["busiest_worker_share"] = round(max(each) / sum(each), 2) if sum(each) > 0 else None
    out["server_cores"] = round(server / wall, 2)
    # CPU the server spent per event: a figure the other jobs on the machine do not inflate
    # (much), and what a core of its own would turn into events/s
    out["server_cpu_ms_per_event"] = round(1000 * server / max(out["requests"], 1), 3)
    batches_after = batch_counts(port)
    out["mean_batch"] = None
    if batches_before is not None and batches_after is not None:
        events = batches_after[0] - batches_before[0]
        out["mean_batch"] = round(events / max(batches_after[1] - batches_before[1], 1), 2)
    return out


def baseline_src(ref: str, work: Path) -> Path:
    """``src/`` of git ref ``ref``, extracted under ``work`` (once per commit)."""
    sha = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", ref], capture_output=True, text=True, check=True
    ).stdout.strip()
    out = work / f"baseline-{sha[:12]}"
    if not (out / "src").exists():
        out.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", sha, "src"], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return out / "src"


def redis_server(work: Path) -> tuple[subprocess.Popen[bytes] | None, str | None]:
    exe = shutil.which("redis-server")
    if exe is None:
        return None, None
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    return proc, f"redis://127.0.0.1:{port}/0"


def measure(
    args: argparse.Namespace,
    work: Path,
    stream: list[tuple[str, Any]],
    name: str,
    store: str,
    workers: int,
    rate: float,
    src: Path,
) -> dict[str, Any]:
    """One server for one configuration, warmed up, then one measured wrk run."""
    tmp = Path(tempfile.mkdtemp(dir=args.work))
    state = args.redis_url if store == "redis" else str(tmp / "sessions.sqlite")
    port = free_port()
    run_id = f"r{int(time.time() * 1000) % 10**9}"
    script = tmp / "events.lua"
    wrk_script(script, stream, run_id, args.k, rate)
    proc = start_server(work / name, state, workers, port, tmp / "serve.log", src)
    try:
        run_wrk(port, script, 2, args.connections, proc.pid)  # warm up
        return run_wrk(port, script, args.seconds, args.connections, proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", default="ml-100k")
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "_work" / "serve_load")
    ap.add_argument("--models", nargs="+", default=["pop", "vsknn", "gru4rec"], choices=MODELS)
    ap.add_argument("--stores", nargs="+", default=["sqlite", "redis"])
    ap.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--live", type=int, default=500, help="sessions receiving events at once")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument(
        "--rate",
        nargs="+",
        type=float,
        default=[0.0],
        help="requests/s wrk is paced at (0: as fast as the server answers)",
    )
    ap.add_argument("--baseline", help="git ref whose src/ is measured too (before vs after)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve_load.json")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("needs wrk (Debian: apt-get install -y wrk)")
    args.work.mkdir(parents=True, exist_ok=True)
    work, events = train(args.source, args.work, args.models)
    stream = interleave(events, args.live)
    redis_proc, redis_url = redis_server(args.work) if "redis" in args.stores else (None, None)
    args.redis_url = redis_url
    versions = [("after", ROOT / "src")]
    if args.baseline:
        versions.insert(0, ("before", baseline_src(args.baseline, args.work)))
    rows = []
    try:
        for name in args.models:
            for store in args.stores:
                if store == "redis" and redis_url is None:
                    print("redis: no redis-server, skipped", file=sys.stderr)
                    continue
                for workers in args.workers:
                    for rate in args.rate:
                        for version, src in versions:
                            res = measure(args, work, stream, name, store, workers, rate, src)
                            row = {
                                "version": version,
                                "model": name,
                                "store": store,
                                "workers": workers,
                                "rate": rate,
                                **res,
                            }
                            rows.append(row)
                            print(json.dumps(row), flush=True)
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
    meta = {
        "command": " ".join(sys.argv),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_average": os.getloadavg(),
        "events_in_stream": len(stream),
        "connections": args.connections,
        "live_sessions": args.live,
        "k": args.k,
        "baseline": args.baseline,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "runs": rows}, indent=2) + "\n")
    print(
        "\n| version | model | store | workers | target/s | events/s | p50 ms | p90 ms "
        "| p99 ms | late | non-2xx | server cores used | server CPU ms/event "
        "| load-generator cores | events per batch | busiest worker's CPU share |"
    )
    print(
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: | ---: |"
    )
    for r in rows:
        target = f"{r['rate']:,.0f}" if r["rate"] else "max"
        late = "" if r["late"] is None else r["late"]
        print(
            f"| {r['version']} | {r['model']} | {r['store']} | {r['workers']} | {target} | "
            f"{r['requests_per_s']:,.0f} | {r['p50_ms']:.1f} | {r['p90_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {late} | {r['non_2xx']} | {r['server_cores']} | "
            f"{r['server_cpu_ms_per_event']} | {r['loadgen_cores']} | "
            f"{'' if r['mean_batch'] is None else r['mean_batch']} | "
            f"{'' if r.get('busiest_worker_share') is None else r['busiest_worker_share']} |"
        )
    print(f"\nload average at the end: {meta['load_average']}")


if __name__ == "__main__":
    main()
