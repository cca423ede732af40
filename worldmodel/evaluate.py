"""Open-loop evaluation of a world model on held-out real episodes.

For each window of ``context + horizon`` real steps inside one episode, the model filters the
first ``context`` steps (posterior), then imagines ``horizon`` steps under the real actions
(prior). Per horizon h = 1..H it reports:

* ``nmse``: squared error per observation dimension divided by that dimension's variance over
  the evaluated episodes, averaged over dimensions and windows (1.0 = as bad as predicting the
  mean); for images, divided by the mean per-pixel variance instead (a constant background pixel
  has none); ``nmse_copy_last`` is the same for the copy-last-observation baseline;
* ``reward_mae`` (and ``reward_mae_copy_last``, repeating the last reward), against the reward
  source the model was trained on;
* ``term_acc``: accuracy of "terminal" = continue probability < 0.5 (``term_acc_never``: a
  baseline that never predicts termination).

``one_step`` scores every real step t >= 1 of the episodes one step ahead (filter through t-1,
imagine t): termination balanced accuracy (mean of the true-positive and true-negative rates),
and reward MAE.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dreamlab.data.episodes import Episode
from dreamlab.worldmodel.model import WorldModel


def _targets(model: WorldModel, ep: Episode) -> np.ndarray:
    src = model.reward_source
    if src == "env":
        return ep.reward.astype(np.float32)
    if src == "feedback":
        return ep.feedback.astype(np.float32)
    return (ep.reward + ep.feedback).astype(np.float32)


def _windows(episodes: list[Episode], span: int, max_windows: int, seed: int) -> list[tuple[int, int]]:
    """(episode index, start) of every window of ``span`` steps inside an episode, subsampled."""
    wins = [(i, s) for i, ep in enumerate(episodes) for s in range(0, ep.length - span + 1)]
    if len(wins) > max_windows:
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(len(wins), size=max_windows, replace=False))
        wins = [wins[j] for j in pick]
    return wins


@torch.no_grad()
def evaluate(
    model: WorldModel,
    episodes: list[Episode],
    context: int = 8,
    horizon: int = 15,
    max_windows: int = 1024,
    batch_size: int = 256,
    seed: int = 0,
    sample: bool = True,
) -> dict[str, Any]:
    """Open-loop scores of ``model`` on ``episodes`` (see the module docstring)."""
    if context < 1 or horizon < 1:
        raise ValueError(f"context and horizon must be >= 1, got context={context}, horizon={horizon}")
    if not episodes:
        raise ValueError("no episodes to evaluate on")
    model.eval()
    torch.manual_seed(seed)
    codec = model.codec
    if model.image:  # one scale for every pixel: constant background pixels have no variance of their own
        frames = np.concatenate([ep.obs for ep in episodes])
        frames = frames[np.linspace(0, len(frames) - 1, min(len(frames), 2048)).astype(np.int64)]
        var = np.maximum(frames.reshape(len(frames), -1).astype(np.float32).var(0).mean(), 1e-6)  # ()
        batch_size = min(batch_size, 64)
    else:
        obs_all = np.concatenate([ep.obs for ep in episodes]).astype(np.float32)
        flat = obs_all.reshape(len(obs_all), -1)
        var = np.maximum(flat.var(0), 1e-6)  # (obs_dim,)
    span = context + horizon
    wins = _windows(episodes, span, max_windows, seed)
    if not wins:
        longest = max(ep.length for ep in episodes)
        raise ValueError(
            f"no episode is long enough for context {context} + horizon {horizon} "
            f"= {span} steps (longest has {longest})"
        )
    sq_model = np.zeros(horizon)
    sq_copy = np.zeros(horizon)
    rew_model = np.zeros(horizon)
    rew_copy = np.zeros(horizon)
    term_ok = np.zeros(horizon)
    term_never = np.zeros(horizon)
    rewards = [_targets(model, ep) for ep in episodes]
    actions = [codec.encode(ep.action) for ep in episodes]
    for b in range(0, len(wins), batch_size):
        chunk = wins[b : b + batch_size]
        obs = torch.from_numpy(np.stack([episodes[i].obs[s : s + span] for i, s in chunk]).astype(np.float32))
        act = torch.from_numpy(np.stack([actions[i][s : s + span] for i, s in chunk]))
        rew = np.stack([rewards[i][s : s + span] for i, s in chunk])  # (N, span)
        term = np.stack([episodes[i].is_terminal[s : s + span] for i, s in chunk])
        first = torch.zeros(len(chunk), context, dtype=torch.bool)
        first[:, 0] = True
        post, _ = model.observe(obs[:, :context], act[:, :context], first, mode=not sample)
        state = {k: v[:, -1] for k, v in post.items()}
        last = obs[:, context - 1].reshape(len(chunk), -1).numpy()
        for h in range(horizon):
            state = model.img_step(state, act[:, context - 1 + h], None, mode=not sample)
            truth = obs[:, context + h].reshape(len(chunk), -1).numpy()
            pred = model.decode(state).reshape(len(chunk), -1).numpy()
            sq_model[h] += (((pred - truth) ** 2) / var).mean(-1).sum()
            sq_copy[h] += (((last - truth) ** 2) / var).mean(-1).sum()
            r = model.reward(state).numpy()
            rew_model[h] += np.abs(r - rew[:, context + h]).sum()
            rew_copy[h] += np.abs(rew[:, context - 1] - rew[:, context + h]).sum()
            t_pred = model.cont(state).numpy() < 0.5
            term_ok[h] += (t_pred == term[:, context + h]).sum()
            term_never[h] += (~term[:, context + h]).sum()
    n = len(wins)
    nmse, nmse_copy = sq_model / n, sq_copy / n
    result: dict[str, Any] = {
        "episodes": len(episodes),
        "windows": n,
        "context": context,
        "horizon": horizon,
        "sample": sample,
        "reward_source": model.reward_source,
        "nmse": nmse.tolist(),
        "nmse_copy_last": nmse_copy.tolist(),
        "reward_mae": (rew_model / n).tolist(),
        "reward_mae_copy_last": (rew_copy / n).tolist(),
        "term_acc": (term_ok / n).tolist(),
        "term_acc_never": (term_never / n).tolist(),
    }
    result["summary"] = {
        "nmse_at_horizon": float(nmse[-1]),
        "nmse_copy_last_at_horizon": float(nmse_copy[-1]),
        "ratio_copy_last_over_model_at_horizon": float(nmse_copy[-1] / max(nmse[-1], 1e-12)),
        "nmse_mean": float(nmse.mean()),
        "nmse_copy_last_mean": float(nmse_copy.mean()),
        "reward_mae_mean": float((rew_model / n).mean()),
    }
    result["one_step"] = one_step(model, episodes, rewards, actions, batch_size=4 if model.image else 64, sample=sample)
    return result


@torch.no_grad()
def one_step(
    model: WorldModel,
    episodes: list[Episode],
    rewards: list[np.ndarray],
    actions: list[np.ndarray],
    batch_size: int = 64,
    sample: bool = True,
) -> dict[str, Any]:
    """Termination and reward one step ahead at every step t >= 1 of whole episodes."""
    tp = tn = pos = neg = 0
    abs_err, count = 0.0, 0
    order = sorted(range(len(episodes)), key=lambda i: episodes[i].length)
    for b in range(0, len(order), batch_size):
        idx = order[b : b + batch_size]
        T = max(episodes[i].length for i in idx)
        if T < 2:
            continue
        obs = np.zeros((len(idx), T, *episodes[idx[0]].obs.shape[1:]), np.float32)
        act = np.zeros((len(idx), T, model.codec.dim), np.float32)
        mask = np.zeros((len(idx), T), bool)
        term = np.zeros((len(idx), T), bool)
        rew = np.zeros((len(idx), T), np.float32)
        for j, i in enumerate(idx):
            ep = episodes[i]
            obs[j, : ep.length] = ep.obs
            act[j, : ep.length] = actions[i]
            mask[j, 1 : ep.length] = True
            term[j, : ep.length] = ep.is_terminal
            rew[j, : ep.length] = rewards[i]
        first = torch.zeros(len(idx), T, dtype=torch.bool)
        first[:, 0] = True
        act_t = torch.from_numpy(act)
        post, _ = model.observe(torch.from_numpy(obs), act_t, first, mode=not sample)
        prev = {k: v[:, :-1] for k, v in post.items()}  # states at t-1 for t = 1..T-1
        prior = model.img_step(prev, act_t[:, :-1], None, mode=not sample)
        pred_term = model.cont(prior).numpy() < 0.5
        m, tr = mask[:, 1:], term[:, 1:]
        tp += int((pred_term & tr & m).sum())
        tn += int((~pred_term & ~tr & m).sum())
        pos += int((tr & m).sum())
        neg += int((~tr & m).sum())
        abs_err += float((np.abs(model.reward(prior).numpy() - rew[:, 1:]) * m).sum())
        count += int(m.sum())
    tpr = tp / pos if pos else None
    tnr = tn / neg if neg else None
    bal = (tpr + tnr) / 2 if tpr is not None and tnr is not None else None
    return {
        "steps": count,
        "terminals": pos,
        "term_tpr": tpr,
        "term_tnr": tnr,
        "term_balanced_acc": bal,
        "term_acc": (tp + tn) / max(1, pos + neg),
        "reward_mae": abs_err / max(1, count),
    }
