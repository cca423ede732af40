"""Model-free reference results for the bench summary (context, not targets).

Every figure below is copied from one file, RL Baselines3 Zoo's ``benchmark.md`` at commit
``0088472b8cb622732bdbc4aa3d0d0abde86c67ed`` (:data:`SOURCE`): the final performance of *one*
trained agent per algorithm (deterministic policy), ``mean_reward`` ± ``std_reward`` over
``eval_episodes`` evaluation episodes, after ``n_timesteps`` real env steps of training. The zoo
itself warns that these are single runs, not a quantitative benchmark. Only algorithms with
the smallest step budgets (and PPO, the common default) are kept per env.

Not found, so left out: LunarLander-v3 (the file lists ``LunarLander-v2`` only; those rows are
kept under their own id so the reader sees the version differs).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

SOURCE = "https://github.com/DLR-RM/rl-baselines3-zoo/blob/0088472b8cb622732bdbc4aa3d0d0abde86c67ed/benchmark.md"


@dataclass(frozen=True)
class Reference:
    algo: str
    env_id: str  # the env id exactly as the source names it
    mean_reward: float
    std_reward: float
    n_timesteps: int  # real env steps of training
    eval_episodes: int
    source: str = SOURCE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# (algo, env_id, mean_reward, std_reward, n_timesteps, eval_episodes), verbatim from SOURCE
_ROWS: list[tuple[str, str, float, float, int, int]] = [
    ("dqn", "CartPole-v1", 500.000, 0.000, 50_000, 300),
    ("ppo", "CartPole-v1", 500.000, 0.000, 100_000, 300),
    ("a2c", "CartPole-v1", 500.000, 0.000, 500_000, 300),
    ("sac", "Pendulum-v1", -156.995, 88.714, 20_000, 750),
    ("td3", "Pendulum-v1", -151.855, 90.227, 20_000, 750),
    ("ddpg", "Pendulum-v1", -152.099, 94.282, 20_000, 750),
    ("ppo", "Pendulum-v1", -172.225, 104.159, 100_000, 750),
    ("dqn", "Acrobot-v1", -76.639, 11.752, 100_000, 1932),
    ("qrdqn", "Acrobot-v1", -69.135, 9.967, 100_000, 2138),
    ("ppo", "Acrobot-v1", -73.506, 18.201, 1_000_000, 2013),
    ("ppo", "MountainCarContinuous-v0", 88.343, 2.572, 20_000, 633),
    ("sac", "MountainCarContinuous-v0", 94.679, 1.134, 50_000, 1443),
    ("td3", "MountainCarContinuous-v0", 93.483, 0.075, 300_000, 2275),
    ("dqn", "LunarLander-v2", 154.382, 79.241, 100_000, 200),
    ("ppo", "LunarLander-v2", 242.119, 31.823, 1_000_000, 369),
]

REFERENCES: list[Reference] = [Reference(*r) for r in _ROWS]

# our env id -> the id the source uses where they differ (the row keeps the source's id)
_ALIASES = {"LunarLander-v3": "LunarLander-v2"}


def references_for(env_id: str) -> list[Reference]:
    """Reference rows for ``env_id`` (for LunarLander-v3: the source's LunarLander-v2 rows)."""
    want = _ALIASES.get(env_id, env_id)
    return [r for r in REFERENCES if r.env_id == want]
