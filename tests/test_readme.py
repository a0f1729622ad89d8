"""The README as a landing page: it fits on a page, names what a user or a test must install,
and its notebook, shell and HTTP snippets run as written; its headline table is the demo's.

The end-to-end tests run the snippets on ML-100K (a few seconds each; GRU4Rec's training line,
minutes, is left out); the HTTP snippet runs in-process against tiny model folders.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from _doc_snippets import README, ROOT, code_blocks, section, shell_commands
from _helpers import run_cli

TEXT = README.read_text()


def test_readme_fits_on_a_page() -> None:
    assert len(TEXT.splitlines()) <= 250


def test_readme_names_every_system_package_the_tests_install() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    packages = re.findall(r"missing\+=\((\S+)\)", ci)
    assert set(packages) >= {"postgresql", "chromium", "redis-server"}
    for name in packages:
        assert f"`{name}`" in section(TEXT, "What you need"), name


def test_readme_links_resolve() -> None:
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", TEXT):
        if "://" not in target:
            assert (ROOT / target).exists(), target


def quoted(pattern: str) -> list[int]:
    """The numbers the README quotes in ``pattern`` (a regex with groups), commas removed."""
    found = re.search(pattern, TEXT)
    assert found, f"the README no longer says {pattern!r}"
    return [int(g.replace(",", "")) for g in found.groups()]


@pytest.mark.e2e
def test_readme_notebook_snippet_runs(ml100k: Path, tmp_path: Path) -> None:
    (code,) = code_blocks(section(TEXT, "From a notebook"), "python")
    assert len(code.splitlines()) <= 12
    code = code.replace('sr.load("ml-100k")', f"sr.load({str(ml100k)!r})")
    code = code.replace('"runs/', f'"{tmp_path}/runs/')
    space: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), space)
    predictions, items = quoted(r"every test position \(([\d,]+) predictions\), full ranking over ([\d,]+)\s+items")  # fmt: skip
    res = space["res"]
    assert res.predictions == predictions  # type: ignore[attr-defined]
    assert space["data"].train.n_items == items  # type: ignore[attr-defined]
    assert res.metrics["recall@20"] > 0.2  # type: ignore[attr-defined]
    assert space["model"].recommend(["Toy Story"], k=3).height == 3  # type: ignore[attr-defined]


@pytest.mark.e2e
def test_readme_shell_snippet_runs(
    ml100k: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (block,) = code_blocks(section(TEXT, "From a shell"), "bash")
    lines = shell_commands(block)
    assert len(lines) <= 10
    outputs = {}
    for line in lines:
        args = line.split(" ", 1)[1]
        if "--model gru4rec" in args:
            continue  # minutes of training; its options are checked in test_docs
        import shlex

        argv = [str(ml100k) if a == "ml-100k" else a for a in shlex.split(args)]
        argv = [str(tmp_path / a) if a.startswith("runs/") else a for a in argv]
        code, out, err = run_cli(argv, capsys)
        assert code == 0, f"{line}\n{err}"
        outputs[argv[0]] = out
    assert "7,117" in outputs["compare"] and "markov" in outputs["compare"]
    assert "(19" in outputs["recommend"]  # titles with their years
    assert "vsknn" in outputs["models"]


@pytest.mark.e2e
def test_readme_headline_rows_are_what_the_demo_prints(
    ml100k: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The demo's cheap rows, run again: the README quotes them as the demo prints them."""
    code, out, err = run_cli(
        ["demo", "--source", str(ml100k), "--out", str(tmp_path), "-m", "pop", "-m", "markov"],
        capsys,
    )
    assert code == 0, err
    results = json.loads((tmp_path / "results.json").read_text())
    table = section(TEXT, "Results")
    for name in ("pop", "markov"):
        row = re.search(rf"^\| {name} \| (.*) \|$", table, flags=re.M)
        assert row, name
        quoted_figures = [c.strip() for c in row.group(1).split("|")][:4]
        r = results[name]
        ours = [
            r["exclude_seen"]["recall@20"],
            r["exclude_seen"]["mrr@20"],
            r["all"]["recall@20"],
            r["all"]["mrr@20"],
        ]
        assert quoted_figures == [f"{v:.3f}" for v in ours], name
        assert f"{r['exclude_seen']['recall@20']:.3f}" in out  # as printed


def test_readme_http_snippet_runs(tmp_path: Path) -> None:
    """Each curl line of the README, in-process, against model folders named as it names them."""
    pytest.importorskip("fastapi", reason='needs the serve extra: pip install -e ".[serve]"')
    from _serve_helpers import GRU_PARAMS, model_folder
    from fastapi.testclient import TestClient

    from sessionrec.serving import ServeConfig, build_app

    (block,) = code_blocks(section(TEXT, "Over HTTP"), "bash")
    lines = shell_commands(block)
    assert len(lines) <= 10
    serve = [line for line in lines if line.startswith("sessionrec serve")]
    assert serve == ["sessionrec serve runs/gru4rec runs/vsknn"]
    folders = [
        model_folder("gru4rec", tmp_path / "gru4rec", GRU_PARAMS),
        model_folder("vsknn", tmp_path / "vsknn"),
    ]
    config = ServeConfig(model_dirs=tuple(map(str, folders)), state=str(tmp_path / "s.sqlite"))
    import shlex

    with TestClient(build_app(config)) as client:
        calls = [shlex.split(line) for line in lines if line.startswith("curl")]
        assert len(calls) >= 6
        for words in calls:
            url = next(w for w in words if w.startswith("localhost:8000"))
            path = url.removeprefix("localhost:8000")
            body = words[words.index("-d") + 1] if "-d" in words else None
            if body is None:
                resp = client.get(path)
            else:
                resp = client.post(path, content=body, headers={"content-type": "application/json"})
            assert resp.status_code == 200, f"{' '.join(words)}: {resp.text}"
            if path.endswith("/events") or "/recommend" in path:
                assert resp.json()["recommendations"], path
