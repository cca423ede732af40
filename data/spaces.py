"""Gymnasium spaces as JSON, and the action codec shared by every learner.

Spaces are stored in ``metadata.json`` as plain JSON (never pickled); a Box bound that is the
same everywhere is one number, otherwise a nested list (both load). Learners see actions as
float vectors: one-hot for ``Discrete``, the raw vector for ``Box``; :class:`ActionCodec` maps
between the env's actions and those vectors in both directions, batched.
"""

from __future__ import annotations

from typing import Any, cast

import gymnasium as gym
import numpy as np

from dreamlab.core.errors import DreamlabError


class SpaceError(DreamlabError):
    """A space that cannot be serialised, parsed or matched."""


def space_to_json(space: gym.Space) -> dict[str, Any]:
    """Serialise a Box, Discrete, MultiDiscrete or MultiBinary space to a JSON-able dict."""
    if isinstance(space, gym.spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": str(space.dtype),
            "low": _bound_to_json(space.low),
            "high": _bound_to_json(space.high),
        }
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": np.asarray(space.nvec).tolist()}
    if isinstance(space, gym.spaces.MultiBinary):
        return {"type": "MultiBinary", "n": np.asarray(space.n).tolist()}
    raise SpaceError(f"space {space!r} is not supported (Box, Discrete, MultiDiscrete, MultiBinary)")


def _bound_to_json(bound: Any) -> float | list[Any]:
    """A Box bound as JSON: one number when every element is the same (a 64x64x3 image space is
    ``0`` and ``255``, not 12,288 of each), else the full nested list. Both forms load."""
    a = np.asarray(bound, dtype=np.float64)
    if a.size and bool(np.all(a == a.flat[0])):
        return float(a.flat[0])
    return a.tolist()


def _inf(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


def space_from_json(d: dict[str, Any]) -> gym.Space:
    """Inverse of :func:`space_to_json`; raises :class:`SpaceError` on a malformed dict."""
    try:
        kind = d["type"]
        if kind == "Box":
            dtype, shape = np.dtype(d["dtype"]), tuple(int(n) for n in d["shape"])
            low, high = _inf(d["low"]), _inf(d["high"])
            if low.ndim == 0:  # one number for every element (_bound_to_json)
                low = np.full(shape, low)
            if high.ndim == 0:
                high = np.full(shape, high)
            return gym.spaces.Box(low=low.astype(dtype), high=high.astype(dtype), shape=shape, dtype=dtype)
        if kind == "Discrete":
            return gym.spaces.Discrete(int(d["n"]), start=int(d.get("start", 0)))
        if kind == "MultiDiscrete":
            return gym.spaces.MultiDiscrete(np.asarray(d["nvec"], dtype=np.int64))
        if kind == "MultiBinary":
            return gym.spaces.MultiBinary(d["n"])
    except (KeyError, TypeError, ValueError) as exc:
        raise SpaceError(f"malformed space description {d!r}: {exc}") from exc
    raise SpaceError(f"unknown space type {d.get('type')!r}")


def spaces_equal(a: gym.Space, b: gym.Space) -> bool:
    """Structural equality via the JSON form (float bounds compared with a tolerance)."""
    ja, jb = space_to_json(a), space_to_json(b)
    if ja["type"] != jb["type"]:
        return False
    if ja["type"] == "Box":
        return (
            ja["shape"] == jb["shape"]
            and np.allclose(_inf(ja["low"]), _inf(jb["low"]), equal_nan=True)
            and np.allclose(_inf(ja["high"]), _inf(jb["high"]), equal_nan=True)
        )
    return ja == jb


class ActionCodec:
    """Env actions <-> float vectors for learners, batched.

    ``Discrete(n)`` -> one-hot of width n; ``Box`` -> the flattened vector (width prod(shape));
    ``MultiDiscrete`` -> concatenated one-hots; ``MultiBinary`` -> the bits as floats.
    """

    def __init__(self, space: gym.Space):
        self.space = space
        if isinstance(space, gym.spaces.Discrete):
            self.dim = int(space.n)
            self.discrete = True
        elif isinstance(space, gym.spaces.Box):
            self.dim = int(np.prod(space.shape))
            self.discrete = False
        elif isinstance(space, gym.spaces.MultiDiscrete):
            self.dim = int(np.sum(space.nvec))
            self.discrete = True
        elif isinstance(space, gym.spaces.MultiBinary):
            self.dim = int(np.prod(space.n))
            self.discrete = True
        else:
            raise SpaceError(f"action space {space!r} is not supported")

    def encode(self, actions: np.ndarray) -> np.ndarray:
        """(batch, *action_shape) env actions -> (batch, dim) float32."""
        a = np.asarray(actions)
        sp = self.space
        if isinstance(sp, gym.spaces.Discrete):
            idx = a.reshape(-1).astype(np.int64) - int(sp.start)
            out = np.zeros((idx.shape[0], self.dim), np.float32)
            out[np.arange(idx.shape[0]), np.clip(idx, 0, self.dim - 1)] = 1.0
            return out
        if isinstance(sp, gym.spaces.MultiDiscrete):
            a = a.reshape(a.shape[0], -1).astype(np.int64)
            parts = [
                np.eye(int(n), dtype=np.float32)[np.clip(a[:, i], 0, int(n) - 1)]
                for i, n in enumerate(sp.nvec.reshape(-1))
            ]
            return np.concatenate(parts, axis=-1)
        return a.reshape(a.shape[0], -1).astype(np.float32)

    def decode(self, vectors: np.ndarray) -> np.ndarray:
        """(batch, dim) vectors (one-hot or logits for discrete) -> (batch, *action_shape) env actions."""
        v = np.asarray(vectors)
        sp = self.space
        if isinstance(sp, gym.spaces.Discrete):
            return (v.argmax(-1) + int(sp.start)).astype(np.int64)
        if isinstance(sp, gym.spaces.MultiDiscrete):
            outs, i = [], 0
            for n in sp.nvec.reshape(-1):
                outs.append(v[:, i : i + int(n)].argmax(-1))
                i += int(n)
            return np.stack(outs, -1).reshape((v.shape[0],) + sp.shape).astype(sp.dtype)
        if isinstance(sp, gym.spaces.MultiBinary):
            return (v > 0.5).astype(sp.dtype).reshape((v.shape[0],) + sp.shape)
        box = cast(gym.spaces.Box, sp)
        out = v.reshape((v.shape[0],) + box.shape).astype(box.dtype)
        return np.clip(out, box.low, box.high)
