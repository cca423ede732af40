"""Model-free baselines for ``dreamlab bench``: Stable-Baselines3 at the bench's real-step budgets.

Two bench modes, one per algorithm family:

* ``sb3-ppo``: SB3 PPO on every env;
* ``sb3-dqn-sac``: SB3 DQN where the action space is ``Discrete``, SAC where it is a ``Box``.

Each runs, per env and seed, at the real-step budgets of the dreamlab modes it sits beside
(:func:`sb3_budgets`: ``online_steps`` beside the online mode, ``log_steps`` beside the offline
mode's logs; both when no dreamlab mode is chosen), one run each into
``OUT/<env>/<mode>-<steps>/seed<k>/``. Training spends exactly the budget (rounded up to a whole
vector step of ``n_envs`` envs): a callback stops SB3 when the budget is spent, and a rollout (PPO)
or ``train_freq`` chunk (DQN/SAC) cut short there is collected but not learned from; with SB3's
logger off (no ``/tmp/SB3-*`` folders), on the CPU, seeded (``seed``; training envs ``seed + i``),
with the bench's torch threads. The trained policy is then evaluated greedily
(``deterministic=True``) on the episodes dreamlab's agents are evaluated on
(``imagination.evaluate.evaluate_real``: ``eval_episodes`` envs, env i seeded ``10_000 + seed + i``).
The result records the real return mean/std, the real steps used, wall seconds (training and
evaluation), the algorithm and every hyperparameter passed to SB3.

Hyperparameters are RL Baselines3 Zoo's per env (:data:`ZOO_SOURCES`, copied verbatim, schedules
``lin_X`` as linear decay from X to 0 over the budget; VecNormalize where the zoo sets
``normalize``), SB3's defaults where the zoo has no entry, and nothing tuned here. One change
fits PPO to small budgets: its rollout (``n_envs × n_steps``) is rescaled so that a whole number
of rollouts (the nearest, at least one) fills the budget, and ``batch_size`` is capped at the
rollout; the record keeps the zoo's value beside the one used (``adapted``).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from dreamlab.core.errors import DreamlabError

SB3_MODES = ("sb3-ppo", "sb3-dqn-sac")
_ZOO = "https://github.com/DLR-RM/rl-baselines3-zoo/blob"
ZOO_SOURCES = {
    "ppo": f"{_ZOO}/208b6fdf3a9aa24de44b2e068c6e5f6a07d97fcc/hyperparams/ppo.yml",
    "dqn": f"{_ZOO}/ce95481b041fe5314c1b2f1a53940d169b9253fc/hyperparams/dqn.yml",
    "sac": f"{_ZOO}/c94924e5b31bce36920f29d3eb18b975231bdec4/hyperparams/sac.yml",
}
_NET256 = {"net_arch": [256, 256]}
# env id -> hyperparameters, verbatim from ZOO_SOURCES (n_timesteps dropped: the bench sets the budget;
# LunarLander-v3 takes the zoo's LunarLander-v2 entry)
ZOO: dict[str, dict[str, dict[str, Any]]] = {
    "ppo": {
        "CartPole-v1": dict(
            n_envs=8,
            n_steps=32,
            batch_size=256,
            gae_lambda=0.8,
            gamma=0.98,
            n_epochs=20,
            ent_coef=0.0,
            learning_rate="lin_0.001",
            clip_range="lin_0.2",
        ),
        "Pendulum-v1": dict(
            n_envs=4,
            n_steps=1024,
            gae_lambda=0.95,
            gamma=0.9,
            n_epochs=10,
            ent_coef=0.0,
            learning_rate=1e-3,
            clip_range=0.2,
            use_sde=True,
            sde_sample_freq=4,
        ),
        "Acrobot-v1": dict(
            normalize=True, n_envs=16, n_steps=256, gae_lambda=0.94, gamma=0.99, n_epochs=4, ent_coef=0.0
        ),
        "MountainCarContinuous-v0": dict(
            normalize=True,
            n_envs=1,
            batch_size=256,
            n_steps=8,
            gamma=0.9999,
            learning_rate=7.77e-05,
            ent_coef=0.00429,
            clip_range=0.1,
            n_epochs=10,
            gae_lambda=0.9,
            max_grad_norm=5,
            vf_coef=0.19,
            use_sde=True,
            policy_kwargs={"log_std_init": -3.29, "ortho_init": False},
        ),
        "LunarLander-v3": dict(
            n_envs=16, n_steps=1024, batch_size=64, gae_lambda=0.98, gamma=0.999, n_epochs=4, ent_coef=0.01
        ),
    },
    "dqn": {
        "CartPole-v1": dict(
            learning_rate=2.3e-3,
            batch_size=64,
            buffer_size=100000,
            learning_starts=1000,
            gamma=0.99,
            target_update_interval=10,
            train_freq=256,
            gradient_steps=128,
            exploration_fraction=0.16,
            exploration_final_eps=0.04,
            policy_kwargs=_NET256,
        ),
        **{
            env_id: dict(
                learning_rate=6.3e-4,
                batch_size=128,
                buffer_size=50000,
                learning_starts=0,
                gamma=0.99,
                target_update_interval=250,
                train_freq=4,
                gradient_steps=-1,
                exploration_fraction=0.12,
                exploration_final_eps=0.1,
                policy_kwargs=_NET256,
            )
            for env_id in ("Acrobot-v1", "LunarLander-v3")
        },
    },
    "sac": {
        "Pendulum-v1": dict(learning_rate=1e-3),
        "MountainCarContinuous-v0": dict(
            learning_rate=3e-4,
            buffer_size=50000,
            batch_size=512,
            ent_coef=0.1,
            train_freq=32,
            gradient_steps=32,
            gamma=0.9999,
            tau=0.01,
            learning_starts=0,
            use_sde=True,
            policy_kwargs={"log_std_init": -3.67, "net_arch": [64, 64]},
        ),
    },
}
ALGO_NAMES = {"ppo": "PPO", "dqn": "DQN", "sac": "SAC"}


class BaselineError(DreamlabError):
    """An SB3 baseline that cannot run (names the setting and what it expects)."""


def require_sb3() -> None:
    """One-line error when stable-baselines3 is not importable."""
    try:
        import stable_baselines3  # noqa: F401
    except ImportError:
        raise BaselineError(
            f"modes: {', '.join(SB3_MODES)} need stable-baselines3 (pip install 'stable-baselines3>=2.3'); "
            "or leave them out: --modes offline,online"
        ) from None


def algo_for(mode: str, action_space: Any) -> str:
    """``ppo``, ``dqn`` or ``sac`` for ``mode`` on ``action_space``."""
    import gymnasium as gym

    if mode == "sb3-ppo":
        return "ppo"
    if isinstance(action_space, gym.spaces.Discrete):
        return "dqn"
    if isinstance(action_space, gym.spaces.Box):
        return "sac"
    raise BaselineError(f"modes: {mode} needs a Discrete or Box action space, got {action_space}")


def sb3_budgets(modes: tuple[str, ...], online_steps: int, log_steps: int) -> list[tuple[str, int]]:
    """(dreamlab mode matched, real steps) for the SB3 runs beside the chosen dreamlab modes."""
    chosen = [m for m in ("online", "offline") if m in modes] or ["online", "offline"]
    steps = {"online": online_steps, "offline": log_steps}
    out: list[tuple[str, int]] = []
    for m in chosen:
        if steps[m] not in [s for _, s in out]:
            out.append((m, steps[m]))
    return out


def mode_dir(mode: str, steps: int) -> str:
    return f"{mode}-{steps}"


def hyperparameters(algo: str, env_id: str, steps: int) -> dict[str, Any]:
    """The zoo's hyperparameters for ``algo`` on ``env_id``, PPO's rollout fitted to ``steps``."""
    hp: dict[str, Any] = {"n_envs": 1, "normalize": False, **ZOO[algo].get(env_id, {})}
    hp["source"] = ZOO_SOURCES[algo] if env_id in ZOO[algo] else "stable-baselines3 defaults"
    if algo == "ppo":
        n_envs, zoo_steps, zoo_batch = hp["n_envs"], hp.get("n_steps", 2048), hp.get("batch_size", 64)
        rollouts = max(1, round(steps / (n_envs * zoo_steps)))
        hp["n_steps"] = max(2, steps // (n_envs * rollouts))
        hp["batch_size"] = min(zoo_batch, n_envs * hp["n_steps"])
        hp["adapted"] = {"n_steps": [zoo_steps, hp["n_steps"]], "batch_size": [zoo_batch, hp["batch_size"]]}
    return hp


def _schedule(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("lin_"):
        start = float(value[4:])
        return lambda progress_remaining: progress_remaining * start
    return value


class SB3Policy:
    """An SB3 model as a dreamlab Policy: greedy actions, observations normalised as in training."""

    def __init__(self, model: Any, vecnorm: Any = None):
        self.model, self.vecnorm = model, vecnorm

    def reset(self, n: int) -> None:
        pass

    def act(self, obs: np.ndarray, is_first: np.ndarray | None = None) -> np.ndarray:
        if self.vecnorm is not None:
            obs = self.vecnorm.normalize_obs(obs)
        action, _ = self.model.predict(obs, deterministic=True)
        return np.asarray(action)


def train_sb3(algo: str, env_id: str, steps: int, seed: int) -> tuple[Any, Any, dict[str, Any]]:
    """Train ``algo`` for exactly ``steps`` real steps; (model, VecNormalize or None, record)."""
    require_sb3()
    from stable_baselines3 import DQN, PPO, SAC
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.logger import Logger
    from stable_baselines3.common.vec_env import VecNormalize

    from dreamlab.data.collect import register_env
    from dreamlab.worldmodel.nets import is_image_shape

    hp = hyperparameters(algo, env_id, steps)
    kwargs = {k: _schedule(v) for k, v in hp.items() if k not in ("n_envs", "normalize", "source", "adapted")}
    env: Any = make_vec_env(register_env(env_id), n_envs=hp["n_envs"], seed=seed)  # module:Class: registered
    vecnorm = None
    if hp["normalize"]:
        env = vecnorm = VecNormalize(env, gamma=float(hp.get("gamma", 0.99)))

    class StopAtBudget(BaseCallback):
        """Stop once ``steps`` are spent, unless this step ends a rollout (PPO) or a ``train_freq`` chunk
        (DQN/SAC), which is then learned from as usual; a partial one is collected but not learned from."""

        def _on_step(self) -> bool:
            if self.num_timesteps < steps:
                return True
            loc = self.locals
            if "n_rollout_steps" in loc:  # on-policy: n_steps is this rollout's index before the increment
                return bool(loc["n_steps"] + 1 >= loc["n_rollout_steps"])
            return bool(loc.get("num_collected_steps", 0) >= model.train_freq.frequency)

    cls = {"ppo": PPO, "dqn": DQN, "sac": SAC}[algo]
    policy = "MlpPolicy"
    if is_image_shape(tuple(env.observation_space.shape or ())):  # pixels: SB3's CNN, a buffer within the budget
        policy = "CnnPolicy"
        if algo != "ppo":
            kwargs["buffer_size"] = hp["buffer_size"] = min(int(kwargs.get("buffer_size", 1_000_000)), steps)
    hp["policy"] = policy
    model: Any = cls(policy, env, seed=seed, device="cpu", verbose=0, **kwargs)
    model.set_logger(Logger(folder=None, output_formats=[]))  # SB3's default logger makes /tmp/SB3-* folders
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps, callback=StopAtBudget(), progress_bar=False)
    if vecnorm is not None:
        vecnorm.training = False
    env.close()
    record = {"algo": algo, "hyperparameters": hp, "real_env_steps": int(model.num_timesteps)}
    return model, vecnorm, {**record, "train_seconds": round(time.perf_counter() - t0, 3)}


def run_sb3(
    env_id: str, mode: str, seed: int, steps: int, matches: str, eval_episodes: int, run: Any
) -> dict[str, Any]:
    """One SB3 run (a :class:`dreamlab.stages.Run`, one stage): train, then evaluate greedily."""
    import stable_baselines3

    from dreamlab.core.seeding import EVAL_OFFSET
    from dreamlab.data.collect import make_env
    from dreamlab.imagination.evaluate import evaluate_real

    algo = algo_for(mode, make_env(env_id).action_space)

    def stage() -> dict[str, Any]:
        model, vecnorm, record = train_sb3(algo, env_id, steps, seed)
        t0 = time.perf_counter()
        returns = evaluate_real(SB3Policy(model, vecnorm), env_id, eval_episodes, seed=EVAL_OFFSET + seed)
        return {**record, "returns": [float(x) for x in returns], "eval_seconds": round(time.perf_counter() - t0, 3)}

    info = run.stage("sb3", stage)
    returns = np.asarray(info["returns"], float)
    return {
        "env": env_id,
        "mode": mode,
        "seed": seed,
        "algo": algo,
        "matches": matches,
        "budget_steps": steps,
        "real_return_mean": float(returns.mean()),
        "real_return_std": float(returns.std()),
        "dream_return_mean": None,
        "gap": None,
        "real_env_steps": info["real_env_steps"],
        "wall_seconds": round(sum(run.seconds(("sb3",)).values()), 1),
        "train_seconds": info["train_seconds"],
        "eval_seconds": info["eval_seconds"],
        "eval_episodes": len(returns),
        "real_returns": info["returns"],
        "hyperparameters": info["hyperparameters"],
        "sb3_version": stable_baselines3.__version__,
    }


# ------------------------------------------------------------------------------ summary
def _median(rows: list[dict[str, Any]], key: str = "real_return_mean") -> float:
    return float(np.median([r[key] for r in rows]))


def _groups(rows: list[dict[str, Any]]) -> dict[tuple[str, str, int], list[dict[str, Any]]]:
    out: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in rows:
        if r["mode"] in SB3_MODES:
            out.setdefault((r["mode"], r["algo"], int(r["budget_steps"])), []).append(r)
    return out


def _hp_source(row: dict[str, Any]) -> str:
    hp = row.get("hyperparameters") or {}
    zoo = str(hp.get("source", "")).startswith("https://")
    return ("RL Zoo hyperparameters" if zoo else "SB3 defaults") + (", CNN" if hp.get("policy") == "CnnPolicy" else "")


def summary_rows(rows: list[dict[str, Any]], spread: Any) -> list[str]:
    """Table rows of one env's SB3 runs: one per algorithm and budget."""
    lines = []
    for (_, algo, _), rs in _groups(rows).items():
        lines.append(
            f"| SB3 {ALGO_NAMES[algo]} ({_hp_source(rs[0])}; beside dreamlab {rs[0]['matches']}) | {len(rs)} | "
            f"{spread([r['real_return_mean'] for r in rs])} | | | {spread([r['real_env_steps'] for r in rs], '.0f')} | "
            f"{spread([r['wall_seconds'] for r in rs], '.0f')} |"
        )
    return lines


def _seeds(n: int) -> str:
    return f"{n} seed" + ("s" if n != 1 else "")


def head_to_head(env_id: str, rows: list[dict[str, Any]]) -> tuple[list[str], list[bool]]:
    """One line per dreamlab mode of ``env_id``: ahead of each SB3 baseline at its budget (medians)?"""
    lines, verdicts = [], []
    groups = _groups(rows)
    for mode, budget_key in (("online", "online_steps"), ("offline", "log_steps")):
        ours = [r for r in rows if r["mode"] == mode]
        if not ours:
            continue
        steps = int(ours[0]["config"][budget_key])
        theirs = [(algo, rs) for (_, algo, s), rs in groups.items() if s == steps]
        if not theirs:
            continue
        mine = _median(ours)
        parts = []
        for algo, rs in theirs:
            other = _median(rs)
            verdicts.append(mine > other)
            word = "**ahead**" if mine > other else ("level" if mine == other else "**behind**")
            parts.append(f"SB3 {ALGO_NAMES[algo]} {other:.1f} ({_seeds(len(rs))}): {word} ({mine - other:+.1f})")
        lines.append(
            f"- Head to head at {steps} real steps: dreamlab {mode} {mine:.1f} ({_seeds(len(ours))}) vs "
            + "; vs ".join(parts)
        )
    return lines, verdicts
