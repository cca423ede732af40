"""Pixel observations (``--obs pixels``, ``ENV-pixels``) and MinAtar through the same commands.

The fast tests check the derived env id, the wrappers' shapes, dtypes and spaces, the compact
image space in ``metadata.json`` and the refusals; the slow ones run the real CLI in process:
collect -> train-wm -> eval-wm --frames -> dream -> evaluate on 64x64 CartPole, and collect ->
train-wm on MinAtar Breakout. Before ``evaluate`` the pixel ids are removed from gymnasium's
registry, so it must rebuild the pixel env from the agent's recorded env id alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from dreamlab.data.collect import EnvSpecError, collect, make_env
from dreamlab.data.pixels import (
    PixelEnvError,
    base_id,
    env_dirname,
    is_pixel_id,
    upsample_grid,
    with_obs,
)
from dreamlab.data.spaces import space_from_json, space_to_json, spaces_equal
from dreamlab.frames import default_horizons, to_rgb
from tests.hostile.helpers import assert_user_error, run_cli

IMAGE = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)


def test_the_pixel_env_id() -> None:
    assert with_obs("CartPole-v1", "pixels") == "CartPole-v1-pixels"
    assert with_obs("CartPole-v1-pixels", "pixels") == "CartPole-v1-pixels"  # idempotent
    assert with_obs("CartPole-v1", None) == with_obs("CartPole-v1", "state") == "CartPole-v1"
    assert with_obs("CartPole-v1-pixels", None) == "CartPole-v1-pixels"
    with pytest.raises(PixelEnvError, match="pass 'CartPole-v1'"):
        with_obs("CartPole-v1-pixels", "state")
    with pytest.raises(PixelEnvError, match="--obs: expected"):
        with_obs("CartPole-v1", "rgb")
    assert base_id("MinAtar/Breakout-v1-pixels") == "MinAtar/Breakout-v1" and not is_pixel_id("-pixels")
    assert env_dirname("MinAtar/Breakout-v1-pixels") == "MinAtar_Breakout-v1-pixels"
    assert env_dirname("point_mass:PointMass-pixels") == "point_mass_PointMass-pixels"
    assert env_dirname("..") != ".."


def test_cartpole_pixels_are_64x64_uint8_renders_with_the_time_limit() -> None:
    env = make_env("CartPole-v1-pixels")
    assert env.observation_space == IMAGE and env.action_space == gym.spaces.Discrete(2)
    assert env.spec is not None and env.spec.max_episode_steps == 500
    obs, _ = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8 and env.observation_space.contains(obs)
    assert (obs < 100).any() and (obs > 200).mean() > 0.5  # a dark cart on a white background
    frames = [obs]
    for _ in range(8):
        obs, *_ = env.step(1)  # push right: the cart moves
        frames.append(obs)
    assert not np.array_equal(frames[0], frames[-1])
    env.close()
    short = make_env("CartPole-v1-pixels", max_episode_steps=3)  # the override reaches the pixel env
    short.reset(seed=0)
    ends = [short.step(a)[2:4] for a in (0, 1, 0)]  # (terminated, truncated); the pole cannot fall in 3 steps
    assert ends == [(False, False), (False, False), (False, True)]
    short.close()


def test_a_module_class_env_gets_pixels_too() -> None:
    env = make_env("gymnasium.envs.classic_control:PendulumEnv-pixels")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
    env.close()


def test_minatar_grids_become_64x64_channels_without_blending() -> None:
    pytest.importorskip("minatar")
    grid = np.zeros((10, 10, 2), bool)
    grid[0, 0, 0] = grid[9, 9, 1] = True
    up = upsample_grid(grid)
    assert up.shape == (64, 64, 2) and up.dtype == np.uint8 and set(np.unique(up)) == {0, 255}
    rows = (np.arange(10) * 64 + 32) // 10  # one pixel inside each cell
    assert np.array_equal(up[rows][:, rows] == 255, grid)
    env = make_env("MinAtar/Breakout-v1-pixels")
    assert env.observation_space == gym.spaces.Box(0, 255, (64, 64, 4), np.uint8)
    assert env.action_space == gym.spaces.Discrete(3)
    obs, _ = env.reset(seed=0)
    raw = env.unwrapped.game.state()  # type: ignore[attr-defined]
    assert np.array_equal(obs[rows][:, rows] == 255, raw) and raw.any()
    env.close()


def test_image_spaces_are_stored_compactly_and_old_lists_still_load() -> None:
    d = space_to_json(IMAGE)
    assert d["low"] == 0.0 and d["high"] == 255.0 and len(json.dumps(d)) < 120
    assert space_from_json(d) == IMAGE
    old = dict(d, low=np.zeros((64, 64, 3)).tolist(), high=np.full((64, 64, 3), 255.0).tolist())
    assert space_from_json(old) == IMAGE
    cart = make_env("CartPole-v1").observation_space
    assert isinstance(space_to_json(cart)["low"], list) and spaces_equal(space_from_json(space_to_json(cart)), cart)


class _NoRender(gym.Env):
    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)


def test_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if "NoRenderPixelTest-v0" not in gym.registry:
        gym.register("NoRenderPixelTest-v0", entry_point=lambda **kw: _NoRender())
    with pytest.raises(PixelEnvError, match="no 'rgb_array' render mode"):
        make_env("NoRenderPixelTest-v0-pixels")
    with pytest.raises(EnvSpecError, match="heuristic reads state observations"):
        collect("CartPole-v1-pixels", "heuristic", steps=10, out=tmp_path / "h", progress=False)
    code, _, err = run_cli(
        ["collect", "--env", "CartPole-v1-pixels", "--obs", "state", "--out", tmp_path / "s"], capsys
    )
    assert_user_error(code, err, "collect", "--obs state", "CartPole-v1")
    assert not (tmp_path / "h").exists() and not (tmp_path / "s").exists()


def test_frames_colour_channels_apart() -> None:
    assert default_horizons(15) == [1, 3, 6, 8, 10, 13, 15] and default_horizons(2) == [1, 2]
    img = np.zeros((2, 2, 4), np.uint8)
    img[0, 0, 0] = img[0, 1, 3] = img[1, 0, 1] = 255
    rgb = to_rgb(img)
    assert rgb.shape == (2, 2, 3) and not rgb[1, 1].any()  # nothing lit: black
    assert len({tuple(rgb[0, 0]), tuple(rgb[0, 1]), tuple(rgb[1, 0])}) == 3
    three = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    assert np.array_equal(to_rgb(three), three)


class _CountingModel:
    """A stand-in world model whose state is the time step: observe ends at the last context step,
    each img_step adds one and records the action it was given; a frame is filled with its step."""

    image, obs_shape = True, (64, 64, 1)

    def __init__(self) -> None:
        from dreamlab.data.spaces import ActionCodec

        self.codec = ActionCodec(gym.spaces.Discrete(40))
        self.actions: list[int] = []

    def eval(self) -> None:
        pass

    def observe(self, obs: Any, act: Any, first: Any, mode: bool = False) -> tuple[dict, None]:
        import torch

        return {"t": torch.arange(obs.shape[1], dtype=torch.float32)[None]}, None

    def img_step(self, state: dict, action: Any, _: Any, mode: bool = False) -> dict:
        self.actions.append(int(action.argmax()))
        return {"t": state["t"] + 1}

    def decode(self, state: dict) -> Any:
        return state["t"].reshape(-1, 1, 1, 1).expand(-1, 64, 64, 1)


def test_dreamed_frames_line_up_with_the_real_ones_and_their_actions() -> None:
    from dreamlab.data.episodes import Episode
    from dreamlab.frames import dream_frames

    n = 20
    obs = np.broadcast_to(np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1), (n, 64, 64, 1)).copy()
    flags = np.zeros(n, bool)
    ep = Episode(obs, np.arange(n), np.zeros(n), flags.copy(), flags.copy(), flags.copy())
    model = _CountingModel()
    r = dream_frames(model, ep, context=5, horizons=[1, 3, 30])  # 30 is past the end: dropped
    assert r["steps"] == [0, 1, 3]
    assert [int(f[0, 0, 0]) for f in r["real"]] == [4, 5, 7]  # the last context frame, then 1 and 3 later
    assert np.array_equal(r["real"], r["dreamed"])  # the dream's step h is the real frame h steps later
    assert model.actions == [4, 5, 6]  # the logged action taken at each frame leads to the next


def _forget_pixel_ids() -> None:
    """Drop the pixel ids this process registered, as a fresh process would not have them."""
    for name in [n for n in gym.registry if n.endswith("-pixels")]:
        del gym.registry[name]


def _cli(capsys: pytest.CaptureFixture[str], *argv: Any) -> str:
    code, out, err = run_cli([*argv, "--threads", "1"], capsys)
    assert code == 0, err
    return out


@pytest.mark.slow
def test_cartpole_from_pixels_through_the_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logs, wm, agent, png = tmp_path / "logs", tmp_path / "wm", tmp_path / "agent", tmp_path / "frames.png"
    ckpt = wm / "world_model.ckpt"
    _cli(capsys, "collect", "--env", "CartPole-v1", "--obs", "pixels", "--steps", "300", "--out", logs, "--no-progress")
    meta_text = (logs / "metadata.json").read_text()
    meta = json.loads(meta_text)
    assert meta["env_id"] == "CartPole-v1-pixels" and len(meta_text) < 20_000  # bounds are two numbers
    assert space_from_json(meta["observation_space"]) == IMAGE

    _cli(capsys, "train-wm", "--logs", logs, "--out", wm, "--preset", "tiny", "--max-steps", "6", "--batch-size", "4",
         "--seq-len", "16", "--check-horizon", "0", "--no-progress")  # fmt: skip
    out = _cli(
        capsys,
        "eval-wm",
        "--wm",
        ckpt,
        "--logs",
        logs,
        "--frames",
        png,
        "--max-windows",
        "8",
        "--json",
        "--episodes",
        "all",
        "--horizon",
        "6",
    )
    result = json.loads(out)
    assert result["frames"] == str(png) and len(result["nmse"]) == 6
    from PIL import Image

    with Image.open(png) as im:
        assert im.size[0] > 600 and im.size[1] > 300  # rows of frames, not an empty canvas

    _cli(capsys, "dream", "--wm", ckpt, "--logs", logs, "--out", agent, "--steps", "2", "--batch-size", "4",
         "--seq-len", "16", "--no-progress")  # fmt: skip
    assert json.loads((agent / "agent.json").read_text())["env_id"] == "CartPole-v1-pixels"

    from dreamlab.imagination.agent import load_world_model
    from dreamlab.imagination.dream_env import DreamEnv

    dream = DreamEnv(load_world_model(ckpt), logs_episodes(logs), num_envs=3, seed=0)
    obs, _ = dream.reset(seed=0)
    assert obs.shape == (3, 64, 64, 3) and obs.dtype == np.uint8 and dream.observation_space.contains(obs)
    obs, reward, *_ = dream.step(np.zeros(3, np.int64))
    assert obs.dtype == np.uint8 and reward.shape == (3,)

    _forget_pixel_ids()  # evaluate rebuilds the pixel env from agent.json alone
    res = json.loads(_cli(capsys, "evaluate", "--agent", agent, "--episodes", "1", "--json"))
    assert res["real"]["returns"][0] >= 8 and res["dream"]["mean"] is not None
    code, _, err = run_cli(["evaluate", "--agent", agent, "--env", "CartPole-v1", "--episodes", "1"], capsys)
    assert_user_error(code, err, "evaluate", "observation space")  # the state env is not the agent's


def logs_episodes(logs: Path) -> list[Any]:
    from dreamlab.data.store import EpisodeStore

    return EpisodeStore(logs).episodes()


@pytest.mark.slow
def test_minatar_breakout_through_collect_and_train_wm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("minatar")
    logs, wm = tmp_path / "logs", tmp_path / "wm"
    _cli(capsys, "collect", "--env", "MinAtar/Breakout-v1", "--obs", "pixels", "--steps", "300", "--out", logs,
         "--no-progress")  # fmt: skip
    meta = json.loads((logs / "metadata.json").read_text())
    assert meta["env_id"] == "MinAtar/Breakout-v1-pixels"
    assert space_from_json(meta["observation_space"]) == gym.spaces.Box(0, 255, (64, 64, 4), np.uint8)
    _forget_pixel_ids()
    _cli(capsys, "train-wm", "--logs", logs, "--out", wm, "--preset", "tiny", "--max-steps", "4", "--batch-size", "4",
         "--seq-len", "8", "--check-horizon", "0", "--no-progress")  # fmt: skip
    from dreamlab.worldmodel.model import WorldModel

    model = WorldModel.load(wm / "world_model.ckpt")
    assert model.image and model.obs_shape == (64, 64, 4)


@pytest.mark.slow
def test_bench_on_pixel_cartpole_offline_online_and_sb3_cnn(tmp_path: Path) -> None:
    """``dreamlab bench --envs CartPole-v1-pixels``: random logs offline, online, SB3 DQN with a CNN and a
    replay buffer within the budget; the folder name of the env id is the id itself here."""
    import csv

    from dreamlab.cli import main

    budget = ["--budget.preset", "tiny", "--budget.log-steps", "300", "--budget.wm-steps", "5"]
    budget += ["--budget.dream-steps", "2", "--budget.online-steps", "200", "--budget.online-prefill", "100"]
    budget += ["--budget.online-pretrain", "2", "--budget.eval-episodes", "2"]
    out = tmp_path / "bench"
    argv = ["bench", "--envs", "CartPole-v1-pixels", "--modes", "offline,online,sb3-dqn-sac", "--seeds", "1"]
    assert main([*argv, "--out", str(out), "--threads", "1", "--progress", "false", *budget]) == 0
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert sorted(r["mode"] for r in rows) == ["offline", "online", "sb3-dqn-sac", "sb3-dqn-sac"]
    assert all(float(r["real_return_mean"]) >= 8 for r in rows)  # CartPole: at least 8 steps per episode
    sb3 = json.loads((out / "CartPole-v1-pixels" / "sb3-dqn-sac-200" / "seed0" / "result.json").read_text())
    assert sb3["algo"] == "dqn" and sb3["hyperparameters"]["policy"] == "CnnPolicy"
    assert sb3["hyperparameters"]["buffer_size"] == 200
    offline = json.loads((out / "CartPole-v1-pixels" / "offline" / "seed0" / "result.json").read_text())
    assert offline["log_epsilon"] == 1.0
    summary = (out / "summary.md").read_text()
    assert "logged behaviour (uniformly random)" in summary and "SB3 DQN (SB3 defaults, CNN" in summary
