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
* State: the env holds one :class:`~imagination.dream_state.DreamState` (replaced, never mutated,
  by each step); ``step`` runs the pure :func:`~imagination.dream_state.dream_step` on it.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from dreamlab.data.episodes import Episode
from dreamlab.data.store import EpisodeStore
from dreamlab.imagination.dream_state import (
    DreamDynamics,
    DreamEnvError,
    DreamState,
    RewardFn,
    draw_starts,
    dream_step,
    generator,
)

State = dict[str, torch.Tensor]  # latent: {"deter": (n, deter), "stoch"/"logits": (n, groups, classes)}
__all__ = ["DreamEnv", "DreamEnvError", "DreamSingleEnv", "DreamState", "dream_step", "DreamDynamics"]


class DreamEnv(VectorEnv):
    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": ["decoded"]}

    def __init__(
        self,
        world_model: Any,
        start_episodes: list[Episode] | EpisodeStore | None = None,
        num_envs: int = 1,
        max_steps: int = 1000,
        reward_fn: RewardFn | None = None,
        penalty: float = 0.0,
        halt_threshold: float | None = None,
        obs_mode: str = "decoded",
        seed: int | None = None,
        termination: str = "threshold",
        cont_threshold: float = 0.5,
        autoreset: bool = True,
        deterministic: bool = False,
        max_start_states: int = 4096,
        start_points: str = "random",
        _bank: State | None = None,
    ):
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
        self.render_mode = "decoded"
        self._rng = np.random.default_rng(seed)  # the generator until the first reset; then self._s.rng
        self._s: DreamState | None = None

    # ------------------------------------------------------------------ start states
    @torch.no_grad()
    def start_bank(self) -> State:
        """Posterior states at random points of the start episodes, built once (chunks of 16 episodes,
        2 of 64x64 images)."""
        if self._bank is not None:
            return self._bank
        if not self.start_episodes:
            raise DreamEnvError(
                "start_episodes: no episode with at least one transition; pass logged "
                "episodes or reset(options={'states': ...})"
            )
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
        # the posterior samples its latents: seeded here, so that equal seeds give equal start banks
        dev = torch.device(self.device)
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(self.seed0 + 7919)
            frame = int(np.prod(self.start_episodes[eps[0]].obs.shape[1:]))
            per = 16 if frame <= 4096 else 2  # 64x64 images: 16 long episodes would be ~0.4 GB of frames
            for c in range(0, len(eps), per):
                parts.append(self._bank_chunk([eps[i] for i in range(c, min(c + per, len(eps)))], wanted))
        self._bank = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        return self._bank

    def _bank_chunk(self, chunk: list[int], wanted: dict[int, list[int]]) -> State:
        """Posterior states at the ``wanted`` points of the episodes ``chunk`` (one batched filter pass)."""
        horizon = max(max(wanted[e]) for e in chunk) + 1
        sample = self.start_episodes[chunk[0]].obs
        dtype = np.uint8 if sample.dtype == np.uint8 else np.float32  # frames stay uint8: the CNN scales them
        obs = np.zeros((len(chunk), horizon) + sample.shape[1:], dtype)
        act = np.zeros((len(chunk), horizon, self.codec.dim), np.float32)
        first = np.zeros((len(chunk), horizon), bool)
        first[:, 0] = True
        for i, e in enumerate(chunk):
            ep = self.start_episodes[e]
            n = min(horizon, ep.length)
            obs[i, :n] = ep.obs[:n]
            act[i, :n] = self.codec.encode(ep.action[:n])
        post, _ = self.wm.observe(
            torch.as_tensor(obs, device=self.device),
            torch.as_tensor(act, device=self.device),
            torch.as_tensor(first, device=self.device),
        )
        rows = [i for i, e in enumerate(chunk) for _ in wanted[e]]
        cols = [t for e in chunk for t in wanted[e]]
        return {k: v[rows, cols].clone() for k, v in post.items()}

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """Fresh starts from the bank, or from ``options["states"]`` (a latent dict of batch
        ``num_envs``, or a DreamState whose latent is used); counters and flags are cleared."""
        rng = np.random.default_rng(seed) if seed is not None else self._generator()
        options = options or {}
        states = options.get("states")
        if isinstance(states, DreamState):
            states = states.latent
        if states is not None:
            size = next(iter(states.values())).shape[0]
            if size != self.num_envs:
                raise DreamEnvError(f"reset(options['states']): expected batch {self.num_envs}, got {size}")
            latent = {k: v.detach().clone().to(self.device) for k, v in states.items()}
        else:
            latent = draw_starts(self.start_bank(), rng, self.num_envs)
        n = self.num_envs
        obs = self._observe(latent)
        self._s = DreamState(
            latent,
            np.zeros(n, np.int64),
            np.zeros(n, bool),
            np.zeros(n, bool),
            np.zeros(n, bool),
            obs,
            dict(rng.bit_generator.state),
        )
        return obs.copy(), {}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        if self._s is None:
            raise DreamEnvError("step() called before reset()")
        self._s, obs, reward, term, trunc, infos = dream_step(self._dynamics(), self._s, actions)
        return obs, reward, term, trunc, infos

    def render(self) -> np.ndarray:  # type: ignore[override]  # one batched array, not gymnasium's tuple of frames
        """Decoded observations of the current states: (num_envs, *obs_shape)."""
        if self._s is None:
            raise DreamEnvError("render() called before reset()")
        return self._decode(self._s.latent)

    # ------------------------------------------------------------------ snapshots and forks
    def get_state(self) -> DreamState:
        """A deep snapshot (a copy: stepping the env never changes it)."""
        if self._s is None:
            raise DreamEnvError("get_state() called before reset()")
        return self._s.clone()

    def set_state(self, state: DreamState) -> None:
        """Continue from ``state`` (copied onto this env's device; its generator state included)."""
        if not isinstance(state, DreamState):
            raise DreamEnvError(f"set_state: expected a DreamState, got {type(state).__name__}")
        if state.num_branches != self.num_envs:
            raise DreamEnvError(
                f"set_state: snapshot holds {state.num_branches} branches, this env has {self.num_envs}"
            )
        self._s = state.to(self.device)

    def _clone(self, num_envs: int, autoreset: bool | None = None) -> DreamEnv:
        return DreamEnv(
            self.wm,
            self.start_episodes,
            num_envs,
            self.max_steps,
            self.reward_fn,
            self.penalty,
            self.halt_threshold,
            self.obs_mode,
            self.seed0,
            self.termination,
            self.cont_threshold,
            self.autoreset if autoreset is None else autoreset,
            self.deterministic,
            self.max_start_states,
            self.start_points,
            _bank=self._bank,
        )

    def fork(self, k: int) -> DreamEnv:
        """A new DreamEnv of ``num_envs * k`` branches: copies ``i*k .. i*k+k-1`` start from branch i
        (same latent state, counters and flags); the new env's generator is a copy of this one's."""
        if k < 1:
            raise DreamEnvError(f"fork(k): k must be >= 1, got {k}")
        child = self._clone(self.num_envs * k)
        child.set_state(self.get_state().repeat(k))
        return child

    def single_env(self) -> DreamSingleEnv:
        """A ``gymnasium.Env`` view over one branch (no autoreset; passes ``check_env``)."""
        return DreamSingleEnv(self._clone(1, autoreset=False))

    # ------------------------------------------------------------------ helpers
    def _generator(self) -> np.random.Generator:
        """The env's generator: the state's once reset, else the construction one."""
        return self._rng if self._s is None else generator(self._s.rng)

    def _dynamics(self) -> DreamDynamics:
        """The step's settings, read from this env's attributes at call time."""
        return DreamDynamics(
            self.wm,
            self.max_steps,
            self.start_bank,
            self.reward_fn,
            self.penalty,
            self.halt_threshold,
            self.obs_mode,
            self.termination,
            self.cont_threshold,
            self.autoreset,
            self.deterministic,
        )

    def _decode(self, state: State) -> np.ndarray:
        return self._dynamics().decode(state)

    def _observe(self, state: State) -> np.ndarray:
        return self._dynamics().observe(state)

    @property
    def latent(self) -> State:
        """The current latent states (batch num_envs); do not modify in place."""
        if self._s is None:
            raise DreamEnvError("no state before reset()")
        return self._s.latent


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
