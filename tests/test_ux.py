"""The first hour of a new user (issue 12): names, vocabulary, listings, titles, batch answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from _helpers import run_cli
from conftest import write_log

import sessionrec as sr
from sessionrec.catalog import model_catalog
from sessionrec.models import REGISTRY, create, load_model
from sessionrec.rating import RATING_MODELS, create_rating_model
from sessionrec.recommend import ItemLookupError, resolve_items

ROOT = Path(__file__).resolve().parents[1]


# -- Python: names ----------------------------------------------------------------------------
def test_dir_shows_the_lazy_names_and_all_is_complete() -> None:
    listed = dir(sr)
    for name in ("load", "train", "evaluate", "load_model", "PreparedData", "sweep"):
        assert name in listed and name in sr.__all__, name
    assert set(sr._LAZY) <= set(sr.__all__)
    public = {
        n
        for n, v in vars(sr).items()
        if not n.startswith("_") and not isinstance(v, types.ModuleType) and n != "annotations"
    }
    assert public <= set(sr.__all__) | {"TYPE_CHECKING", "Any"}, public - set(sr.__all__)
    assert sr.load_model is load_model


def test_load_accepts_pandas_and_polars_frames() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(
        {"user_id": [1, 1, 2, 2], "sku": ["a", "b", "a", "c"], "ts": [10, 20, 10, 50]}
    )
    mapping = sr.ColumnMapping(item="sku", time="ts", time_unit="s")
    a = sr.load(frame, mapping).events
    b = sr.load(pl.from_pandas(frame), mapping).events
    a = a.collect() if isinstance(a, pl.LazyFrame) else a
    b = b.collect() if isinstance(b, pl.LazyFrame) else b
    assert a.equals(b) and a["item_id"].to_list() == ["a", "b", "a", "c"]
    with pytest.raises(sr.errors.DataError, match="item column"):
        sr.load(pl.DataFrame({"user_id": [1], "ts": [1]}))
    with pytest.raises(sr.errors.ConfigError, match="DataFrame"):
        sr.load(3)  # type: ignore[arg-type]


# -- one parameter vocabulary ---------------------------------------------------------------
def test_every_model_says_n_epochs_and_learning_rate() -> None:
    for m in model_catalog():
        names = {p["name"] for p in m["parameters"]}
        assert not names & {"epochs", "lr"}, m["model"]
    assert {m["model"] for m in model_catalog()} == set(REGISTRY) | set(RATING_MODELS)


def test_old_names_still_work_with_a_warning(tmp_path: Path) -> None:
    with pytest.warns(FutureWarning, match="'epochs' is deprecated, use 'n_epochs'"):
        m = create("two-tower", {"epochs": 1, "dim": 4})
    assert m.config.n_epochs == 1  # type: ignore[attr-defined]
    with pytest.warns(FutureWarning, match="'lr' is deprecated"):
        r = create_rating_model("svd", {"lr": 0.1})
    assert r.config.learning_rate == 0.1  # type: ignore[attr-defined]
    with pytest.raises(sr.errors.ConfigError, match="same parameter"):
        create("bpr", {"epochs": 1, "n_epochs": 2})
    # a model folder saved before the rename loads, silently
    model = create("pop").fit(_cycle())
    model.save(tmp_path / "pop")
    tt = create("two-tower", {"n_epochs": 1, "dim": 4, "batch_size": 4}).fit(_cycle())
    tt.save(tmp_path / "tt")
    cfg = json.loads((tmp_path / "tt" / "config.json").read_text())
    c = cfg["config"]
    c["epochs"], c["lr"] = c.pop("n_epochs"), c.pop("learning_rate")
    (tmp_path / "tt" / "config.json").write_text(json.dumps(cfg))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        old = load_model(tmp_path / "tt")
    assert old.config.n_epochs == 1 and old.config.learning_rate == tt.config.learning_rate  # type: ignore[attr-defined]


def _cycle() -> sr.SessionData:
    from _helpers import session_data

    return session_data([[0, 1, 2, 0, 1, 2]] * 6, n_items=3)


# -- the command line -------------------------------------------------------------------------
def test_version_models_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["--version"], capsys)
    assert code == 0 and out.strip() == f"sessionrec {sr.__version__}"
    code, out, _ = run_cli(["models"], capsys)
    for name in [*REGISTRY, *RATING_MODELS]:
        assert name in out
    assert "learning_rate" in out and "n_epochs" in out
    code, out, _ = run_cli(["models", "--json"], capsys)
    assert json.loads(out) == model_catalog()
    code, out, _ = run_cli(["train", "--help"], capsys)
    assert code == 0 and "sessionrec models" in out
    code, out, _ = run_cli(["evaluate", "--help"], capsys)
    assert code == 0 and "--exclude-seen" in out and "<bool>" not in out


@pytest.mark.parametrize(
    ("verb", "default"),
    [
        (["evaluate"], "include"),
        (["compare"], "include"),
        (["sweep"], "include"),
        (["tune"], "include"),
        (["train"], "include"),
        (["data", "ceiling"], "include"),
        (["recommend"], "exclude"),
    ],
)
def test_every_ranking_verb_takes_one_seen_flag_pair_with_a_stated_default(
    verb: list[str], default: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """One name everywhere: --exclude-seen / --include-seen, and the help says the default."""
    code, out, _ = run_cli([*verb, "--help"], capsys)
    flat = " ".join(out.split())
    assert code == 0 and "--exclude-seen" in flat and "--include-seen" in flat
    assert f"default: {default}" in flat
    assert "--no-exclude-seen" not in flat and "--no-include-seen" not in flat


# -- titles -------------------------------------------------------------------------------------
ITEMS = pl.DataFrame(
    {
        "item_idx": [0, 1, 2, 3, 4],
        "item_id": [1, 127, 246, 268, 50],
        "title": [
            "Toy Story (1995)",
            "Godfather, The (1972)",
            "Chasing Amy (1997)",
            "Chasing Amy (1997)",
            "Star Wars (1977)",
        ],
    }
)


@pytest.mark.parametrize("key", ["Godfather", "The Godfather", "the godfather (1972)", "127"])
def test_trailing_articles_match_both_ways(key: str) -> None:
    assert resolve_items(ITEMS, [key]) == [1]


def test_all_unknown_titles_are_reported_and_duplicates_need_the_id() -> None:
    with pytest.raises(ItemLookupError) as err:
        resolve_items(ITEMS, ["Toy Stori", "Star Wars", "Godfathr"])
    text = str(err.value)
    assert "'Toy Stori'" in text and "closest: Toy Story (1995)" in text
    assert "'Godfathr'" in text and "Godfather, The (1972)" in text
    with pytest.raises(ItemLookupError, match="only the id can tell apart") as err:
        resolve_items(ITEMS, ["Chasing Amy (1997)"])
    assert "id 246" in str(err.value) and "id 268" in str(err.value)
    assert resolve_items(ITEMS, ["268"]) == [3]


# -- recommend: --json and batch mode -----------------------------------------------------------
@pytest.fixture
def tiny(tmp_path: Path) -> sr.PreparedData:
    rng = np.random.default_rng(0)
    rows = []
    for u in range(40):
        t0 = int(rng.integers(0, 10 * 86400))
        rows += [(u, int(rng.integers(1, 9)), t0 + 60 * j) for j in range(6)]
    log = write_log(tmp_path / "log.csv", rows)
    return sr.prepare(
        log, tmp_path / "prep", session="1h", split="time", test_days=2, valid_days=2,
        min_item_support=1,
    )  # fmt: skip


def test_recommend_json_and_batch(
    tiny: sr.PreparedData, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    m = sr.train("markov", tiny, tmp_path / "markov", progress=False)
    model_dir = str(tmp_path / "markov")
    code, out, err = run_cli(["recommend", model_dir, "-s", "4", "8", "-k", "3", "--json"], capsys)
    assert code == 0, err
    answer = json.loads(out)
    single = m.recommend(["4", "8"], 3)
    assert [r["item_id"] for r in answer["recommendations"]] == single["item_id"].to_list()
    sessions = tmp_path / "s.csv"
    sessions.write_text("session_id,item\na,4\na,8\nb,2\n")
    for suffix in (".csv", ".parquet"):
        out_path = tmp_path / f"o{suffix}"
        code, _, err = run_cli(["recommend", model_dir, "--sessions", str(sessions), "--out",
                                str(out_path), "-k", "3"], capsys)  # fmt: skip
        assert code == 0, err
        table = pl.read_csv(out_path) if suffix == ".csv" else pl.read_parquet(out_path)
        a = table.filter(pl.col("session_id") == "a")
        assert a["item_id"].to_list() == single["item_id"].to_list()
        assert a["rank"].to_list() == [1, 2, 3] and table.height == 6
    bad = tmp_path / "bad.csv"
    bad.write_text("session_id,item\na,999\nb,998\n")
    code, _, err = run_cli(["recommend", model_dir, "--sessions", str(bad), "--out",
                            str(tmp_path / "x.csv")], capsys)  # fmt: skip
    assert code == 2 and "'999'" in err and "'998'" in err and "bad.csv" in err
    bad.write_text("who,what\n1,2\n")
    code, _, err = run_cli(["recommend", model_dir, "--sessions", str(bad), "--out",
                            str(tmp_path / "x.csv")], capsys)  # fmt: skip
    assert code == 2 and "session_id,item" in err


def test_compare_shows_each_fit_part_and_warns_when_they_differ(
    tiny: sr.PreparedData, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sr.train("markov", tiny, tmp_path / "a", fit_on="train", progress=False)
    sr.train("pop", tiny, tmp_path / "b", fit_on="train+valid", progress=False)
    out = tmp_path / "c.json"
    code, stdout, err = run_cli(["compare", str(tiny.path), str(tmp_path / "a"), str(tmp_path / "b"),
                                 "--n-boot", "50", "--json", str(out)], capsys)  # fmt: skip
    assert code == 0, err
    assert "fit" in stdout  # the column (an 80-column table wraps its cells)
    assert "different parts" in err
    rows = json.loads(out.read_text())["models"]
    assert [r["fit_on"] for r in rows] == ["train", "train+valid"]
    for d in rows[1]["vs_first"].values():
        assert d["p_value"] >= 2 / 50 or not d["p_value_is_bound"]


def test_valid_is_scored_every_n_epochs(tiny: sr.PreparedData, tmp_path: Path) -> None:
    pytest.importorskip("implicit")
    params = {"n_epochs": 20, "factors": 4}
    # the schedule, not early stopping (on by default): every planned validation runs
    sr.train("bpr", tiny, tmp_path / "a", params=params, progress=False, patience=None)
    sr.train("bpr", tiny, tmp_path / "b", params=params, progress=False, valid_every=7,
             patience=None)  # fmt: skip

    def scored(path: Path) -> list[int]:
        lines = (path / "history.jsonl").read_text().splitlines()
        return [r["epoch"] for r in map(json.loads, lines) if "valid_mrr@20" in r]

    assert scored(tmp_path / "a") == list(range(2, 21, 2))  # about 10 validations by default
    assert scored(tmp_path / "b") == [7, 14, 20]  # and always the last epoch
    with pytest.raises(sr.errors.ConfigError, match="valid_every"):
        sr.train("bpr", tiny, tmp_path / "c", params=params, progress=False, valid_every=0)


def test_sweep_chart_ticks_show_the_parameter_values() -> None:
    from sessionrec.experiments import tick_labels, varied_names

    configs = [{"params": {"dim": 32, "learning_rate": 0.1}}, {"params": {"dim": 64}}]
    assert varied_names(configs) == ["dim", "learning_rate"]
    assert tick_labels(configs) == ["32, 0.1", "64, —"]
    assert tick_labels([{"params": {}}]) == ["one setting"]


# -- optional dependencies ------------------------------------------------------------------------
@pytest.mark.parametrize(("module", "extra"), [("threadpoolctl", "cf"), ("implicit", "cf")])
def test_a_missing_extra_names_what_to_install(
    module: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    with pytest.raises(sr.errors.ConfigError, match=rf'pip install -e "\.\[{extra}\]"'):
        create("bpr", {"n_epochs": 1, "factors": 2}).fit(_cycle())


def test_a_missing_faiss_names_the_ann_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from sessionrec.ann import _faiss

    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(sr.errors.ConfigError, match=r'pip install -e "\.\[ann\]"'):
        _faiss()


# -- OpenMP's wait policy from Python -----------------------------------------------------------
_PROBE = """
import os, sys
if sys.argv[1] == "torch-first":
    import torch
import sessionrec, sessionrec._threads as t
import torch
print(os.environ.get("OMP_WAIT_POLICY"), t.openmp_may_spin())
torch.set_num_threads(2)
with t.calm_threads():
    inside = torch.get_num_threads()
print(inside, torch.get_num_threads())
"""


@pytest.mark.parametrize(
    ("order", "env", "policy", "spin", "inside"),
    [
        ("sessionrec-first", None, "PASSIVE", "False", "2"),
        ("sessionrec-first", "ACTIVE", "ACTIVE", "False", "2"),
        ("torch-first", None, "None", "True", "1"),
    ],
)
def test_import_sets_the_wait_policy_before_torch(
    order: str, env: str | None, policy: str, spin: str, inside: str
) -> None:
    environ = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if env:
        environ["OMP_WAIT_POLICY"] = env
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, order], env=environ, capture_output=True, text=True,
        check=True,
    ).stdout.split()  # fmt: skip
    assert out == [policy, spin, inside, "2"]


@pytest.mark.parametrize(("spinning", "inside"), [(True, 1), (False, 2)])
def test_training_runs_on_one_thread_only_when_threads_may_spin(
    tiny: sr.PreparedData,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    spinning: bool,
    inside: int,
) -> None:
    """Torch loaded before sessionrec (spinning waits): sr.train fits on one thread, as
    evaluate does; with passive waits it keeps the threads it was given."""
    import torch

    import sessionrec._threads as t
    from sessionrec.models.pop import Pop

    seen: list[int] = []
    fit = Pop.fit

    def recording_fit(self: Pop, *args: Any, **kwargs: Any) -> Pop:
        seen.append(torch.get_num_threads())
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(t, "_SPINNING", spinning)
    monkeypatch.setattr(Pop, "fit", recording_fit)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        sr.train("pop", tiny, tmp_path / "pop", progress=False)
        assert seen == [inside]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
