"""The documentation pages against the code: every command they show names real verbs, options
and models; the generated models table is today's; the commands whose outputs they quote give
those numbers. (`./scripts/docs build` builds the site strictly and executes the tutorials.)
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from _doc_snippets import (
    DOCS,
    ROOT,
    cli_tree,
    command_options,
    doc_pages,
    sessionrec_commands,
)
from _helpers import run_cli

import sessionrec as sr
from sessionrec.catalog import readme_with_models
from sessionrec.rating import RATING_MODELS
from sessionrec.registry import MODELS


def test_every_documented_command_names_real_verbs_options_and_models() -> None:
    root = cli_tree()
    seen = 0
    for page in doc_pages():
        for args in sessionrec_commands(page.read_text()):
            where = f"{page.relative_to(ROOT)}: sessionrec {' '.join(args)}"
            path, options = command_options(root, args)
            assert path, where
            for i, word in enumerate(args):
                name = word.split("=", 1)[0]
                if name.startswith("-") and not re.fullmatch(r"-\d.*", name):
                    assert name in options, f"{where}: {path} has no option {name}"
                if name in ("--model", "-m") and path[0] != "demo" and i + 1 < len(args):
                    model = args[i + 1]
                    assert model in MODELS or model in RATING_MODELS, f"{where}: {model}"
            seen += 1
    assert seen > 50  # the pages are full of commands: a parser that finds none is broken


def test_models_page_table_is_up_to_date() -> None:
    page = DOCS / "models" / "index.md"
    text = page.read_text()
    assert readme_with_models(text) == text, (
        "docs/models/index.md's models table is stale: run  python -c \"from pathlib import "
        "Path; from sessionrec.catalog import readme_with_models as f; "
        "p = Path('docs/models/index.md'); p.write_text(f(p.read_text()))\""
    )


def test_every_model_has_a_page() -> None:
    text = (DOCS / "models" / "index.md").read_text()
    for name in [*MODELS, *RATING_MODELS]:
        assert re.search(rf"\| `{re.escape(name)}`", text), name
    for target in re.findall(r"\]\(([\w-]+\.md)\)", text):
        assert (DOCS / "models" / target).exists(), target


def test_every_page_is_in_the_site_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in [*DOCS.rglob("*.md"), *DOCS.glob("tutorials/*.py")]:
        assert str(page.relative_to(DOCS)) in nav, page


def test_tutorials_are_jupytext_notebooks() -> None:
    tutorials = sorted(DOCS.glob("tutorials/*.py"))
    assert len(tutorials) >= 4
    for path in tutorials:
        text = path.read_text()
        ast.parse(text, filename=str(path))
        assert "format_name: percent" in text, path
        assert text.count("# %% [markdown]") >= 3, path  # prose between the code


def quoted(page: str, pattern: str) -> list[int]:
    found = re.search(pattern, " ".join((DOCS / page).read_text().split()))  # lines joined
    assert found, f"{page} no longer says {pattern!r}"
    return [int(g.replace(",", "")) for g in found.groups()]


def page_command(page: str, prefix: str) -> list[str]:
    for args in sessionrec_commands((DOCS / page).read_text()):
        if " ".join(["sessionrec", *args]).startswith(prefix):
            return args
    raise AssertionError(f"{page} has no command starting {prefix!r}")


def run(args: list[str], ml100k: Path, tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [str(ml100k) if a == "ml-100k" else a for a in args]
    args = [str(tmp / a) if a.startswith("runs/") else a for a in args]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err


@pytest.mark.e2e
def test_quoted_prepare_figures(
    ml100k: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The prepare commands of the pages, run as written, give the counts quoted beside them."""
    run(page_command("concepts/sessions.md", "sessionrec prepare ml-100k --out runs/ml-100k"),
        ml100k, tmp_path, capsys)  # fmt: skip
    sessions, predictions, items = quoted(
        "concepts/sessions.md", r"test part has (\d+) sessions and ([\d,]+) predictions over ([\d,]+) items"
    )  # fmt: skip
    data = sr.PreparedData(tmp_path / "runs/ml-100k")
    assert (data.test.n_sessions, data.test.n_predictions, data.train.n_items) == (
        sessions,
        predictions,
        items,
    )
    (evaluated,) = quoted("concepts/evaluation.md", r"\(([\d,]+) on the ML-100K test part")
    assert evaluated == predictions

    run(page_command("models/rating.md", "sessionrec prepare ml-100k --out runs/ml100k-ratings"),
        ml100k, tmp_path, capsys)  # fmt: skip
    dropped, total = quoted("models/rating.md", r"\(counted in `meta.json`: ([\d,]+) of ([\d,]+) on ML-100K\)")  # fmt: skip
    meta = sr.PreparedData(tmp_path / "runs/ml100k-ratings").meta
    assert meta["dropped"]["test"]["unknown_item_events"] == dropped
    assert meta["counts"]["test"]["events"] + dropped == total

    run(page_command("models/two-tower.md", "sessionrec prepare ml-100k --out runs/tfrs"),
        ml100k, tmp_path, capsys)  # fmt: skip
    train, test = quoted("models/two-tower.md", r"--examples tfrs +# ([\d,]+) / ([\d,]+) examples")  # fmt: skip
    tfrs = sr.PreparedData(tmp_path / "runs/tfrs")
    assert (tfrs.train.n_sessions, tfrs.test.n_sessions) == (train, test)


def test_seed_of_the_quoted_rating_split() -> None:
    args = page_command("models/rating.md", "sessionrec crossval ml-100k --model svd --protocol random")  # fmt: skip
    assert args[-2:] == ["--seed", "1"]  # the 0.940 beside it needs the seed (RMSE 0.9399)
