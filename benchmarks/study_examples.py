"""Run the example studies of ``examples/`` and print their tables as Markdown, with run times.

    python benchmarks/study_examples.py --out runs/examples [--only ml100k-sessions] \
        [--json benchmarks/results/study_examples.json]

Each example runs as `sessionrec experiment examples/NAME.toml --out OUT/NAME` from an empty
folder (a fresh cache: every cell computed), timed by the wall clock; then every row of its
results.json is printed (metric values with their 95 % intervals), and its paired differences.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = [
    "ml100k-sessions",
    "yoochoose-sessions",
    "ml100k-ratings",
    "ml100k-bpr",
    "ml100k-two-tower",
]


def run(name: str, out: Path) -> float:
    folder = out / name
    if folder.exists():
        shutil.rmtree(folder)
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "sessionrec", "experiment", str(ROOT / "examples" / f"{name}.toml"),
         "--out", str(folder)],
        check=True,
    )  # fmt: skip
    return time.perf_counter() - t0


def table(result: dict[str, Any]) -> str:
    shown = result["shown"]
    lines = []
    for target, text in result["targets"].items():
        lines.append(f"*{target} targets*: {text}.\n")
        lines.append("| sessions | model | predictions | " + " | ".join(shown) + " | fit s |")
        lines.append("| --- | --- | ---: | " + " | ".join("---:" for _ in shown) + " | ---: |")
        for r in result["rows"]:
            if r["target"] != target:
                continue
            m = r["metrics"]
            cells = [f"{m[n]['value']:.4f} [{m[n]['low']:.4f}, {m[n]['high']:.4f}]" for n in shown]
            lines.append(
                f"| {r['sessions']} | {r['model']} | {r['predictions']:,} | "
                + " | ".join(cells)
                + f" | {r['fit_seconds']:.0f} |"
            )
        lines.append("")
    if result["comparisons"]:
        lines.append("| compare | target set | A | B | metric | A − B [95 %] | p |")
        lines.append("| --- | --- | --- | --- | --- | ---: | ---: |")
        for c in result["comparisons"]:
            p = ("< " if c["p_value_is_bound"] else "") + f"{c['p_value']:.3g}"
            lines.append(
                f"| {c['compare']} | {c['target']} | {c['a']['sessions']} · {c['a']['model']} | "
                f"{c['b']['sessions']} · {c['b']['model']} | {c['metric']} | "
                f"{c['difference']:+.4f} [{c['low']:+.4f}, {c['high']:+.4f}] | {p} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--only", nargs="*", default=EXAMPLES, choices=EXAMPLES)
    ap.add_argument("--no-run", action="store_true", help="Print the tables of earlier runs.")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    record = {}
    for name in args.only:
        seconds = None if args.no_run else run(name, args.out)
        result = json.loads((args.out / name / "results.json").read_text())
        took = "" if seconds is None else f" ({seconds:.0f} s wall)"
        print(f"### `examples/{name}.toml`{took}\n")
        print(table(result))
        record[name] = {"seconds": seconds, "rows": result["rows"]}
    if args.json:
        args.json.write_text(json.dumps(record, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
