"""Studies (`sessionrec experiment`): spec errors, cells computed once, resume after kill -9,
common targets identical across definitions, two workers (SQLite, PostgreSQL) = one worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from _helpers import run_cli
from test_tune import postgres  # noqa: F401  (the throw-away PostgreSQL cluster)

import sessionrec as sr
from sessionrec.errors import DataError
from sessionrec.prepare.data import PreparedData
from sessionrec.study import experiment, parse_spec, plan
from sessionrec.study.compute import Store
from sessionrec.study.report import stable

SRC = Path(__file__).resolve().parents[1] / "src"


def write_log(path: Path) -> Path:
    """24 users, each with 4 sessions of 5 clicks (a minute apart) 3 hours apart, over 12
    days; items follow one of 3 cycles (a Markov chain learns them, popularity does not)."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(24):
        cycle = [(u % 3) * 10 + j for j in range(10)]
        for s in range(4):
            start = 1_700_000_000 + u * 12 * 3600 + s * 3 * 3600
            first = int(rng.integers(10))
            for j in range(5):
                rows.append((u, cycle[(first + j) % 10] + 1, start + 60 * j))
    pl.DataFrame(rows, schema=["user_id", "item_id", "timestamp"], orient="row").write_csv(path)
    return path


SPEC = """
name = "tiny"
[data]
source = "log.csv"

[[sessions]]
label = "user"
session = "user"

[[sessions]]
label = "1h"
session = "1h"
min_session_length = 2

[filters]
min_item_support = 1

[split]
method = "time"
test_days = 3
valid_days = 2

[[models]]
name = "pop"

[[models]]
name = "markov"

[evaluation]
cutoffs = [5]
n_boot = 50

[example]
items = [1, 2]
k = 3
"""


@pytest.fixture
def study(tmp_path: Path) -> Path:
    write_log(tmp_path / "log.csv")
    (tmp_path / "spec.toml").write_text(SPEC)
    return tmp_path / "spec.toml"


def _edit(spec: Path, old: str, new: str) -> None:
    text = spec.read_text()
    assert old in text
    spec.write_text(text.replace(old, new))


# -- the spec -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "marker", "says"),
    [
        (('name = "markov"', 'name = "markov"\nk = 3'), "k = 3", "models[1].k"),
        (('name = "markov"', 'name = "markov"\nparams = { normalise = true }'), "params =",
         "normalise"),
        (('name = "markov"', 'name = "markvo"'), "markvo", "a next-item model"),
        (('session = "1h"', 'session = "1 hour"'), "1 hour", "sessions[1].session"),
        (("test_days = 3", "test_days = 'three'"), "three", "split.test_days"),
        (("[evaluation]", "[evaluation]\ntarget = ['own']"), "target =", "evaluation.target"),
        (("cutoffs = [5]", "cutoffs = [5, 5]"), "cutoffs", "do not repeat"),
    ],
)  # fmt: skip
def test_bad_specs_fail_naming_the_file_and_line(
    change: tuple[str, str], marker: str, says: str
) -> None:
    text = SPEC.replace(*change)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if marker in t)
    with pytest.raises(DataError) as err:
        parse_spec(text, "spec.toml")
    assert str(err.value).startswith(f"spec.toml:{line}:"), str(err.value)
    assert says in str(err.value)


def test_a_grid_expands_into_rows_and_the_spec_is_frozen() -> None:
    spec = parse_spec(SPEC.replace('name = "markov"', 'name = "sknn"\ngrid = { k = [5, 10] }'))
    sknn = spec.models[1]
    assert [label for label, _ in sknn.settings()] == ["sknn k=5", "sknn k=10"]
    assert [p for _, p in sknn.settings()] == [{"k": 5}, {"k": 10}]
    assert spec.sessions[1].filters.min_item_support == 1  # [filters] default
    with pytest.raises(AttributeError):
        spec.name = "x"  # type: ignore[misc]
    assert parse_spec(SPEC).digest() == parse_spec(SPEC).digest()


# -- a study end to end ---------------------------------------------------------------------------


def _common_by_hand(out: Path) -> list[set[tuple[Any, ...]]]:
    """Each definition's predicted test events (user, item, time), read from its prepared data
    without the study's code: the common set is their intersection."""
    sets = []
    for meta in sorted((out / "cache" / "prepared").glob("*/data/meta.json")):
        test = PreparedData(meta.parent).frame("test")
        test = test.with_columns(pl.int_range(pl.len()).over("session_id").alias("pos"))
        pred = test.filter(pl.col("target") & (pl.col("pos") > 0))
        sets.append(set(pred.select("user_id", "item_id", "timestamp").iter_rows()))
    return sets


def test_a_study_runs_every_cell_once_and_reports(study: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    lines: list[str] = []
    result = sr.experiment(study, out, on_progress=lines.append)
    assert result["computed"] == {"prepared": 2, "models": 4, "evals": 8, "common": 1}
    assert len(lines) == 4 and lines[-1].startswith("[4/4]") and "left" in lines[0]
    rows = result["rows"]
    assert {(r["sessions"], r["model"], r["target"]) for r in rows} == {
        (s, m, t) for s in ("user", "1h") for m in ("pop", "markov") for t in ("own", "common")
    }
    for r in rows:
        assert set(r) >= {"sessions", "model", "params", "target", "predictions", "metrics",
                          "chosen_by", "fit_seconds", "evaluate_seconds"}  # fmt: skip
        m = r["metrics"]["recall@5"]
        assert m["low"] <= m["value"] <= m["high"]
    # the common targets: the same events for every definition, found independently
    by_hand = _common_by_hand(out)
    common = set.intersection(*by_hand)
    assert 0 < len(common) < max(len(s) for s in by_hand)
    common_rows = [r for r in rows if r["target"] == "common"]
    assert {r["predictions"] for r in common_rows} == {len(common)}
    # the Markov chain learns the cycles, popularity does not: on identical targets
    diffs = {
        (c["a"]["sessions"], c["a"]["model"], c["target"], c["metric"]): c
        for c in result["comparisons"]
    }
    markov = diffs[("1h", "markov", "common", "recall@5")]
    assert markov["compare"] == "models" and markov["difference"] > 0.3 and markov["p_value"] < 0.1
    assert ("1h", "pop", "common", "recall@5") in diffs  # 1h against user, per model
    # the files
    on_disk = sr.experiment  # noqa: F841  (the Python and the file say the same)
    import json

    saved = json.loads((out / "results.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(rows))
    html = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    assert "common targets" in md and "Paired differences" in md and "data:image/png" in html
    assert "Top 3 for the example session" in md
    assert (out / "common-by-sessions.png").stat().st_size > 1000
    example = result["example"]["lists"]
    assert len(example) == 4 and all(len(e["top"]) == 3 for e in example)


def test_rerun_computes_nothing_and_a_changed_line_only_its_cells(
    study: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = sr.experiment(study, out)
    again = sr.experiment(study, out)
    assert again["computed"] == {}
    assert stable(again["rows"]) == stable(first["rows"])
    # a new model: its two cells (one per definition), nothing prepared again
    _edit(study, "[evaluation]", '[[models]]\nname = "sknn"\nparams = { k = 10 }\n\n[evaluation]')
    added = sr.experiment(study, out)
    assert added["computed"] == {"models": 2, "evals": 4}
    # its parameter changed: those two cells again, nothing else
    _edit(study, "k = 10", "k = 20")
    assert sr.experiment(study, out)["computed"] == {"models": 2, "evals": 4}
    # one definition's gap changed: its preparation and models; the common set changes, so
    # every common evaluation is new (its targets are), the user definition's own ones are not
    _edit(study, 'session = "1h"', 'session = "2h"')
    changed = sr.experiment(study, out)
    assert changed["computed"] == {"prepared": 1, "models": 3, "evals": 3 + 6, "common": 1}


def test_a_killed_run_resumes_without_recomputing_what_was_finished(
    study: Path, tmp_path: Path
) -> None:
    _edit(study, '[evaluation]',
          '[[models]]\nname = "gru4rec"\nparams = { n_epochs = 3, layers = [16], batch_size = 8 }'
          '\n\n[evaluation]')  # fmt: skip
    out = tmp_path / "out"
    code = f"import sessionrec as sr; sr.experiment({str(study)!r}, {str(out)!r})"
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)
    models = out / "cache" / "models"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(models.glob("*/done.json"))) < 3:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p.parent.name: p.stat().st_mtime_ns for p in models.glob("*/done.json")}
    assert 3 <= len(finished) < 6, "the run was to be killed in the middle"
    result = sr.experiment(study, out)
    assert result["computed"]["models"] == 6 - len(finished)
    assert result["reused"]["models"] == len(finished)
    for key, mtime in finished.items():
        assert (models / key / "done.json").stat().st_mtime_ns == mtime
    assert not list(models.glob(".tmp-*"))  # the killed run's half-written model is gone


def test_sliding_windows_give_a_figure_per_slice_and_their_mean(
    study: Path, tmp_path: Path
) -> None:
    _edit(study, "valid_days = 2", "valid_days = 1\nslices = 2\nwindow_days = 8\nstep_days = 4")
    p = plan(study)
    assert len(p.preparations) == 4 and len(p.cells) == 8
    result = sr.experiment(study, tmp_path / "out")
    assert {r["slice"] for r in result["rows"]} == {0, 1}
    summary = {(s["sessions"], s["model"], s["target"]): s for s in result["summary"]}
    s = summary[("1h", "markov", "own")]
    values = [r["metrics"]["recall@5"]["value"] for r in result["rows"]
              if (r["sessions"], r["model"], r["target"]) == ("1h", "markov", "own")]  # fmt: skip
    assert s["runs"] == 2
    assert s["metrics"]["recall@5"]["mean"] == pytest.approx(np.mean(values))
    assert s["metrics"]["recall@5"]["sd"] == pytest.approx(np.std(values, ddof=1))


def test_cli_dry_run_lists_cells_and_the_run_reports(
    study: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code, stdout, _ = run_cli(["experiment", str(study), "--out", str(out), "--dry-run"], capsys)
    assert code == 0 and "4 cells" in stdout and "(0 done)" in stdout
    assert not (out / "cache").exists()
    code, stdout, err = run_cli(["experiment", str(study), "--out", str(out)], capsys)
    assert code == 0 and "common targets" in stdout and "[4/4]" in err
    code, stdout, _ = run_cli(["experiment", str(study), "--out", str(out), "--dry-run"], capsys)
    assert "(4 done)" in stdout
    _edit(study, "[[models]]", "[[models]]\nfoo = 1")
    code, _, err = run_cli(["experiment", str(study), "--out", str(out)], capsys)
    assert code == 2 and f"{study}:" in err and "foo" in err


def test_a_foreign_folder_is_refused(study: Path, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    with pytest.raises(sr.errors.SessionrecError):
        experiment(study, out)
    assert (out / "notes.txt").read_text() == "keep"


# -- many workers ---------------------------------------------------------------------------------


def test_two_local_workers_on_sqlite_give_the_results_of_one(study: Path, tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    one = experiment(study, tmp_path / "one")
    two = experiment(study, tmp_path / "two", workers=2)
    assert stable(two["rows"]) == stable(one["rows"])
    assert stable(two["comparisons"]) == stable(one["comparisons"])
    store = Store(tmp_path / "two" / "cache")
    assert len(list(store.root.glob("models/*/done.json"))) == 4
    import json

    a = json.loads((tmp_path / "one" / "results.json").read_text())
    b = json.loads((tmp_path / "two" / "results.json").read_text())
    assert stable(a) == stable(b)


def _machine(study: Path, out: Path, storage: str) -> subprocess.Popen[bytes]:
    argv = ["experiment", str(study), "--out", str(out), "--storage", storage]
    code = f"from sessionrec.cli import main; main({argv!r})"
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)


def test_two_machines_on_postgresql_give_the_results_of_one(
    study: Path,
    tmp_path: Path,
    postgres: str,  # noqa: F811
) -> None:
    import json

    import optuna

    one = experiment(study, tmp_path / "one")
    shared = tmp_path / "shared"
    workers = [_machine(study, shared, postgres) for _ in range(2)]
    for w in workers:
        _, err = w.communicate(timeout=600)
        assert w.returncode == 0, err.decode()
    b = json.loads((shared / "results.json").read_text())
    assert stable(b["rows"]) == stable(one["rows"]) and b["code"] == one["code"]
    summaries = optuna.get_all_study_summaries(storage=postgres)
    (queue,) = [s for s in summaries if s.study_name.startswith("experiment-")]
    st = optuna.load_study(study_name=queue.study_name, storage=postgres)
    done = [t for t in st.get_trials() if t.state.name == "COMPLETE"]
    assert {t.user_attrs["cell"] for t in done} == {c.key for c in plan(study).cells}
    assert len({t.user_attrs["pid"] for t in done}) >= 1


# -- a YOOCHOOSE-layout log with sequential signal ------------------------------------------------


def test_synth_writes_the_yoochoose_layout_that_load_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sessionrec.synthetic import SyntheticLog

    out = tmp_path / "yc"
    argv = ["data", "synth", "ecommerce", "--out", str(out), "--sessions", "300", "--layout",
            "yoochoose"]  # fmt: skip
    code, stdout, _ = run_cli(argv, capsys)
    assert code == 0 and "yoochoose-clicks.dat" in stdout
    first = (out / "yoochoose-clicks.dat").read_text().splitlines()[0].split(",")
    assert first[0] == "1" and first[1].endswith("Z") and len(first[1]) == 24 and first[3] == "0"
    ds = sr.load(out)
    assert ds.name == "yoochoose"
    ev = ds.events
    back = SyntheticLog.load(out)
    assert ev.height == back.events.height == sr.load(out).events.height
    starts = ev.group_by("session_id").agg(pl.col("timestamp").min()).sort("session_id")
    assert starts["timestamp"].is_sorted()  # ids in the order sessions start, as in YOOCHOOSE
    # the same sessions as the generator's, renumbered
    gen = SyntheticLog.load(out).events
    assert sorted(gen.group_by("session_id").agg(pl.col("item_id"))["item_id"].to_list()) == (
        sorted(ev.group_by("session_id").agg(pl.col("item_id"))["item_id"].to_list())
    )


def test_on_the_synthetic_yoochoose_log_sequence_and_knn_models_beat_popularity(
    tmp_path: Path,
) -> None:
    spec = tmp_path / "yc.toml"
    spec.write_text(
        """
[data]
source = "synth:ecommerce"
synth_sessions = 6000

[[sessions]]
label = "log"
session = "column"

[filters]
min_item_support = 2

[split]
method = "time"
test_days = 4
valid_days = 1

[[models]]
name = "pop"

[[models]]
name = "markov"

[[models]]
name = "sknn"

[evaluation]
cutoffs = [20]
targets = ["own"]
n_boot = 200
"""
    )
    result = sr.experiment(spec, tmp_path / "out")
    assert len(list((tmp_path / "out" / "cache" / "synth").glob("*/log/yoochoose-clicks.dat"))) == 1
    diffs = {(c["a"]["model"], c["metric"]): c for c in result["comparisons"]}
    for model in ("markov", "sknn"):
        d = diffs[(model, "recall@20")]
        assert d["b"]["model"] == "pop" and d["difference"] > 0.05 and d["high"] > d["low"] > 0


def test_a_rating_study_cross_validates_every_model_on_the_same_folds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 40, 1500), rng.integers(0, 60, 1500)
    bias = rng.normal(0, 1, 60)
    rating = np.clip(np.round(3 + bias[items] + rng.normal(0, 0.5, 1500)), 1, 5)
    pl.DataFrame(
        {"user_id": users, "item_id": items, "rating": rating,
         "timestamp": 1_700_000_000 + np.arange(1500) * 60}
    ).unique(["user_id", "item_id"]).write_csv(tmp_path / "ratings.csv")  # fmt: skip
    (tmp_path / "r.toml").write_text(
        """
[data]
source = "ratings.csv"

[[models]]
name = "baseline"

[[models]]
name = "svd"
grid = { factors = [2, 4] }
params = { n_epochs = 3 }

[evaluation]
task = "rating"
folds = 3
"""
    )
    result = sr.experiment(tmp_path / "r.toml", tmp_path / "out")
    rows = result["rows"]
    assert [r["model"] for r in rows] == ["baseline", "svd factors=2", "svd factors=4"]
    code, stdout, _ = run_cli(["experiment", str(tmp_path / "r.toml"), "--out",
                               str(tmp_path / "out")], capsys)  # fmt: skip
    assert code == 0 and "rmse" in stdout and "computed nothing" in stdout
    n = rows[0]["predictions"]
    assert all(r["predictions"] == n and r["target"] == "folds" for r in rows)
    for r in rows:
        m = r["metrics"]["rmse"]
        assert m["low"] <= m["value"] <= m["high"] and 0.2 < m["value"] < 1.5
    diffs = [c for c in result["comparisons"] if c["metric"] == "rmse"]
    assert len(diffs) == 2 and all(c["b"]["model"] == "baseline" for c in diffs)
    assert "RMSE, MAE, FCP" in (tmp_path / "out" / "report.md").read_text()
    assert sr.experiment(tmp_path / "r.toml", tmp_path / "out")["computed"] == {}


def test_sampled_figures_sit_beside_full_ranking_and_say_so(study: Path, tmp_path: Path) -> None:
    _edit(study, "n_boot = 50", "n_boot = 50\nsampled_negatives = 5\ntargets = ['own']")
    result = sr.experiment(study, tmp_path / "out")
    by = {(r["sessions"], r["model"], r["target"]): r for r in result["rows"]}
    for d in ("user", "1h"):
        for m in ("pop", "markov"):
            own, sampled = by[(d, m, "own")], by[(d, m, "sampled")]
            assert own["predictions"] == sampled["predictions"]
            # 5 negatives instead of ~30 items: a target is never ranked lower
            assert sampled["metrics"]["recall@5"]["value"] >= own["metrics"]["recall@5"]["value"]
    assert (
        "SAMPLED" in result["targets"]["sampled"] and "5 negatives" in result["targets"]["sampled"]
    )
    assert "SAMPLED" in (tmp_path / "out" / "report.md").read_text()


def test_settings_tuned_on_valid_say_what_chose_them(study: Path, tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    _edit(study, 'name = "markov"', 'name = "sknn"\ntune = { trials = 2, metric = "mrr@5" }')
    _edit(study, 'session = "1h"', 'session = "user"\nlabel = "user2"')
    text = study.read_text().replace('label = "1h"\n', "")
    study.write_text(text)
    result = sr.experiment(study, tmp_path / "out")
    tuned = [r for r in result["rows"] if r["model"] == "sknn"]
    assert tuned and all(r["chosen_by"].startswith("tune: 2 trials on valid") for r in tuned)
    assert all(r["fit_on"] == "train+valid" and "k" in r["params"] for r in tuned)
