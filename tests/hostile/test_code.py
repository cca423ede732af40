"""Code named in an input folder's files is never imported without --trust-code."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from dreamlab.cli import build_parser
from dreamlab.core.imports import UntrustedCodeError, check_code_name, import_attr
from dreamlab.imagination.verifiers import VerifierError, get_verifier
from tests.hostile.helpers import (
    CARTPOLE,
    assert_user_error,
    edit_json,
    hostile_module,
    make_store,
    run_cli,
    tiny_agent,
    tree_bytes,
)


def test_every_command_takes_trust_code_and_force() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():  # type: ignore[attr-defined]
        nested = [a for a in p._actions if a.dest == "logs_command"]
        parsers = list(nested[0].choices.values()) if nested else [p]
        for q in parsers:
            flags = {s for a in q._actions for s in a.option_strings}
            assert {"--trust-code", "--force"} <= flags, name
            assert q.get_default("trust_code") is False and q.get_default("force") is False, name


def test_agent_json_env_id_naming_code_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    mod, marker = hostile_module(tmp_path, monkeypatch)
    agent = tiny_agent(tmp_path / "agent")
    edit_json(agent / "agent.json", env_id=f"{mod}:Env-v0")
    before = tree_bytes(agent)
    code, _, err = run_cli(["evaluate", "--agent", agent, "--episodes", "1"], capsys)
    assert_user_error(code, err, "evaluate", agent / "agent.json", "field 'env_id'", "--trust-code")
    assert not marker.exists()
    assert tree_bytes(agent) == before


def test_grpo_agent_json_env_id_naming_code_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from dreamlab.data.spaces import space_to_json
    from dreamlab.imagination.grpo import GRPOConfig, ObsActor
    from dreamlab.imagination.grpo_agent import FORMAT, VERSION

    mod, marker = hostile_module(tmp_path, monkeypatch)
    env = gym.make(CARTPOLE)
    d = tmp_path / "grpo"
    d.mkdir()
    g = GRPOConfig()
    actor = ObsActor(env.observation_space, env.action_space, np.zeros(4), np.ones(4), g.hidden, g.layers)
    torch.save(actor.state_dict(), d / "actor.pt")
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "env_id": f"{mod}:Env-v0",
        "obs_space": space_to_json(env.observation_space),
        "action_space": space_to_json(env.action_space),
        "grpo": asdict(g),
    }
    (d / "grpo_agent.json").write_text(__import__("json").dumps(meta))
    before = tree_bytes(d)
    code, _, err = run_cli(["evaluate", "--agent", d, "--episodes", "1"], capsys)
    assert_user_error(code, err, "evaluate", d / "grpo_agent.json", "field 'env_id'", "--trust-code")
    assert not marker.exists()
    assert tree_bytes(d) == before


def test_store_env_id_as_grpo_verifier_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    mod, marker = hostile_module(tmp_path, monkeypatch)
    store = make_store(tmp_path / "logs", n=2)
    edit_json(store.root / "metadata.json", env_id=f"{mod}:fn")
    wm = tmp_path / "wm.ckpt"
    wm.write_bytes(b"never read")
    before = tree_bytes(store.root, wm)
    argv = ["dream", "--algo", "grpo", "--wm", wm, "--logs", store.root, "--out", tmp_path / "out", "--no-progress"]
    code, _, err = run_cli(argv, capsys)
    assert_user_error(code, err, "dream", store.root / "metadata.json", "field 'env_id'", "--trust-code")
    assert not marker.exists() and not (tmp_path / "out").exists()
    assert tree_bytes(store.root, wm) == before


def test_the_helpers_refuse_file_names_and_trust_code_allows_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mod, marker = hostile_module(tmp_path, monkeypatch)
    src = "AGENT/grpo_agent.json: field 'verifier'"
    with pytest.raises(UntrustedCodeError, match=r"grpo_agent\.json: field 'verifier'.*--trust-code"):
        check_code_name(f"{mod}:fn", src, trust_code=False)
    with pytest.raises(UntrustedCodeError, match="--trust-code"):
        get_verifier(f"{mod}:fn", source=src)
    with pytest.raises(UntrustedCodeError):
        import_attr(f"{mod}:fn", "verifier", VerifierError, source=src)
    assert not marker.exists()
    assert check_code_name("CartPole-v1", src, trust_code=False) == "CartPole-v1"  # built-ins need no flag
    assert get_verifier("cartpole", source=src).name == "cartpole"
    get_verifier(f"{mod}:fn", source=src, trust_code=True)  # the flag allows it: the module runs
    assert marker.exists()
