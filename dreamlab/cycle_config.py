"""The settings of ``dreamlab cycle``: one nested :class:`CycleConfig` and what a resumed run may change.

Sections ``prior``, ``deploy``, ``world_model``, ``dreamer``, ``grpo``, ``distill``: ``--deploy.steps 2000`` on
the command line, ``deploy: {steps: 2000}`` in ``--config FILE.yaml`` (see :mod:`dreamlab.config`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from dreamlab.core.errors import DreamlabError

PRACTICE = ("dreamer", "grpo", "none")
DISTILL = ("opsd", "sft-logs", "none")


class CycleError(DreamlabError):
    """A cycle setting or folder that cannot work (names the field or file)."""


@dataclass
class PriorConfig:
    """Round 0's LLM when ``llm`` is ``toy``: made with make-base-llm from prior logs."""

    log_steps: int = 5000
    log_epsilon: float = 1.0  # 1 = uniformly random actions: the base LLM knows the action format, not the skill; -1 = the env's mediocre heuristic default
    pretrain_steps: int = 1000


@dataclass
class DeployConfig:
    """(a) deploy the LLM in the real env and log what happens."""

    steps: int = 2000
    envs: int = 4
    temperature: float = 1.0
    feedback: str = "env"  # env | rule | module:function


@dataclass
class CycleWorldModelConfig:
    """(b) one world model, trained further every round on all logs so far."""

    preset: str = "small"
    steps_first: int = 3000  # updates in round 0
    steps_per_round: int = 1500  # further updates in each later round
    minutes: float = 60.0  # wall cap per round (a safety net: the step budgets above end it first)


@dataclass
class DreamerPracticeConfig:
    """(c) practice = dreamer: the actor-critic in the dream."""

    steps: int = 1000  # actor-critic updates per round
    warm_start: bool = True  # round r > 0 continues round r-1's actor-critic (weights, optimisers)
    penalty: float = 0.0  # imagined reward minus this x ensemble disagreement (MOPO); 0 = off


@dataclass
class GRPOPracticeConfig:
    """(c) practice = grpo: the recipe that met issue 5's CartPole target (no behaviour cloning on
    the logs, dreams as long as the real episode limit, each rollout scored by its summed verifier reward)."""

    iterations: int = 40
    horizon: int = 0  # dream steps per rollout; 0 = the env's own episode limit
    score: str = "reward"  # reward (summed per-step verifier score) | success (episode pass/fail)
    bc_steps: int = 0  # behaviour cloning on the logs before GRPO; 0 = start from scratch
    target_success: float = 0.95  # stop a round's GRPO once dream success stays above this
    verifier: str = ""  # "" = the env's built-in verifier

    def validate(self) -> None:
        if self.horizon < 0:
            raise CycleError(f"grpo.horizon: expected >= 0 (0 = the env's episode limit), got {self.horizon}")
        from dreamlab.imagination.grpo import GRPOConfig, GRPOConfigError

        try:  # fail now, not after a round of deployment and world-model training
            GRPOConfig(
                iterations=self.iterations,
                horizon=self.horizon or 1,
                score=self.score,
                bc_steps=self.bc_steps,
                target_success=self.target_success,
            ).validate()
        except GRPOConfigError as exc:
            raise CycleError(f"grpo settings: {exc}") from None


@dataclass
class CycleDistillConfig:
    """(d) write the practice into the LLM: OPSD inside the dream, or SFT on the best logs."""

    method: str = "opsd"  # opsd | sft-logs | none
    tokens: int = (
        0  # opsd: labelled (teacher-scored) tokens per round; 0 = 48,000 for the toy GPT, 2,000 for a pretrained LLM
    )
    teacher_mix: float = 0.5
    envs: int = 0  # dream envs; 0 = 16 for the toy GPT, 8 for a pretrained LLM
    sft_best_fraction: float = 0.2  # sft-logs: the best fraction of logged episodes by return
    sft_steps: int = 300

    def validate(self) -> None:
        if self.method not in DISTILL:
            raise CycleError(f"distill.method: expected one of {DISTILL}, got {self.method!r}")
        if not 0 < self.sft_best_fraction <= 1:
            raise CycleError(f"distill.sft_best_fraction: expected in (0, 1], got {self.sft_best_fraction}")


@dataclass
class CycleConfig:
    out: str = "runs/cycle"
    env_id: str = "CartPole-v1"
    rounds: int = 3
    seed: int = 0
    llm: str = "smollm2-135m-instruct"  # round 0's LLM: a known name (prepared once), an LLM folder, or "toy" (made from prior logs, see prior)
    practice: str = "dreamer"  # dreamer | grpo | none
    eval_episodes: int = 10  # (e) real and dream episodes per evaluation
    threads: int = 0  # torch CPU threads (0 = torch's default)
    precision: str = "auto"  # 32 | bf16-mixed | auto (bf16-mixed where bf16 is fast: CUDA, AMX/AVX512-BF16 CPUs)
    progress: bool = True
    renderer: str = ""  # LLM observation text: "" = built-in, else generic (o0=.. o1=..); or module:function
    prior: PriorConfig = field(default_factory=PriorConfig)
    deploy: DeployConfig = field(default_factory=DeployConfig)
    world_model: CycleWorldModelConfig = field(default_factory=CycleWorldModelConfig)
    dreamer: DreamerPracticeConfig = field(default_factory=DreamerPracticeConfig)
    grpo: GRPOPracticeConfig = field(default_factory=GRPOPracticeConfig)
    distill: CycleDistillConfig = field(default_factory=CycleDistillConfig)

    def base_renderer(self) -> str:
        """The renderer a toy base LLM is made with: ``renderer``, or "" (built-in) / generic (a user's env)."""
        from dreamlab.policy.render import builtin_name

        return self.renderer or ("" if builtin_name(self.env_id) else "generic")

    def llm_kwargs(self, path: Any) -> dict[str, Any]:
        """``LLMPolicy.from_pretrained`` arguments for the folder ``path`` on this env: the env id; and where
        the folder records no task for the env (a user's env on a pretrained base), a renderer and the actions."""
        from dreamlab.policy.llm import read_policy_meta, task_meta

        if task_meta(read_policy_meta(path), self.env_id) and not self.renderer:
            return {"env_id": self.env_id}
        from dreamlab.data.collect import make_env

        space = make_env(self.env_id).action_space
        return {"env_id": self.env_id, "renderer": self.base_renderer() or self.env_id, "action_space": space}

    def validate(self) -> None:
        if self.rounds < 1:
            raise CycleError(f"rounds: expected >= 1, got {self.rounds}")
        if self.practice not in PRACTICE:
            raise CycleError(f"practice: expected one of {PRACTICE}, got {self.practice!r}")
        if self.practice == "none" and self.distill.method == "opsd":
            raise CycleError("practice 'none' leaves no teacher for distill.method 'opsd'; use 'sft-logs'")
        if self.practice == "none" and self.distill.method == "none":
            raise CycleError("practice 'none' with distill.method 'none' learns nothing")
        if self.deploy.steps < 1 or self.deploy.envs < 1:
            raise CycleError("deploy.steps and deploy.envs must be >= 1")

    def check(self) -> CycleConfig:
        """Every field's type and every section's own checks (:func:`dreamlab.config.validate`)."""
        from dreamlab.config import validate

        return validate(self, "cycle config")


def flat_settings(cfg: CycleConfig | dict[str, Any]) -> dict[str, Any]:
    """``{"dotted.key": value}`` of a config (or its ``asdict`` record)."""
    d = asdict(cfg) if not isinstance(cfg, dict) else cfg
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update({f"{k}.{kk}": vv for kk, vv in flat_settings(v).items()})
        else:
            out[k] = v
    return out


def unused_settings(cfg: CycleConfig) -> set[str]:
    """The settings (dotted keys) a cycle with this practice and distillation never reads (free to differ on resume)."""
    off = {
        "grpo.": cfg.practice != "grpo",
        "dreamer.": cfg.practice != "dreamer",
        "distill.sft_": cfg.distill.method != "sft-logs",
    }
    opsd_only = {"distill.tokens", "distill.teacher_mix", "distill.envs"}
    keys = set(flat_settings(cfg))
    unused = {k for k in keys if any(k.startswith(p) and on for p, on in off.items())}
    if cfg.distill.method != "opsd":
        unused |= opsd_only
    return unused
