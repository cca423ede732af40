"""Learning on the job: deploy the LLM, log with feedback, dream, distil; round after round.

``run_cycle(cfg)`` runs into one folder ``RUN``::

    RUN/prior_logs/            logs the base LLM is pre-trained on (default: random actions, so it
                               writes valid actions with no skill)
                               (made only when no --llm is given; never shown to the world model)
    RUN/llm_base/              round 0's LLM (make-base-llm on prior_logs, or a copy-free pointer to --llm)
    RUN/logs/                  every round's deployment logs, with feedback (the world model's data)
    RUN/worldmodel/            one world model, continued round after round (last.ckpt)
    RUN/rounds/<r>/deploy/     round r's raw deployment logs (the real steps of round r)
    RUN/rounds/<r>/world_model.ckpt, openloop.json
    RUN/rounds/<r>/agent/      the dream-trained teacher (DreamerAgent or GRPO agent)
    RUN/rounds/<r>/llm/        the LLM after round r (save_pretrained, safetensors)
    RUN/rounds/<r>/evaluate.json
    RUN/cycle.csv, RUN/cycle.json, RUN/report.md (dreamlab.cycle_report), RUN/plots/cycle.png|pdf

A round ``r`` is five stages, each finished by a marker ``RUN/stages/round<r>_<stage>.json``:

(a) **deploy**: the current policy (round 0: the base LLM; then the LLM of round r-1) acts in the
    real env for ``deploy_steps`` env steps (sampling at ``deploy_temperature``); the episodes in
    flight when the budget is spent are kept as truncated. ``--feedback`` turns outcomes into
    thumbs up/down in the logs' ``feedback`` field: ``env`` (none: the world model learns the env's
    reward), ``rule`` (+1 when the env's verifier passes on the next observation, -1 when it
    fails), or ``module:function`` (``fn(episode) -> (num_steps,)`` feedback per transition). With
    ``rule`` or a function the world model learns the feedback instead of the env reward, so the
    loop runs where no reward function exists.
(b) **worldmodel**: continue training the world model on all logs so far (round 0 starts it).
(c) **practice**: Dreamer actor-critic (``dreamer``) or GRPO with the verifier (``grpo``) in the
    dreams of that model, from the logs' states; ``none`` skips it (the no-dreaming ablation).
(d) **distill**: OPSD inside the dream, the round's agent as teacher, the current LLM as student
    (``opsd``); ``sft-logs`` fine-tunes the LLM on the best logged episodes (no dream, no teacher);
    ``none`` leaves the LLM alone and the teacher itself is deployed next round.
(e) **evaluate**: the LLM's real return (greedy, fixed seeds) and its return in the dream from the
    same start states; the teacher's real return.

Real steps counted are deployment steps only; evaluation episodes measure and are never logged.
World model, dreaming and distillation resume mid-stage from their own checkpoints; an interrupted
deployment is redone from scratch (its partial logs are discarded before they reach ``RUN/logs``).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dreamlab.stages import Stages, run_stage, write_csv

PRACTICE = ("dreamer", "grpo", "none")
DISTILL = ("opsd", "sft-logs", "none")


class CycleError(ValueError):
    """A cycle setting or folder that cannot work (names the field or file)."""


@dataclass
class CycleConfig:
    out: str = "runs/cycle"
    env_id: str = "CartPole-v1"
    rounds: int = 3
    seed: int = 0
    # round 0's LLM: a local causal-LM folder, or "" to make one from prior logs of a mediocre agent
    llm: str = ""
    prior_log_steps: int = 5000
    prior_log_epsilon: float = 1.0  # 1 = uniformly random actions: the base LLM knows the action format, not the skill; -1 = the env's mediocre heuristic default
    llm_pretrain_steps: int = 1000
    # (a) deploy
    deploy_steps: int = 2000
    deploy_envs: int = 4
    deploy_temperature: float = 1.0
    feedback: str = "env"  # env | rule | module:function
    # (b) world model
    wm_preset: str = "small"
    wm_steps_first: int = 3000  # updates in round 0
    wm_steps_per_round: int = 1500  # further updates in each later round
    wm_minutes: float = 60.0  # wall cap per round (a safety net: the step budgets above end it first)
    # (c) practice in the dream
    practice: str = "dreamer"  # dreamer | grpo | none
    dream_steps: int = 1000  # Dreamer actor-critic updates per round
    dream_warm_start: bool = True  # round r > 0 continues round r-1's actor-critic (weights, optimisers)
    dream_penalty: float = 0.0  # imagined reward minus this x ensemble disagreement (MOPO); 0 = off
    # GRPO: the recipe that met issue 5's CartPole target (no behaviour cloning on the logs, dreams as
    # long as the real episode limit, each rollout scored by its summed verifier reward)
    grpo_iterations: int = 40
    grpo_horizon: int = 0  # dream steps per rollout; 0 = the env's own episode limit
    grpo_score: str = "reward"  # reward (summed per-step verifier score) | success (episode pass/fail)
    grpo_bc_steps: int = 0  # behaviour cloning on the logs before GRPO; 0 = start from scratch
    grpo_target_success: float = 0.95  # stop a round's GRPO once dream success stays above this
    verifier: str = ""  # "" = the env's built-in verifier
    # (d) distil into the LLM
    distill: str = "opsd"  # opsd | sft-logs | none
    distill_tokens: int = 48_000  # labelled (teacher-scored) tokens per round
    distill_teacher_mix: float = 0.5
    distill_envs: int = 16
    sft_best_fraction: float = 0.2  # sft-logs: the best fraction of logged episodes by return
    sft_steps: int = 300
    # (e) evaluate
    eval_episodes: int = 10
    threads: int = 0  # torch CPU threads (0 = torch's default)
    progress: bool = True

    def check(self) -> "CycleConfig":
        if self.rounds < 1:
            raise CycleError(f"rounds: expected >= 1, got {self.rounds}")
        if self.practice not in PRACTICE:
            raise CycleError(f"practice: expected one of {PRACTICE}, got {self.practice!r}")
        if self.distill not in DISTILL:
            raise CycleError(f"distill: expected one of {DISTILL}, got {self.distill!r}")
        if self.practice == "none" and self.distill == "opsd":
            raise CycleError("practice 'none' leaves no teacher for distill 'opsd'; use distill 'sft-logs'")
        if self.practice == "none" and self.distill == "none":
            raise CycleError("practice 'none' with distill 'none' learns nothing")
        if self.deploy_steps < 1 or self.deploy_envs < 1:
            raise CycleError("deploy_steps and deploy_envs must be >= 1")
        if not 0 < self.sft_best_fraction <= 1:
            raise CycleError(f"sft_best_fraction: expected in (0, 1], got {self.sft_best_fraction}")
        if self.grpo_horizon < 0:
            raise CycleError(f"grpo_horizon: expected >= 0 (0 = the env's episode limit), got {self.grpo_horizon}")
        from imagination.grpo import GRPOConfig, GRPOConfigError

        try:  # fail now, not after a round of deployment and world-model training
            GRPOConfig(iterations=self.grpo_iterations, horizon=self.grpo_horizon or 1, score=self.grpo_score,
                       bc_steps=self.grpo_bc_steps, target_success=self.grpo_target_success).validate()
        except GRPOConfigError as exc:
            raise CycleError(f"grpo settings: {exc}") from None
        return self


def unused_settings(cfg: CycleConfig) -> set[str]:
    """The settings a cycle with this practice and distillation never reads (free to differ on resume)."""
    prefixes = {"grpo_": cfg.practice != "grpo", "dream_": cfg.practice != "dreamer",
                "distill_": cfg.distill != "opsd", "sft_": cfg.distill != "sft-logs"}
    return {f.name for f in fields(cfg) if any(f.name.startswith(p) and on for p, on in prefixes.items())}


def _log(msg: str) -> None:
    print(f"[cycle {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------ feedback
def feedback_fn(spec: str, env_id: str) -> Callable[[Any], np.ndarray] | None:
    """``env`` -> None; ``rule`` -> the verifier's thumbs; ``module:function`` -> that function."""
    if spec == "env":
        return None
    if spec == "rule":
        from imagination.verifiers import get_verifier

        verifier = get_verifier(env_id)

        def rule(ep: Any) -> np.ndarray:
            ok = np.asarray(verifier(np.asarray(ep.obs[1:], np.float32)), np.float32) > 0.5  # (num_steps,)
            return np.where(ok, 1.0, -1.0).astype(np.float32)
        return rule
    if ":" in spec:
        from data.imports import import_attr

        return import_attr(spec, "--feedback")
    raise CycleError(f"feedback: expected 'env', 'rule' or module:function, got {spec!r}")


def with_feedback(episodes: list[Any], fn: Callable[[Any], np.ndarray] | None, source: str) -> list[Any]:
    if fn is None:
        return episodes
    for ep in episodes:
        fb = np.asarray(fn(ep), np.float32)
        if fb.shape != (ep.num_steps,) or not np.isfinite(fb).all():
            raise CycleError(f"{source}: the feedback function returned shape {fb.shape} (finite: "
                             f"{bool(np.isfinite(fb).all())}); expected ({ep.num_steps},) finite values")
        ep.feedback = np.concatenate([[0.0], fb]).astype(np.float32)
    return episodes


# ------------------------------------------------------------------------------------ the run
class Cycle:
    def __init__(self, cfg: CycleConfig):
        self.cfg = cfg.check()
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self._check_resume(self.out / "cycle_config.json")
        (self.out / "cycle_config.json").write_text(json.dumps(asdict(cfg), indent=1))
        self.stages = Stages(self.out)
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
        now = asdict(self.cfg)
        free = set(self.RESUME_FREE) | unused_settings(self.cfg)
        diff = [f"{k}: {before[k]!r} -> {now[k]!r}" for k in now
                if k in before and k not in free and before[k] != now[k]]
        if diff:
            raise CycleError(f"{path}: this folder holds a cycle run with other settings ({'; '.join(diff)}); "
                             f"rerun with the same settings to resume (only {', '.join(self.RESUME_FREE)} "
                             "may change), or use a new --out")

    def rdir(self, r: int) -> Path:
        return self.out / "rounds" / str(r)

    def llm_dir(self, r: int) -> Path:
        """The LLM deployed in round r (after round r - 1)."""
        if r == 0:
            return Path(self.cfg.llm) if self.cfg.llm else self.out / "llm_base"
        prev = self.rdir(r - 1) / "llm"
        return prev if (prev / "config.json").exists() else self.llm_dir(r - 1)

    # -- round 0's LLM --------------------------------------------------------------------------
    def base(self) -> dict[str, Any]:
        from data.behaviour import CARTPOLE_MEDIOCRE_EPSILON, MCC_MINORITY_EPSILON
        from data.collect import collect
        from imagination.evaluate import evaluate_real
        from policy.base_llm import BaseLLMConfig, make_base_llm
        from policy.llm import LLMPolicy

        cfg = self.cfg
        info: dict[str, Any] = {}
        if not cfg.llm:
            eps = cfg.prior_log_epsilon
            if eps < 0:
                eps = MCC_MINORITY_EPSILON if "MountainCar" in cfg.env_id else CARTPOLE_MEDIOCRE_EPSILON
            prior = self.out / "prior_logs"
            if prior.exists():
                shutil.rmtree(prior)  # an interrupted stage: start the prior logs over
            s = collect(cfg.env_id, "heuristic", cfg.prior_log_steps, num_envs=8, seed=cfg.seed + 7919,
                        out=prior, epsilon=eps, progress=cfg.progress)
            made = make_base_llm(prior, self.out / "llm_base",
                                 BaseLLMConfig(steps=cfg.llm_pretrain_steps, seed=cfg.seed, progress=cfg.progress))
            info.update(prior_logs=str(prior), prior_steps=s.store_steps_total, prior_epsilon=eps,
                        prior_return_mean=float(np.mean(s.returns)) if s.returns else None,
                        base_llm_agreement=made.get("agreement"))
        elif not (Path(cfg.llm) / "config.json").exists():
            raise CycleError(f"--llm {cfg.llm}: no config.json; expected a local Hugging Face causal-LM folder")
        policy = LLMPolicy.from_pretrained(self.llm_dir(0), env_id=cfg.env_id)
        real = evaluate_real(policy, cfg.env_id, cfg.eval_episodes, seed=cfg.seed + 50_000)
        info.update(llm=str(self.llm_dir(0)), real={"mean": float(real.mean()), "std": float(real.std()),
                                                     "returns": real.tolist()})
        _log(f"base LLM real return {real.mean():.1f} ± {real.std():.1f}")
        return info

    # -- (a) deploy -----------------------------------------------------------------------------
    def deployed_policy(self, r: int) -> Any:
        from policy.llm import LLMPolicy

        cfg = self.cfg
        if cfg.distill == "none" and r > 0:  # the teacher stays a separate policy: deploy it
            return self.teacher(r - 1)
        return LLMPolicy.from_pretrained(self.llm_dir(r), env_id=cfg.env_id,
                                         temperature=cfg.deploy_temperature, seed=cfg.seed * 1000 + r)

    def deploy(self, r: int) -> dict[str, Any]:
        from data.collect import collect
        from data.store import EpisodeStore

        cfg = self.cfg
        raw = self.rdir(r) / "deploy"
        if raw.exists():
            shutil.rmtree(raw)  # interrupted before its marker: redo it whole
        s = collect(cfg.env_id, self.deployed_policy(r), cfg.deploy_steps, num_envs=cfg.deploy_envs,
                    seed=cfg.seed * 1000 + 100 * r, out=raw, progress=cfg.progress, budget="taken")
        deployed = EpisodeStore(raw)
        episodes = with_feedback(deployed.episodes(), feedback_fn(cfg.feedback, cfg.env_id), str(raw))
        store = EpisodeStore.create(self.logs, cfg.env_id, deployed.observation_space, deployed.action_space)
        store.add_many(episodes, [f"round {r}"] * len(episodes))
        finished = [ep.ret for ep in episodes if ep.is_terminal[-1] or ep.num_steps >= _time_limit(cfg.env_id)]
        return {"real_steps": int(s.steps_taken), "episodes": len(episodes),
                "finished_episodes": len(finished),
                "finished_return_mean": float(np.mean(finished)) if finished else None,
                "feedback_mean": float(np.mean([ep.feedback[1:].mean() for ep in episodes])),
                "logs_total_steps": store.num_steps}

    # -- (b) world model ------------------------------------------------------------------------
    def worldmodel(self, r: int) -> dict[str, Any]:
        from data.sampling import split_names
        from data.store import EpisodeStore
        from worldmodel.config import preset
        from worldmodel.evaluate import evaluate as eval_wm
        from worldmodel.model import WorldModel
        from worldmodel.train import train as train_wm

        cfg = self.cfg
        wcfg = preset(cfg.wm_preset, seed=cfg.seed)
        wcfg.reward_source = "env" if cfg.feedback == "env" else "feedback"
        target = cfg.wm_steps_first + r * cfg.wm_steps_per_round  # cumulative: training continues
        ckpt = train_wm(self.logs, self.wm_dir, wcfg, max_steps=target, max_minutes=cfg.wm_minutes,
                        progress=cfg.progress, accelerator="cpu", log=_log)
        dst = self.rdir(r) / "world_model.ckpt"
        shutil.copyfile(ckpt, dst)
        wm = WorldModel.load(dst)
        store = EpisodeStore(self.logs)
        _, val = split_names(store.names(), wcfg.val_fraction, wcfg.seed)
        val_eps = store.episodes(val)
        longest = max(ep.length for ep in val_eps)  # early rounds' episodes can be short
        horizon = min(15, longest - 8)
        summary = json.loads((self.wm_dir / "train_summary.json").read_text())
        info = {"checkpoint": str(dst), "global_step": summary["global_step"], "val_episodes": len(val),
                "openloop_horizon": horizon, "openloop_summary": {}}
        if horizon >= 1:
            result = eval_wm(wm, val_eps, context=8, horizon=horizon, seed=cfg.seed)
            (self.rdir(r) / "openloop.json").write_text(json.dumps(result, indent=1))
            info["openloop_summary"] = result["summary"]
        return info

    # -- (c) practice ---------------------------------------------------------------------------
    def practice(self, r: int) -> dict[str, Any]:
        from imagination.evaluate import dream_vs_real, evaluate_real
        from imagination.dreamer import DreamerConfig
        from imagination.loops import OfflineConfig, dream_offline
        from worldmodel.model import WorldModel

        cfg = self.cfg
        wm_path = self.rdir(r) / "world_model.ckpt"
        agent_dir = self.rdir(r) / "agent"
        if cfg.practice == "dreamer":
            start = self._warm_start(r, agent_dir)
            dream_offline(WorldModel.load(wm_path), self.logs, agent_dir,
                          OfflineConfig(steps=start + cfg.dream_steps, seed=cfg.seed * 1000 + r, save_every=100),
                          DreamerConfig(penalty=cfg.dream_penalty), wm_path=wm_path, progress=cfg.progress)
            res = dream_vs_real(self.teacher(r), cfg.env_id, cfg.eval_episodes, seed=cfg.seed + 60_000)
            return {"agent": str(agent_dir), "teacher_real": res["real"], "teacher_dream": res["dream"],
                    "dream_updates_total": start + cfg.dream_steps, "warm_started_from": start}
        from dreamlab.grpo_cli import train_grpo
        from imagination.grpo import GRPOConfig
        from imagination.grpo_agent import GRPODreamConfig

        trainer = train_grpo(WorldModel.load(wm_path).eval(), self.logs, agent_dir,
                             GRPOConfig(iterations=cfg.grpo_iterations, seed=cfg.seed * 1000 + r,
                                        horizon=cfg.grpo_horizon or _time_limit(cfg.env_id), score=cfg.grpo_score,
                                        bc_steps=cfg.grpo_bc_steps, target_success=cfg.grpo_target_success),
                             GRPODreamConfig(verifier=cfg.verifier), progress=cfg.progress)
        real = evaluate_real(self.teacher(r), cfg.env_id, cfg.eval_episodes, seed=cfg.seed + 60_000)
        return {"agent": str(agent_dir), "teacher_real": {"mean": float(real.mean()), "std": float(real.std())},
                "dream_success": trainer.history[-1].dream_success if trainer.history else None}

    def _warm_start(self, r: int, agent_dir: Path) -> int:
        """Seed round r's Dreamer training state with round r-1's (the world model kept training,
        so its features are the ones the actor and critic already know); returns the update count
        it starts from (0 = from scratch). Deterministic, so a resumed stage finds the same count."""
        from imagination.loops import _load_state

        prev = self.rdir(r - 1) / "agent" / "train_state.pt"
        if not (self.cfg.dream_warm_start and r > 0 and prev.exists()):
            return 0
        start = int(_load_state(prev)["step"])
        mine = agent_dir / "train_state.pt"
        if not mine.exists():  # (an interrupted stage already holds its own, further on)
            agent_dir.mkdir(parents=True, exist_ok=True)
            tmp = agent_dir / ".train_state.pt.tmp"
            shutil.copyfile(prev, tmp)
            os.replace(tmp, mine)
        return start

    def teacher(self, r: int) -> Any:
        import imagination.agent  # noqa: F401  (registers the agent-directory loaders)
        import imagination.grpo  # noqa: F401  (its loader too)
        from data.behaviour import load_policy
        from data.collect import make_env

        env = make_env(self.cfg.env_id)
        try:
            return load_policy(str(self.rdir(r) / "agent"), env, seed=self.cfg.seed)
        finally:
            env.close()

    # -- (d) distil -----------------------------------------------------------------------------
    def distill(self, r: int) -> dict[str, Any]:
        from data.store import EpisodeStore
        from imagination.dream_env import DreamEnv
        from policy.distill import DistillConfig, Distiller
        from policy.llm import LLMPolicy
        from policy.teachers import ActorTeacher
        from worldmodel.model import WorldModel

        cfg = self.cfg
        student = LLMPolicy.from_pretrained(self.llm_dir(r), env_id=cfg.env_id)
        out = self.rdir(r) / "llm"
        if cfg.distill == "sft-logs":
            return self._sft_on_logs(student, out, r)
        store = EpisodeStore(self.logs)
        dream = DreamEnv(WorldModel.load(self.rdir(r) / "world_model.ckpt"), store, num_envs=cfg.distill_envs,
                         max_steps=_time_limit(cfg.env_id), seed=cfg.seed * 1000 + r)
        teacher = ActorTeacher.for_student(self.teacher(r), student)
        dcfg = DistillConfig(method="opsd", loss="reverse_kl", max_labelled_tokens=cfg.distill_tokens,
                             teacher_mix=cfg.distill_teacher_mix, seed=cfg.seed * 1000 + r, progress=cfg.progress)
        state = Distiller(student, teacher, dream, dcfg, out=out, env_id=cfg.env_id).run()
        return {"llm": str(out), "method": "opsd", "labelled_tokens": state.labelled_tokens, "updates": state.updates}

    def _sft_on_logs(self, student: Any, out: Path, r: int) -> dict[str, Any]:
        from data.store import EpisodeStore
        from policy.base_llm import BaseLLMConfig, finetune_on_episodes

        cfg = self.cfg
        episodes = EpisodeStore(self.logs).episodes()
        k = max(1, int(round(cfg.sft_best_fraction * len(episodes))))
        best = sorted(episodes, key=lambda ep: ep.ret, reverse=True)[:k]
        losses = finetune_on_episodes(student, best, BaseLLMConfig(steps=cfg.sft_steps, lr=1e-3, warmup=10,
                                                                   seed=cfg.seed * 1000 + r, progress=cfg.progress))
        student.save_pretrained(out, cfg.env_id)
        return {"llm": str(out), "method": "sft-logs", "episodes": k, "min_return": float(best[-1].ret),
                "final_loss": float(np.mean(losses[-20:]))}

    # -- (e) evaluate ---------------------------------------------------------------------------
    def evaluate(self, r: int) -> dict[str, Any]:
        from imagination.evaluate import evaluate_dream_policy, evaluate_real
        from policy.llm import LLMPolicy
        from worldmodel.model import WorldModel

        cfg = self.cfg
        seed = cfg.seed + 50_000  # the base LLM's evaluation seeds: the same start states every round
        policy = LLMPolicy.from_pretrained(self.llm_dir(r + 1), env_id=cfg.env_id)
        real = evaluate_real(policy, cfg.env_id, cfg.eval_episodes, seed=seed)
        res: dict[str, Any] = {"llm": str(self.llm_dir(r + 1)),
                               "real": {"mean": float(real.mean()), "std": float(real.std()), "returns": real.tolist()},
                               "dream": None}
        wm_path = self.rdir(r) / "world_model.ckpt"
        if wm_path.exists():  # (no world model in the no-dreaming ablation)
            dream = evaluate_dream_policy(policy, WorldModel.load(wm_path), cfg.env_id, cfg.eval_episodes, seed=seed)
            res["dream"] = {"mean": float(dream.mean()), "std": float(dream.std()), "returns": dream.tolist()}
        (self.rdir(r) / "evaluate.json").write_text(json.dumps(res, indent=1))
        _log(f"round {r}: LLM real {real.mean():.1f} ± {real.std():.1f}"
             + (f", dream {res['dream']['mean']:.1f}" if res["dream"] else ""))
        return res

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        if not cfg.progress:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        t0 = time.perf_counter()
        base = run_stage(self.stages, "base", self.base, _log)
        stage_s = float(base.get("wall_s", 0.0))  # summed over invocations: a resumed run counts its earlier work
        rows: list[dict[str, Any]] = [{"round": "base", "real_steps": 0, "llm_real": base["real"]["mean"],
                                       "llm_real_std": base["real"]["std"]}]
        steps = 0
        for r in range(cfg.rounds):
            self.rdir(r).mkdir(parents=True, exist_ok=True)
            info: dict[str, dict[str, Any]] = {}
            for name, fn in (("deploy", self.deploy), ("worldmodel", self.worldmodel), ("practice", self.practice),
                             ("distill", self.distill), ("evaluate", self.evaluate)):
                if name in ("worldmodel", "practice") and cfg.practice == "none" or \
                        name == "distill" and cfg.distill == "none":
                    continue  # no dreaming: no world model either (SFT on the logs alone)
                if name == "evaluate" and cfg.distill == "none":
                    continue  # the LLM did not change: only the teacher is evaluated (in practice)
                info[name] = run_stage(self.stages, f"round{r}_{name}", lambda fn=fn, r=r: fn(r), _log)
            steps += info["deploy"]["real_steps"]
            stage_s += sum(float(v.get("wall_s", 0.0)) for v in info.values())
            wm_info = info.get("worldmodel", {})
            om, horizon = wm_info.get("openloop_summary", {}), wm_info.get("openloop_horizon")
            teacher = info.get("practice", {}).get("teacher_real", {})
            ev = info.get("evaluate")
            rows.append({"round": r, "real_steps": steps,
                         "llm_real": ev["real"]["mean"] if ev else None,
                         "llm_real_std": ev["real"]["std"] if ev else None,
                         "llm_dream": ev["dream"]["mean"] if ev and ev["dream"] else None,
                         "teacher_real": teacher.get("mean"),
                         "deployed_return": info["deploy"]["finished_return_mean"],
                         "openloop_nmse": om.get("nmse_at_horizon"), "openloop_copy_last": om.get("nmse_copy_last_at_horizon"),
                         "openloop_horizon": horizon,
                         "wm_steps": wm_info.get("global_step")})
            write_csv(self.out / "cycle.csv", rows)
        result = {"config": asdict(cfg), "rounds": rows, "stages_wall_s": stage_s,
                  "invocation_wall_s": time.perf_counter() - t0}
        (self.out / "cycle.json").write_text(json.dumps(result, indent=1))
        from dreamlab.cycle_report import write_cycle_report

        result["report"] = str(write_cycle_report(self.out, cfg, rows))
        return result


def _time_limit(env_id: str) -> int:
    import gymnasium as gym

    return int(gym.spec(env_id).max_episode_steps or 1000)


def run_cycle(cfg: CycleConfig) -> dict[str, Any]:
    return Cycle(cfg).run()
