"""Dreamed frames beside real ones under the same actions (``dreamlab eval-wm --frames PNG``).

From a held-out logged episode of a pixel world model: filter the first ``context`` real frames
(the posterior), then imagine open loop under the episode's logged actions, and lay out two rows
per episode: the real frames and the dreamed ones at several horizons. The first column is the
last observed frame and the model's reconstruction of it (what the posterior holds); the others
are predictions ``h`` steps past it, which saw no real frame after the context.

Frames of other than 3 channels are coloured for the figure: one channel as grey, C channels
(MinAtar's object layers, 0/255) one colour each, the highest lit channel on top.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from dreamlab.core.errors import DreamlabError
from dreamlab.data.episodes import Episode


class FramesError(DreamlabError):
    """A frames figure that cannot be drawn (no image observations, no episode long enough)."""


def default_horizons(horizon: int, columns: int = 7) -> list[int]:
    """Up to ``columns`` horizons spread over 1..horizon (always 1 and ``horizon``)."""
    return sorted({int(round(h)) for h in np.linspace(1, horizon, min(horizon, columns))})


def pick_episode(episodes: list[Episode], span: int, seed: int = 0) -> Episode:
    """An episode with at least ``span`` frames (chosen with ``seed``), else the longest."""
    if not episodes:
        raise FramesError("no episodes to draw frames from")
    long = [ep for ep in episodes if ep.length >= span]
    if not long:
        return max(episodes, key=lambda ep: ep.length)
    return long[int(np.random.default_rng(seed).integers(len(long)))]


@torch.no_grad()
def dream_frames(
    model: Any, episode: Episode, context: int, horizons: list[int], sample: bool = False
) -> dict[str, Any]:
    """Real and dreamed frames of ``episode``: ``{"real": (n, H, W, C) uint8, "dreamed": ..., "steps":
    [h, ...]}`` where step 0 is the last context frame (dreamed: its reconstruction) and step h the
    frame h steps later, imagined under the logged actions. Horizons past the episode's end are dropped."""
    if not getattr(model, "image", False):
        raise FramesError(f"the world model's observations {tuple(model.obs_shape)} are not 64x64 images")
    frames = episode.obs.shape[0]  # length + 1 observations
    context = max(1, min(context, frames - 1))
    steps = [0] + [h for h in sorted(set(horizons)) if h >= 1 and context - 1 + h < frames]
    model.eval()
    obs = torch.as_tensor(np.asarray(episode.obs[:context], np.float32))[None]  # (1, context, H, W, C)
    act_all = torch.as_tensor(model.codec.encode(episode.action))  # (length, dim)
    act = torch.zeros(1, context, act_all.shape[-1])
    n = min(context, act_all.shape[0])
    act[0, :n] = act_all[:n]
    first = torch.zeros(1, context, dtype=torch.bool)
    first[0, 0] = True
    post, _ = model.observe(obs, act, first, mode=not sample)
    state = {k: v[:, -1] for k, v in post.items()}
    dreamed = {0: model.decode(state)[0]}
    for h in range(1, max(steps) + 1):
        state = model.img_step(state, act_all[None, context - 2 + h], None, mode=not sample)
        if h in steps:
            dreamed[h] = model.decode(state)[0]
    real = np.stack([np.asarray(episode.obs[context - 1 + h]) for h in steps]).astype(np.uint8)
    fake = np.stack([np.rint(dreamed[h].float().clamp(0, 255).numpy()) for h in steps]).astype(np.uint8)
    return {"real": real, "dreamed": fake, "steps": steps, "context": context}


def to_rgb(frames: np.ndarray) -> np.ndarray:
    """(..., H, W, C) uint8 -> (..., H, W, 3) uint8 for display (see the module docstring)."""
    c = frames.shape[-1]
    if c == 3:
        return frames
    if c == 1:
        return np.repeat(frames, 3, axis=-1)
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if c <= 10 else "tab20"]
    palette = np.asarray([cmap(i)[:3] for i in range(c)])  # (C, 3) in 0..1
    lit = frames >= 128  # (..., C)
    top = np.where(lit.any(-1), c - 1 - np.argmax(lit[..., ::-1], axis=-1), -1)  # highest lit channel
    rgb = np.zeros(frames.shape[:-1] + (3,), np.float64)
    mask = top >= 0
    rgb[mask] = palette[top[mask]]
    return (rgb * 255).astype(np.uint8)


def plot_frames(results: list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Rows real / dreamed per episode, a column per step past the context; writes the PNG ``path``."""
    from dreamlab.plots import plt

    cols = max(len(r["steps"]) for r in results)
    rows = 2 * len(results)
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols + 0.9, 1.35 * rows + 0.5), squeeze=False)
    for i, r in enumerate(results):
        for j in range(cols):
            for k, (name, key) in enumerate((("real", "real"), ("dreamed", "dreamed"))):
                ax = axes[2 * i + k, j]
                ax.set_xticks([])
                ax.set_yticks([])
                if j >= len(r["steps"]):
                    ax.axis("off")
                    continue
                ax.imshow(to_rgb(r[key][j]), interpolation="nearest")
                if j == 0:
                    ax.set_ylabel(name, fontsize=8)
                if k == 0:
                    h = r["steps"][j]
                    ax.set_title(f"observed t={r['context'] - 1}" if h == 0 else f"h={h}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
