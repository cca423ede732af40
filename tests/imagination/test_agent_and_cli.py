"""DreamerAgent save/load, the Policy protocol, and the dream / evaluate / train commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dreamlab.cli import main
from dreamlab.core.protocol import DistributionPolicy, Policy
from dreamlab.imagination.agent import AgentLoadError, DreamerAgent
from dreamlab.imagination.dreamer import DreamerConfig
from dreamlab.policy.actor_critic import Actor


@pytest.mark.slow
def test_agent_is_a_policy_and_round_trips_through_save_and_load(cartpole_setup: dict, tmp_path: Path):
    wm = cartpole_setup["wm"]
    torch.manual_seed(0)
    cfg = DreamerConfig(hidden=32)
    agent = DreamerAgent(
        wm, Actor(wm.feature_dim, wm.action_space, cfg.net_config()), env_id="CartPole-v1", dreamer_config=cfg
    )
    assert isinstance(agent, Policy) and isinstance(agent, DistributionPolicy)
    agent.save(tmp_path / "agent", wm_path=cartpole_setup["wm_path"])
    loaded = DreamerAgent.load(tmp_path / "agent")
    assert loaded.env_id == "CartPole-v1"
    obs = np.stack([ep.obs[:20] for ep in cartpole_setup["episodes"][:3]], 1)  # (time, n=3, 4)
    torch.manual_seed(1)
    a1 = [agent.act(o, np.full(3, t == 0)) for t, o in enumerate(obs)]
    p1 = agent.action_probs(obs[0], np.ones(3, bool))
    torch.manual_seed(1)
    a2 = [loaded.act(o, np.full(3, t == 0)) for t, o in enumerate(obs)]
    p2 = loaded.action_probs(obs[0], np.ones(3, bool))
    assert all(np.array_equal(x, y) for x, y in zip(a1, a2))
    assert a1[0].shape == (3,) and a1[0].dtype == np.int64
    assert np.allclose(p1, p2) and np.allclose(p1.sum(-1), 1.0)


def test_loading_a_bad_agent_directory_names_the_file(tmp_path: Path):
    with pytest.raises(AgentLoadError, match="agent.json"):
        DreamerAgent.load(tmp_path)
    (tmp_path / "agent.json").write_text(
        json.dumps({"format": "dreamlab-dreamer-agent", "version": 1, "feature_dim": 3, "greedy": True})
    )
    with pytest.raises(AgentLoadError, match="actor.pt"):
        DreamerAgent.load(tmp_path)


@pytest.mark.slow
def test_dream_command_trains_resumes_and_evaluate_reports_the_gap(
    cartpole_setup: dict, tmp_path: Path, capsys: pytest.CaptureFixture
):
    out = tmp_path / "agent"
    args = [
        "dream",
        "--wm",
        str(cartpole_setup["wm_path"]),
        "--logs",
        str(cartpole_setup["logs"]),
        "--out",
        str(out),
        "--no-progress",
        "--dreamer.hidden",
        "32",
        "--dreamer.max-starts",
        "64",
        "--batch-size",
        "4",
        "--seq-len",
        "16",
        "--save-every",
        "2",
    ]
    assert main(args + ["--steps", "3"]) == 0
    state = torch.load(out / "train_state.pt", weights_only=True)
    assert state["step"] == 3 and state["learner"]["updates"] == 3
    assert main(args + ["--steps", "5"]) == 0  # resumes at 3, runs 2 more
    assert torch.load(out / "train_state.pt", weights_only=True)["learner"]["updates"] == 5
    capsys.readouterr()
    assert main(["evaluate", "--agent", str(out), "--episodes", "2", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["env_id"] == "CartPole-v1" and len(res["real"]["returns"]) == 2
    assert res["gap"] == pytest.approx(res["dream"]["mean"] - res["real"]["mean"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("dreamer:\n  no_such_key: 1\n")
    assert main(args + ["--config", str(bad)]) == 2
    assert "no_such_key" in capsys.readouterr().err


@pytest.mark.slow
def test_train_command_runs_the_online_loop_and_resumes(tmp_path: Path):
    run = tmp_path / "run"
    args = [
        "train",
        "--env",
        "CartPole-v1",
        "--out",
        str(run),
        "--no-progress",
        "--preset",
        "tiny",
        "--prefill",
        "60",
        "--pretrain",
        "2",
        "--replay-ratio",
        "32",
        "--batch-size",
        "4",
        "--seq-len",
        "16",
        "--eval-every",
        "100",
        "--eval-episodes",
        "1",
        "--save-every",
        "50",
        "--dreamer.hidden",
        "32",
        "--dreamer.max-starts",
        "64",
    ]
    assert main(args + ["--steps", "100"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("eval_mean" in r for r in rows) and any("episode_return" in r for r in rows)
    state = torch.load(run / "train_state.pt", weights_only=True)
    assert state["updates"] >= 2 + (100 - 60) * 32 // 64 - 1
    assert (run / "agent" / "agent.json").exists()
    first = state["updates"]
    assert main(args + ["--steps", "160"]) == 0
    assert torch.load(run / "train_state.pt", weights_only=True)["updates"] > first
    assert main(["evaluate", "--agent", str(run), "--episodes", "1"]) == 0
