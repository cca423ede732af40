"""docs/results.md is generated from benchmarks/results/ and kept in step with it."""

import json

from dreamlab.cli import main
from dreamlab.core.machine import run_manifest
from dreamlab.results_doc import DOC, RESULTS, render


def test_committed_results_page_is_up_to_date():
    assert DOC.read_text() == render(RESULTS), "docs/results.md is stale: run `dreamlab results`"


def test_page_names_command_commit_and_headline(tmp_path):
    res = tmp_path / "results"
    res.mkdir()
    rec = {
        "benchmark": "toy",
        "summary": {"cartpole": {"median": 471.5, "met": False}},
        **run_manifest({"steps": 3}, command="python -m dreamlab.benchmarks.toy --seeds 0"),
    }
    (res / "toy.json").write_text(json.dumps(rec))
    (res / "toy.png").write_bytes(b"png")
    (res / "old.json").write_text(json.dumps({"benchmark": "old", "x": 1.5}))
    (res / "broken.json").write_text("{not json")
    out = tmp_path / "results.md"
    assert main(["results", "--results", str(res), "--out", str(out)]) == 0
    page = out.read_text()
    assert "`python -m dreamlab.benchmarks.toy --seeds 0`" in page
    assert "| cartpole.median | 471.5 |" in page and "| cartpole.met | false |" in page
    assert "toy.png" in page and "broken.json`: not valid JSON" in page
    old = page[page.index("### `old.json`") :]
    assert "command: not recorded" in old and "| x | 1.5 |" in old
    assert "1 record both the command and the commit" in page or rec["commit"] is None
