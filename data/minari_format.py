"""Minari datasets (the optional ``dreamlab[offline]`` extra), behind :mod:`dreamlab.data.formats`."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from dreamlab.data.episodes import Episode, EpisodeError
from dreamlab.data.format_types import FormatError, Logs
from dreamlab.data.spaces import SpaceError, space_to_json


def _minari() -> Any:
    try:
        import minari  # noqa: PLC0415 - optional extra, imported lazily
    except ImportError as exc:
        raise FormatError(
            f"Minari support needs the optional extra: pip install 'dreamlab[offline]' (import failed: {exc})"
        ) from None
    return minari


def export_minari(
    episodes: Iterable[Episode],
    dataset_id: str,
    env_id: str | None,
    observation_space: gym.Space,
    action_space: gym.Space,
    algorithm_name: str = "dreamlab",
) -> Path:
    """Write a local Minari dataset (under ``MINARI_DATASETS_PATH``); returns its directory."""
    minari = _minari()
    from minari.data_collector import EpisodeBuffer  # noqa: PLC0415

    buffers = []
    for i, ep in enumerate(episodes):
        n = ep.num_steps
        term = np.zeros(n, bool)
        trunc = np.zeros(n, bool)
        if n:
            term[-1] = ep.is_terminal[-1]
            trunc[-1] = not ep.is_terminal[-1]
        buffers.append(
            EpisodeBuffer(
                id=i,
                observations=ep.obs,
                actions=ep.action[:n],
                rewards=ep.reward[1:].astype(np.float32),
                terminations=term,
                truncations=trunc,
                infos={"feedback": ep.feedback.astype(np.float32)},
            )
        )
    env: Any = None
    if env_id is not None and env_id in gym.registry:
        env = gym.spec(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = minari.create_dataset_from_buffers(
                dataset_id,
                buffers,
                env=env,
                observation_space=observation_space,
                action_space=action_space,
                algorithm_name=algorithm_name,
                description=f"exported by dreamlab from logs of {env_id}",
            )
        except (ValueError, TypeError) as exc:
            raise FormatError(f"Minari dataset '{dataset_id}': cannot create: {exc}") from None
    return Path(ds.storage.data_path).parent


def read_minari(src: str | Path, env_id: str | None = None) -> Logs:
    """Read a local Minari dataset given by id (under ``MINARI_DATASETS_PATH``) or directory."""
    minari = _minari()
    path = Path(src)
    try:
        if path.exists():
            data = path / "data" if (path / "data").is_dir() else path
            ds = minari.MinariDataset(data)
        else:
            ds = minari.load_dataset(str(src), download=False)
    except Exception as exc:  # minari raises assorted types for missing/corrupt datasets
        raise FormatError(f"{src}: not a readable local Minari dataset: {exc}") from None
    obs_space, act_space = ds.observation_space, ds.action_space
    try:
        space_to_json(obs_space), space_to_json(act_space)
    except SpaceError as exc:
        raise FormatError(f"{src}: {exc}") from None
    spec_id = ds.spec.env_spec.id if getattr(ds.spec, "env_spec", None) is not None else None
    try:
        return Logs(_minari_episodes(src, ds, obs_space, act_space), env_id or spec_id, obs_space, act_space, {})
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        if isinstance(exc, FormatError):
            raise
        msg = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise FormatError(f"{src}: not a readable local Minari dataset (truncated or corrupt?): {msg}") from None


def _minari_episodes(src: str | Path, ds: Any, obs_space: gym.Space, act_space: gym.Space) -> list[Episode]:
    episodes = []
    for mep in ds.iterate_episodes():
        where = f"{src} (episode {mep.id})"
        term = np.asarray(mep.terminations, bool)
        trunc = np.asarray(mep.truncations, bool)
        n = len(mep.rewards)
        if n and (term[:-1].any() or trunc[:-1].any()):
            raise FormatError(f"{where}: field 'terminations'/'truncations' set before the last step")
        fb = None
        if isinstance(mep.infos, dict) and "feedback" in mep.infos:
            full = np.asarray(mep.infos["feedback"], np.float32)
            fb = full[1:] if len(full) == n + 1 else full[:n]
        try:
            ep = Episode.from_transitions(
                np.asarray(mep.observations),
                np.asarray(mep.actions),
                np.asarray(mep.rewards, np.float32),
                bool(n and term[-1]),
                fb,
                act_space,
            )
            ep.validate(obs_space, act_space, source=where)
        except EpisodeError as exc:
            raise FormatError(str(exc)) from None
        episodes.append(ep)
    return episodes
