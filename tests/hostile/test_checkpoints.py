"""Every checkpoint is read by the one safe loader (weights_only); resume reads exactly our file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dreamlab.worldmodel.checkpoint import CheckpointError, read_checkpoint
from tests.hostile.helpers import assert_user_error, make_store, pickle_bomb, run_cli, tiny_agent, tree_bytes

TINY = ["--preset", "tiny", "--batches-per-epoch", "2", "--batch-size", "4", "--seq-len", "8"]
TINY += ["--no-progress", "--accelerator", "cpu", "--val-fraction", "0"]


def test_train_wm_resumes_from_our_last_ckpt_never_a_planted_newer_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logs = make_store(tmp_path / "logs", n=4).root
    out = tmp_path / "wm"
    code, _, err = run_cli(["train-wm", "--logs", logs, "--out", out, "--max-steps", "2", *TINY], capsys)
    assert code == 0, err
    marker = tmp_path / "planted.ran"
    planted = pickle_bomb(out / "last-v1.ckpt", marker)  # Lightning's "last" would pick this newest file
    os.utime(planted, (2e9, 2e9))
    before = tree_bytes(logs, planted)
    code, _, err = run_cli(["train-wm", "--logs", logs, "--out", out, "--max-steps", "4", *TINY], capsys)
    assert code == 0, err
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["resumed"] is True and summary["global_step"] == 4  # continued from our last.ckpt (step 2)
    assert not marker.exists()
    assert tree_bytes(logs, planted) == before
    assert sorted(p.name for p in out.glob("last*.ckpt")) == ["last-v1.ckpt", "last.ckpt"]  # no last-v2.ckpt


def test_a_pickled_world_model_is_refused_without_running_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "bomb.ran"
    bomb = pickle_bomb(tmp_path / "evil.ckpt", marker)
    logs = make_store(tmp_path / "logs", n=2).root
    before = tree_bytes(bomb, logs)
    with pytest.raises(CheckpointError, match="evil.ckpt: not a world-model checkpoint"):
        read_checkpoint(bomb)
    code, _, err = run_cli(["eval-wm", "--wm", bomb, "--logs", logs], capsys)
    assert_user_error(code, err, "eval-wm", bomb, "weights_only")
    assert not marker.exists()
    assert tree_bytes(bomb, logs) == before


def test_a_pickled_actor_or_training_state_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dreamlab.imagination.loops import LoopError, _load_state

    marker = tmp_path / "bomb.ran"
    agent = tiny_agent(tmp_path / "agent")
    pickle_bomb(agent / "actor.pt", marker)
    before = tree_bytes(agent)
    code, _, err = run_cli(["evaluate", "--agent", agent, "--episodes", "1"], capsys)
    assert_user_error(code, err, "evaluate", agent / "actor.pt", "weights_only")
    state = pickle_bomb(tmp_path / "train_state.pt", marker)
    with pytest.raises(LoopError, match="train_state.pt: not a training state"):
        _load_state(state)
    assert not marker.exists()
    assert tree_bytes(agent) == before
