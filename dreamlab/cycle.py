"""Learning on the job: deploy the LLM, log with feedback, dream, distil; round after round.

``run_cycle(cfg)`` runs into one folder ``RUN``::

    RUN/prior_logs/            --llm toy only: random-action logs the small GPT is pre-trained on
    RUN/llm_base/              --llm toy only: round 0's LLM (otherwise --llm names it: SmolLM2 by default)
    RUN/logs/                  every round's deployment logs, with feedback (the world model's data)
    RUN/worldmodel/            one world model, continued round after round (last.ckpt)
    RUN/rounds/<r>/deploy/     round r's raw deployment logs (the real steps of round r)
    RUN/rounds/<r>/world_model.ckpt, openloop.json
    RUN/rounds/<r>/agent/      the dream-trained teacher (DreamerAgent or GRPO agent)
    RUN/rounds/<r>/llm/        the LLM after round r (save_pretrained, safetensors)
    RUN/rounds/<r>/evaluate.json
    RUN/cycle.csv, RUN/cycle.json, RUN/report.md (dreamlab.cycle_report), RUN/plots/cycle.png|pdf

Settings: one nested :class:`CycleConfig` (``--deploy.steps 2000`` = ``deploy: {steps: 2000}`` in YAML).

A round ``r`` is five stages, each finished by a marker ``RUN/stages/round<r>_<stage>.json``:

(a) **deploy**: the current policy (round 0: the base LLM; then the LLM of round r-1) acts in the
    real env for ``deploy.steps`` env steps (sampling at ``deploy.temperature``; episodes in flight
    at the end are kept as truncated). ``deploy.feedback`` writes thumbs up/down into the logs'
    ``feedback`` field: ``env`` (none: the world model learns the env's reward), ``rule`` (+1 when the env's verifier passes on the next observation, -1 when it
    fails), or ``module:function`` (``fn(episode) -> (num_steps,)`` feedback per transition). With
    ``rule`` or a function the world model learns the feedback instead of the env reward, so the
    loop runs where no reward function exists.
(b) **worldmodel**: continue training the world model on all logs so far (round 0 starts it).
(c) **practice**: Dreamer actor-critic (``dreamer``) or GRPO with the verifier (``grpo``) in the
    dreams of that model, from the logs' states; ``none`` skips it (the no-dreaming ablation).
(d) **distill** (``distill.method``): OPSD inside the dream, the round's agent as teacher, the current LLM as student
    (``opsd``); ``sft-logs`` fine-tunes the LLM on the best logged episodes (no dream, no teacher);
    ``none`` leaves the LLM alone and the teacher itself is deployed next round.
(e) **evaluate**: the LLM's real return (greedy, fixed seeds) and its return in the dream from the
    same start states; the teacher's real return.

Real steps counted are deployment steps only; evaluation episodes measure and are never logged.
World model, dreaming and distillation resume mid-stage from their own checkpoints; an interrupted
deployment is redone from scratch (its partial logs are discarded before they reach ``RUN/logs``).
"""

from __future__ import annotations

import functools
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from dreamlab.core.io import atomic_copy, atomic_write_json
from dreamlab.core.seeding import PRIOR_LOGS_OFFSET, round_seed
from dreamlab.cycle_config import (  # the config classes stay importable from here
    CycleConfig,
    CycleDistillConfig,
    CycleError,
    CycleWorldModelConfig,
    DeployConfig,
    DreamerPracticeConfig,
    GRPOPracticeConfig,
    PriorConfig,
    flat_settings,
    unused_settings,
)
from dreamlab.cycle_feedback import feedback_fn, with_feedback
from dreamlab.cycle_report import round_row
from dreamlab.stages import Run, dream_agent, episode_limit, score_world_model, stderr_log, train_world_model, write_csv

__all__ = [
    "Cycle",
    "CycleConfig",
    "CycleDistillConfig",
    "CycleError",
    "CycleWorldModelConfig",
    "DeployConfig",
    "DreamerPracticeConfig",
    "GRPOPracticeConfig",
    "PriorConfig",
    "feedback_fn",
    "flat_settings",
    "run_cycle",
    "unused_settings",
    "with_feedback",
]

_log = stderr_log("cycle")


# ------------------------------------------------------------------------------------ the run
class Cycle:
    def __init__(self, cfg: CycleConfig):
        self.cfg = cfg.check()
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self._check_resume(self.out / "cycle_config.json")
        atomic_write_json(self.out / "cycle_config.json", asdict(cfg), indent=1)
        self.run_dir = Run(self.out, cfg, _log)
        self.logs, self.wm_dir = self.out / "logs", self.out / "worldmodel"

    # settings a resumed run may change: where it is, how many rounds in all, how it reports
    RESUME_FREE = ("out", "rounds", "progress", "threads")

    def _check_resume(self, path: Path) -> None:
        """A rerun on an existing folder resumes it, so it must ask for the same cycle: mixing
        settings across rounds would make the report describe a run that never happened."""
        if not path.exists():
            return
        try:
            before = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise CycleError(f"{path}: not valid JSON ({exc}); delete the folder to start over") from None
        before, now = flat_settings(before), flat_settings(self.cfg)
        free = set(self.RESUME_FREE) | unused_settings(self.cfg)
        diff = [
            f"{k}: {before[k]!r} -> {now[k]!r}" for k in now if k in before and k not in free and before[k] != now[k]
        ]
        if diff:
            raise CycleError(
                f"{path}: this folder holds a cycle run with other settings ({'; '.join(diff)}); "
                f"rerun with the same settings to resume (only {', '.join(self.RESUME_FREE)} "
                "may change), or use a new --out"
            )

    def rdir(self, r: int) -> Path:
        return self.out / "rounds" / str(r)

    def llm_dir(self, r: int) -> Path:
        """The LLM deployed in round r (after round r - 1)."""
        if r == 0:
            if self.cfg.llm in ("", "toy"):
                return self.out / "llm_base"
            from dreamlab.policy.pretrained import resolve_llm

            return resolve_llm(self.cfg.llm, log=_log)
        prev = self.rdir(r - 1) / "llm"
        return prev if (prev / "config.json").exists() else self.llm_dir(r - 1)

    # -- round 0's LLM --------------------------------------------------------------------------
    def base(self) -> dict[str, Any]:
        from dreamlab.data.behaviour import CARTPOLE_MEDIOCRE_EPSILON, MCC_MINORITY_EPSILON
        from dreamlab.data.collect import collect
        from dreamlab.imagination.evaluate import evaluate_real
        from dreamlab.policy.base_llm import BaseLLMConfig, make_base_llm
        from dreamlab.policy.llm import LLMPolicy

        cfg = self.cfg
        info: dict[str, Any] = {}
        if cfg.llm in ("", "toy"):
            eps = cfg.prior.log_epsilon
            if eps < 0:
                eps = MCC_MINORITY_EPSILON if "MountainCar" in cfg.env_id else CARTPOLE_MEDIOCRE_EPSILON
            prior = self.out / "prior_logs"
            if prior.exists():
                shutil.rmtree(prior)  # an interrupted stage: start the prior logs over
            from dreamlab.data.behaviour import HEURISTICS

            has_heuristic = cfg.env_id.rsplit(":", 1)[-1].rsplit("-v", 1)[0] in HEURISTICS  # else: your own env
            s = collect(
                cfg.env_id,
                "heuristic" if has_heuristic else "random",
                cfg.prior.log_steps,
                num_envs=8,
                seed=cfg.seed + PRIOR_LOGS_OFFSET,
                out=prior,
                epsilon=eps,
                progress=cfg.progress,
            )
            made = make_base_llm(
                prior,
                self.out / "llm_base",
                BaseLLMConfig(
                    steps=cfg.prior.pretrain_steps, seed=cfg.seed, progress=cfg.progress, renderer=cfg.base_renderer()
                ),
            )
            info.update(
                prior_logs=str(prior),
                prior_steps=s.store_steps_total,
                prior_epsilon=eps,
                prior_return_mean=float(np.mean(s.returns)) if s.returns else None,
                base_llm_agreement=made.get("agreement"),
            )
        elif not (self.llm_dir(0) / "config.json").exists():
            raise CycleError(f"--llm {cfg.llm}: no config.json; expected a known name, an LLM folder or toy")
        policy = LLMPolicy.from_pretrained(self.llm_dir(0), **cfg.llm_kwargs(self.llm_dir(0)))
        real = evaluate_real(policy, cfg.env_id, cfg.eval_episodes, seed=cfg.seed + 50_000)
        info.update(
            llm=str(self.llm_dir(0)),
            real={"mean": float(real.mean()), "std": float(real.std()), "returns": real.tolist()},
        )
        _log(f"base LLM real return {real.mean():.1f} ± {real.std():.1f}")
        return info

    # -- (a) deploy -----------------------------------------------------------------------------
    def deployed_policy(self, r: int) -> Any:
        from dreamlab.policy.llm import LLMPolicy

        cfg = self.cfg
        if cfg.distill.method == "none" and r > 0:  # the teacher stays a separate policy: deploy it
            return self.teacher(r - 1)
        return LLMPolicy.from_pretrained(
            self.llm_dir(r),
            **cfg.llm_kwargs(self.llm_dir(r)),
            temperature=cfg.deploy.temperature,
            seed=round_seed(cfg.seed, r),
        )

    def deploy(self, r: int) -> dict[str, Any]:
        from dreamlab.data.collect import collect
        from dreamlab.data.store import EpisodeStore

        cfg = self.cfg
        raw = self.rdir(r) / "deploy"
        if raw.exists():
            shutil.rmtree(raw)  # interrupted before its marker: redo it whole
        s = collect(
            cfg.env_id,
            self.deployed_policy(r),
            cfg.deploy.steps,
            num_envs=cfg.deploy.envs,
            seed=round_seed(cfg.seed, r, stride=100),
            out=raw,
            progress=cfg.progress,
            budget="taken",
        )
        deployed = EpisodeStore(raw)
        episodes = with_feedback(deployed.episodes(), feedback_fn(cfg.deploy.feedback, cfg.env_id), str(raw))
        store = EpisodeStore.create(self.logs, cfg.env_id, deployed.observation_space, deployed.action_space)
        store.add_many(episodes, [f"round {r}"] * len(episodes))
        finished = [ep.ret for ep in episodes if ep.is_terminal[-1] or ep.num_steps >= episode_limit(cfg.env_id)]
        return {
            "real_steps": int(s.steps_taken),
            "episodes": len(episodes),
            "finished_episodes": len(finished),
            "finished_return_mean": float(np.mean(finished)) if finished else None,
            "feedback_mean": float(np.mean([ep.feedback[1:].mean() for ep in episodes])),
            "logs_total_steps": store.num_steps,
        }

    # -- (b) world model ------------------------------------------------------------------------
    def worldmodel(self, r: int) -> dict[str, Any]:
        from dreamlab.worldmodel.config import preset

        cfg = self.cfg
        wcfg = preset(cfg.world_model.preset, seed=cfg.seed)
        wcfg.reward_source = "env" if cfg.deploy.feedback == "env" else "feedback"
        wcfg.lr_decay = "none"  # training continues every round toward a growing target: a constant rate
        target = cfg.world_model.steps_first + r * cfg.world_model.steps_per_round  # cumulative: training continues
        trained = train_world_model(
            self.logs, self.wm_dir, wcfg, target, cfg.world_model.minutes, cfg.progress, _log, cfg.precision
        )
        dst = self.rdir(r) / "world_model.ckpt"
        shutil.copyfile(trained["checkpoint"], dst)
        scored = score_world_model(dst, self.logs, seed=cfg.seed, out_json=self.rdir(r) / "openloop.json")
        return {
            "checkpoint": str(dst),
            "global_step": trained["global_step"],
            "cut_short": trained["cut_short"],
            "val_episodes": scored["val_episodes"],
            "openloop_horizon": scored["openloop_horizon"],
            "openloop_summary": scored["openloop_summary"],
        }

    # -- (c) practice ---------------------------------------------------------------------------
    def practice(self, r: int) -> dict[str, Any]:
        from dreamlab.imagination.dreamer import DreamerConfig
        from dreamlab.imagination.evaluate import dream_vs_real, evaluate_real
        from dreamlab.worldmodel.model import WorldModel

        cfg = self.cfg
        wm_path = self.rdir(r) / "world_model.ckpt"
        agent_dir = self.rdir(r) / "agent"
        if cfg.practice == "dreamer":
            start = self._warm_start(r, agent_dir)
            dream_agent(
                wm_path,
                self.logs,
                agent_dir,
                start + cfg.dreamer.steps,
                seed=round_seed(cfg.seed, r),
                save_every=100,
                dreamer=DreamerConfig(penalty=cfg.dreamer.penalty),
                progress=cfg.progress,
                precision=cfg.precision,
            )
            res = dream_vs_real(self.teacher(r), cfg.env_id, cfg.eval_episodes, seed=cfg.seed + 60_000)
            return {
                "agent": str(agent_dir),
                "teacher_real": res["real"],
                "teacher_dream": res["dream"],
                "dream_updates_total": start + cfg.dreamer.steps,
                "warm_started_from": start,
            }
        from dreamlab.grpo_cli import train_grpo
        from dreamlab.imagination.grpo import GRPOConfig
        from dreamlab.imagination.grpo_agent import GRPODreamConfig

        trainer = train_grpo(
            WorldModel.load(wm_path).eval(),
            self.logs,
            agent_dir,
            GRPOConfig(
                iterations=cfg.grpo.iterations,
                seed=round_seed(cfg.seed, r),
                horizon=cfg.grpo.horizon or episode_limit(cfg.env_id),
                score=cfg.grpo.score,
                bc_steps=cfg.grpo.bc_steps,
                target_success=cfg.grpo.target_success,
                precision=cfg.precision,
            ),
            GRPODreamConfig(verifier=cfg.grpo.verifier),
            progress=cfg.progress,
        )
        real = evaluate_real(self.teacher(r), cfg.env_id, cfg.eval_episodes, seed=cfg.seed + 60_000)
        return {
            "agent": str(agent_dir),
            "teacher_real": {"mean": float(real.mean()), "std": float(real.std())},
            "dream_success": trainer.history[-1].dream_success if trainer.history else None,
        }

    def _warm_start(self, r: int, agent_dir: Path) -> int:
        """Seed round r's Dreamer training state with round r-1's (the world model kept training,
        so its features are the ones the actor and critic already know); returns the update count
        it starts from (0 = from scratch). Deterministic, so a resumed stage finds the same count."""
        from dreamlab.imagination.loops import _load_state

        prev = self.rdir(r - 1) / "agent" / "train_state.pt"
        if not (self.cfg.dreamer.warm_start and r > 0 and prev.exists()):
            return 0
        state = _load_state(prev)
        if state is None:
            return 0
        start = int(state["step"])
        mine = agent_dir / "train_state.pt"
        if not mine.exists():  # (an interrupted stage already holds its own, further on)
            agent_dir.mkdir(parents=True, exist_ok=True)
            atomic_copy(prev, mine)
        return start

    def teacher(self, r: int) -> Any:
        from dreamlab.data.collect import make_env
        from dreamlab.imagination.registry import load_any_policy

        env = make_env(self.cfg.env_id)
        try:
            return load_any_policy(str(self.rdir(r) / "agent"), env, seed=self.cfg.seed)
        finally:
            env.close()

    # -- (d) distil -----------------------------------------------------------------------------
    def distill(self, r: int) -> dict[str, Any]:
        from dreamlab.data.store import EpisodeStore
        from dreamlab.imagination.dream_env import DreamEnv
        from dreamlab.policy.distill import PRETRAINED_ROLLOUT, DistillConfig, Distiller
        from dreamlab.policy.llm import LLMPolicy
        from dreamlab.policy.teachers import ActorTeacher
        from dreamlab.worldmodel.model import WorldModel

        cfg = self.cfg
        student = LLMPolicy.from_pretrained(self.llm_dir(r), **cfg.llm_kwargs(self.llm_dir(r)))
        out = self.rdir(r) / "llm"
        if cfg.distill.method == "sft-logs":
            return self._sft_on_logs(student, out, r)
        store = EpisodeStore(self.logs)
        dream = DreamEnv(
            WorldModel.load(self.rdir(r) / "world_model.ckpt"),
            store,
            num_envs=cfg.distill.envs or (8 if student.pretrained else 16),
            max_steps=episode_limit(cfg.env_id),
            seed=round_seed(cfg.seed, r),
        )
        teacher = ActorTeacher.for_student(self.teacher(r), student)
        dcfg = DistillConfig(
            method="opsd",
            loss="reverse_kl",
            max_labelled_tokens=cfg.distill.tokens or (2_000 if student.pretrained else 48_000),
            teacher_mix=cfg.distill.teacher_mix,
            seed=round_seed(cfg.seed, r),
            progress=cfg.progress,
            precision=cfg.precision,
            **(PRETRAINED_ROLLOUT if student.pretrained else {}),  # type: ignore[arg-type]
        )
        state = Distiller(student, teacher, dream, dcfg, out=out, env_id=cfg.env_id).run()
        return {
            "llm": str(out),
            "method": "opsd",
            "labelled_tokens": state.labelled_tokens,
            "forgetting": state.forgetting,
        }

    def _sft_on_logs(self, student: Any, out: Path, r: int) -> dict[str, Any]:
        from dreamlab.data.store import EpisodeStore
        from dreamlab.policy.base_llm import BaseLLMConfig, finetune_on_episodes
        from dreamlab.policy.forgetting import evaluate_general, forgetting_summary

        cfg = self.cfg
        episodes = EpisodeStore(self.logs).episodes()
        k = max(1, int(round(cfg.distill.sft_best_fraction * len(episodes))))
        best = sorted(episodes, key=lambda ep: ep.ret, reverse=True)[:k]
        general = lambda: evaluate_general(student.model, student.tokenizer, student.precision)  # noqa: E731
        before = general()
        losses = finetune_on_episodes(
            student,
            best,
            BaseLLMConfig(
                steps=cfg.distill.sft_steps, lr=1e-3, warmup=10, seed=round_seed(cfg.seed, r), progress=cfg.progress
            ),
        )
        student.save_pretrained(out, cfg.env_id)
        return {
            "llm": str(out),
            "method": "sft-logs",
            "episodes": k,
            "min_return": float(best[-1].ret),
            "final_loss": float(np.mean(losses[-20:])),
            "forgetting": forgetting_summary(before, general()),
        }

    # -- (e) evaluate ---------------------------------------------------------------------------
    def evaluate(self, r: int) -> dict[str, Any]:
        from dreamlab.imagination.evaluate import evaluate_dream_policy, evaluate_real
        from dreamlab.policy.llm import LLMPolicy
        from dreamlab.worldmodel.model import WorldModel

        cfg = self.cfg
        seed = cfg.seed + 50_000  # the base LLM's evaluation seeds: the same start states every round
        policy = LLMPolicy.from_pretrained(self.llm_dir(r + 1), **cfg.llm_kwargs(self.llm_dir(r + 1)))
        real = evaluate_real(policy, cfg.env_id, cfg.eval_episodes, seed=seed)
        res: dict[str, Any] = {
            "llm": str(self.llm_dir(r + 1)),
            "real": {"mean": float(real.mean()), "std": float(real.std()), "returns": real.tolist()},
            "dream": None,
        }
        wm_path = self.rdir(r) / "world_model.ckpt"
        if wm_path.exists():  # (no world model in the no-dreaming ablation)
            dream = evaluate_dream_policy(policy, WorldModel.load(wm_path), cfg.env_id, cfg.eval_episodes, seed=seed)
            res["dream"] = {"mean": float(dream.mean()), "std": float(dream.std()), "returns": dream.tolist()}
        atomic_write_json((self.rdir(r) / "evaluate.json"), res, indent=1)
        _log(
            f"round {r}: LLM real {real.mean():.1f} ± {real.std():.1f}"
            + (f", dream {res['dream']['mean']:.1f}" if res["dream"] else "")
        )
        return res

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        if not cfg.progress:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        t0 = time.perf_counter()
        base = self.run_dir.stage("base", self.base)
        stage_s = float(base.get("wall_s", 0.0))  # summed over invocations: a resumed run counts its earlier work
        rows: list[dict[str, Any]] = [
            {"round": "base", "real_steps": 0, "llm_real": base["real"]["mean"], "llm_real_std": base["real"]["std"]}
        ]
        steps = 0
        for r in range(cfg.rounds):
            self.rdir(r).mkdir(parents=True, exist_ok=True)
            info: dict[str, dict[str, Any]] = {}
            for name, fn in (
                ("deploy", self.deploy),
                ("worldmodel", self.worldmodel),
                ("practice", self.practice),
                ("distill", self.distill),
                ("evaluate", self.evaluate),
            ):
                if (
                    name in ("worldmodel", "practice")
                    and cfg.practice == "none"
                    or name == "distill"
                    and cfg.distill.method == "none"
                ):
                    continue  # no dreaming: no world model either (SFT on the logs alone)
                if name == "evaluate" and cfg.distill.method == "none":
                    continue  # the LLM did not change: only the teacher is evaluated (in practice)
                info[name] = self.run_dir.stage(f"round{r}_{name}", functools.partial(fn, r))
            steps += info["deploy"]["real_steps"]
            stage_s += sum(float(v.get("wall_s", 0.0)) for v in info.values())
            rows.append(round_row(r, steps, info))
            write_csv(self.out / "cycle.csv", rows)
        result = {
            "config": asdict(cfg),
            "rounds": rows,
            "stages_wall_s": stage_s,
            "invocation_wall_s": time.perf_counter() - t0,
        }
        atomic_write_json(self.out / "cycle.json", result, indent=1)
        from dreamlab.cycle_report import write_cycle_report

        result["report"] = str(write_cycle_report(self.out, cfg, rows))
        return result


def run_cycle(cfg: CycleConfig) -> dict[str, Any]:
    return Cycle(cfg).run()
