"""Learning, demonstrated: a small model recovers a feedback rule from logs and predicts open-loop
better than copying the last observation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dreamlab.data.sampling import SequenceSampler
from dreamlab.data.store import EpisodeStore
from dreamlab.worldmodel.config import preset
from dreamlab.worldmodel.evaluate import evaluate
from dreamlab.worldmodel.model import WorldModel
from tests.worldmodel.conftest import make_store


def feedback_rule(obs: np.ndarray) -> np.ndarray:
    """Thumbs up while the cart is right of 0.1, down while left of -0.1, silent in between."""
    fb = np.zeros(len(obs), np.float32)
    fb[obs[:, 0] > 0.1] = 1.0
    fb[obs[:, 0] < -0.1] = -1.0
    return fb


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[WorldModel, EpisodeStore, list[str], list[str]]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("feedback_logs")
    store = make_store(root, steps=3000, epsilon=0.5, seed=3, feedback=feedback_rule, max_len=100)
    # every 5th episode in write order is held out: the same episodes every run (split_names hashes
    # the file names, which carry a timestamp, so its split of a fresh store changes run to run)
    names = store.names()
    val_names = names[2::5]
    train_names = [n for n in names if n not in set(val_names)]
    torch.manual_seed(0)
    cfg = preset("tiny", deter=64, hidden=64, seq_len=16, batch_size=16, lr=3e-3, reward_source="feedback")
    model = WorldModel(cfg, store.observation_space, store.action_space)
    train_eps = store.episodes(train_names)
    model.set_obs_stats(np.concatenate([ep.obs for ep in train_eps]))
    sampler = SequenceSampler(train_eps, model.codec, cfg.seq_len, seed=0)
    opt = model.configure_optimizers()["optimizer"]
    for _ in range(600):
        loss, _ = model.loss(sampler.sample(cfg.batch_size))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
    model.eval()
    return model, store, train_names, val_names


@pytest.mark.slow
def test_reward_head_recovers_feedback_rule(trained):
    model, store, train_names, val_names = trained
    val = SequenceSampler(store.episodes(val_names), model.codec, 32, seed=0)
    preds, targets = [], []
    with torch.no_grad():
        for batch in val.windows(64):
            post, _ = model.observe(batch["obs"], batch["action"], batch["is_first"])
            preds.append(model.reward(post)[:, 4:].flatten())  # after a few filtering steps
            targets.append(batch["feedback"][:, 4:].flatten())
    p, y = torch.cat(preds), torch.cat(targets)
    assert (y != 0).any() and (y == 0).any()  # sparse: silence and thumbs both occur
    train_fb = np.concatenate([ep.feedback for ep in store.episodes(train_names)])
    mse_model = float(((p - y) ** 2).mean())
    mse_const = float(((y - float(train_fb.mean())) ** 2).mean())
    assert mse_model < 0.6 * mse_const, (mse_model, mse_const)
    # the env reward (always 1 in CartPole) was not what it learned
    assert float(((p - 1.0) ** 2).mean()) > 2 * mse_model
    # the sign of the rule is right where feedback was given
    given = y != 0
    assert float((torch.sign(p[given]) == y[given]).float().mean()) > 0.8


@pytest.mark.slow
def test_open_loop_prediction_beats_copy_last(trained):
    model, store, _, val_names = trained
    res = evaluate(model, store.episodes(val_names), context=4, horizon=8, max_windows=256)
    nmse, copy = np.asarray(res["nmse"]), np.asarray(res["nmse_copy_last"])
    assert nmse[-1] < 0.85 * copy[-1], (nmse, copy)
    assert nmse[3:].mean() < copy[3:].mean()
    assert res["reward_source"] == "feedback"
