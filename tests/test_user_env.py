"""A user's own env (``--env module:Class``) through the commands, as a user runs them.

The fixture env (``tests/fixtures/point_mass.py``) is not installed. The commands that import it
run as subprocesses from the fixtures folder with ``python -P -m dreamlab`` (``-P``: the current
directory is *not* put on ``sys.path``, as for the ``dreamlab`` console script), so the import
from the current directory is what makes ``point_mass:PointMass`` resolve; the commands that only
read files (train-wm, eval-wm, dream) and the refusals run in process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dreamlab.data.collect import EnvSpecError, make_env
from tests.hostile.helpers import assert_user_error, run_cli

FIXTURES = Path(__file__).parent / "fixtures"
ENV = "point_mass:PointMass"


def dreamlab(*argv: str | Path) -> dict:
    """``dreamlab ARGV --threads 1`` from the fixtures folder; its stdout parsed as JSON when it is JSON."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    cmd = [sys.executable, "-P", "-m", "dreamlab", *map(str, argv), "--threads", "1"]
    res = subprocess.run(cmd, cwd=FIXTURES, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"rc {res.returncode}\nstdout:\n{res.stdout[-2000:]}\nstderr:\n{res.stderr[-2000:]}"
    return json.loads(res.stdout) if res.stdout.startswith("{") else {"stdout": res.stdout}


def test_a_module_of_the_current_directory_only_from_there(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # not the fixtures folder, and nothing named point_mass on sys.path
    with pytest.raises(EnvSpecError, match=r"cannot import module 'point_mass' from PYTHONPATH or the current dir"):
        make_env(ENV)
    assert str(tmp_path) not in sys.path  # the current directory was on sys.path for that import only


@pytest.mark.slow
def test_user_env_chain_collect_to_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logs, wm, agent, grpo = tmp_path / "logs", tmp_path / "wm", tmp_path / "agent", tmp_path / "grpo"
    ckpt = wm / "world_model.ckpt"

    # collect: the module imports from the current directory; the store records the env id
    dreamlab("collect", "--env", ENV, "--policy", "random", "--steps", "1000", "--out", logs)
    assert json.loads((logs / "metadata.json").read_text())["env_id"] == ENV

    # train-wm: trains, scores itself open-loop against copy-last, records it, warns when not better
    argv = ["train-wm", "--logs", logs, "--out", wm, "--preset", "tiny", "--max-steps", "30", "--no-progress"]
    code, out, err = run_cli([*argv, "--threads", "1"], capsys)
    assert code == 0 and "copy-last" in out, err
    openloop = json.loads((wm / "train_summary.json").read_text())["openloop"]
    assert openloop["horizon"] == 15 and openloop["nmse_at_horizon"] > 0
    worse = openloop["nmse_at_horizon"] >= openloop["copy_last_at_horizon"]
    assert (openloop["warning"] is not None) == worse and ("not better than copying" in err) == worse

    # eval-wm: the same comparison, a JSON field and a plain warning when the model is not better
    code, out, err = run_cli(["eval-wm", "--wm", ckpt, "--logs", logs, "--max-windows", "64", "--json"], capsys)
    result, s = json.loads(out), json.loads(out)["summary"]
    assert code == 0 and (result["warning"] is not None) == (s["nmse_at_horizon"] >= s["nmse_copy_last_at_horizon"])
    if result["warning"]:
        assert "not better than copying the last observation" in err and "--preset" in err

    # dream: Dreamer; GRPO needs a verifier of the user's (the env has no built-in one)
    code, _, err = run_cli(
        ["dream", "--wm", ckpt, "--logs", logs, "--out", agent, "--steps", "3", "--no-progress"], capsys
    )
    assert code == 0 and json.loads((agent / "agent.json").read_text())["env_id"] == ENV, err
    grpo_args = ["--grpo.iterations", "1", "--grpo.groups", "2", "--grpo.group-size", "2", "--grpo.horizon", "10"]
    base = ["dream", "--algo", "grpo", "--wm", ckpt, "--logs", logs, "--no-progress", *grpo_args]
    code, _, err = run_cli([*base, "--out", tmp_path / "g0", "--trust-code"], capsys)
    assert_user_error(code, err, "dream", "metadata.json", "--grpo.dream.verifier")
    dreamlab(*base, "--out", grpo, "--grpo.dream.verifier", "point_mass:reached")  # imported from the cwd
    assert (grpo / "grpo_agent.json").exists()

    # evaluate: the GRPO agent in the user's env named by --env (the refusal), and the Dreamer agent
    res_g = dreamlab("evaluate", "--agent", grpo, "--env", ENV, "--episodes", "2", "--json")
    assert res_g["agent"] == "grpo" and res_g["env_id"] == ENV and len(res_g["real"]["returns"]) == 2
    # the Dreamer agent's env id read from agent.json names code: refused without --trust-code ...
    code, _, err = run_cli(["evaluate", "--agent", agent, "--episodes", "1"], capsys)
    assert_user_error(code, err, "evaluate", agent / "agent.json", "field 'env_id'", "--trust-code")
    # ... and it runs with it (the module again from the current directory)
    res_d = dreamlab("evaluate", "--agent", agent, "--episodes", "2", "--json", "--trust-code")
    assert res_d["real"]["mean"] < 0 and res_d["dream"] is not None  # -distance per step: negative returns


def test_user_env_bench_offline_online_and_sb3(tmp_path: Path) -> None:
    """``dreamlab bench --envs module:Class``: random logs offline (no heuristic), online, an SB3 row."""
    import csv

    budget = ["--budget.preset", "tiny", "--budget.log-steps", "400", "--budget.wm-steps", "20"]
    budget += ["--budget.dream-steps", "2", "--budget.online-steps", "300", "--budget.online-prefill", "100"]
    budget += ["--budget.online-pretrain", "5", "--budget.eval-episodes", "2"]
    out = tmp_path / "bench"
    dreamlab("bench", "--envs", ENV, "--modes", "offline,online,sb3-ppo", "--seeds", "1", "--out", out, *budget)
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert sorted(r["mode"] for r in rows) == ["offline", "online", "sb3-ppo", "sb3-ppo"]  # SB3 at 300 and 400
    assert {r["env"] for r in rows} == {ENV} and all(float(r["real_return_mean"]) < 0 for r in rows)
    summary = (out / "summary.md").read_text()
    assert f"## {ENV}" in summary and "logged behaviour (uniformly random)" in summary
    assert "Head to head at 300 real steps" in summary


def test_user_env_cycle_with_a_toy_llm(tmp_path: Path) -> None:
    """``dreamlab cycle --env module:Class``: random prior logs, the generic renderer, one round."""
    out = tmp_path / "cycle"
    args = ["--llm", "toy", "--env", ENV, "--prior.log-steps", "300", "--prior.pretrain-steps", "20"]
    args += ["--deploy.steps", "200", "--deploy.envs", "2", "--world-model.preset", "tiny"]
    args += ["--world-model.steps-first", "20", "--world-model.steps-per-round", "10", "--dreamer.steps", "2"]
    args += ["--distill.tokens", "200", "--distill.envs", "2", "--eval-episodes", "2", "--no-progress"]
    dreamlab("cycle", "--rounds", "1", "--out", out, *args)
    meta = json.loads((out / "llm_base" / "dreamlab_policy.json").read_text())
    assert meta["renderer"] == "generic" and meta["env_id"] == ENV
    distilled = json.loads((out / "rounds" / "0" / "llm" / "dreamlab_policy.json").read_text())
    assert distilled["renderer"] == "generic"
    rows = (out / "cycle.csv").read_text().splitlines()
    assert len(rows) == 3 and "round" in rows[0]  # header, base, round 0
