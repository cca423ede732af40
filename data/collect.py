"""Collect episodes from any gymnasium env into an EpisodeStore, over ``num_envs`` copies of it.

**Stepping.** The ``num_envs`` envs (``make_env``: ``gym.make`` with its usual wrappers) step in
lockstep in the collector's own loop, writing straight into preallocated buffers: one
``policy.act`` on the batch of observations, then each env's ``step``, with no vector-env
batching, info dicts or copies in between (the same envs, seeds and order of calls as a
``gymnasium.vector.SyncVectorEnv`` with ``AutoresetMode.SAME_STEP``, at about 1.25x its speed;
``make_vector_env`` builds that vector env). Env ``i`` is reset with ``seed + i`` at the start.

**Autoreset.** The step that ends an episode gives its true final observation, which the
collector stores as the episode's last step; the env is reset at once and the next episode
starts at the reset observation, so no phantom transition (final obs -> reset obs) is ever
stored, and no env step is wasted on a reset.

**Budget.** ``steps`` counts environment transitions (``Episode.num_steps``) *stored*. The
collector steps the ``num_envs`` envs until the finished episodes hold at least ``steps``
transitions, then stops; the episodes still in flight at that moment are dropped (they are
unfinished, and storing them as truncated would bias the logs toward short episodes). Every
stored episode therefore ended naturally: terminated (``is_terminal``), or truncated by the
env's time limit (``is_last`` only). The summary reports transitions taken, stored and dropped.

**Durability.** Each finished episode leaves the collector as it ends: by default it goes down a
pipe to a forked writer process (``data.writers``), which gathers about 0.25 s of episodes into
one chunk (``data.chunks``: validated, compressed, flushed to disk and renamed in whole) and
updates the index at most every 0.25 s (less often for a store of many thousand episodes), so
storage runs on another core and costs the collector a few microseconds per episode. The writer
ends with its parent. On Ctrl-C, SIGTERM or an error every finished episode is written and
indexed before returning; a SIGKILL loses at most the episodes in flight on each env (the
writer reads end-of-file, writes and indexes what it received; a chunk written but not yet
indexed is adopted by the next collection into the store, which also removes temporary files
left behind). With ``writer="inline"`` (where ``fork`` is unavailable) a SIGKILL also loses the
episodes finished in the last 0.25 s. A second run into the same directory appends (the env id
and spaces must match) and says so on stderr.
"""

from __future__ import annotations

import importlib
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Optional, cast

import gymnasium as gym
import numpy as np

from dreamlab.core.errors import DreamlabError
from dreamlab.core.progress import Progress
from dreamlab.core.protocol import Policy
from dreamlab.data.behaviour import PolicyLoader, load_policy
from dreamlab.data.pixels import MINATAR, base_id, is_pixel_id, register_minatar, register_pixels
from dreamlab.data.store import EpisodeStore
from dreamlab.data.writers import make_writer


class EnvSpecError(DreamlabError):
    """An ``--env`` that cannot be made."""


@dataclass
class CollectConfig:
    """Collection settings (CLI: ``dreamlab collect``)."""

    steps: int = 5000  # transitions to store (at least)
    num_envs: int = 4  # envs stepped in lockstep
    seed: int = 0  # env reset seed (env i gets seed + i) and policy seed
    epsilon: float = 0.0  # heuristic policy: probability of a random action per step
    max_episode_steps: Optional[int] = None  # override the env's time limit (None: the env's own)
    writer: str = "process"  # process: archives are written by a child process; inline


@dataclass
class CollectSummary:
    out: str
    env_id: str
    steps_taken: int
    steps_stored: int
    episodes_stored: int
    steps_dropped: int
    store_steps_total: int
    seconds: float
    write_seconds: float = 0.0
    returns: list[float] = field(default_factory=list)

    @property
    def steps_per_second(self) -> float:
        return self.steps_taken / max(self.seconds, 1e-9)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["steps_per_second"] = self.steps_per_second
        r = np.asarray(self.returns)
        d["return_mean"] = float(r.mean()) if len(r) else None
        d["return_max"] = float(r.max()) if len(r) else None
        del d["returns"]
        return d


def import_user_module(module_name: str, what: str) -> Any:
    """Import the module of a user's ``module:attr`` given on the command line (``what``, e.g.
    ``"--env 'point_mass:PointMass'"``): from ``sys.path`` (PYTHONPATH), else from the current
    directory, as ``python -m`` would (a console script does not put it on ``sys.path``).

    The current directory is tried last, and only for this one import: it never shadows an
    installed module. Names read from a file (``metadata.json``, ``agent.json``) reach here only
    after :func:`dreamlab.core.imports.check_code_name` passed them (``--trust-code``).
    """
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing != module_name and not module_name.startswith(missing + "."):  # an import inside it failed
            raise EnvSpecError(f"{what}: cannot import module '{module_name}': {exc}") from None
    except ImportError as exc:
        raise EnvSpecError(f"{what}: cannot import module '{module_name}': {exc}") from None
    cwd = str(Path.cwd())
    sys.path.append(cwd)
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise EnvSpecError(
            f"{what}: cannot import module '{module_name}' from PYTHONPATH or the current directory ({cwd}): {exc}"
        ) from None
    finally:
        sys.path.remove(cwd)


def register_env(env_id: str) -> str:
    """Make ``env_id`` usable by ``gym.make``: a registered id passes; ``module:Class`` (or
    ``module:factory``) is imported (:func:`import_user_module`) and registered under ``Class`` and ``env_id``, so
    ``gym.make(env_id)`` and ``gym.make_vec(env_id)`` work everywhere after (gymnasium's own
    ``module:EnvId`` form looks ``Class`` up in its registry after importing ``module``).
    Returns ``env_id``. A name that is neither: :class:`EnvSpecError`.

    A pixel id ``ENV-pixels`` (:mod:`dreamlab.data.pixels`) registers ``ENV`` first, then itself;
    a ``MinAtar/...`` id registers MinAtar's games (the ``minatar`` package)."""
    if env_id in gym.registry:
        return env_id
    if is_pixel_id(env_id):
        register_env(base_id(env_id))
        return register_pixels(env_id)
    if env_id.startswith(MINATAR):
        register_minatar()
    if ":" not in env_id:
        return env_id
    module_name, _, attr = env_id.partition(":")
    if not module_name or not attr:
        raise EnvSpecError(f"--env '{env_id}': expected a gymnasium id or 'module:Class'")
    module = import_user_module(module_name, f"--env '{env_id}'")
    target = getattr(module, attr, None)
    if target is None:
        if attr in gym.registry:  # gymnasium's own "module:EnvId" form: the import registered it
            return env_id
        raise EnvSpecError(f"--env '{env_id}': module '{module_name}' has no attribute '{attr}'")
    if not callable(target):
        raise EnvSpecError(f"--env '{env_id}': '{attr}' in module '{module_name}' is not a class or function")
    spec = gym.registry.get(attr)
    if spec is not None and getattr(spec.entry_point, "dreamlab_target", None) is not target:
        raise EnvSpecError(
            f"--env '{env_id}': the name '{attr}' is already a registered env ({spec.entry_point}); rename the class"
        )
    if spec is None:
        make = _checked(env_id, target)
        gym.register(id=attr, entry_point=make)  # gym.make(env_id) imports module_name, then looks up attr
        gym.register(id=env_id, entry_point=make)  # gym.spec(env_id) looks up the whole id
    return env_id


def _checked(env_id: str, target: Any) -> Any:
    """``target`` called with gym.make's keyword arguments; refuses a result that is not a gymnasium.Env."""

    def make(**kwargs: Any) -> gym.Env:
        env = target(**kwargs)
        if not isinstance(env, gym.Env):
            raise EnvSpecError(
                f"--env '{env_id}': {env_id.partition(':')[2]}() returned {type(env).__name__}, not a gymnasium.Env"
            )
        return env

    make.dreamlab_target = target  # type: ignore[attr-defined]
    return make


def make_env(env_id: str, max_episode_steps: int | None = None) -> gym.Env:
    """``gym.make(env_id)``, or ``module:Class`` / ``module:factory`` (:func:`register_env`)."""
    try:
        return gym.make(register_env(env_id), max_episode_steps=max_episode_steps)
    except gym.error.Error as exc:
        raise EnvSpecError(f"--env '{env_id}': not a registered gymnasium id or module:Class ({exc})") from None


def make_vector_env(env_id: str, num_envs: int, max_episode_steps: int | None = None) -> gym.vector.SyncVectorEnv:
    return gym.vector.SyncVectorEnv(
        [partial(make_env, env_id, max_episode_steps)] * num_envs, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
    )


@contextmanager
def _sigterm_as_exit():
    """Turn SIGTERM into SystemExit while collecting, so ``finally`` writes finished episodes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def collect(
    env_id: str,
    policy: Policy | str,
    steps: int,
    num_envs: int = 4,
    seed: int = 0,
    out: str | Path = "logs",
    epsilon: float = 0.0,
    max_episode_steps: int | None = None,
    progress: bool = True,
    writer: str = "process",
    budget: str = "stored",
    loaders: Sequence[PolicyLoader] = (),
) -> CollectSummary:
    """Collect at least ``steps`` transitions into the store at ``out`` (see the module docstring).

    ``budget="taken"`` instead caps the env steps *taken* (a deployment budget): collection stops
    once ``steps`` transitions were taken, and the episodes still in flight are stored as
    truncated (``is_last``, not terminal), so no step taken is lost and none is invented.
    """
    if steps < 1 or num_envs < 1:
        raise ValueError(f"steps and num_envs must be >= 1, got steps={steps}, num_envs={num_envs}")
    if budget not in ("stored", "taken"):
        raise ValueError(f"budget: expected 'stored' or 'taken', got {budget!r}")
    envs = [make_env(env_id, max_episode_steps) for _ in range(num_envs)]
    obs_space, act_space = envs[0].observation_space, envs[0].action_space
    if any(e.observation_space != obs_space or e.action_space != act_space for e in envs[1:]):
        raise EnvSpecError(f"--env '{env_id}': its copies do not share one observation and action space")
    if policy == "heuristic" and is_pixel_id(env_id):
        raise EnvSpecError(
            f"--env '{env_id}': --policy heuristic reads state observations, not pixels; "
            "use --policy random, module:attr or an agent directory"
        )
    if isinstance(policy, str):
        probe = make_env(env_id, max_episode_steps)
        policy = cast(
            Policy,
            load_policy(
                policy,
                probe,
                epsilon=epsilon,
                seed=seed,
                env_id=env_id if env_id in gym.registry else None,
                loaders=loaders,
            ),
        )
        probe.close()
    appending = (Path(out) / "metadata.json").exists()
    store = EpisodeStore.create(out, env_id, obs_space, act_space)
    if appending:
        _announce_append(store)

    K = num_envs
    cap = 512
    obs_shape, act_shape = tuple(obs_space.shape or ()), tuple(act_space.shape or ())
    # The envs step in lockstep, so one time index T serves them all (basic slicing per step,
    # no per-env fancy indexing); each env's current episode spans [start[i], T].
    obs_buf = np.zeros((K, cap + 1) + obs_shape, obs_space.dtype)  # (env, time, *obs)
    act_buf = np.zeros((K, cap) + act_shape, act_space.dtype)  # (env, time, *act)
    rew_buf = np.zeros((K, cap), np.float64)  # (env, time)
    start = [0] * K  # first step of each env's episode
    T = 0

    for i, env in enumerate(envs):
        obs_buf[i, 0] = env.reset(seed=seed + i)[0]
    step_fns = [env.step for env in envs]
    policy.reset(K)
    first = np.ones(K, bool)
    taken = submitted = episodes = 0
    returns: list[float] = []
    recent: deque[float] = deque(maxlen=20)
    t0 = last_post = time.perf_counter()
    sink = make_writer(store, writer)
    bar: Progress[Any] = Progress(total=steps, unit="step", desc=f"collect {env_id}", enabled=progress, smoothing=0.1)
    with _sigterm_as_exit():
        try:
            while (taken if budget == "taken" else submitted) < steps:
                act_buf[:, T] = policy.act(obs_buf[:, T].copy(), first)  # (K, *act)
                acts = act_buf[:, T]  # what each env executes is exactly what is stored
                ended = []
                for i in range(K):
                    o, r, term, trunc, _ = step_fns[i](acts[i])
                    rew_buf[i, T] = r
                    obs_buf[i, T + 1] = o  # for an env that just finished: its final observation
                    if term or trunc:
                        ended.append((i, bool(term)))
                T += 1
                taken += K
                first = np.zeros(K, bool)
                if ended:
                    for i, term in ended:
                        s = start[i]
                        r = rew_buf[i, s:T]
                        sink.submit_steps(obs_buf[i, s : T + 1], act_buf[i, s:T], r, term)
                        ret = float(r.sum())
                        submitted += T - s
                        episodes += 1
                        returns.append(ret)
                        recent.append(ret)
                        bar.update(T - s)
                        obs_buf[i, T] = envs[i].reset()[0]  # the reset obs starts the next episode
                        start[i] = T
                        first[i] = True
                    now = time.perf_counter()
                    if progress and now - last_post > 0.5:
                        bar.set_postfix(
                            env_steps_s=f"{taken / (now - t0):.0f}",
                            episodes=episodes,
                            ret=f"{np.mean(recent):.1f}",
                            refresh=False,
                        )
                        last_post = now
                if T >= cap:  # drop finished history; grow if the episodes in flight fill the buffer
                    m = min(start)
                    obs_buf[:, : T + 1 - m] = obs_buf[:, m : T + 1].copy()
                    act_buf[:, : T - m] = act_buf[:, m:T].copy()
                    rew_buf[:, : T - m] = rew_buf[:, m:T].copy()
                    start = [x - m for x in start]
                    T -= m
                    if T > cap // 2:
                        cap *= 2
                        obs_buf, act_buf, rew_buf = _grow(obs_buf, cap + 1), _grow(act_buf, cap), _grow(rew_buf, cap)
            if budget == "taken":  # the budget is spent: keep the episodes in flight, as truncated
                for i in range(K):
                    s = start[i]
                    if T - s >= 1:
                        sink.submit_steps(obs_buf[i, s : T + 1], act_buf[i, s:T], rew_buf[i, s:T], False)
                        submitted += T - s
                        bar.update(T - s)
        finally:
            bar.close()
            for env in envs:
                env.close()
            sink.close()
    seconds = time.perf_counter() - t0
    store.refresh()
    return CollectSummary(
        out=str(out),
        env_id=env_id,
        steps_taken=taken,
        steps_stored=sink.written_steps,
        episodes_stored=sink.written_episodes,
        steps_dropped=taken - sink.written_steps,
        store_steps_total=store.num_steps,
        seconds=seconds,
        write_seconds=sink.seconds,
        returns=returns,
    )


def _announce_append(store: EpisodeStore) -> None:
    """Tidy an existing store before appending (stale temporary files, chunks or archives a kill
    left unindexed) and say on stderr, in one line, that the run appends to it (and, for a
    version-1 store, that the new episodes go into version-2 chunks)."""
    removed = store.clean_stale()
    adopted, bad = store.adopt_orphans()
    v1 = store.version == 1
    notes = [
        f"{n} {what}"
        for n, what in (
            (adopted, "unindexed episodes adopted"),
            (removed, "stale temporary files removed"),
            (len(bad), "unreadable unindexed files left alone"),
        )
        if n
    ]
    print(
        f"appending to the existing store {store.root} ({len(store)} episodes, {store.num_steps} steps"
        + (f"; {', '.join(notes)}" if notes else "")
        + ")"
        + (
            "; a version-1 store: new episodes are written as version-2 chunks, older dreamlab cannot read it"
            if v1
            else ""
        ),
        file=sys.stderr,
    )


def _grow(buf: np.ndarray, length: int) -> np.ndarray:
    new = np.zeros((buf.shape[0], length) + buf.shape[2:], buf.dtype)
    new[:, : buf.shape[1]] = buf
    return new
