"""The result and error types of the log formats (:mod:`dreamlab.data.formats`), in one place
that both the JSONL and the Minari readers import."""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym

from dreamlab.core.errors import DreamlabError
from dreamlab.data.episodes import Episode


class FormatError(DreamlabError):
    """Input in a log format that cannot be read; the message names the file and line or field."""


@dataclass
class Logs:
    """Episodes read from some format, with the env id and spaces they belong to."""

    episodes: list[Episode]
    env_id: str | None
    observation_space: gym.Space
    action_space: gym.Space
    notes: dict[str, int] = field(default_factory=dict)


__all__ = ["FormatError", "Logs"]
