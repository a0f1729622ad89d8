from __future__ import annotations

import json
from pathlib import Path

import pytest

from sessionrec.cli import main


@pytest.mark.e2e
def test_demo_end_to_end_with_cheap_models(
    ml100k: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["demo", "--source", str(ml100k), "--out", str(tmp_path), "-m", "pop", "-m", "markov"])
    out = capsys.readouterr().out
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results) == {"pop", "markov"}
    assert results["markov"]["predictions"] == 7_117
    # first-order Markov beats popularity on next-item accuracy, with or without seen items
    for key in ("all", "exclude_seen"):
        assert results["markov"][key]["recall@20"] > results["pop"][key]["recall@20"]
    assert (tmp_path / "explore" / "report.html").exists()
    assert (tmp_path / "models" / "markov" / "config.json").exists()
    assert "Toy Story (1995)" in out and "results.md" in out
    # captioned with its protocol, then the example session's recommendations by title
    md = (tmp_path / "results.md").read_text()
    for words in ("every position", "full ranking", "conservative ties", "train+valid", "7,117"):
        assert words in md, words
    assert "the next 10 after Toy Story (1995) → Star Wars (1977) → Fargo (1996)" in md
    assert md.count("\n| ") >= 2 + 2 + 10  # two tables: 2 models, 10 recommendations
    lines = out.splitlines()
    for name in ("pop", "markov"):
        after = lines[lines.index(name) + 1]
        assert after.strip(), f"a blank line after {name}"
    assert "4. train and evaluate" in out  # headers whole at 80 columns without a terminal
    assert "try: sessionrec recommend" in out and '"Fargo (1996)" -k 10' in out.split("try:")[1]
    models = tmp_path / "models"
    assert f"sessionrec serve {models / 'pop'} {models / 'markov'}" in out  # the page, live
    assert out.rstrip().endswith("then open http://127.0.0.1:8000/")


def test_demo_rejects_unknown_model(tmp_path: Path, ml100k: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--source", str(ml100k), "--out", str(tmp_path / "o"), "-m", "nope"])
    assert exc.value.code == 2
    assert not (tmp_path / "o").exists()  # refused before any work
