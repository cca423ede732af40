"""``dreamlab bench --suite quick`` on tiny settings through the real CLI: one JSON per run, the CSV
and the summary with finite figures and cited references; a second invocation skips finished runs."""

import csv
import json
import math

import pytest

from dreamlab.cli import main
from dreamlab.references import SOURCE

TINY = [
    "--suite",
    "quick",
    "--seeds",
    "1",
    "--envs",
    "CartPole-v1",
    "--modes",
    "offline,online",
    "--budget.preset",
    "tiny",
    "--budget.log-steps",
    "400",
    "--budget.wm-steps",
    "20",
    "--budget.dream-steps",
    "5",
    "--budget.online-steps",
    "300",
    "--budget.online-prefill",
    "100",
    "--budget.online-pretrain",
    "5",
    "--budget.replay-ratio",
    "16",
    "--budget.eval-episodes",
    "2",
    "--num-envs",
    "2",
    "--progress",
    "false",
]


@pytest.mark.slow
def test_bench_quick_tiny_writes_results_and_resumes(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "--out", str(out), *TINY]) == 0
    results = {}
    for mode in ("offline", "online"):
        path = out / "CartPole-v1" / mode / "seed0" / "result.json"
        r = json.loads(path.read_text())
        results[mode] = r
        assert (r["env"], r["mode"], r["seed"]) == ("CartPole-v1", mode, 0)
        for key in ("real_return_mean", "real_return_std", "dream_return_mean", "gap", "gap_relative", "wall_seconds"):
            assert math.isfinite(r[key]), (mode, key, r[key])
        # CartPole pays 1 per step, so every episode lasts at least one step
        assert len(r["real_returns"]) == 2 and min(r["real_returns"]) >= 1.0
        assert r["gap"] == r["dream_return_mean"] - r["real_return_mean"]
        assert r["config"]["preset"] == "tiny" and r["wall_seconds"] > 0
        assert r["machine"]["cpu_count"] >= 1
    assert results["offline"]["real_env_steps"] >= 400  # the logged steps
    assert results["online"]["real_env_steps"] == 300
    assert 0 < results["offline"]["behaviour_return_mean"] < 500

    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["mode"] for r in rows) == ["offline", "online"]
    assert all(math.isfinite(float(r["real_return_mean"])) for r in rows)
    summary = (out / "summary.md").read_text()
    assert "## CartPole-v1" in summary and "dreamlab offline" in summary and "dreamlab online" in summary
    assert "RL Zoo PPO" in summary and SOURCE in summary
    assert f"{results['offline']['real_return_mean']:.1f}" in summary

    # second invocation: both runs are finished, nothing is recomputed
    before = {m: (out / "CartPole-v1" / m / "seed0" / "result.json").read_text() for m in ("offline", "online")}
    capsys.readouterr()
    assert main(["bench", "--out", str(out), *TINY]) == 0
    err = capsys.readouterr().err
    assert err.count("finished before, skipping") == 2
    assert "starting" not in err
    for m, text in before.items():
        assert (out / "CartPole-v1" / m / "seed0" / "result.json").read_text() == text


def test_bench_rejects_unknown_env_and_mode(tmp_path, capsys):
    assert main(["bench", "--out", str(tmp_path), "--envs", "Nope-v0"]) == 2
    assert "envs" in capsys.readouterr().err
    assert main(["bench", "--out", str(tmp_path), "--modes", "offline,sideways"]) == 2
    assert "modes" in capsys.readouterr().err


def test_classic_budgets_per_env_and_overrides_win():
    from dreamlab.bench import BenchConfig, BudgetOverrides

    cfg = BenchConfig(suite="classic")
    assert cfg.resolved_budget("CartPole-v1").online_steps == 10_000  # the suite's
    assert cfg.resolved_budget("Acrobot-v1").online_steps == 20_000  # issue 16's target budgets
    assert cfg.resolved_budget("MountainCarContinuous-v0").online_steps == 50_000
    assert cfg.resolved_budget("Acrobot-v1").log_steps == 20_000  # the rest stays the suite's
    over = BenchConfig(suite="classic", budget=BudgetOverrides(online_steps=3_000))
    assert over.resolved_budget("MountainCarContinuous-v0").online_steps == 3_000
    assert BenchConfig(suite="quick").resolved_budget("Acrobot-v1").online_steps == 3_000


@pytest.mark.slow
def test_bench_dreamer_settings_reach_the_agent_and_label_the_rows(tmp_path):
    """An ablation: ``--dreamer.intrinsic 0.5`` reaches the online actor-critic (the agent records it),
    is recorded in the result and names the summary row."""
    args = [a if a != "offline,online" else "online" for a in TINY]
    assert main(["bench", "--out", str(tmp_path), *args, "--dreamer.intrinsic", "0.5", "--threads", "1"]) == 0
    result = json.loads((tmp_path / "CartPole-v1" / "online" / "seed0" / "result.json").read_text())
    assert result["dreamer"] == {"intrinsic": 0.5}
    agent = json.loads((tmp_path / "CartPole-v1" / "online" / "seed0" / "online" / "agent" / "agent.json").read_text())
    assert agent["dreamer"]["intrinsic"] == 0.5
    assert "dreamlab online (quick, tiny, replay ratio 16, intrinsic 0.5)" in (tmp_path / "summary.md").read_text()
