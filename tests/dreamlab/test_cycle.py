"""``dreamlab cycle`` end to end on tiny settings: every round's stages run, real steps are
counted and logged exactly once, the LLM of each round reloads with plain transformers, the
report and plot are written, and a cycle killed mid-round resumes where it was."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict

import numpy as np
import pytest

from dreamlab.cli import main
from dreamlab.cycle import CycleConfig, CycleDistillConfig, CycleError, GRPOPracticeConfig, feedback_fn, with_feedback
from dreamlab.data.collect import collect
from dreamlab.data.store import EpisodeStore

TINY = [
    "--llm",
    "toy",
    "--env",
    "CartPole-v1",
    "--prior.log-steps",
    "400",
    "--prior.pretrain-steps",
    "30",
    "--deploy.steps",
    "300",
    "--deploy.envs",
    "4",
    "--world-model.preset",
    "tiny",
    "--world-model.steps-first",
    "40",
    "--world-model.steps-per-round",
    "20",
    "--dreamer.steps",
    "8",
    "--distill.tokens",
    "200",
    "--distill.envs",
    "4",
    "--eval-episodes",
    "2",
    "--threads",
    "1",
    "--no-progress",
]


def _rows(out):
    with open(out / "cycle.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_cycle_runs_rounds_counts_real_steps_and_reloads(tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "cyc"
    assert main(["cycle", "--rounds", "2", "--out", str(out), *TINY]) == 0
    rows = _rows(out)
    assert [r["round"] for r in rows] == ["base", "0", "1"]
    deployed = [json.loads((out / "stages" / f"round{r}_deploy.json").read_text()) for r in (0, 1)]
    for d in deployed:  # the budget caps the steps taken (4 envs step in lockstep)
        assert 300 <= d["real_steps"] < 300 + 4
    assert int(rows[-1]["real_steps"]) == sum(d["real_steps"] for d in deployed)
    assert EpisodeStore(out / "logs").num_steps == sum(d["real_steps"] for d in deployed)  # every step, once
    for r in rows[1:]:
        assert np.isfinite(float(r["llm_real"])) and np.isfinite(float(r["llm_dream"]))
        assert np.isfinite(float(r["teacher_real"]))
    for r in (0, 1):
        AutoModelForCausalLM.from_pretrained(out / "rounds" / str(r) / "llm")
    # the world model continued: round 1 trained further from round 0's state
    wm = [json.loads((out / "stages" / f"round{r}_worldmodel.json").read_text())["global_step"] for r in (0, 1)]
    assert wm == [40, 60]
    # so did the actor-critic: round 1 starts from round 0's 8 updates and adds 8 more
    practice = [json.loads((out / "stages" / f"round{r}_practice.json").read_text()) for r in (0, 1)]
    assert [p["warm_started_from"] for p in practice] == [0, 8]
    assert [p["dream_updates_total"] for p in practice] == [8, 16]
    assert "LLM real return" in (out / "report.md").read_text()
    assert (out / "plots" / "cycle.png").stat().st_size > 1000
    capsys.readouterr()
    assert main(["plot", "cycle", str(out), "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again.png").exists()


@pytest.mark.slow
def test_cycle_killed_mid_round_resumes(tmp_path):
    out = tmp_path / "cyc"
    cmd = [sys.executable, "-m", "dreamlab", "cycle", "--rounds", "2", "--out", str(out), *TINY]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    marker = out / "stages" / "round1_deploy.json"
    t0 = time.time()
    while not marker.exists() and proc.poll() is None and time.time() - t0 < 300:
        time.sleep(0.2)
    assert marker.exists(), "the cycle never reached round 1"
    os.killpg(proc.pid, signal.SIGKILL)  # mid-round 1: its world model is training
    proc.wait()
    assert not (out / "cycle.csv").exists() or len(_rows(out)) < 3
    done_before = sorted(p.name for p in (out / "stages").glob("*.json"))
    assert "round0_evaluate.json" in done_before and "round1_evaluate.json" not in done_before
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "round0_practice: already done" in r.stderr and "round1_deploy: already done" in r.stderr
    rows = _rows(out)
    assert [x["round"] for x in rows] == ["base", "0", "1"]
    assert EpisodeStore(out / "logs").num_steps == int(rows[-1]["real_steps"])  # nothing logged twice


def test_feedback_rule_and_custom_function_errors(tmp_path):
    collect("CartPole-v1", "random", 60, num_envs=2, seed=0, out=tmp_path / "logs", progress=False, writer="inline")
    eps = EpisodeStore(tmp_path / "logs").episodes()
    fb = with_feedback(eps, feedback_fn("rule", "CartPole-v1"), "logs")
    for ep in fb:
        assert ep.feedback[0] == 0
        if ep.is_terminal[-1]:  # the pole fell: thumbs down on the last transition only
            assert ep.feedback[-1] == -1 and (ep.feedback[1:-1] == 1).all()
    with pytest.raises(CycleError, match=r"expected \(\d+,\) finite"):
        with_feedback(eps, lambda ep: np.zeros(3), "logs")
    with pytest.raises(CycleError, match="feedback"):
        feedback_fn("thumbs", "CartPole-v1")
    with pytest.raises(CycleError, match="no teacher"):
        CycleConfig(practice="none", distill=CycleDistillConfig(method="opsd")).check()
    with pytest.raises(CycleError, match="grpo settings.*score"):
        CycleConfig(grpo=GRPOPracticeConfig(score="vibes")).check()
    with pytest.raises(CycleError, match=r"grpo\.horizon"):
        CycleConfig(grpo=GRPOPracticeConfig(horizon=-1)).check()


@pytest.mark.slow
def test_cycle_practises_with_grpo_and_the_verifier(tmp_path):
    """One round with GRPO as the practice: its teacher is trained in the dream (from scratch,
    scored by summed verifier reward over short dreams here), then distilled into the LLM."""
    out = tmp_path / "cyc"
    args = [
        "cycle",
        "--rounds",
        "1",
        "--out",
        str(out),
        "--practice",
        "grpo",
        "--grpo.iterations",
        "2",
        "--grpo.horizon",
        "20",
        *TINY,
    ]
    assert main(args) == 0
    practice = json.loads((out / "stages" / "round0_practice.json").read_text())
    assert 0 <= practice["dream_success"] <= 1 and practice["teacher_real"]["mean"] > 0
    cfg = json.loads((out / "cycle_config.json").read_text())
    assert cfg["grpo"]["score"] == "reward" and cfg["grpo"]["bc_steps"] == 0 and cfg["grpo"]["horizon"] == 20
    agent = json.loads((out / "rounds" / "0" / "agent" / "grpo_agent.json").read_text())
    assert agent["grpo"]["horizon"] == 20 and agent["grpo"]["score"] == "reward", agent
    rows = _rows(out)
    assert rows[-1]["round"] == "0" and float(rows[-1]["llm_real"]) > 0


def test_collect_with_a_taken_budget_keeps_episodes_in_flight(tmp_path):
    s = collect(
        "CartPole-v1",
        "heuristic",
        250,
        num_envs=4,
        seed=0,
        out=tmp_path / "d",
        progress=False,
        writer="inline",
        budget="taken",
    )
    store = EpisodeStore(tmp_path / "d")
    assert s.steps_taken == store.num_steps and 250 <= s.steps_taken < 254
    truncated = [ep for ep in store.episodes() if not ep.is_terminal[-1]]
    assert len(truncated) == 4  # the heuristic balances: every env's episode was still in flight


@pytest.mark.slow
def test_no_dreaming_ablation_fine_tunes_on_the_best_logs(tmp_path):
    import torch
    from safetensors.torch import load_file

    out = tmp_path / "nd"
    args = [
        "cycle",
        "--rounds",
        "1",
        "--out",
        str(out),
        "--practice",
        "none",
        "--distill.method",
        "sft-logs",
        "--distill.sft-steps",
        "10",
        *TINY,
    ]
    assert main(args) == 0
    stages = {p.stem for p in (out / "stages").glob("*.json")}
    assert "round0_worldmodel" not in stages and "round0_practice" not in stages
    sft = json.loads((out / "stages" / "round0_distill.json").read_text())
    assert sft["method"] == "sft-logs" and sft["episodes"] >= 1
    base = load_file(out / "llm_base" / "model.safetensors")
    tuned = load_file(out / "rounds" / "0" / "llm" / "model.safetensors")
    assert any(not torch.equal(base[k], tuned[k]) for k in base)
    assert "no world model" in (out / "report.md").read_text()


def test_cycle_refuses_to_resume_a_folder_with_other_settings(tmp_path):
    out = tmp_path / "cyc"
    out.mkdir()
    base = CycleConfig(out=str(out), progress=False)
    record = asdict(base)
    record["dreamer"]["steps"] = 999
    (out / "cycle_config.json").write_text(json.dumps(record))
    assert base.dreamer.steps != 999
    from dreamlab.cycle import Cycle, DreamerPracticeConfig

    with pytest.raises(CycleError, match=rf"cycle_config.json.*dreamer.steps: 999 -> {base.dreamer.steps}"):
        Cycle(base)
    assert json.loads((out / "cycle_config.json").read_text())["dreamer"]["steps"] == 999  # nothing overwritten
    d999 = DreamerPracticeConfig(steps=999)
    Cycle(CycleConfig(out=str(out), progress=True, rounds=5, dreamer=d999))  # free fields may change
    Cycle(
        CycleConfig(out=str(out), dreamer=d999, grpo=GRPOPracticeConfig(iterations=3))
    )  # unused by Dreamer practice: free
    with pytest.raises(CycleError, match="practice: 'dreamer' -> 'grpo'"):
        Cycle(CycleConfig(out=str(out), dreamer=d999, practice="grpo", grpo=GRPOPracticeConfig(iterations=3)))
