"""Benchmark suites: the pipeline per env, offline and online, over seeds, with a summary.

``run_bench(BenchConfig)`` (``dreamlab bench``) runs, for every env of the suite, every mode and
every seed, one run into ``OUT/<env>/<mode>/seed<k>/``:

* **offline**: collect logs of the env's heuristic with its mediocre epsilon (:data:`LOG_EPSILON`;
  ``data.collect.collect``), train a world model on them (``worldmodel.train.train``), train an
  actor-critic only in its dreams (``imagination.loops.dream_offline``), then evaluate
  (``imagination.evaluate.dream_vs_real``). Real env steps used = the logged steps.
* **online**: ``imagination.loops.train_online`` (collect with the agent, train the world model,
  dream, act) for ``online_steps`` real steps, then ``dream_vs_real``.
* **sb3-ppo**, **sb3-dqn-sac** (:mod:`dreamlab.baselines`): SB3 PPO, and DQN (discrete actions) or
  SAC (Box), with RL Zoo hyperparameters, trained for exactly the real steps of the dreamlab modes
  chosen beside them (online: ``online_steps``; offline: ``log_steps``), into
  ``OUT/<env>/<mode>-<steps>/seed<k>/``, evaluated greedily on the same episodes. All four modes
  run by default; ``--modes offline,online`` leaves the baselines out.

Each run is a :class:`dreamlab.stages.Run` (``RUN/manifest.json``; stages marked in
``RUN/stages/<stage>.json``), and
the run ends by writing ``RUN/result.json``: env, mode, seed, real return mean/std, dream return
mean, gap (dream - real) and relative gap, real env steps used, wall seconds (sum of the stages'
times, so resumed runs are not double counted), the budget. A rerun skips finished runs and
resumes unfinished ones stage by stage. Evaluation episodes (``eval_episodes``, env i seeded
``10_000 + seed + i``) are not counted as real steps used. At the end ``OUT/results.csv`` has
one row per finished run under ``OUT`` and ``OUT/summary.md`` the median and min–max over seeds
per env × mode (SB3: × budget), with cited RL Zoo model-free rows beside each env
(``dreamlab.references``) and a head-to-head line per env: dreamlab's median real return against
each SB3 baseline's at the same real steps.

Suites and their budgets (per run; every budget can be overridden from the command line:
``--budget.log-steps 4000``, or ``budget: {log_steps: 4000}`` in ``--config``):

===========  ==========================  ======  =====================  =======  ==================  =========
suite        envs                        preset  offline: logs / WM     dream    online: real steps  SB3 real
                                                 steps (safety net)     updates  (prefill, ratio)    steps
===========  ==========================  ======  =====================  =======  ==================  =========
``quick``    CartPole-v1, Pendulum-v1    small   8k / 1200 (net 15 m)   150      3k (500, 64)        3k and 8k
``classic``  CartPole-v1, Pendulum-v1,   small   20k / 6000 (net 45 m)  500      10k (1000, 64);     online's
             Acrobot-v1,                                                         Acrobot 20k,        and 20k
             MountainCarContinuous-v0                                            MountainCar 50k
``pixels``   CartPole-v1-pixels,         small   20k / 6000 (net 45 m)  500      50k (1000, 64)      50k, 20k
             MinAtar/Breakout-v1-pixels
===========  ==========================  ======  =====================  =======  ==================  =========

``quick`` is sized to finish 1 seed of its 4 dreamlab runs in roughly 20–30 minutes on a 2-core CPU with
one torch thread; its returns are a smoke check, not the issue's targets. ``classic`` uses the
budgets of the imagination issue's targets (20k noisy-heuristic log steps offline, 10k real
steps online) and takes hours per seed on that CPU. ``LunarLander-v3`` runs only when named in
``envs`` (it needs Box2D; its offline logs come from gymnasium's LunarLander heuristic).
``pixels`` runs the same code on 64×64 frames (:mod:`dreamlab.data.pixels`; MinAtar needs the
``minatar`` package): its offline logs are uniformly random (the heuristics read states), its SB3
rows use ``CnnPolicy`` with SB3's defaults and a replay buffer no larger than the budget; at about
5 real steps/s online on a 2-core CPU one 50k-step run takes hours. Any other env (a gymnasium id,
or a user's ``module:Class``) runs the chosen suite's budgets with uniformly random offline logs;
an env id becomes a folder name with ``/`` and ``:`` replaced (``data.pixels.env_dirname``).

Mediocre log epsilons (probability of a uniformly random action; measured with
``data.behaviour.evaluate``, 10 episodes, seed 0): CartPole-v1 0.75 (``CARTPOLE_MEDIOCRE_EPSILON``,
mean ~47), Pendulum-v1 0.5 (mean -571 against -140 for the heuristic and -1242 random),
Acrobot-v1 0.75 (mean -280 against ~-85 and -500), MountainCarContinuous-v0 0.93
(``MCC_MINORITY_EPSILON``, goal reached in ~37% of episodes).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dreamlab.baselines import SB3_MODES, mode_dir, require_sb3, sb3_budgets
from dreamlab.core.errors import DreamlabError
from dreamlab.core.io import atomic_write_json
from dreamlab.core.seeding import EVAL_OFFSET
from dreamlab.data.behaviour import CARTPOLE_MEDIOCRE_EPSILON, MCC_MINORITY_EPSILON
from dreamlab.imagination.dreamer import DreamerConfig
from dreamlab.stages import (
    Run,
    collect_logs,
    dream_agent,
    evaluate_agent,
    stderr_log,
    train_online_agent,
    train_world_model,
)

MODES = ("offline", "online", *SB3_MODES)
SUITE_ENVS: dict[str, tuple[str, ...]] = {
    "quick": ("CartPole-v1", "Pendulum-v1"),
    "classic": ("CartPole-v1", "Pendulum-v1", "Acrobot-v1", "MountainCarContinuous-v0"),
    "pixels": ("CartPole-v1-pixels", "MinAtar/Breakout-v1-pixels"),
}
# per suite and env, what differs from the suite's budget: the real-step budgets of issue 16's targets
ENV_BUDGETS: dict[str, dict[str, dict[str, int]]] = {
    "classic": {"Acrobot-v1": {"online_steps": 20_000}, "MountainCarContinuous-v0": {"online_steps": 50_000}},
}
OPTIONAL_ENVS = ("LunarLander-v3",)
LOG_EPSILON: dict[str, float] = {
    "CartPole": CARTPOLE_MEDIOCRE_EPSILON,
    "Pendulum": 0.5,
    "Acrobot": 0.75,
    "MountainCarContinuous": MCC_MINORITY_EPSILON,
    "LunarLander": 0.5,
}


class BenchError(DreamlabError):
    """A bad bench configuration (names the field and what it expects)."""


@dataclass(frozen=True)
class Budget:
    preset: str  # world-model preset (offline and online)
    log_steps: int  # offline: logged real steps
    wm_steps: int  # offline: world-model training steps ...
    wm_minutes: float  # a wall-clock safety net only: a run it cuts short is marked in the summary
    dream_steps: int  # offline: actor-critic updates in the dream
    online_steps: int  # online: real env steps
    online_prefill: int  # online: random-policy steps first
    online_pretrain: int  # online: world-model-only updates after the prefill
    replay_ratio: float  # online: replayed steps per real step
    eval_episodes: int  # real (and dream) episodes of the final evaluation


SUITES: dict[str, Budget] = {
    "quick": Budget(
        preset="small",
        log_steps=8_000,
        wm_steps=1_200,
        wm_minutes=15.0,
        dream_steps=150,
        online_steps=3_000,
        online_prefill=500,
        online_pretrain=100,
        replay_ratio=64.0,
        eval_episodes=10,
    ),
    "classic": Budget(
        preset="small",
        log_steps=20_000,
        wm_steps=6_000,
        wm_minutes=45.0,
        dream_steps=500,
        online_steps=10_000,
        online_prefill=1_000,
        online_pretrain=200,
        replay_ratio=64.0,
        eval_episodes=10,
    ),
    "pixels": Budget(
        preset="small",
        log_steps=20_000,
        wm_steps=6_000,
        wm_minutes=45.0,
        dream_steps=500,
        online_steps=50_000,
        online_prefill=1_000,
        online_pretrain=200,
        replay_ratio=64.0,
        eval_episodes=10,
    ),
}


@dataclass
class BudgetOverrides:
    """Per-run budget overrides; None keeps the suite's value (see the module docstring)."""

    preset: str | None = None
    log_steps: int | None = None
    wm_steps: int | None = None
    wm_minutes: float | None = None
    dream_steps: int | None = None
    online_steps: int | None = None
    online_prefill: int | None = None
    online_pretrain: int | None = None
    replay_ratio: float | None = None
    eval_episodes: int | None = None


@dataclass
class BenchConfig:
    suite: str = "quick"
    out: str = "runs/bench"
    seeds: int = 1  # seeds first_seed .. first_seed + seeds - 1
    first_seed: int = 0
    envs: tuple[str, ...] = ()  # empty: the suite's envs
    modes: tuple[str, ...] = MODES  # "offline,online" is accepted too; leave out sb3-* to skip the SB3 baselines
    num_envs: int = 8  # vector envs while collecting the offline logs
    threads: int = 1  # torch CPU threads (0 = torch's default)
    precision: str = "auto"  # 32 | bf16-mixed | auto (bf16-mixed where bf16 is fast)
    progress: bool = True
    budget: BudgetOverrides = field(default_factory=BudgetOverrides)
    # the actor-critic of the offline and online modes (ablations: e.g. --dreamer.intrinsic 1.0)
    dreamer: DreamerConfig = field(default_factory=DreamerConfig)

    def resolved_budget(self, env_id: str | None = None) -> Budget:
        """The suite's budget (for ``env_id``: with its :data:`ENV_BUDGETS`), the overrides applied."""
        if self.suite not in SUITES:
            raise BenchError(f"suite: unknown suite {self.suite!r}; choose one of {sorted(SUITES)}")
        over = {k: v for k, v in asdict(self.budget).items() if v is not None}
        per_env = ENV_BUDGETS.get(self.suite, {}).get(env_id or "", {})
        return dataclasses.replace(SUITES[self.suite], **{**per_env, **over})

    def env_budgets(self) -> dict[str, Budget]:
        """Each env of the run with its resolved budget."""
        return {e: self.resolved_budget(e) for e in self.env_ids()}

    def env_ids(self) -> tuple[str, ...]:
        envs = tuple(e for x in self.envs for e in str(x).split(",") if e) or SUITE_ENVS[self.suite]
        from dreamlab.data.collect import EnvSpecError, make_env

        known = set(SUITE_ENVS["classic"]) | set(SUITE_ENVS["pixels"]) | set(OPTIONAL_ENVS)
        for e in envs:  # a user's own env (module:Class) or another gymnasium id: random logs offline
            if e not in known:
                try:
                    make_env(e).close()
                except EnvSpecError as exc:
                    raise BenchError(f"envs: {exc}; or choose from {sorted(known)}") from None
        if any(e.startswith("LunarLander") for e in envs):
            try:
                import Box2D  # noqa: F401
            except ImportError:
                raise BenchError("envs: LunarLander-v3 needs Box2D (pip install 'gymnasium[box2d]')") from None
        return envs

    def mode_list(self) -> tuple[str, ...]:
        modes = tuple(m for x in self.modes for m in str(x).split(",") if m)
        bad = [m for m in modes if m not in MODES]
        if bad or not modes:
            raise BenchError(f"modes: expected a comma-separated subset of {list(MODES)}, got {list(self.modes)}")
        return modes

    def validate(self) -> BenchConfig:
        b = self.resolved_budget()
        self.env_ids()
        if set(self.mode_list()) & set(SB3_MODES):
            require_sb3()
        if self.seeds < 1:
            raise BenchError(f"seeds: expected >= 1, got {self.seeds}")
        ints = {k: v for k, v in asdict(b).items() if isinstance(v, (int, float)) and k != "online_pretrain"}
        bad = {k: v for k, v in ints.items() if v <= 0}
        if bad or b.online_pretrain < 0:
            raise BenchError(f"budget: expected positive values, got {bad or {'online_pretrain': b.online_pretrain}}")
        if b.online_prefill >= b.online_steps:
            raise BenchError(f"online_prefill: must be below online_steps ({b.online_prefill} >= {b.online_steps})")
        return self


_log = stderr_log("bench")


def _base_name(env_id: str) -> str:
    return env_id.rsplit("-v", 1)[0]


def _log_epsilon(env_id: str) -> float:
    """The offline logs' epsilon: the env's mediocre one, or 1.0 (uniformly random) for an env without a
    heuristic: a user's env, another gymnasium id, or pixels (the heuristics read states)."""
    from dreamlab.data.pixels import is_pixel_id

    return 1.0 if is_pixel_id(env_id) else LOG_EPSILON.get(_base_name(env_id), 1.0)


def _behaviour(env_id: str, action_space: Any, epsilon: float, seed: int) -> Any:
    """The env's heuristic with epsilon-random actions (a Policy); uniformly random without one."""
    from dreamlab.data.behaviour import HEURISTICS, HeuristicPolicy, RandomPolicy, make_behaviour

    if epsilon >= 1.0 or (_base_name(env_id) not in HEURISTICS and _base_name(env_id) != "LunarLander"):
        return RandomPolicy(action_space, seed=seed)
    if _base_name(env_id) != "LunarLander":
        return make_behaviour(env_id, action_space, epsilon, seed)
    from types import SimpleNamespace

    from gymnasium.envs.box2d.lunar_lander import heuristic

    discrete = SimpleNamespace(unwrapped=SimpleNamespace(continuous=False))

    def lander(obs: np.ndarray) -> np.ndarray:  # (n, 8) -> (n,)
        return np.array([heuristic(discrete, o) for o in obs], np.int64)

    return HeuristicPolicy(lander, action_space, epsilon, seed)


# ------------------------------------------------------------------------------------ runs
def _offline(env_id: str, seed: int, run: Run, b: Budget, cfg: BenchConfig) -> dict[str, Any]:
    from dreamlab.data.collect import make_env
    from dreamlab.worldmodel.config import preset

    logs, wm_dir, agent_dir = run.out / "logs", run.out / "worldmodel", run.out / "agent"
    eps = _log_epsilon(env_id)
    policy = _behaviour(env_id, make_env(env_id).action_space, eps, seed)
    logs_info = run.stage(
        "collect",
        lambda: collect_logs(
            env_id, policy, b.log_steps, logs, num_envs=cfg.num_envs, seed=seed, epsilon=eps, progress=cfg.progress
        ),
    )
    wm_info = run.stage(
        "worldmodel",
        lambda: train_world_model(
            logs, wm_dir, preset(b.preset, seed=seed), b.wm_steps, b.wm_minutes, cfg.progress, precision=cfg.precision
        ),
    )
    wm_ckpt = Path(wm_info["checkpoint"])
    run.stage(
        "dream",
        lambda: dream_agent(
            wm_ckpt,
            logs,
            agent_dir,
            b.dream_steps,
            seed=seed,
            save_every=max(1, b.dream_steps // 4),
            dreamer=cfg.dreamer,
            progress=cfg.progress,
            precision=cfg.precision,
        ),
    )
    ev = run.stage("evaluate", lambda: evaluate_agent(agent_dir, env_id, b.eval_episodes, seed=EVAL_OFFSET + seed))
    return {
        "evaluate": ev,
        "real_env_steps": int(logs_info["steps"]),
        "behaviour_return_mean": logs_info.get("return_mean"),
        "log_epsilon": eps,
        "wm_steps": wm_info.get("global_step"),
        "wm_cut_short": wm_info.get("cut_short"),
        "stage_seconds": run.seconds(("collect", "worldmodel", "dream", "evaluate")),
    }


def _online(env_id: str, seed: int, run: Run, b: Budget, cfg: BenchConfig) -> dict[str, Any]:
    from dreamlab.imagination.loops import OnlineConfig

    train_dir = run.out / "online"
    ocfg = OnlineConfig(
        steps=b.online_steps,
        preset=b.preset,
        prefill=b.online_prefill,
        pretrain=b.online_pretrain,
        replay_ratio=b.replay_ratio,
        eval_every=0,
        save_every=max(500, b.online_steps // 5),
        seed=seed,
        precision=cfg.precision,
    )
    run.stage("train", lambda: train_online_agent(env_id, train_dir, ocfg, cfg.dreamer, progress=cfg.progress))
    ev = run.stage(
        "evaluate",
        lambda: evaluate_agent(train_dir / "agent", env_id, b.eval_episodes, seed=EVAL_OFFSET + seed, greedy=True),
    )
    return {"evaluate": ev, "real_env_steps": int(b.online_steps), "stage_seconds": run.seconds(("train", "evaluate"))}


def run_path(out: Path, env_id: str, mode: str, seed: int) -> Path:
    from dreamlab.data.pixels import env_dirname

    return out / env_dirname(env_id) / mode / f"seed{seed}"


def _stamp(run: Path, suite: str, b: Budget) -> dict[str, Any]:
    manifest = json.loads((run / "manifest.json").read_text())
    return {
        "suite": suite,
        "config": asdict(b),
        **{k: manifest[k] for k in ("command", "commit", "machine")},
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def run_one(env_id: str, mode: str, seed: int, cfg: BenchConfig, sb3: tuple[str, int] | None = None) -> dict[str, Any]:
    """One run (resumable); returns its result row, read back when it had finished before.
    ``sb3``: (dreamlab mode matched, real steps) of an SB3 mode's run."""
    name = f"{env_id} {mode}" + (f" {sb3[1]} steps" if sb3 else "") + f" seed {seed}"
    run = run_path(Path(cfg.out), env_id, mode_dir(mode, sb3[1]) if sb3 else mode, seed)
    done = run / "result.json"
    if done.exists():
        _log(f"{name}: finished before, skipping ({done})")
        return json.loads(done.read_text())
    _log(f"{name}: starting ({run})")
    b = cfg.resolved_budget(env_id)
    r = Run(
        run, {"bench": asdict(cfg), "env": env_id, "mode": mode, "seed": seed, "budget": asdict(b), "sb3": sb3}, _log
    )
    if sb3 is not None:
        from dreamlab.baselines import run_sb3

        result = {**run_sb3(env_id, mode, seed, sb3[1], sb3[0], b.eval_episodes, r), **_stamp(run, cfg.suite, b)}
        atomic_write_json(done, result)
        _log(
            f"{name}: real {result['real_return_mean']:.1f} ± {result['real_return_std']:.1f}, {result['wall_seconds']:.0f} s"
        )
        return result
    info = (_offline if mode == "offline" else _online)(env_id, seed, r, b, cfg)
    ev = info.pop("evaluate")
    result = {
        "env": env_id,
        "mode": mode,
        "seed": seed,
        "real_return_mean": ev["real"]["mean"],
        "real_return_std": ev["real"]["std"],
        "dream_return_mean": ev["dream"]["mean"],
        "dream_return_std": ev["dream"]["std"],
        "gap": ev["gap"],
        "gap_relative": ev["gap_relative"],
        "real_env_steps": info.pop("real_env_steps"),
        "wall_seconds": round(sum(info["stage_seconds"].values()), 1),
        **info,
        "eval_episodes": ev["episodes"],
        "real_returns": ev["real"]["returns"],
        "dream_returns": ev["dream"]["returns"],
        "dreamer": {k: v for k, v in asdict(cfg.dreamer).items() if v != getattr(DreamerConfig(), k)},  # not default
        **_stamp(run, cfg.suite, b),
    }
    atomic_write_json(done, result)
    _log(
        f"{name}: real {result['real_return_mean']:.1f} ± {result['real_return_std']:.1f}, "
        f"dream {result['dream_return_mean']:.1f}, gap {result['gap']:+.1f}, {result['wall_seconds']:.0f} s"
    )
    return result


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Every env × mode × seed of the suite (skipping finished runs), then the CSV and summary."""
    cfg.validate()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    per_env = {e: asdict(b) for e, b in cfg.env_budgets().items()}
    atomic_write_json(out / "bench_config.json", {**asdict(cfg), "resolved_budget": per_env})
    modes = cfg.mode_list()
    budgets = {e: sb3_budgets(modes, b.online_steps, b.log_steps) for e, b in cfg.env_budgets().items()}
    results = [
        run_one(env_id, mode, seed, cfg, sb3)
        for env_id in cfg.env_ids()
        for mode in modes
        for sb3 in (budgets[env_id] if mode in SB3_MODES else [None])
        for seed in range(cfg.first_seed, cfg.first_seed + cfg.seeds)
    ]
    from dreamlab.bench_report import write_aggregate

    return {"runs": results, **write_aggregate(out)}
