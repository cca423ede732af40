"""Pixel observations: a derived env id whose observations are 64x64 uint8 images (HWC).

**The env spec.** ``ENV-pixels`` (``CartPole-v1-pixels``, ``MinAtar/Breakout-v1-pixels``,
``module:Class-pixels``) names ``ENV`` with image observations. It is an ordinary
gymnasium id (it matches gymnasium's id pattern and is registered on first use by
:func:`dreamlab.data.collect.register_env`), so it is what a store's ``metadata.json`` and an
``agent.json`` record, and every later command rebuilds the same pixel env from it without being
told again; ``--obs pixels`` on ``collect``, ``train`` and ``evaluate`` maps ``--env ENV`` to it
(:func:`with_obs`). It holds no ``@`` and adds no ``/`` of its own; a base id's own ``/`` or
``:`` (``MinAtar/...``) is replaced by :func:`env_dirname` where an id becomes a folder name.

**The image.** An env whose observation is already an image grid (a 3-D ``Box`` of bool or
uint8: MinAtar's 10x10xC bool channels, an Atari frame) is resized itself, keeping its channels:
bool channels become 0/255 and are upsampled by nearest neighbour (10x10 -> 64x64: cells of 6 or
7 pixels, nothing blended, so the same CNN sees every object channel apart); uint8 images are
area-averaged. Any other env is made with ``render_mode="rgb_array"`` and its render (gymnasium's
``AddRenderObservation(render_only=True)``) is area-averaged to 64x64x3 (CartPole's 400x600
render: about 2 ms a step with the resize). The aspect ratio is not kept (a 400x600 render is
squeezed to 64x64), as in DreamerV3. The base env's time limit is the derived id's.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import gymnasium as gym
import numpy as np

from dreamlab.core.errors import DreamlabError

PIXELS = "-pixels"  # the suffix of a pixel env id
SIZE = 64  # image side (the world model's CNN takes 64x64xC)
OBS_MODES = ("state", "pixels")
MINATAR = "MinAtar/"


class PixelEnvError(DreamlabError):
    """A pixel env that cannot be made (no rgb_array render, an unknown ``--obs``)."""


def is_pixel_id(env_id: str) -> bool:
    return env_id.endswith(PIXELS) and len(env_id) > len(PIXELS)


def base_id(env_id: str) -> str:
    """The env a pixel id derives from (``CartPole-v1-pixels`` -> ``CartPole-v1``); others unchanged."""
    return env_id[: -len(PIXELS)] if is_pixel_id(env_id) else env_id


def with_obs(env_id: str, obs: str | None) -> str:
    """``--env ID --obs MODE`` as one env id: ``pixels`` -> ``ID-pixels`` (idempotent); ``state``
    or None -> ``ID`` as given (a pixel id stays one: ``--obs state`` cannot undo it)."""
    if obs is None or obs == "state":
        if obs == "state" and is_pixel_id(env_id):
            raise PixelEnvError(f"--obs state: --env '{env_id}' names pixel observations; pass '{base_id(env_id)}'")
        return env_id
    if obs != "pixels":
        raise PixelEnvError(f"--obs: expected one of {list(OBS_MODES)}, got {obs!r}")
    return env_id if is_pixel_id(env_id) else env_id + PIXELS


OBS_HELP = (
    "observations: state (the env's own) | pixels (64x64 uint8 images: the env's rgb_array render, or an "
    "image-grid observation such as MinAtar's, resized); recorded as the env id ENV-pixels, which later "
    "commands read (default: as --env says)"
)


def add_obs_argument(parser: Any, help: str = OBS_HELP) -> None:
    """``--obs state|pixels`` on a command's argparse parser (collect, train, evaluate)."""
    parser.add_argument("--obs", choices=OBS_MODES, default=None, help=help)


def env_dirname(env_id: str) -> str:
    """``env_id`` as one folder-name component: ``/``, ``\\`` and ``:`` become ``_``."""
    name = env_id.replace("/", "_").replace("\\", "_").replace(":", "_")
    return name if name not in ("", ".", "..") else f"env_{name}"


def register_minatar() -> None:
    """Register MinAtar's ``MinAtar/<Game>-v0|v1`` ids (the ``minatar`` package registers nothing on
    import). Its import warnings about seaborn (only its own render needs it) are kept quiet."""
    if "MinAtar/Breakout-v1" in gym.registry:
        return
    root = logging.getLogger()
    quiet = logging.NullHandler()
    root.addHandler(quiet)  # its logging.warning() would otherwise set up the root logger
    level = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        import minatar.gym as minatar_gym
    except ImportError as exc:
        raise PixelEnvError(
            f"MinAtar envs need the minatar package (pip install --no-deps 'minatar>=1.0.15'): {exc}"
        ) from None
    finally:
        logging.disable(level)
        root.removeHandler(quiet)
    minatar_gym.register_envs()


def register_pixels(env_id: str) -> str:
    """Register the pixel id ``env_id`` (its base must already be makeable by ``gym.make``).
    A ``module:Class-pixels`` id is registered under its whole id and under ``Class-pixels``
    (``gym.make`` imports ``module``, then looks up the part after the colon)."""
    if env_id in gym.registry:
        return env_id
    base = base_id(env_id)
    spec = gym.spec(base)
    entry = _pixel_maker(env_id, base)
    for name in dict.fromkeys((env_id, env_id.partition(":")[2] or env_id)):
        if name not in gym.registry:
            gym.register(id=name, entry_point=entry, max_episode_steps=spec.max_episode_steps)
    return env_id


def _pixel_maker(env_id: str, base: str) -> Any:
    def make(**kwargs: Any) -> gym.Env:
        kwargs.pop("render_mode", None)  # a pixel env always renders to arrays
        return make_pixel_env(base, env_id, **kwargs)

    return make


def make_pixel_env(base: str, env_id: str | None = None, **kwargs: Any) -> gym.Env:
    """``base`` with 64x64 image observations (see the module docstring), without the base's time
    limit (``gym.make`` of the pixel id adds it back, or ``max_episode_steps``)."""
    what = f"--env '{env_id or base + PIXELS}'"
    spec = dataclasses.replace(gym.spec(base), max_episode_steps=None)
    plain = gym.make(spec, **kwargs)
    if _is_grid(plain.observation_space):
        return GridPixels(plain)
    plain.close()
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame renders off-screen, no display needed
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    try:
        env = gym.make(spec, render_mode="rgb_array", **kwargs)
    except (TypeError, gym.error.Error) as exc:
        raise PixelEnvError(f"{what}: '{base}' cannot be made with render_mode='rgb_array' ({exc})") from None
    modes = env.metadata.get("render_modes", [])
    if "rgb_array" not in modes or env.render_mode != "rgb_array":
        env.close()
        raise PixelEnvError(
            f"{what}: '{base}' has no 'rgb_array' render mode (its render_modes: {list(modes)}); "
            "pixel observations need one"
        )
    try:
        rendered = gym.wrappers.AddRenderObservation(env, render_only=True)  # renders once to size its space
    except (NotImplementedError, TypeError, ValueError) as exc:
        env.close()
        raise PixelEnvError(
            f"{what}: '{base}' declares 'rgb_array' but its render() gave no image "
            f"({type(exc).__name__}: {exc}); pixel observations need one"
        ) from None
    shape = tuple(rendered.observation_space.shape or ())
    if len(shape) != 3 or shape[-1] != 3:
        env.close()
        raise PixelEnvError(f"{what}: '{base}' renders frames of shape {shape}, expected (H, W, 3)")
    return ResizeImage(rendered)


def _is_grid(space: gym.Space) -> bool:
    """An observation that is an image already: (H, W, C) bool or uint8."""
    return isinstance(space, gym.spaces.Box) and len(space.shape) == 3 and space.dtype in (np.dtype(bool), np.uint8)


def resize_image(img: np.ndarray, size: int = SIZE) -> np.ndarray:
    """(H, W, C) uint8 -> (size, size, C) uint8 by area averaging (PIL's box filter, channel by
    channel where C is not 3)."""
    from PIL import Image

    if img.shape[0] == size and img.shape[1] == size:
        return np.ascontiguousarray(img, np.uint8)
    if img.shape[2] == 3:
        return np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BOX))
    chans = [
        np.asarray(Image.fromarray(np.ascontiguousarray(img[..., c])).resize((size, size), Image.Resampling.BOX))
        for c in range(img.shape[2])
    ]
    return np.stack(chans, -1)


def upsample_grid(grid: np.ndarray, size: int = SIZE) -> np.ndarray:
    """(H, W, C) bool or uint8 -> (size, size, C) uint8 by nearest neighbour (bool: 0 / 255)."""
    rows = (np.arange(size) * grid.shape[0]) // size
    cols = (np.arange(size) * grid.shape[1]) // size
    out = grid[rows][:, cols]
    return out.astype(np.uint8) * 255 if out.dtype == bool else out.astype(np.uint8)


class ResizeImage(gym.ObservationWrapper):
    """(H, W, 3) uint8 renders -> (64, 64, 3) uint8 by area averaging."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        channels = int(env.observation_space.shape[-1]) if env.observation_space.shape else 3
        self.observation_space = gym.spaces.Box(0, 255, (SIZE, SIZE, channels), np.uint8)

    def observation(self, observation: Any) -> np.ndarray:
        return resize_image(np.asarray(observation, np.uint8))


class GridPixels(gym.ObservationWrapper):
    """An image-grid observation (H, W, C) -> (64, 64, C) uint8: bool channels by nearest
    neighbour as 0/255, uint8 images by area averaging."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = env.observation_space
        assert isinstance(space, gym.spaces.Box) and space.shape is not None
        self.bool_grid = space.dtype == np.dtype(bool)
        self.observation_space = gym.spaces.Box(0, 255, (SIZE, SIZE, int(space.shape[-1])), np.uint8)

    def observation(self, observation: Any) -> np.ndarray:
        obs = np.asarray(observation)
        return upsample_grid(obs) if self.bool_grid else resize_image(obs.astype(np.uint8))
