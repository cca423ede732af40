"""The bench's SB3 baselines (``sb3-ppo``, ``sb3-dqn-sac``) through the real CLI on tiny budgets: one
result per algorithm and budget, the summary rows, resume, the head-to-head line beside a recorded
dreamlab run, and the one-line error when stable-baselines3 is missing."""

import csv
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from dreamlab.baselines import ZOO_SOURCES, sb3_budgets
from dreamlab.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--suite", "quick", "--seeds", "1", "--budget.eval-episodes", "2", "--progress", "false"]


def test_sb3_budgets_follow_the_dreamlab_modes_chosen():
    assert sb3_budgets(("online", "sb3-ppo"), 3000, 8000) == [("online", 3000)]
    assert sb3_budgets(("offline", "online", "sb3-ppo"), 3000, 8000) == [("online", 3000), ("offline", 8000)]
    assert sb3_budgets(("sb3-ppo",), 3000, 8000) == [("online", 3000), ("offline", 8000)]
    assert sb3_budgets(("sb3-ppo",), 500, 500) == [("online", 500)]


@pytest.mark.slow
def test_sb3_modes_tiny_write_results_summary_and_resume(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where SB3's default logger would make SB3-* folders
    out = tmp_path / "bench"
    args = ["bench", "--out", str(out), *TINY, "--envs", "CartPole-v1,Pendulum-v1", "--modes", "sb3-ppo,sb3-dqn-sac"]
    args += ["--budget.online-steps", "320", "--budget.log-steps", "320", "--budget.online-prefill", "100"]
    assert main(args) == 0
    assert not list(tmp_path.glob("SB3-*"))  # SB3's logger is off: no /tmp/SB3-* folders
    want = {("CartPole-v1", "sb3-ppo"): "ppo", ("CartPole-v1", "sb3-dqn-sac"): "dqn"}
    want |= {("Pendulum-v1", "sb3-ppo"): "ppo", ("Pendulum-v1", "sb3-dqn-sac"): "sac"}
    results = {}
    for (env_id, mode), algo in want.items():
        r = json.loads((out / env_id / f"{mode}-320" / "seed0" / "result.json").read_text())
        results[env_id, mode] = r
        assert (r["env"], r["mode"], r["seed"], r["algo"], r["matches"]) == (env_id, mode, 0, algo, "online")
        assert r["real_env_steps"] == r["budget_steps"] == 320  # exactly the budget
        assert len(r["real_returns"]) == r["eval_episodes"] == 2
        assert math.isfinite(r["real_return_mean"]) and r["real_return_std"] >= 0
        assert r["train_seconds"] > 0 and r["eval_seconds"] > 0
        assert r["wall_seconds"] >= round(r["train_seconds"] + r["eval_seconds"], 1) - 0.1
        assert r["hyperparameters"]["source"] == ZOO_SOURCES[algo]
        assert r["dream_return_mean"] is None and r["machine"]["cpu_count"] >= 1
    assert min(results["CartPole-v1", "sb3-ppo"]["real_returns"]) >= 1.0  # CartPole pays 1 per step
    assert max(results["Pendulum-v1", "sb3-dqn-sac"]["real_returns"]) <= 0.0  # Pendulum's reward is never positive
    # the zoo's CartPole PPO rollout (8 envs x 32 steps) rescaled to fill 320 steps with whole rollouts
    assert results["CartPole-v1", "sb3-ppo"]["hyperparameters"]["adapted"]["n_steps"] == [32, 40]
    assert results["CartPole-v1", "sb3-dqn-sac"]["hyperparameters"]["learning_starts"] == 1000

    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted((r["env"], r["algo"]) for r in rows) == sorted((e, a) for (e, _), a in want.items())
    summary = (out / "summary.md").read_text()
    for name in ("SB3 PPO", "SB3 DQN", "SB3 SAC", "RL Zoo SAC [ref]"):
        assert name in summary
    assert f"{results['Pendulum-v1', 'sb3-dqn-sac']['real_return_mean']:.1f}" in summary
    assert "Head to head" not in summary  # no dreamlab run to compare with

    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert err.count("finished before, skipping") == 4 and "starting" not in err


def test_head_to_head_line_beside_a_recorded_dreamlab_run(tmp_path, capsys):
    """A finished dreamlab online run (the recorded quick-suite result) is reused, SB3 PPO runs at its
    3000 real steps, and the summary says which is ahead, with both medians."""
    out = tmp_path / "bench"
    recorded = ROOT / "benchmarks/results/bench_quick/CartPole-v1/online/seed0/result.json"
    (out / "CartPole-v1" / "online" / "seed0").mkdir(parents=True)
    shutil.copy(recorded, out / "CartPole-v1" / "online" / "seed0" / "result.json")
    ours = json.loads(recorded.read_text())["real_return_mean"]
    args = ["bench", "--out", str(out), *TINY, "--envs", "CartPole-v1", "--modes", "online,sb3-ppo"]
    assert main(args) == 0
    assert "CartPole-v1 online seed 0: finished before, skipping" in capsys.readouterr().err
    ppo = json.loads((out / "CartPole-v1" / "sb3-ppo-3000" / "seed0" / "result.json").read_text())
    assert ppo["real_env_steps"] == 3000
    summary = (out / "summary.md").read_text()
    word = "**ahead**" if ours > ppo["real_return_mean"] else "**behind**"
    line = next(x for x in summary.splitlines() if x.startswith("- Head to head at 3000 real steps"))
    assert f"dreamlab online {ours:.1f}" in line and f"SB3 PPO {ppo['real_return_mean']:.1f}" in line and word in line
    assert f"dreamlab ahead in {int(ours > ppo['real_return_mean'])} of 1 comparisons" in summary


def test_missing_sb3_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "stable_baselines3", None)  # the third-party import fails
    out = tmp_path / "bench"
    assert main(["bench", "--out", str(out), *TINY, "--envs", "CartPole-v1", "--modes", "online,sb3-ppo"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "stable-baselines3" in err and "--modes offline,online" in err
    assert not out.exists()  # nothing ran
