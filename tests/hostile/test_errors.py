"""One error path: careless input ends in one line naming the file and field, exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile.helpers import assert_user_error, make_store, run_cli, tiny_agent, tree_bytes


def test_a_cartpole_agent_on_pendulum_says_the_spaces_differ(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    agent = tiny_agent(tmp_path / "agent")
    before = tree_bytes(agent)
    code, _, err = run_cli(["evaluate", "--agent", agent, "--env", "Pendulum-v1", "--episodes", "1"], capsys)
    assert_user_error(code, err, "evaluate", "--env Pendulum-v1", "observation space", agent / "worldmodel.ckpt")
    assert tree_bytes(agent) == before


def test_yaml_with_a_word_for_a_number_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("steps: lots\n")
    argv = ["collect", "--env", "CartPole-v1", "--out", tmp_path / "s", "--config", cfg, "--no-progress"]
    code, _, err = run_cli(argv, capsys)
    assert_user_error(code, err, "collect", cfg, "key 'steps'", "expected an integer")
    assert not (tmp_path / "s").exists()


def test_metadata_that_is_not_json_or_not_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = make_store(tmp_path / "s", n=1).root
    (store / "metadata.json").write_bytes(b"[" * 100_000)
    code, _, err = run_cli(["logs", "info", store], capsys)
    assert_user_error(code, err, "logs", store / "metadata.json", "not valid JSON")
    (store / "metadata.json").unlink()
    (store / "metadata.json").mkdir()
    code, _, err = run_cli(["logs", "check", store], capsys)
    assert_user_error(code, err, "logs", store / "metadata.json", "is a directory")


def test_a_checkpoint_that_is_a_directory_or_junk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = make_store(tmp_path / "s", n=1).root
    for wm in (tmp_path / "adir", tmp_path / "junk.ckpt"):
        if wm.suffix:
            wm.write_bytes(b"\x00junk" * 100)
        else:
            wm.mkdir()
        code, _, err = run_cli(["eval-wm", "--wm", wm, "--logs", store], capsys)
        assert_user_error(code, err, "eval-wm", wm, "checkpoint")
