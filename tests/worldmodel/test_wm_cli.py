"""`dreamlab train-wm` / `dreamlab eval-wm` end to end, resume, checkpoints and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import pytest
import torch

from dreamlab.cli import main
from dreamlab.data.store import EpisodeStore, StoreError
from dreamlab.worldmodel.checkpoint import CheckpointError, SpaceMismatchError
from dreamlab.worldmodel.config import preset
from dreamlab.worldmodel.model import WorldModel
from dreamlab.worldmodel.train import train

TINY = ["--preset", "tiny", "--batches-per-epoch", "20", "--no-progress", "--accelerator", "cpu"]


@pytest.fixture(scope="module")
def trained(cartpole_logs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wm_out")
    assert main(["train-wm", "--logs", str(cartpole_logs), "--out", str(out), "--max-steps", "30", *TINY]) == 0
    return out


def test_train_writes_checkpoints_that_load_weights_only(trained: Path):
    for name in ("world_model.ckpt", "last.ckpt"):
        ckpt = torch.load(trained / name, weights_only=True)  # nothing pickled
        assert ckpt["dreamlab"] == {"format": "dreamlab-worldmodel", "version": 1}
        m = WorldModel.load(trained / name)
        assert m.cfg.deter == preset("tiny").deter
    assert list((trained / "logs").rglob("metrics.csv")), "CSV logger wrote nothing"
    assert list((trained / "tb").rglob("events.out.tfevents*")), "TensorBoard logger wrote nothing"
    summary = json.loads((trained / "train_summary.json").read_text())
    assert summary["global_step"] == 30 and summary["resumed"] is False


def test_resume_continues_from_last_ckpt(trained: Path, cartpole_logs: Path, tmp_path: Path):
    out = tmp_path / "resume"
    out.mkdir()
    for name in ("last.ckpt",):
        (out / name).write_bytes((trained / name).read_bytes())
    before = WorldModel.load(out / "last.ckpt").state_dict()
    assert main(["train-wm", "--logs", str(cartpole_logs), "--out", str(out), "--max-steps", "40", *TINY]) == 0
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["resumed"] is True and summary["global_step"] == 40  # 30 restored + 10 new
    after = WorldModel.load(out / "world_model.ckpt").state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_eval_wm_json_and_plot(trained: Path, tmp_path: Path, capsys):
    # held-out episodes of a mostly random policy: every one ends by termination, so the one-step
    # termination scores have terminals to count whichever episodes the split holds out
    from tests.worldmodel.conftest import make_store

    logs = tmp_path / "noisy"
    make_store(logs, steps=1500, epsilon=0.9, seed=2)
    plot = tmp_path / "err.png"
    rc = main(
        [
            "eval-wm",
            "--wm",
            str(trained / "world_model.ckpt"),
            "--logs",
            str(logs),
            "--horizon",
            "6",
            "--context",
            "4",
            "--json",
            "--plot",
            str(plot),
            "--max-windows",
            "64",
        ]
    )
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    for key in ("nmse", "nmse_copy_last", "reward_mae", "reward_mae_copy_last", "term_acc"):
        assert len(res[key]) == 6
    assert res["nmse_copy_last"][5] > res["nmse_copy_last"][0]  # the baseline drifts with horizon
    assert res["one_step"]["terminals"] >= 1 and 0 <= res["one_step"]["term_balanced_acc"] <= 1
    assert plot.stat().st_size > 1000


def test_bad_checkpoints_are_clear_errors(trained: Path, cartpole_logs: Path, tmp_path: Path, capsys):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.ckpt: not a world-model checkpoint"):
        WorldModel.load(junk)
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}}, other)
    with pytest.raises(CheckpointError, match="dreamlab.format"):
        WorldModel.load(other)
    old = tmp_path / "old.ckpt"
    ckpt = torch.load(trained / "world_model.ckpt", weights_only=True)
    ckpt["dreamlab"]["version"] = 0
    torch.save(ckpt, old)
    with pytest.raises(CheckpointError, match="version"):
        WorldModel.load(old)
    pickled = tmp_path / "pickled.ckpt"
    torch.save({"state_dict": {}, "payload": Path("x")}, pickled)  # needs unpickling a class
    with pytest.raises(CheckpointError, match="weights_only"):
        WorldModel.load(pickled)
    assert main(["eval-wm", "--wm", str(junk), "--logs", str(cartpole_logs)]) == 2
    assert "junk.ckpt" in capsys.readouterr().err


def test_logs_with_other_spaces_and_empty_store_are_clear_errors(trained: Path, tmp_path: Path, capsys):
    env = gym.make("Pendulum-v1")
    pend = EpisodeStore.create(tmp_path / "pend", "Pendulum-v1", env.observation_space, env.action_space)
    model = WorldModel.load(trained / "world_model.ckpt")
    with pytest.raises(SpaceMismatchError, match="observation_space"):
        model.check_spaces(pend.observation_space, pend.action_space, "pend/metadata.json")
    assert main(["eval-wm", "--wm", str(trained / "world_model.ckpt"), "--logs", str(tmp_path / "pend")]) == 2
    assert "empty" in capsys.readouterr().err  # an empty store is named as such
    with pytest.raises(StoreError, match="empty"):
        train(tmp_path / "pend", tmp_path / "o", preset("tiny"), max_steps=1, progress=False)
    # resuming a CartPole run on Pendulum logs is refused before training
    (tmp_path / "o2").mkdir()
    (tmp_path / "o2" / "last.ckpt").write_bytes((trained / "last.ckpt").read_bytes())
    from tests.worldmodel.conftest import make_store

    make_store(tmp_path / "pend2", env_id="Pendulum-v1", steps=60, epsilon=0.5)
    with pytest.raises(SpaceMismatchError, match="trained on"):
        train(tmp_path / "pend2", tmp_path / "o2", preset("tiny"), max_steps=1, progress=False)
    assert main(["train-wm", "--logs", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o3"), *TINY]) == 2
    assert "not an episode store" in capsys.readouterr().err


@pytest.mark.slow
def test_max_minutes_is_a_budget_per_invocation(trained: Path, cartpole_logs: Path, tmp_path: Path):
    """A resumed run gets a fresh wall-clock budget (Lightning's max_time would carry the old one
    over in the checkpoint and stop at once): the second call trains further steps."""
    out = tmp_path / "timed"
    out.mkdir()
    (out / "last.ckpt").write_bytes((trained / "last.ckpt").read_bytes())  # 30 steps done
    args = [
        "train-wm",
        "--logs",
        str(cartpole_logs),
        "--out",
        str(out),
        "--max-steps",
        "100000",
        "--max-minutes",
        "0.02",
        *TINY,
    ]
    assert main(args) == 0
    first = json.loads((out / "train_summary.json").read_text())["global_step"]
    assert 30 < first < 100000  # stopped by the clock, not by max_steps
    assert main(args) == 0
    assert json.loads((out / "train_summary.json").read_text())["global_step"] > first
