"""The main job end to end on tiny settings: every stage runs, the report is written, and a
second invocation resumes (skips finished stages) instead of redoing them."""

import json

import pytest

from dreamlab.cli import main

TINY = [
    "--llm",
    "toy",
    "--logs.steps",
    "1500",
    "--world-model.preset",
    "tiny",
    "--world-model.steps",
    "60",
    "--world-model.minutes",
    "2",
    "--dream.steps",
    "20",
    "--dream.transfer-every",
    "10",
    "--eval-episodes",
    "2",
    "--llm.pretrain-steps",
    "30",
    "--distill.tokens",
    "200",
    "--distill.eval-every",
    "100",
    "--distill.envs",
    "4",
    "--progress",
    "false",
]


@pytest.mark.slow
def test_quickstart_runs_every_stage_and_resumes(tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out), *TINY]) == 0
    for stage in ("collect", "worldmodel", "dream", "evaluate", "distill", "report"):
        assert (out / "stages" / f"{stage}.json").exists(), stage
    collect = json.loads((out / "stages" / "collect.json").read_text())
    assert collect["steps"] >= 1500
    ev = json.loads((out / "evaluate.json").read_text())
    assert len(ev["real"]["returns"]) == 2 and len(ev["dream"]["returns"]) == 2
    report = (out / "report.md").read_text()
    assert "dream-trained agent" in report and "OPSD student" in report
    for kind in ("openloop", "transfer", "distill"):
        assert (out / "plots" / f"{kind}.png").stat().st_size > 1000
    assert (out / "llm_opsd" / "config.json").exists()
    capsys.readouterr()
    # resume: every stage is already done, so nothing is recomputed
    before = (out / "stages" / "dream.json").read_text()
    assert main(["quickstart", "--out", str(out), *TINY]) == 0
    assert "already done" in capsys.readouterr().err
    assert (out / "stages" / "dream.json").read_text() == before
