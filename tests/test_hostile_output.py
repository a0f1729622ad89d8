"""Hostile cases on the output side (issue 9): outputs never delete or turn into what sessionrec
did not write; models and data belong together; parameters are checked against their types;
silent caps and ignored options are refused; damaged model and data folders, and places that
refuse writes, end in one line (exit 2, no traceback) with nothing left behind.

Grouped as the issue groups them: data loss, model and data, parameters, refusals, damaged
folders, writing output, resume.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import sessionrec as sr
from sessionrec._io import MARKER, _prefix
from sessionrec.cli import main
from sessionrec.errors import ConfigError, DataError, OutputError
from sessionrec.models import create, load_model

torch.set_num_threads(1)

GRU = ["-p", "layers=[8]", "-p", "batch_size=4", "-p", "n_sample=4", "-p", "n_epochs=1"]
GRU_PARAMS = {"layers": [8], "batch_size": 4, "n_sample": 4, "n_epochs": 1}
TT_PARAMS = {"dim": 4, "n_epochs": 1, "batch_size": 16}


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``sessionrec ARGS`` in-process: (exit code, stderr); never a traceback."""
    code = 0
    try:
        main(args)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, out + err
    return code, err.strip()


def one_line(code: int, err: str, *parts: str) -> None:
    """Exit 2 with a single ``error:`` line that names every part."""
    assert code == 2, err
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(lines) == 1, err
    for p in parts:
        assert p in lines[0], (p, lines[0])


def no_temporaries(folder: Path) -> None:
    left = [p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    assert not left, left


# -- fixtures: a tiny log, two preparations of it, small trained models ------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A log of 3-item cycles over 30 days, prepared twice (test windows of 5 and 8 days: the
    same items, different training parts), a pop, a gru4rec and a two-tower model on ``a``."""
    rng = np.random.default_rng(0)
    rows, t = [], 1_600_000_000
    for s in range(150):
        g, start = rng.integers(0, 4), rng.integers(0, 3)
        for k in range(int(rng.integers(3, 8))):
            rows.append((int(s % 40), int(100 + g * 3 + (start + k) % 3), t + 60 * k))
        t += 17_000
    root = tmp_path_factory.mktemp("world")
    log = root / "log.csv"
    log.write_text("user_id,item_id,timestamp\n" + "".join(f"{u},{i},{ts}\n" for u, i, ts in rows))
    kw: dict[str, Any] = {"session": "1h", "split": "time", "valid_days": 5}
    a = sr.prepare(str(log), root / "a", test_days=5, **kw)
    b = sr.prepare(str(log), root / "b", test_days=8, **kw)
    assert isinstance(a, sr.PreparedData) and isinstance(b, sr.PreparedData)
    assert a.n_items == b.n_items  # the same vocabulary: only the fingerprint tells them apart
    sr.train("pop", a, root / "pop", progress=False)
    sr.train("gru4rec", a, root / "gru", params=GRU_PARAMS, progress=False)
    sr.train("two-tower", a, root / "tt", params=TT_PARAMS, progress=False)
    return {"root": root, "log": log, "a": a, "b": b}


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# == 1. Data loss ===============================================================================
def test_prepare_into_the_folder_holding_the_log_is_refused_and_deletes_nothing(
    cwd: Path, world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    (cwd / "logs").mkdir()
    log = shutil.copy(world["log"], cwd / "logs" / "log.csv")
    (cwd / "logs" / "notes.txt").write_text("mine")
    for extra in ([], ["--overwrite"]):
        code, err = run(["prepare", str(log), "--out", "logs", *extra], capsys)
        one_line(code, err, "logs", "log.csv", "notes.txt", "not written by sessionrec")
    assert sorted(p.name for p in (cwd / "logs").iterdir()) == ["log.csv", "notes.txt"]
    no_temporaries(cwd)


def test_prepare_onto_a_file_never_turns_it_into_a_folder(
    cwd: Path, world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    (cwd / "keep.csv").write_text("precious")
    code, err = run(["prepare", str(world["log"]), "--out", "keep.csv", "--overwrite"], capsys)
    one_line(code, err, "keep.csv", "found a file")
    assert (cwd / "keep.csv").read_text() == "precious"
    with pytest.raises(OutputError, match="found a file"):
        sr.prepare(str(world["log"]), cwd / "keep.csv", overwrite=True)
    assert (cwd / "keep.csv").is_file()


def test_prepare_replaces_its_own_folder_only_with_overwrite(
    cwd: Path, world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["prepare", str(world["log"]), "--out", "p", "--test-days", "5", "--valid-days", "5"]
    assert run(args, capsys)[0] == 0
    assert json.loads((cwd / "p" / MARKER).read_text())["verb"] == "prepare"
    code, err = run(args, capsys)
    one_line(code, err, "p", "already holds sessionrec output", "--overwrite")
    assert run([*args, "--overwrite"], capsys)[0] == 0
    (cwd / "p" / "my-notes.md").write_text("mine")  # a stranger inside: never deleted
    code, err = run([*args, "--overwrite"], capsys)
    one_line(code, err, "my-notes.md", "did not write")
    assert (cwd / "p" / "my-notes.md").read_text() == "mine"


def test_an_empty_folder_is_written_and_a_link_is_refused(
    cwd: Path, world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    (cwd / "empty").mkdir()
    assert run(["prepare", str(world["log"]), "--out", "empty"], capsys)[0] == 0
    assert (cwd / "empty" / "meta.json").exists()
    (cwd / "elsewhere").mkdir()
    (cwd / "link").symlink_to(cwd / "elsewhere")
    code, err = run(["prepare", str(world["log"]), "--out", "link"], capsys)
    one_line(code, err, "link", "symbolic link")


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_temporaries_of_a_killed_run_are_cleaned_by_the_next_run(
    cwd: Path, world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    out = cwd / "p"
    stale = cwd / f"{_prefix(out, 'tmp')}{dead_pid()}-abc"  # what kill -9 leaves
    stale.mkdir()
    (stale / "train.parquet").write_bytes(b"half")
    old = cwd / f"{_prefix(out, 'old')}{dead_pid()}-abc"
    old.mkdir()
    live = cwd / f"{_prefix(out, 'tmp')}{os.getppid()}-abc"  # a running process's: kept
    live.mkdir()
    assert run(["prepare", str(world["log"]), "--out", "p"], capsys)[0] == 0
    assert not stale.exists() and not old.exists() and live.exists()


def test_explore_refuses_a_folder_of_other_files(
    cwd: Path, world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    (cwd / "docs").mkdir()
    (cwd / "docs" / "index.html").write_text("mine")
    code, err = run(["explore", str(world["log"]), "--out", "docs"], capsys)
    one_line(code, err, "docs", "index.html")
    assert (cwd / "docs" / "index.html").read_text() == "mine"
    assert run(["explore", str(world["log"]), "--out", "rep"], capsys)[0] == 0
    code, err = run(["explore", str(world["log"]), "--out", "rep"], capsys)
    one_line(code, err, "rep", "--overwrite")
    assert run(["explore", str(world["log"]), "--out", "rep", "--overwrite"], capsys)[0] == 0


def test_train_into_an_existing_model_folder_needs_overwrite(
    cwd: Path, world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(world["a"].path)
    assert run(["train", data, "-m", "pop", "--out", "m"], capsys)[0] == 0
    code, err = run(["train", data, "-m", "markov", "--out", "m"], capsys)
    one_line(code, err, "m", "--overwrite")
    assert json.loads((cwd / "m" / "config.json").read_text())["model"] == "pop"
    assert run(["train", data, "-m", "markov", "--out", "m", "--overwrite"], capsys)[0] == 0
    assert json.loads((cwd / "m" / "config.json").read_text())["model"] == "markov"
    (cwd / "src").mkdir()
    (cwd / "src" / "main.py").write_text("code")
    code, err = run(["train", data, "-m", "pop", "--out", "src", "--overwrite"], capsys)
    one_line(code, err, "src", "main.py")
    assert (cwd / "src" / "main.py").exists()
    with pytest.raises(OutputError):
        sr.train("pop", world["a"], cwd / "src", progress=False, overwrite=True)


def test_sweep_index_and_demo_refuse_folders_of_other_files(
    cwd: Path, world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    (cwd / "busy").mkdir()
    (cwd / "busy" / "thesis.tex").write_text("mine")
    data = str(world["a"].path)
    for args in (
        ["sweep", data, "-m", "pop", "--seeds", "0", "--out", "busy"],
        ["index", str(world["root"] / "tt"), "--kind", "exact", "--out", "busy"],
        ["demo", "--out", "busy"],
    ):
        code, err = run(args, capsys)
        one_line(code, err, "busy", "thesis.tex")
    assert [p.name for p in (cwd / "busy").iterdir()] == ["thesis.tex"]


def test_overwrite_replaces_only_the_output_of_the_same_verb(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    model, data = copy(world["root"] / "tt", tmp_path / "tt"), copy(world["a"].path, tmp_path / "a")
    for args in (
        ["index", str(model), "--kind", "exact", "--out", str(model), "--overwrite"],
        ["train", str(data), "-m", "pop", "--out", str(data), "--overwrite"],
        ["prepare", str(world["log"]), "--out", str(model), "--overwrite"],
        ["sweep", str(data), "-m", "pop", "--seeds", "0", "--out", str(data), "--resume"],
    ):
        code, err = run(args, capsys)
        one_line(code, err, "holds the output of `sessionrec")
    assert load_model(model).name == "two-tower"
    assert sr.PreparedData(data).n_items == world["a"].n_items


def test_json_results_never_replace_data_or_model_files(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = copy(world["a"].path, tmp_path / "a")
    model = str(world["root"] / "pop")
    (tmp_path / "log.csv").write_text("user_id,item_id\n1,2\n")
    meta = (data / "meta.json").read_text()
    for target in (data / "meta.json", tmp_path / "log.csv", data / MARKER):
        code, err = run(["evaluate", model, str(data), "--json", str(target)], capsys)
        one_line(code, err, str(target), "choose another file")
        code, err = run(["compare", str(data), model, model, "--json", str(target)], capsys)
        one_line(code, err, str(target))
    assert (data / "meta.json").read_text() == meta
    assert (tmp_path / "log.csv").read_text() == "user_id,item_id\n1,2\n"
    results = tmp_path / "r.json"
    for _ in range(2):  # an earlier result is replaced
        assert run(["evaluate", model, str(data), "--json", str(results)], capsys)[0] == 0


def test_batch_recommendations_never_replace_their_input(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sessions = tmp_path / "s.csv"
    sessions.write_text("session_id,item\n1,100\n1,101\n")
    code, err = run(["recommend", str(world["root"] / "pop"), "--sessions", str(sessions),
                     "--out", str(sessions)], capsys)  # fmt: skip
    one_line(code, err, "s.csv", "--sessions file itself")
    assert sessions.read_text() == "session_id,item\n1,100\n1,101\n"


def test_a_failed_run_leaves_the_old_output_whole(
    cwd: Path, world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["prepare", str(world["log"]), "--out", "p"], capsys)[0] == 0
    before = (cwd / "p" / "meta.json").read_text()
    code, err = run(["prepare", str(world["log"]), "--out", "p", "--overwrite",
                     "--min-item-support", "100000"], capsys)  # fmt: skip
    one_line(code, err, "none of")
    assert (cwd / "p" / "meta.json").read_text() == before
    no_temporaries(cwd)


# == 2. Model and data belong together ==========================================================
def test_evaluate_refuses_a_model_of_other_data_and_names_both(
    cwd: Path, world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b, model = world["a"], world["b"], world["root"] / "gru"
    code, err = run(["evaluate", str(model), str(b.path)], capsys)
    one_line(code, err, str(model), b.fingerprint()[:12], a.fingerprint()[:12],
             "--allow-other-data")  # fmt: skip
    code, _ = run(["evaluate", str(model), str(b.path), "--allow-other-data", "--json", "o.json"],
                  capsys)  # fmt: skip
    assert code == 0
    out = json.loads((cwd / "o.json").read_text())
    assert out["allow_other_data"] is True
    assert out["protocol"]["data_check"]["same_data"] is False
    assert run(["evaluate", str(model), str(a.path), "--json", "s.json"], capsys)[0] == 0
    same = json.loads((cwd / "s.json").read_text())
    assert same["protocol"]["data_check"]["same_data"] is True
    assert same["allow_other_data"] is False


def test_compare_and_index_refuse_a_model_of_other_data(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    b, root = world["b"], world["root"]
    code, err = run(["compare", str(b.path), str(root / "pop"), str(root / "gru")], capsys)
    one_line(code, err, str(root / "pop"), b.fingerprint()[:12])
    code, err = run(["index", str(root / "tt"), "--kind", "exact", "--data", str(b.path),
                     "--out", str(tmp_path / "ix")], capsys)  # fmt: skip
    one_line(code, err, str(root / "tt"), b.fingerprint()[:12])
    assert not (tmp_path / "ix").exists()
    code, _ = run(["compare", str(b.path), str(root / "pop"), str(root / "gru"),
                   "--allow-other-data", "--n-boot", "20", "--json", str(tmp_path / "c.json")],
                  capsys)  # fmt: skip
    assert code == 0
    assert json.loads((tmp_path / "c.json").read_text())["allow_other_data"] is True


def test_python_evaluate_checks_the_data_too(world: dict[str, Any]) -> None:
    a, b = world["a"], world["b"]
    model = load_model(world["root"] / "pop")
    assert model.trained_on is not None
    with pytest.raises(DataError, match=b.fingerprint()[:12]):
        sr.evaluate(model, b.test)
    res = sr.evaluate(model, b.test, allow_other_data=True)
    assert res.to_dict()["protocol"]["data_check"]["allow_other_data"] is True
    assert sr.evaluate(model, a.test).protocol["data_check"]["same_data"] is True
    fresh = sr.train("pop", b, world["root"] / "pop-b", progress=False)
    with pytest.raises(DataError):
        sr.evaluate(fresh, a.valid)


def test_resume_on_other_data_is_refused(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run_dir = copy(world["root"] / "gru", tmp_path / "gru")
    before = (run_dir / "weights.safetensors").read_bytes()
    code, err = run(["train", str(world["b"].path), "-m", "gru4rec", "--out", str(run_dir),
                     "--resume", "-p", "n_epochs=2"], capsys)  # fmt: skip
    one_line(code, err, "checkpoint", world["b"].fingerprint()[:12])
    assert (run_dir / "weights.safetensors").read_bytes() == before


def test_older_model_folders_without_a_fingerprint_warn_and_proceed(
    world: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model_dir = copy(world["root"] / "pop", tmp_path / "old")
    meta = json.loads((model_dir / "data_meta.json").read_text())
    del meta["fingerprint"]
    (model_dir / "data_meta.json").write_text(json.dumps(meta))
    with caplog.at_level("WARNING"):
        res = sr.evaluate(load_model(model_dir), world["b"].test)
    assert res.predictions > 0
    assert "no data fingerprint" in caplog.text


def test_a_part_changed_after_prepare_is_named(world: dict[str, Any], tmp_path: Path) -> None:
    data = copy(world["a"].path, tmp_path / "a")
    shutil.copy(world["b"].path / "train.parquet", data / "train.parquet")
    with pytest.raises(DataError, match=r"train\.parquet.*changed after"):
        sr.evaluate(load_model(world["root"] / "pop"), sr.PreparedData(data).test)


# == 3. Parameters are checked against their types ==============================================
@pytest.mark.parametrize(
    ("param", "named", "found"),
    [
        ("n_epochs=2.5", "n_epochs (int)", "found 2.5"),
        ("layers=hello", "layers (list of int)", "found 'hello'"),
        ("layers=[8, 2.5]", "layers (list of int)", "found [8, 2.5]"),
        ("constrained_embedding=maybe", "constrained_embedding (bool)", "found 'maybe'"),
        ("learning_rate=fast", "learning_rate (float)", "found 'fast'"),
        ("learning_rate=NaN", "learning_rate (float)", "found nan"),
        ("batch_size=true", "batch_size (int)", "found True"),
        ("loss=3", "loss (str)", "found 3"),
    ],
)
def test_wrong_parameter_types_end_in_one_line(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path, param: str,
    named: str, found: str,
) -> None:  # fmt: skip
    code, err = run(["train", str(world["a"].path), "-m", "gru4rec", "--out",
                     str(tmp_path / "m"), "-p", param], capsys)  # fmt: skip
    one_line(code, err, f"parameter {named}: expected", found)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    ("raw", "value"),
    [("no", False), ("yes", True), ("0", False), ("1", True), ("No", False), ("YES", True)],
)
def test_booleans_take_the_usual_spellings(raw: str, value: bool) -> None:
    from sessionrec.cli.train import parse_params

    model = create("gru4rec", parse_params([f"constrained_embedding={raw}"]))
    assert model.config.constrained_embedding is value  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("model", "param", "message"),
    [
        ("two-tower", "dim=0", "dim: expected at least 1, found 0"),
        ("two-tower", "batch_size=0", "batch_size: expected at least 1"),
        ("two-tower", "context_length=0", "context_length: expected at least 1"),
        ("two-tower", "temperature=0", "temperature: expected a number above 0"),
        ("two-tower", "extra_negatives=-3", "extra_negatives: expected at least 0"),
        ("bpr", "factors=0", "factors: expected at least 1"),
        ("bpr", "n_epochs=-1", "n_epochs: expected at least 0"),
    ],
)
def test_sizes_out_of_range_end_in_one_line(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path, model: str,
    param: str, message: str,
) -> None:  # fmt: skip
    code, err = run(["train", str(world["a"].path), "-m", model, "--out", str(tmp_path / "m"),
                     "-p", param], capsys)  # fmt: skip
    one_line(code, err, message)


def test_python_parameters_are_checked_and_whole_floats_accepted() -> None:
    with pytest.raises(ConfigError, match=r"dim \(int\): expected a whole number, found 2\.5"):
        create("two-tower", {"dim": 2.5})
    assert create("two-tower", {"dim": 8.0}).config.dim == 8  # type: ignore[attr-defined]
    assert create("gru4rec", {"layers": 16}).config.layers == (16,)  # type: ignore[attr-defined]


# == 4. Silent caps and ignored options are refused =============================================
def test_negatives_above_the_catalogue_are_refused_and_what_was_drawn_recorded(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    model, data = str(world["root"] / "pop"), str(world["a"].path)
    code, err = run(["evaluate", model, data, "--protocol", "sampled", "--negatives", "500"],
                    capsys)  # fmt: skip
    one_line(code, err, "negatives 500", "11 items")
    code, _ = run(["evaluate", model, data, "--protocol", "sampled", "--negatives", "11",
                   "--json", str(tmp_path / "s.json")], capsys)  # fmt: skip
    assert code == 0
    proto = json.loads((tmp_path / "s.json").read_text())["protocol"]
    assert proto["negatives"] == 11
    # the session's own items are never negatives: fewer were drawn, and that is recorded
    assert proto["negatives_drawn"]["min"] < 11 and proto["negatives_drawn"]["mean"] < 11


def test_patience_without_valid_metrics_is_refused(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    no_valid = sr.prepare(str(world["log"]), tmp_path / "nv", session="1h", split="time",
                          test_days=5, valid_days=0)  # fmt: skip
    assert isinstance(no_valid, sr.PreparedData) and no_valid.valid.n_sessions == 0
    code, err = run(["train", str(no_valid.path), "-m", "gru4rec", "--out", str(tmp_path / "m"),
                     "--patience", "2", *GRU], capsys)  # fmt: skip
    one_line(code, err, "patience 2", "valid part is empty")
    code, err = run(["train", str(world["a"].path), "-m", "gru4rec", "--out",
                     str(tmp_path / "m"), "--patience", "2", "--fit-on", "train+valid", *GRU],
                    capsys)  # fmt: skip
    one_line(code, err, "patience 2", "train+valid")
    code, err = run(["train", str(world["a"].path), "-m", "gru4rec", "--out",
                     str(tmp_path / "m"), "--valid-metric", "hit@7", *GRU], capsys)  # fmt: skip
    one_line(code, err, "hit@7")  # ndcg@7 is scored per epoch since tune
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("k", ["0", "-3"])
def test_recommend_needs_a_positive_k(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str], k: str
) -> None:
    code, err = run(["recommend", str(world["root"] / "pop"), "-s", "100", "-k", k], capsys)
    one_line(code, err, "-k", k)
    batch = ["recommend", str(world["root"] / "pop"), "--sessions", str(world["log"]), "--out"]
    code, err = run([*batch, str(world["log"]), "-k", k], capsys)  # batch mode too
    one_line(code, err, "-k", k)
    with pytest.raises(ConfigError):
        load_model(world["root"] / "pop").recommend(["100"], k=int(k))


def test_zero_replicates_and_threads_end_in_one_line(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    model, data = str(world["root"] / "pop"), str(world["a"].path)
    for args, named in (
        (["evaluate", model, data, "--ci", "--n-boot", "0"], "n_boot"),
        (["compare", data, model, model, "--n-boot", "0"], "n_boot"),
        (["evaluate", model, data, "--threads", "-1"], "--threads"),
        (
            ["train", data, "-m", "pop", "-o", str(world["root"] / "t0"), "--threads", "0"],
            "--threads",
        ),
    ):
        code, err = run(args, capsys)
        one_line(code, err, named, "at least 1")


def test_train_runs_on_the_threads_asked_for(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    before = torch.get_num_threads()
    try:
        out = world["root"] / "threads"
        code, err = run(["train", str(world["a"].path), "-m", "pop", "-o", str(out),
                         "--threads", "3"], capsys)  # fmt: skip
        assert code == 0, err
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


# == 5. Damaged model and data folders: every verb, one line ====================================
def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _edit_json(path: Path, change: Any) -> None:
    obj = json.loads(path.read_text())
    change(obj)
    path.write_text(json.dumps(obj))


def _wrong_size(config: dict[str, Any]) -> None:
    """A layer (gru4rec) or dimension (two-tower) edited to a size the weights do not have."""
    config["config"].update(layers=[5]) if "layers" in config["config"] else config[
        "config"
    ].update(dim=7)


MODEL_DAMAGE = {
    "truncated weights": ("weights.safetensors", lambda d: _truncate(d / "weights.safetensors")),
    "config not JSON": ("config.json", lambda d: (d / "config.json").write_text("{oops")),
    "wrong layer size": ("weights.safetensors", lambda d: _edit_json(d / "config.json", _wrong_size)),
    "n_items not a number": ("config.json", lambda d: _edit_json(d / "config.json", lambda c: c.update(n_items="many"))),
    "items not parquet": ("items.parquet", lambda d: (d / "items.parquet").write_text("x")),
    "no weights": ("weights.safetensors", lambda d: (d / "weights.safetensors").unlink()),
    "data_meta not JSON": ("data_meta.json", lambda d: (d / "data_meta.json").write_text("[")),
}  # fmt: skip

DATA_DAMAGE = {
    "no test part": ("test.parquet", lambda d: (d / "test.parquet").unlink()),
    "meta not JSON": ("meta.json", lambda d: (d / "meta.json").write_text('{"n_items": 1')),
    "meta without n_items": ("meta.json", lambda d: _edit_json(d / "meta.json", lambda m: m.pop("n_items"))),
    "truncated train": ("train.parquet", lambda d: _truncate(d / "train.parquet")),
    "truncated valid": ("valid.parquet", lambda d: _truncate(d / "valid.parquet")),
    "items not parquet": ("items.parquet", lambda d: (d / "items.parquet").write_text("x")),
}  # fmt: skip


@pytest.mark.parametrize("damage", list(MODEL_DAMAGE))
def test_every_verb_given_a_damaged_model_says_one_line(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path, damage: str
) -> None:
    name, spoil = MODEL_DAMAGE[damage]
    data = str(world["a"].path)
    models = {}
    for source in ("gru", "tt"):
        models[source] = str(copy(world["root"] / source, tmp_path / source))
        spoil(tmp_path / source)
    m, tt = models["gru"], models["tt"]
    for args in (
        ["evaluate", m, data],
        ["compare", data, m, str(world["root"] / "pop")],
        ["recommend", m, "-s", "100"],
        ["index", tt, "--kind", "exact", "--out", str(tmp_path / "ix")],
    ):
        code, err = run(args, capsys)
        one_line(code, err, name)
    assert not (tmp_path / "ix").exists()


@pytest.mark.parametrize(
    ("name", "spoil"),
    [
        ("state.safetensors", lambda c: _truncate(c / "state.safetensors")),
        ("progress.json", lambda c: (c / "progress.json").write_text("{")),
        ("progress.json", lambda c: _edit_json(c / "progress.json", lambda p: p.pop("config"))),
    ],
)
def test_resume_from_a_damaged_checkpoint_says_one_line(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str,
    spoil: Any,
) -> None:  # fmt: skip
    model = copy(world["root"] / "gru", tmp_path / "gru")
    spoil(model / "checkpoint")
    code, err = run(["train", str(world["a"].path), "-m", "gru4rec", "--out", str(model),
                     "--resume", "-p", "n_epochs=2"], capsys)  # fmt: skip
    one_line(code, err, name)


@pytest.mark.parametrize("damage", list(DATA_DAMAGE))
def test_every_verb_given_a_damaged_data_folder_says_one_line(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path, damage: str
) -> None:
    name, spoil = DATA_DAMAGE[damage]
    data = copy(world["a"].path, tmp_path / "data")
    spoil(data)
    root = world["root"]
    verbs = {
        "evaluate": ["evaluate", str(root / "gru"), str(data)],
        "compare": ["compare", str(data), str(root / "gru"), str(root / "pop")],
        "index --data": ["index", str(root / "tt"), "--kind", "exact", "--data", str(data),
                         "--out", str(tmp_path / "ix")],
        "train": ["train", str(data), "-m", "gru4rec", "--out", str(tmp_path / "m"), *GRU],
        "sweep": ["sweep", str(data), "-m", "pop", "--seeds", "0", "--out", str(tmp_path / "s")],
    }  # fmt: skip
    for args in verbs.values():
        code, err = run(args, capsys)
        one_line(code, err, name)
    assert not (tmp_path / "m").exists() and not (tmp_path / "ix").exists()


@pytest.mark.parametrize(
    "spoil",
    [
        lambda ix: (ix / "index.json").write_text("{"),
        lambda ix: (ix / "index.json").write_text("[]"),
        lambda ix: [_truncate(f) for f in ix.iterdir() if f.name not in ("index.json", MARKER)],
    ],
)
def test_a_damaged_index_says_one_line(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path, spoil: Any
) -> None:
    ix = tmp_path / "ix"
    tt = str(world["root"] / "tt")
    assert run(["index", tt, "--kind", "exact", "--out", str(ix)], capsys)[0] == 0
    spoil(ix)
    for args in (
        ["evaluate", tt, str(world["a"].path), "--index", str(ix)],
        ["recommend", tt, "-s", "100", "--index", str(ix)],
    ):
        code, err = run(args, capsys)
        one_line(code, err, str(ix))


# == 6. Writing output where writes fail ========================================================
def test_unwritable_places_end_in_one_line_and_leave_nothing(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    log, model, data = str(world["log"]), str(world["root"] / "pop"), str(world["a"].path)
    for out in ("/proc/sessionrec-out", "/sys/sessionrec-out", "/proc/self/x/y"):
        code, err = run(["prepare", log, "--out", out], capsys)
        one_line(code, err, out, "cannot write")
    code, err = run(["evaluate", model, data, "--json", "/proc/sessionrec.json"], capsys)
    one_line(code, err, "/proc/sessionrec.json")
    (tmp_path / "a-dir.json").mkdir()
    code, err = run(["evaluate", model, data, "--json", str(tmp_path / "a-dir.json")], capsys)
    one_line(code, err, "a-dir.json", "directory")
    (tmp_path / "file").write_text("x")
    code, err = run(["prepare", log, "--out", str(tmp_path / "file" / "sub")], capsys)
    one_line(code, err, "file/sub", "cannot write")
    assert (tmp_path / "file").read_text() == "x"
    no_temporaries(tmp_path)


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "frozen"
    folder.mkdir()
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("this filesystem or user cannot set the immutable attribute")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_an_immutable_folder_ends_in_one_line(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str], immutable: Path
) -> None:
    for args in (
        ["prepare", str(world["log"]), "--out", str(immutable / "p")],
        ["explore", str(world["log"]), "--out", str(immutable / "e")],
        ["train", str(world["a"].path), "-m", "pop", "--out", str(immutable / "m")],
        ["evaluate", str(world["root"] / "pop"), str(world["a"].path), "--json",
         str(immutable / "r.json")],
    ):  # fmt: skip
        code, err = run(args, capsys)
        one_line(code, err, str(immutable), "cannot write")
    assert list(immutable.iterdir()) == []


def test_long_legal_names_work_and_too_long_ones_end_in_one_line(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    legal = tmp_path / ("p" * 250)  # legal (NAME_MAX 255); a longer temporary name would not be
    assert run(["prepare", str(world["log"]), "--out", str(legal)], capsys)[0] == 0
    assert (legal / "meta.json").exists()
    assert run(["explore", str(world["log"]), "--out", str(tmp_path / ("e" * 255))], capsys)[0] == 0
    assert run(["evaluate", str(world["root"] / "pop"), str(world["a"].path), "--json",
                str(tmp_path / ("j" * 250 + ".json"))], capsys)[0] == 0  # fmt: skip
    code, err = run(["prepare", str(world["log"]), "--out", str(tmp_path / ("x" * 300))], capsys)
    one_line(code, err, "cannot write", "too long")
    no_temporaries(tmp_path)


# == 7. Resume extends a finished run ===========================================================
def test_resume_with_more_epochs_extends_a_finished_run_exactly(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = str(world["a"].path)
    run_dir = copy(world["root"] / "gru", tmp_path / "gru")
    code, _ = run(["train", data, "-m", "gru4rec", "--out", str(run_dir), "--resume", *GRU[:-2],
                   "-p", "n_epochs=2"], capsys)  # fmt: skip
    assert code == 0
    history = [json.loads(x) for x in (run_dir / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2]
    straight = sr.train("gru4rec", world["a"], tmp_path / "two",
                        params={**GRU_PARAMS, "n_epochs": 2}, progress=False)  # fmt: skip
    # best-epoch restore may pick epoch 1 or 2: compare the checkpoints (the last epoch)
    from safetensors.torch import load_file

    got = load_file(str(run_dir / "checkpoint" / "state.safetensors"))
    want = load_file(str(tmp_path / "two" / "checkpoint" / "state.safetensors"))
    assert int(got["epochs_done"][0]) == 2
    for k, v in want.items():
        assert torch.equal(v, got[k]), k
    assert straight.config.n_epochs == 2  # type: ignore[attr-defined]
    code, err = run(["train", data, "-m", "gru4rec", "--out", str(run_dir), "--resume",
                     "-p", "learning_rate=0.5"], capsys)  # fmt: skip
    one_line(code, err, "learning_rate", "only the number of epochs")
    code, err = run(["train", data, "-m", "gru4rec", "--out", str(run_dir), "--resume",
                     "-p", "n_epochs=1"], capsys)  # fmt: skip
    one_line(code, err, "n_epochs=1", "2 epochs already done")
