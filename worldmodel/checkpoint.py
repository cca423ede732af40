"""World-model checkpoints: a format/version stamp, safe loading, and clear errors.

Both Lightning's checkpoints (``last.ckpt``, ``step=N.ckpt``) and the compact
``world_model.ckpt`` hold ``state_dict``, ``hyper_parameters`` = ``{"cfg": dict, "obs_space":
dict, "action_space": dict}`` (plain JSON-like values) and ``"dreamlab": {"format", "version"}``.
Loading always uses ``torch.load(..., weights_only=True)`` through
:func:`dreamlab.core.io.safe_torch_load`: nothing is unpickled. Lightning's own resume reads go
through :class:`SafeCheckpointIO`, the same loader.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from dreamlab.core.errors import DreamlabError
from dreamlab.core.io import atomic_torch_save, safe_torch_load
from dreamlab.data.spaces import SpaceError, space_to_json, spaces_equal

if TYPE_CHECKING:
    from dreamlab.worldmodel.model import WorldModel

FORMAT = "dreamlab-worldmodel"
VERSION = 1


class CheckpointError(DreamlabError):
    """A file that is not a (compatible) world-model checkpoint; the message names it."""


class SpaceMismatchError(DreamlabError):
    """Logs whose observation/action spaces differ from the checkpoint's."""


def stamp(checkpoint: dict[str, Any]) -> dict[str, Any]:
    checkpoint["dreamlab"] = {"format": FORMAT, "version": VERSION}
    return checkpoint


def save_model(model: WorldModel, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = stamp(
        {
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "hyper_parameters": {
                "cfg": model.cfg.to_dict(),
                "obs_space": space_to_json(model.obs_space),
                "action_space": space_to_json(model.action_space),
            },
        }
    )
    atomic_torch_save(payload, path)
    return path


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and check a checkpoint dict (weights_only); raise CheckpointError naming the problem."""
    path = Path(path)
    ckpt = safe_torch_load(path, "world-model checkpoint", CheckpointError, map_location)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(
            f"{path}: not a world-model checkpoint (expected a dict with 'state_dict', "
            f"'hyper_parameters' and 'dreamlab'; got {type(ckpt).__name__})"
        )
    stamp_d = ckpt.get("dreamlab")
    if not isinstance(stamp_d, dict) or stamp_d.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: field 'dreamlab.format' is missing or not '{FORMAT}': not a dreamlab world-model checkpoint"
        )
    if stamp_d.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: field 'dreamlab.version' is {stamp_d.get('version')!r}; this "
            f"dreamlab reads world-model checkpoints of version {VERSION} (retrain with "
            "`dreamlab train-wm`)"
        )
    hp = ckpt.get("hyper_parameters")
    if not isinstance(hp, dict) or not {"cfg", "obs_space", "action_space"} <= set(hp):
        raise CheckpointError(
            f"{path}: field 'hyper_parameters' must hold 'cfg', 'obs_space' and "
            f"'action_space'; got {sorted(hp) if isinstance(hp, dict) else type(hp).__name__}"
        )
    return ckpt


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint reader replaced by :func:`read_checkpoint` (``weights_only=True``,
    format stamp checked, one :class:`CheckpointError` naming the file on failure)."""

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return read_checkpoint(path, map_location if map_location is not None else "cpu")


def load_model(cls: type[WorldModel], path: str | Path, map_location: str | torch.device = "cpu") -> WorldModel:
    ckpt = read_checkpoint(path, map_location)
    hp = ckpt["hyper_parameters"]
    try:
        model = cls(hp["cfg"], hp["obs_space"], hp["action_space"])
    except (SpaceError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: field 'hyper_parameters' is invalid: {exc}") from None
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path}: field 'state_dict' does not fit the stored config: {str(exc).splitlines()[0]}"
        ) from None
    model.eval()
    return model


def check_spaces(model: WorldModel, obs_space: gym.Space, action_space: gym.Space, source: str | Path) -> None:
    if not spaces_equal(obs_space, model.obs_space):
        raise SpaceMismatchError(
            f"{source}: field 'observation_space' is {obs_space}, but the world model was trained on {model.obs_space}"
        )
    if not spaces_equal(action_space, model.action_space):
        raise SpaceMismatchError(
            f"{source}: field 'action_space' is {action_space}, but the world model was trained on {model.action_space}"
        )
