"""A hostile trial of `serve` (and the files and options around it): many cases per class of
fault, each judged by what a user or an operator would see. Prints, per class, the cases tried
and the tracebacks, HTTP 500s, silent wrong results and lost acknowledged events (target: 0),
and writes them to benchmarks/results/hostile_serve.json.

    .venv/bin/python benchmarks/hostile_serve.py [--cases N]

Needs the serve extra; the Redis class runs when `redis-server` is installed.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _serve_helpers import free_port, model_folder
from fastapi.testclient import TestClient

from sessionrec.cli import main as cli_main
from sessionrec.serving import ServeConfig, build_app

COUNTS: dict[str, Counter[str]] = {}


def tally(cls: str, **kw: int) -> None:
    c = COUNTS.setdefault(cls, Counter())
    c["cases"] += 1
    for k, v in kw.items():
        c[k] += v


def cli(argv: list[str]) -> tuple[int, str]:
    """Run the CLI in-process, stderr captured: (exit code, stderr)."""
    import contextlib
    import io

    err = io.StringIO()
    code = 0
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            cli_main(argv)
        except SystemExit as exc:
            code = int(exc.code or 0)
        except Exception:  # a traceback reaching the user
            return 99, "Traceback"
    return code, err.getvalue()


def judge_cli(cls: str, argv: list[str]) -> None:
    code, err = cli(argv)
    lines = [x for x in err.splitlines() if x.strip()]
    tally(
        cls,
        tracebacks=int("Traceback" in err or code == 99),
        silent_wrong=int(code == 0),
        not_one_line=int(code != 0 and len(lines) != 1),
    )


def bodies(rng: random.Random, n: int) -> list[bytes]:
    specials = ["NaN", "Infinity", "-Infinity", "1e999", "-1e400", "1" * 5000, "true", "null"]
    out = []
    for _ in range(n):
        kind = rng.randrange(4)
        v = rng.choice(specials)
        if kind == 0:
            out.append(f'{{"item": {v}}}'.encode())
        elif kind == 1:
            out.append(f'{{"items": [100, {v}], "k": {rng.choice(specials)}}}'.encode())
        elif kind == 2:
            d = rng.choice([40, 900, 5000, 100_000])
            out.append(b"[" * d + b"]" * d)
        else:
            field = rng.choice(["k", "exclude_seen", "model", "event_id", "item"])
            out.append(
                json.dumps({"item": 100, field: rng.choice([True, "5", 5.0, [1], {}])}).encode()
            )
    return out


def trial_http(folder: Path, work: Path, n: int, rng: random.Random) -> None:
    app = build_app(ServeConfig(model_dirs=(str(folder),), state=str(work / "s.sqlite")))
    with TestClient(app, raise_server_exceptions=False) as c:
        routes = [("POST", "/v1/sessions/h/events"), ("POST", "/v1/recommend"),
                  ("POST", "/admin/reload"), ("GET", "/v1/models"), ("DELETE", "/v1/sessions/h")]  # fmt: skip
        for body in bodies(rng, n):
            method, path = rng.choice(routes)
            r = c.request(method, path, content=body, headers={"content-type": "application/json"})
            ok = r.status_code < 500
            clean = True
            if 400 <= r.status_code < 500:
                try:
                    clean = isinstance(r.json()["detail"], str)
                except Exception:
                    clean = False
            tally("1 bodies that are not JSON", http_500=int(not ok), not_one_line=int(not clean),
                  silent_wrong=int(r.status_code == 200 and path.endswith("events")))  # fmt: skip


def trial_options(folder: Path, work: Path) -> None:
    serve_bad = [("--session-ttl", v) for v in ("nan", "inf", "-1", "0", "1e400", "-5m")]
    serve_bad += [(o, v) for o in ("--max-session-events", "--max-body", "--workers", "--threads")
                  for v in ("0", "-1")]  # fmt: skip
    serve_bad += [("--port", "-1"), ("--port", "99999")]
    import sessionrec.serving

    real = sessionrec.serving.run
    sessionrec.serving.run = lambda config: None  # type: ignore[assignment]
    try:
        for opt, v in serve_bad:
            code, err = cli(["serve", str(folder), "--state", "memory", f"{opt}={v}"])
            tally("3 option ranges", tracebacks=int(code == 99), silent_wrong=int(code == 0),
                  not_one_line=int(code != 0 and opt not in err))  # fmt: skip
    finally:
        sessionrec.serving.run = real
    for opt, v in [("--timeout", x) for x in ("nan", "inf", "0", "-1")] + [
        ("--trials", "-1"),
        ("--cutoffs", "0"),
    ]:
        judge_cli("3 option ranges",
                  ["tune", str(work / "nodata"), "--model", "pop", "--out", str(work / "t"), f"{opt}={v}"])  # fmt: skip


def trial_stores_at_start(folder: Path, work: Path) -> None:
    from sessionrec.serving.state import SQLiteStore

    good = work / "good.sqlite"
    st = SQLiteStore(good, 1e9, 200)
    for i in range(2000):
        st.append(f"s{i % 40}", str(i), 1.0)
    st.close()
    data = good.read_bytes()
    cases: list[str] = []
    for frac in (0.1, 0.3, 0.5, 0.7, 0.9):
        p = work / f"trunc{frac}.sqlite"
        p.write_bytes(data[: int(len(data) * frac)])
        cases.append(str(p))
    for off in range(4096, len(data) - 4096, max(4096, len(data) // 6)):
        b = bytearray(data)
        b[off : off + 4096] = os.urandom(4096)
        p = work / f"garbled{off}.sqlite"
        p.write_bytes(bytes(b))
        cases.append(str(p))
    (work / "text.sqlite").write_text("a,b\n1,2\n" * 50)
    (work / "dir.sqlite").mkdir()
    (work / "afile").write_text("x")
    cases += [str(work / "text.sqlite"), str(work / "dir.sqlite"), str(work / "afile" / "s.db"),
              f"redis://127.0.0.1:{free_port()}/0", "redis://127.0.0.1:nope/0",
              "redis://127.0.0.1:6379/notadb", "mysql://x/y"]  # fmt: skip
    for state in cases:
        judge_cli("2 stores at start", ["serve", str(folder), "--state", state])


def trial_stores_running(folder: Path, work: Path, n: int) -> None:
    """Events sent while the store is deleted, replaced or blocked: every 200 must be in the
    file on disk afterwards (else it was acknowledged and lost)."""
    import sqlite3

    for round_ in range(n):
        root = work / f"run{round_}"
        root.mkdir()
        path = root / "state" / "s.sqlite"
        app = build_app(ServeConfig(model_dirs=(str(folder),), state=str(path)))
        acked: dict[str, list[str]] = {}
        with TestClient(app, raise_server_exceptions=False) as c:
            for i in range(30):
                sid = f"s{i % 3}"
                if i == 10:
                    for suffix in ("", "-wal", "-shm"):
                        Path(f"{path}{suffix}").unlink(missing_ok=True)
                    acked.clear()  # the operator deleted them: only later ones must stay
                if i == 20 and round_ % 2:
                    shutil.rmtree(path.parent)
                    path.parent.write_text("blocked")
                if i == 25 and round_ % 2:
                    path.parent.unlink()
                    acked.clear()
                r = c.post(f"/v1/sessions/{sid}/events", json={"item": 100 + i % 12})
                if r.status_code == 200:
                    acked.setdefault(sid, []).append(str(100 + i % 12))
                tally(
                    "2 stores while serving",
                    http_500=int(r.status_code >= 500 and r.status_code != 503),
                )
        db = sqlite3.connect(path)
        for sid, items in acked.items():
            stored = [row[0] for row in db.execute(
                "SELECT item FROM events WHERE session = ? ORDER BY seq", (sid,))]  # fmt: skip
            lost = len(items) - len([x for x in items if x in stored])
            COUNTS["2 stores while serving"]["lost"] += max(0, lost)
        db.close()


def trial_redis(folder: Path, work: Path, n: int) -> None:
    exe = shutil.which("redis-server")
    if exe is None:
        return
    port = free_port()

    def start() -> subprocess.Popen[bytes]:
        import redis

        p = subprocess.Popen([exe, "--port", str(port), "--save", "", "--appendonly", "yes",
                              "--appendfsync", "always", "--dir", str(work)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        for _ in range(200):
            try:
                redis.Redis(port=port).ping()
                return p
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    proc = start()
    app = build_app(ServeConfig(model_dirs=(str(folder),), state=f"redis://127.0.0.1:{port}/0"))
    acked: list[str] = []
    with TestClient(app, raise_server_exceptions=False) as c:
        for i in range(n):
            if i % 10 == 5:
                proc.kill()
                proc.wait()
            if i % 10 == 8:
                proc = start()
            r = c.post("/v1/sessions/r/events", json={"item": 100 + i % 12, "event_id": f"e{i}"})
            if r.status_code == 200:
                acked.append(str(100 + i % 12))
            tally(
                "2 stores while serving",
                http_500=int(r.status_code >= 500 and r.status_code != 503),
            )
        if proc.poll() is not None:
            proc = start()
        got = c.get("/v1/sessions/r").json()
        stored = [str(x["item_id"]) for x in got.get("items", [])]
        COUNTS["2 stores while serving"]["lost"] += max(0, len(acked) - len(stored))
    proc.kill()


def trial_idempotency(work: Path) -> None:
    from sessionrec.serving.state import MemoryStore, SQLiteStore

    for store in (SQLiteStore(work / "idem.sqlite", 1e9, 4), MemoryStore(1e9, 4)):
        for i in range(12):
            store.append("s", str(i), 1.0, event_id=f"e{i}")
        for i in range(12):
            _, applied = store.append("s", str(i), 2.0, event_id=f"e{i}")
            tally("4 idempotency", silent_wrong=int(applied))


def trial_model_folder(work: Path) -> None:
    damages = [("eval.json", '{"predictions": NaN, "protocol": {}}'), ("data_meta.json", "{oops"),
               ("training.json", "[" * 30000 + "]" * 30000), ("config.json", "x"),
               ("weights.safetensors", None), ("items.parquet", None)]  # fmt: skip
    for name, content in damages:
        folder = model_folder("pop", work / f"m-{name}")
        with TestClient(build_app(ServeConfig(model_dirs=(str(folder),), state="memory")),
                        raise_server_exceptions=False) as c:  # fmt: skip
            if content is None:
                (folder / name).unlink()
            else:
                (folder / name).write_text(content)
            for path in ("/v1/models", "/readyz", "/metrics"):
                r = c.get(path)
                tally("5 files re-read", http_500=int(r.status_code >= 500))
            r = c.post("/v1/sessions/a/events", json={"item": 100})
            tally("5 files re-read", http_500=int(r.status_code >= 500),
                  silent_wrong=int(r.status_code != 200))  # fmt: skip


def trial_formats(work: Path) -> None:
    for tag in ("sessionrec.model/99", "sessionrec.model/2", "x/1", "sessionrec.model/"):
        folder = model_folder("pop", work / f"f-{tag.replace('/', '_')}")
        cfg = json.loads((folder / "config.json").read_text())
        cfg["format"] = tag
        (folder / "config.json").write_text(json.dumps(cfg))
        judge_cli("7 format tags", ["serve", str(folder), "--state", "memory"])


def trial_gzip(work: Path) -> None:
    rows = "user_id,item_id,timestamp\n" + "".join(
        f"{u},{i},{1_000_000_000 + u * 100 + i}\n" for u in range(60) for i in range(20)
    )
    data = gzip.compress(rows.encode())
    for k, cut in enumerate((0.2, 0.5, 0.9, 0.99)):
        (work / f"t{k}.csv.gz").write_bytes(data[: int(len(data) * cut)])
        for verb in ("explore", "prepare"):
            judge_cli(
                "9 damaged .gz",
                [verb, str(work / f"t{k}.csv.gz"), "--out", str(work / f"o{k}{verb}")],
            )
    for k in range(4):
        b = bytearray(data)
        b[len(b) // 3 + k * 50 : len(b) // 3 + k * 50 + 30] = b"\xaa" * 30
        (work / f"c{k}.csv.gz").write_bytes(bytes(b))
        judge_cli(
            "9 damaged .gz", ["explore", str(work / f"c{k}.csv.gz"), "--out", str(work / f"oc{k}")]
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=200, help="Generated request bodies.")
    args = ap.parse_args()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder = model_folder("vsknn", work / "vsknn")
        trial_http(folder, work, args.cases, rng)
        trial_options(folder, work)
        trial_stores_at_start(folder, work)
        trial_stores_running(folder, work, 4)
        trial_redis(folder, work, 40)
        trial_idempotency(work)
        trial_model_folder(work)
        trial_formats(work)
        trial_gzip(work)
    fields = ("cases", "tracebacks", "http_500", "silent_wrong", "lost", "not_one_line")
    print(f"{'class':<28}" + "".join(f"{f:>14}" for f in fields))
    for cls in sorted(COUNTS):
        print(f"{cls:<28}" + "".join(f"{COUNTS[cls][f]:>14}" for f in fields))
    out = Path(__file__).parent / "results" / "hostile_serve.json"
    out.write_text(json.dumps({c: dict(v) for c, v in sorted(COUNTS.items())}, indent=1) + "\n")


if __name__ == "__main__":
    main()
