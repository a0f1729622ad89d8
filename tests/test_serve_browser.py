"""The web page in a real browser: Playwright (Python) driving Debian's headless chromium.

Playwright's own browser download cannot reach its host here: the test points Playwright at
the system's ``chromium`` executable, and skips when there is none (CI installs it: .ci/run).
The screenshot is kept as an artefact: tests/artifacts/serve-page.png (path printed).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason='needs the serve extra: pip install -e ".[serve]"')
pytest.importorskip("playwright", reason="needs playwright (the dev extra)")

from _serve_helpers import GRU_PARAMS, model_folder, running_server

from sessionrec.serving import ServeConfig, build_app

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).parent / "artifacts"


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("no chromium executable (Debian: apt-get install -y chromium; .ci/run does)")
    return path


def test_page_search_pick_switch_model_reload(tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    exe = chromium_path()
    folders = (
        model_folder("vsknn", tmp_path / "vsknn"),
        model_folder("gru4rec", tmp_path / "gru", GRU_PARAMS),
    )
    app = build_app(ServeConfig(model_dirs=tuple(map(str, folders)), state=str(tmp_path / "s.db")))
    with running_server(app) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(base + "/")
            expect(page.locator("body[data-ready='1']")).to_have_count(1)
            expect(page.get_by_label("Model")).to_have_value("vsknn")
            rows = page.locator("#recs tbody tr")
            expect(rows).to_have_count(0)

            # type part of a title (any case), pick it with the keyboard
            search = page.get_by_role("combobox", name="Add a movie to the session")
            search.fill("toy sto")
            options = page.get_by_role("listbox", name="Matching titles").get_by_role("option")
            expect(options.first).to_contain_text("Toy Story (1995)")
            search.press("Enter")
            expect(page.locator("#session li")).to_have_text(["Toy Story (1995)"])
            expect(rows).to_have_count(10)
            first = rows.first.locator("td").nth(1).inner_text()
            expect(page.locator("#latency")).to_contain_text("ms")
            expect(rows.first.locator("td.why")).to_contain_text("because of Toy Story (1995)")

            # a second movie by mouse: the list changes and names movies
            search.fill("golden")
            options.filter(has_text="GoldenEye (1995)").click()
            expect(page.locator("#session li")).to_have_count(2)
            titles = rows.locator("td:nth-child(2)").all_inner_texts()
            assert all("(" in t for t in titles), titles  # titles with their year
            assert "Toy Story (1995)" not in titles and "GoldenEye (1995)" not in titles
            assert titles[0] != first or len(set(titles)) == 10

            # switch model: the list is recomputed by GRU4Rec, no "because" column text
            page.get_by_label("Model").select_option("gru")
            expect(rows.first.locator("td.why")).to_have_text("")
            gru_titles = rows.locator("td:nth-child(2)").all_inner_texts()
            assert len(gru_titles) == 10

            # reload: the session (kept on the server, its id in localStorage) is still there
            page.reload()
            expect(page.locator("body[data-ready='1']")).to_have_count(1)
            expect(page.locator("#session li")).to_have_text(
                ["Toy Story (1995)", "GoldenEye (1995)"]
            )
            expect(page.get_by_label("Model")).to_have_value("gru")
            expect(rows).to_have_count(10)
            assert rows.locator("td:nth-child(2)").all_inner_texts() == gru_titles

            ARTIFACTS.mkdir(exist_ok=True)
            shot = ARTIFACTS / "serve-page.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot: {shot}")

            # reset starts a new, empty session
            page.get_by_role("button", name="Reset session").click()
            expect(page.locator("#session li")).to_have_count(0)
            expect(rows).to_have_count(0)
        finally:
            browser.close()
