"""DreamEnv: a trained world model as a batched, cloneable ``gymnasium.vector.VectorEnv``.

* ``reset(seed, options)`` draws start states from a *bank* of posterior states: real logged
  episodes filtered (``WorldModel.observe``) up to random points. The bank (at most
  ``max_start_states`` states, chosen with the construction seed; ``start_points="first"``
  takes only the episodes' first steps) is built once, lazily, and shared with forks. ``options={"states": state}`` starts from given latent states instead.
* ``step(actions)`` is one batched prior step (``img_step``): the reward comes from the reward
  head (or ``reward_fn(decoded_obs, action)``, e.g. a verifier), minus ``penalty`` x the
  ensemble ``disagreement`` of the step; termination from the continue head (``cont < 0.5``
  by default, or sampled with ``termination="sample"``); truncation at ``max_steps`` or, when
  ``halt_threshold`` is set, when the disagreement exceeds it (``infos["halted"]``).
* Observations are decoded into the real env's observation space (clipped into finite Box
  bounds) so a policy written for the real env acts unchanged; ``obs_mode="latent"`` gives the
  world model's features instead.
* Autoreset: ``SAME_STEP`` (the default, ``autoreset=True``): a branch that ends is restarted in
  the same call; its last observation is in ``infos["final_obs"]`` (masked by
  ``infos["_final_obs"]``). With ``autoreset=False`` ended branches are frozen until ``reset``:
  they keep their last observation, get reward 0 and keep reporting their done flags.
* Determinism: every random draw (start states, the prior's samples and ensemble heads,
  sampled terminations) comes from the env's own generator, so two envs with equal states
  (``get_state``/``set_state``, or ``fork``) under identical actions evolve identically.
  ``deterministic=True`` additionally takes the prior's mode and ensemble head 0, so the k
  copies made by ``fork(k)`` stay identical under identical actions.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from einops import repeat
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from dreamlab.core.errors import DreamlabError
from dreamlab.data.episodes import Episode
from dreamlab.data.store import EpisodeStore

State = dict[str, torch.Tensor]
RewardFn = Callable[[np.ndarray, np.ndarray], Any]


class DreamEnvError(DreamlabError):
    """Bad arguments to a DreamEnv (the message names the argument and the expectation)."""


class DreamEnv(VectorEnv):
    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": ["decoded"]}

    def __init__(self, world_model: Any, start_episodes: list[Episode] | EpisodeStore | None = None,
                 num_envs: int = 1, max_steps: int = 1000, reward_fn: RewardFn | None = None,
                 penalty: float = 0.0, halt_threshold: float | None = None,
                 obs_mode: str = "decoded", seed: int | None = None, termination: str = "threshold",
                 cont_threshold: float = 0.5, autoreset: bool = True, deterministic: bool = False,
                 max_start_states: int = 4096, start_points: str = "random", _bank: State | None = None):
        if obs_mode not in ("decoded", "latent"):
            raise DreamEnvError(f"obs_mode: expected 'decoded' or 'latent', got {obs_mode!r}")
        if termination not in ("threshold", "sample"):
            raise DreamEnvError(f"termination: expected 'threshold' or 'sample', got {termination!r}")
        if start_points not in ("random", "first"):
            raise DreamEnvError(f"start_points: expected 'random' or 'first', got {start_points!r}")
        if num_envs < 1 or max_steps < 1:
            raise DreamEnvError(f"num_envs and max_steps must be >= 1, got {num_envs} and {max_steps}")
        self.wm = world_model
        self.num_envs = int(num_envs)
        self.max_steps, self.reward_fn = int(max_steps), reward_fn
        self.penalty, self.halt_threshold = float(penalty), halt_threshold
        self.obs_mode, self.termination, self.cont_threshold = obs_mode, termination, float(cont_threshold)
        self.autoreset, self.deterministic = autoreset, deterministic
        self.max_start_states, self.start_points = int(max_start_states), start_points
        self.seed0 = 0 if seed is None else int(seed)
        if isinstance(start_episodes, EpisodeStore):
            start_episodes = start_episodes.episodes()
        self.start_episodes = [ep for ep in (start_episodes or []) if ep.length >= 2]
        self._bank = _bank
        self.codec = world_model.codec
        self.device = next(world_model.parameters()).device
        self.single_action_space = world_model.action_space
        if obs_mode == "decoded":
            self.single_observation_space = world_model.obs_space
        else:
            self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (int(world_model.feature_dim),), np.float32)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        box = self.single_observation_space
        self._low = np.where(np.isfinite(box.low), box.low, -np.inf).astype(np.float64)
        self._high = np.where(np.isfinite(box.high), box.high, np.inf).astype(np.float64)
        self.render_mode = "decoded"
        self._rng = np.random.default_rng(seed)
        self._state: State | None = None
        self._steps = np.zeros(self.num_envs, np.int64)
        self._done = np.zeros(self.num_envs, bool)
        self._term = np.zeros(self.num_envs, bool)
        self._trunc = np.zeros(self.num_envs, bool)
        self._obs: np.ndarray | None = None

    # ------------------------------------------------------------------ start states
    @torch.no_grad()
    def start_bank(self) -> State:
        """Posterior states at random points of the start episodes, built once (chunks of 16 episodes)."""
        if self._bank is not None:
            return self._bank
        if not self.start_episodes:
            raise DreamEnvError("start_episodes: no episode with at least one transition; pass logged "
                                "episodes or reset(options={'states': ...})")
        rng = np.random.default_rng(self.seed0 + 7919)
        # usable points: t in [0, T-2] (a start is never the final step), or t = 0 only
        lengths = np.array([ep.length - 1 if self.start_points == "random" else 1 for ep in self.start_episodes])
        total = int(lengths.sum())
        pick = rng.choice(total, size=min(total, self.max_start_states), replace=False)
        ep_idx = np.searchsorted(np.cumsum(lengths), pick, side="right")
        t_idx = pick - (np.cumsum(lengths) - lengths)[ep_idx]
        wanted: dict[int, list[int]] = {}
        for e, t in zip(ep_idx.tolist(), t_idx.tolist()):
            wanted.setdefault(e, []).append(t)
        parts: list[State] = []
        eps = sorted(wanted)
        for c in range(0, len(eps), 16):
            chunk = eps[c : c + 16]
            horizon = max(max(wanted[e]) for e in chunk) + 1
            obs = np.zeros((len(chunk), horizon) + self.start_episodes[chunk[0]].obs.shape[1:], np.float32)
            act = np.zeros((len(chunk), horizon, self.codec.dim), np.float32)
            first = np.zeros((len(chunk), horizon), bool)
            first[:, 0] = True
            for i, e in enumerate(chunk):
                ep = self.start_episodes[e]
                n = min(horizon, ep.length)
                obs[i, :n] = ep.obs[:n]
                act[i, :n] = self.codec.encode(ep.action[:n])
            post, _ = self.wm.observe(torch.as_tensor(obs, device=self.device),
                                      torch.as_tensor(act, device=self.device),
                                      torch.as_tensor(first, device=self.device))
            rows = [i for i, e in enumerate(chunk) for _ in wanted[e]]
            cols = [t for e in chunk for t in wanted[e]]
            parts.append({k: v[rows, cols].clone() for k, v in post.items()})
        self._bank = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        return self._bank

    def _draw_starts(self, n: int) -> State:
        bank = self.start_bank()
        size = next(iter(bank.values())).shape[0]
        idx = torch.as_tensor(self._rng.integers(0, size, n), device=self.device)
        return {k: v[idx].clone() for k, v in bank.items()}

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        options = options or {}
        states = options.get("states")
        if states is not None:
            size = next(iter(states.values())).shape[0]
            if size != self.num_envs:
                raise DreamEnvError(f"reset(options['states']): expected batch {self.num_envs}, got {size}")
            self._state = {k: v.detach().clone().to(self.device) for k, v in states.items()}
        else:
            self._state = self._draw_starts(self.num_envs)
        self._steps[:] = 0
        self._done[:] = False
        self._term[:] = False
        self._trunc[:] = False
        self._obs = self._observe(self._state)
        return self._obs.copy(), {}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        if self._state is None or self._obs is None:
            raise DreamEnvError("step() called before reset()")
        act_np = np.asarray(actions)
        if act_np.shape[0] != self.num_envs:
            raise DreamEnvError(f"step(actions): expected {self.num_envs} actions, got shape {act_np.shape}")
        act = torch.as_tensor(self.codec.encode(act_np), device=self.device)  # (n, A)
        live = ~self._done
        infos: dict[str, Any] = {}
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self._rng.integers(0, 2**62)))
            dis = None
            if self.penalty > 0 or self.halt_threshold is not None:
                dis = self.wm.disagreement(self._state, act).reshape(-1)  # (n,)
                infos["disagreement"] = dis.cpu().numpy().astype(np.float32)
            nxt = self.wm.img_step(self._state, act, member=0 if self.deterministic else None)
            if self.deterministic:
                nxt = dict(nxt)
                nxt["stoch"] = F.one_hot(nxt["logits"].argmax(-1), nxt["logits"].shape[-1]).to(nxt["stoch"].dtype)
            decoded = self._decode(nxt) if (self.obs_mode == "decoded" or self.reward_fn is not None) else None
            if self.reward_fn is not None:
                reward = np.asarray(torch.as_tensor(self.reward_fn(decoded, act_np)).detach().cpu(), np.float64).reshape(-1)
            else:
                reward = self.wm.reward(nxt).reshape(-1).double().cpu().numpy()
            if dis is not None and self.penalty > 0:
                reward = reward - self.penalty * dis.double().cpu().numpy()
            cont = self.wm.cont(nxt).reshape(-1).double().cpu().numpy()
        if self.termination == "threshold":
            term = cont < self.cont_threshold
        else:
            term = self._rng.random(self.num_envs) >= cont
        steps = self._steps + 1
        halted = np.zeros(self.num_envs, bool)
        if dis is not None and self.halt_threshold is not None:
            halted = infos["disagreement"] > float(self.halt_threshold)
            infos["halted"] = halted & live
        trunc = ((steps >= self.max_steps) | halted) & ~term
        obs = decoded if self.obs_mode == "decoded" else self._features(nxt)
        # frozen (already done) rows keep everything as it was
        keep = torch.as_tensor(live, device=self.device)
        self._state = {k: torch.where(_expand(keep, v), v, self._state[k]) for k, v in nxt.items()}
        obs = np.where(_expand_np(live, obs), obs, self._obs)
        reward = np.where(live, reward, 0.0).astype(np.float32)
        term = np.where(live, term, self._term)
        trunc = np.where(live, trunc, self._trunc)
        self._steps = np.where(live, steps, self._steps)
        ended = live & (term | trunc)
        if self.autoreset and ended.any():
            infos["final_obs"] = obs.copy()
            infos["_final_obs"] = ended.copy()
            rows = np.flatnonzero(ended)
            fresh = self._draw_starts(len(rows))
            ridx = torch.as_tensor(rows, device=self.device)
            for k in self._state:
                self._state[k][ridx] = fresh[k]
            obs = obs.copy()
            obs[rows] = self._observe(fresh)
            self._steps[rows] = 0
        elif not self.autoreset:
            self._done = self._done | ended
        self._term, self._trunc = term.copy(), trunc.copy()
        self._obs = obs
        return obs.copy(), reward, term, trunc, infos

    def render(self) -> np.ndarray:
        """Decoded observations of the current states: (num_envs, *obs_shape)."""
        if self._state is None:
            raise DreamEnvError("render() called before reset()")
        with torch.no_grad():
            return self._decode(self._state)

    # ------------------------------------------------------------------ snapshots and forks
    def get_state(self) -> dict[str, Any]:
        """A deep snapshot: latent tensors, step counters, done flags, last obs, RNG state."""
        if self._state is None:
            raise DreamEnvError("get_state() called before reset()")
        return {"latent": {k: v.clone() for k, v in self._state.items()}, "steps": self._steps.copy(),
                "done": self._done.copy(), "term": self._term.copy(), "trunc": self._trunc.copy(),
                "obs": None if self._obs is None else self._obs.copy(),
                "rng": copy.deepcopy(self._rng.bit_generator.state)}

    def set_state(self, snap: dict[str, Any]) -> None:
        size = next(iter(snap["latent"].values())).shape[0]
        if size != self.num_envs:
            raise DreamEnvError(f"set_state: snapshot holds {size} branches, this env has {self.num_envs}")
        self._state = {k: v.clone().to(self.device) for k, v in snap["latent"].items()}
        self._steps, self._done = snap["steps"].copy(), snap["done"].copy()
        self._term, self._trunc = snap["term"].copy(), snap["trunc"].copy()
        self._obs = None if snap["obs"] is None else snap["obs"].copy()
        self._rng = np.random.default_rng()
        self._rng.bit_generator.state = copy.deepcopy(snap["rng"])

    def _clone(self, num_envs: int, autoreset: bool | None = None) -> "DreamEnv":
        return DreamEnv(self.wm, self.start_episodes, num_envs, self.max_steps, self.reward_fn, self.penalty,
                        self.halt_threshold, self.obs_mode, self.seed0, self.termination, self.cont_threshold,
                        self.autoreset if autoreset is None else autoreset, self.deterministic,
                        self.max_start_states, self.start_points, _bank=self._bank)

    def fork(self, k: int) -> "DreamEnv":
        """A new DreamEnv of ``num_envs * k`` branches: copies ``i*k .. i*k+k-1`` start from branch i
        (same latent state, counters and flags); the new env's generator is a copy of this one's."""
        if k < 1:
            raise DreamEnvError(f"fork(k): k must be >= 1, got {k}")
        snap = self.get_state()
        child = self._clone(self.num_envs * k)
        rep = {
            "latent": {key: repeat(v, "n ... -> (n k) ...", k=k).clone() for key, v in snap["latent"].items()},
            "steps": np.repeat(snap["steps"], k), "done": np.repeat(snap["done"], k),
            "term": np.repeat(snap["term"], k), "trunc": np.repeat(snap["trunc"], k),
            "obs": None if snap["obs"] is None else np.repeat(snap["obs"], k, axis=0), "rng": snap["rng"],
        }
        child.set_state(rep)
        return child

    def single_env(self) -> "DreamSingleEnv":
        """A ``gymnasium.Env`` view over one branch (no autoreset; passes ``check_env``)."""
        return DreamSingleEnv(self._clone(1, autoreset=False))

    # ------------------------------------------------------------------ helpers
    def _decode(self, state: State) -> np.ndarray:
        obs = self.wm.decode(state).detach().cpu().numpy().astype(np.float64)
        obs = np.clip(obs, self._low, self._high) if self.obs_mode == "decoded" else obs
        return obs.astype(self.wm.obs_space.dtype or np.float32)

    def _features(self, state: State) -> np.ndarray:
        return self.wm.features(state).detach().cpu().numpy().astype(np.float32)

    @torch.no_grad()
    def _observe(self, state: State) -> np.ndarray:
        return self._decode(state) if self.obs_mode == "decoded" else self._features(state)

    @property
    def latent(self) -> State:
        """The current latent states (batch num_envs); do not modify in place."""
        if self._state is None:
            raise DreamEnvError("no state before reset()")
        return self._state


def _expand(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.reshape(mask.shape + (1,) * (like.dim() - 1))


def _expand_np(mask: np.ndarray, like: np.ndarray) -> np.ndarray:
    return mask.reshape(mask.shape + (1,) * (like.ndim - 1))


class DreamSingleEnv(gym.Env):
    """One dream as a plain ``gymnasium.Env`` (for SB3 and ``check_env``)."""

    metadata = {"render_modes": []}

    def __init__(self, vec: DreamEnv):
        super().__init__()
        self.vec = vec
        self.observation_space = vec.single_observation_space
        self.action_space = vec.single_action_space

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        obs, info = self.vec.reset(seed=seed, options=options)
        return obs[0], info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, rew, term, trunc, info = self.vec.step(np.asarray(action)[None])
        return obs[0], float(rew[0]), bool(term[0]), bool(trunc[0]), {}
