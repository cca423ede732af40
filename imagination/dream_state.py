"""The dream's state as a value, and the pure batched step that ``DreamEnv.step`` runs.

* :class:`DreamState`: a frozen snapshot of every branch of a dream (latent, step counts, done
  flags, last observation) plus the env's generator state. Its methods return new states that
  share no tensor or array with their input.
* :class:`DreamDynamics`: the world model and the fixed settings of a step (no mutable state).
* :func:`dream_step`: ``(dynamics, state, actions) -> (state', obs, reward, terminated,
  truncated, infos)``, one batched prior step; it never mutates ``state``, and equal inputs give
  equal outputs (all randomness comes from ``state.rng``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F
from einops import repeat as einops_repeat

from dreamlab.core.errors import DreamlabError

Latent = dict[str, torch.Tensor]
RewardFn = Callable[[np.ndarray, np.ndarray], Any]
BranchIndex = Union[int, slice, torch.Tensor, np.ndarray, list]
StepResult = tuple["DreamState", np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]


class DreamEnvError(DreamlabError):
    """Bad arguments to a DreamEnv (the message names the argument and the expectation)."""


@dataclass(frozen=True, eq=False)
class DreamState:
    """A snapshot of a dream's ``n`` branches (the constructor checks sizes but does not copy).

    ``latent``: ``{"deter": (n, deter), "stoch": (n, groups, classes), "logits": (n, groups,
    classes)}``; ``steps``: ``(n,)`` int64 steps since each branch's start; ``done``: ``(n,)``
    bool, branches frozen until ``reset`` (``autoreset=False``); ``term``/``trunc``: ``(n,)``
    bool, the flags of the last step; ``obs``: ``(n, *obs)`` the last observation; ``rng``: the
    env generator's ``bit_generator.state`` (one per env, not per branch)."""

    latent: Latent
    steps: np.ndarray
    done: np.ndarray
    term: np.ndarray
    trunc: np.ndarray
    obs: np.ndarray
    rng: dict[str, Any]

    def __post_init__(self) -> None:
        sizes = {f"latent[{k!r}]": int(v.shape[0]) for k, v in self.latent.items()}
        sizes.update(
            {name: int(np.shape(getattr(self, name))[0]) for name in ("steps", "done", "term", "trunc", "obs")}
        )
        if len(set(sizes.values())) != 1:
            raise DreamEnvError(f"DreamState: every field needs the same batch size (dim 0), got {sizes}")

    @property
    def num_branches(self) -> int:
        return int(self.steps.shape[0])

    def __len__(self) -> int:
        return self.num_branches

    def _map(
        self, tensor: Callable[[torch.Tensor], torch.Tensor], array: Callable[[np.ndarray], np.ndarray]
    ) -> DreamState:
        return DreamState(
            {k: tensor(v) for k, v in self.latent.items()},
            array(self.steps),
            array(self.done),
            array(self.term),
            array(self.trunc),
            array(self.obs),
            copy.deepcopy(self.rng),
        )

    def clone(self) -> DreamState:
        """A deep copy (tensors cloned, arrays and the generator state copied)."""
        return self._map(lambda v: v.clone(), np.copy)

    def index(self, idx: BranchIndex) -> DreamState:
        """The branches ``idx`` selects: an int (kept as a batch of 1), a slice, an index
        tensor/array/list, or a bool mask of length ``n``; ``rng`` is copied unchanged."""
        n = self.num_branches
        if isinstance(idx, torch.Tensor):
            idx = idx.detach().cpu().numpy()
        if isinstance(idx, (int, np.integer)):
            idx = [int(idx)]
        sel = np.asarray(idx) if not isinstance(idx, slice) else idx
        if isinstance(sel, np.ndarray) and sel.dtype == bool:
            if sel.shape != (n,):
                raise DreamEnvError(f"DreamState.index: bool mask must have shape ({n},), got {sel.shape}")
            sel = np.flatnonzero(sel)
        elif isinstance(sel, np.ndarray) and sel.size == 0:
            sel = sel.astype(np.int64)
        try:
            rows = np.arange(n)[sel]  # (m,) in range, negatives resolved
        except IndexError as e:
            raise DreamEnvError(f"DreamState.index: {idx!r} is out of range for {n} branches") from e
        return self._map(lambda v: v[torch.as_tensor(rows, dtype=torch.long, device=v.device)], lambda a: a[rows])

    def repeat(self, k: int) -> DreamState:
        """Each branch repeated ``k`` times consecutively: rows ``i*k .. i*k+k-1`` are branch i."""
        if k < 1:
            raise DreamEnvError(f"DreamState.repeat(k): k must be >= 1, got {k}")
        return self._map(
            lambda v: einops_repeat(v, "n ... -> (n k) ...", k=k).clone(), lambda a: np.repeat(a, k, axis=0)
        )

    def to(self, device: torch.device | str) -> DreamState:
        """A copy with the latent tensors on ``device``."""
        return self._map(lambda v: v.to(device, copy=True), np.copy)


def generator(rng_state: dict[str, Any]) -> np.random.Generator:
    """A fresh numpy Generator whose bit generator is in ``rng_state``."""
    rng = np.random.default_rng()
    rng.bit_generator.state = copy.deepcopy(rng_state)
    return rng


def draw_starts(bank: Latent, rng: np.random.Generator, n: int) -> Latent:
    """``n`` start states drawn uniformly from ``bank`` (draws from ``rng``)."""
    size = next(iter(bank.values())).shape[0]
    idx = torch.as_tensor(rng.integers(0, size, n), device=next(iter(bank.values())).device)
    return {k: v[idx].clone() for k, v in bank.items()}


@dataclass(frozen=True)
class DreamDynamics:
    """The world model and the fixed settings of a dream step; ``start_bank()`` gives the start
    states autoreset draws from (built lazily by the env)."""

    wm: Any
    max_steps: int
    start_bank: Callable[[], Latent]
    reward_fn: RewardFn | None = None
    penalty: float = 0.0
    halt_threshold: float | None = None
    obs_mode: str = "decoded"
    termination: str = "threshold"
    cont_threshold: float = 0.5
    autoreset: bool = True
    deterministic: bool = False

    @torch.no_grad()
    def decode(self, latent: Latent) -> np.ndarray:
        """(n, *obs) decoded observations, clipped into the finite Box bounds in decoded mode."""
        obs = self.wm.decode(latent).detach().cpu().numpy().astype(np.float64)
        if self.obs_mode == "decoded":
            box = self.wm.obs_space
            low = np.where(np.isfinite(box.low), box.low, -np.inf).astype(np.float64)
            high = np.where(np.isfinite(box.high), box.high, np.inf).astype(np.float64)
            obs = np.clip(obs, low, high)
        dtype = np.dtype(self.wm.obs_space.dtype or np.float32)
        if np.issubdtype(dtype, np.integer):  # uint8 frames: the nearest pixel value, not the one below
            obs = np.rint(obs)
        return obs.astype(dtype)

    @torch.no_grad()
    def features(self, latent: Latent) -> np.ndarray:
        return self.wm.features(latent).detach().cpu().numpy().astype(np.float32)  # (n, feature_dim)

    def observe(self, latent: Latent) -> np.ndarray:
        """What the env returns as observation: decoded, or features in latent mode."""
        return self.decode(latent) if self.obs_mode == "decoded" else self.features(latent)


def _expand(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.reshape(mask.shape + (1,) * (like.dim() - 1))


def _expand_np(mask: np.ndarray, like: np.ndarray) -> np.ndarray:
    return mask.reshape(mask.shape + (1,) * (like.ndim - 1))


@torch.no_grad()
def dream_step(dyn: DreamDynamics, state: DreamState, actions: Any) -> StepResult:
    """One batched prior step of every branch; ``state`` is left unchanged.

    Returns ``(next_state, obs (n, *obs), reward (n,) float32, terminated (n,), truncated (n,),
    infos)``; ended branches are restarted in the same call when ``dyn.autoreset`` (their last
    observation in ``infos["final_obs"]``, masked by ``infos["_final_obs"]``), else frozen."""
    n = state.num_branches
    act_np = np.asarray(actions)
    if act_np.shape[0] != n:
        raise DreamEnvError(f"step(actions): expected {n} actions, got shape {act_np.shape}")
    wm, rng = dyn.wm, generator(state.rng)
    device = state.latent["deter"].device
    act = torch.as_tensor(wm.codec.encode(act_np), device=device)  # (n, A)
    live = ~state.done
    infos: dict[str, Any] = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(rng.integers(0, 2**62)))
        dis = None
        if dyn.penalty > 0 or dyn.halt_threshold is not None:
            dis = wm.disagreement(state.latent, act).reshape(-1)  # (n,)
            infos["disagreement"] = dis.cpu().numpy().astype(np.float32)
        nxt = wm.img_step(state.latent, act, member=0 if dyn.deterministic else None)
        if dyn.deterministic:
            nxt = dict(nxt)
            nxt["stoch"] = F.one_hot(nxt["logits"].argmax(-1), nxt["logits"].shape[-1]).to(nxt["stoch"].dtype)
        decoded = dyn.decode(nxt) if (dyn.obs_mode == "decoded" or dyn.reward_fn is not None) else None
        if dyn.reward_fn is not None:
            assert decoded is not None
            reward = np.asarray(torch.as_tensor(dyn.reward_fn(decoded, act_np)).detach().cpu(), np.float64).reshape(-1)
        else:
            reward = wm.reward(nxt).reshape(-1).double().cpu().numpy()
        if dis is not None and dyn.penalty > 0:
            reward = reward - dyn.penalty * dis.double().cpu().numpy()
        cont = wm.cont(nxt).reshape(-1).double().cpu().numpy()
    if dyn.termination == "threshold":
        term = cont < dyn.cont_threshold
    else:
        term = rng.random(n) >= cont
    steps = state.steps + 1
    halted = np.zeros(n, bool)
    if dis is not None and dyn.halt_threshold is not None:
        halted = infos["disagreement"] > float(dyn.halt_threshold)
        infos["halted"] = halted & live
    trunc = ((steps >= dyn.max_steps) | halted) & ~term
    obs = decoded if dyn.obs_mode == "decoded" and decoded is not None else dyn.features(nxt)  # (n, *obs)
    # frozen (already done) rows keep everything as it was; torch.where/np.where allocate anew
    keep = torch.as_tensor(live, device=device)
    latent = {k: torch.where(_expand(keep, v), v, state.latent[k]) for k, v in nxt.items()}
    obs = np.where(_expand_np(live, obs), obs, state.obs)
    reward = np.where(live, reward, 0.0).astype(np.float32)
    term = np.where(live, term, state.term)
    trunc = np.where(live, trunc, state.trunc)
    steps = np.where(live, steps, state.steps)
    done = state.done.copy()
    ended = live & (term | trunc)
    if dyn.autoreset and ended.any():
        infos["final_obs"] = obs.copy()
        infos["_final_obs"] = ended.copy()
        rows = np.flatnonzero(ended)
        fresh = draw_starts(dyn.start_bank(), rng, len(rows))
        ridx = torch.as_tensor(rows, device=device)
        for k in latent:
            latent[k][ridx] = fresh[k]
        obs = obs.copy()
        obs[rows] = dyn.observe(fresh)
        steps[rows] = 0
    elif not dyn.autoreset:
        done = done | ended
    nxt_state = DreamState(latent, steps, done, term.copy(), trunc.copy(), obs, dict(rng.bit_generator.state))
    return nxt_state, obs.copy(), reward, term, trunc, infos


__all__ = ["DreamState", "DreamDynamics", "DreamEnvError", "dream_step", "draw_starts", "generator"]
