"""The main job end to end: logs -> world model -> dream -> real vs dream -> LLM -> report.

``run_quickstart(cfg)`` runs six stages into one folder; each stage writes its outputs and a
``stages/<name>.json`` marker when it finishes, so an interrupted run resumes at the stage it was
in (stages with their own checkpoints, the world model and the dreaming, resume mid-stage too)::

    OUT/logs/            noisy-heuristic episodes (the "deployed agent's" logs)
    OUT/worldmodel/      Lightning run; OUT/worldmodel/world_model.ckpt
    OUT/openloop.json    open-loop error on held-out episodes (dreamlab eval-wm --json format)
    OUT/agent/           the dream-trained DreamerAgent
    OUT/transfer.csv     dream vs real return of the agent's checkpoints
    OUT/llm_base/        the base LLM made from the logs; OUT/llm_opsd/ the distilled student
    OUT/distill.csv      student real return against teacher-labelled tokens
    OUT/report.md        the summary table and the plots (OUT/plots/*.png|pdf)
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dreamlab.core.io import atomic_write_json, atomic_write_text
from dreamlab.core.seeding import CHECKPOINT_EVAL_OFFSET, EVAL_OFFSET
from dreamlab.stages import (
    Run,
    collect_logs,
    cut_short_note,
    dream_agent,
    evaluate_agent,
    score_world_model,
    stderr_log,
    train_world_model,
    write_csv,
)

STAGES = ("collect", "worldmodel", "dream", "evaluate", "distill", "report")
_log = stderr_log("quickstart")


@dataclass
class LogsConfig:
    """The logs of a mediocre deployed agent: the env's heuristic with epsilon-random actions."""

    steps: int = 20_000
    epsilon: float = 0.75
    num_envs: int = 8


@dataclass
class QuickstartWorldModelConfig:
    preset: str = "small"
    steps: int = 3000  # the budget: training steps (cosine lr decay to it: 10.8x better than copy-last on CartPole)
    minutes: float = 30.0  # wall-clock safety net only (a warning and the report say when it cut the budget short)


@dataclass
class QuickstartDreamConfig:
    steps: int = 500  # actor-critic updates in the dream
    transfer_every: int = 100  # updates between dream-vs-real checkpoints


@dataclass
class QuickstartLLMConfig:
    model: str = "smollm2-135m-instruct"  # a known name (prepared once), an LLM folder, or "toy"
    pretrain_steps: int = 1000  # toy: the small base LLM made from the logs
    eval_episodes: int = 4  # a pretrained LLM's real-env episodes per evaluation (the toy uses eval_episodes)


@dataclass
class QuickstartDistillConfig:
    tokens: int = 0  # labelled tokens; 0 = 16,000 for the toy GPT, 256 for a pretrained LLM (~2 s per decision)
    eval_every: int = 4000
    teacher_mix: float = 0.5
    envs: int = 0  # dream envs; 0 = 16 for the toy GPT, 8 for a pretrained LLM


@dataclass
class QuickstartConfig:
    out: str = "runs/quickstart"
    env_id: str = "CartPole-v1"
    seed: int = 0
    eval_episodes: int = 10
    threads: int = 0  # torch CPU threads (0 = torch's default); 1 is safer on a machine shared with other jobs
    precision: str = "auto"  # 32 | bf16-mixed | auto (bf16-mixed where bf16 is fast: CUDA, AMX/AVX512-BF16 CPUs)
    progress: bool = True
    logs: LogsConfig = field(default_factory=LogsConfig)
    world_model: QuickstartWorldModelConfig = field(default_factory=QuickstartWorldModelConfig)
    dream: QuickstartDreamConfig = field(default_factory=QuickstartDreamConfig)
    llm: QuickstartLLMConfig = field(default_factory=QuickstartLLMConfig)
    distill: QuickstartDistillConfig = field(default_factory=QuickstartDistillConfig)


def run_quickstart(cfg: QuickstartConfig) -> dict[str, Any]:
    from dreamlab.worldmodel.config import preset

    run = Run(cfg.out, cfg, _log)
    out = run.out
    logs, wm_dir, agent_dir = out / "logs", out / "worldmodel", out / "agent"
    t_start = time.perf_counter()

    logs_info = run.stage(
        "collect",
        lambda: collect_logs(
            cfg.env_id,
            "heuristic",
            cfg.logs.steps,
            logs,
            num_envs=cfg.logs.num_envs,
            seed=cfg.seed,
            epsilon=cfg.logs.epsilon,
            progress=cfg.progress,
        ),
    )

    def do_worldmodel() -> dict[str, Any]:
        trained = train_world_model(
            logs,
            wm_dir,
            preset(cfg.world_model.preset, seed=cfg.seed),
            cfg.world_model.steps,
            cfg.world_model.minutes,
            cfg.progress,
            precision=cfg.precision,
        )
        scored = score_world_model(Path(trained["checkpoint"]), logs, seed=cfg.seed, out_json=out / "openloop.json")
        return {**trained, **scored}

    wm_info = run.stage("worldmodel", do_worldmodel)
    wm_ckpt = Path(wm_info["checkpoint"])

    def do_dream() -> dict[str, Any]:
        rows: list[dict[str, Any]] = []

        def checkpoint_eval(step: int, metrics: dict[str, float]) -> None:
            if step % cfg.dream.transfer_every or not (agent_dir / "agent.json").exists():
                return
            r = evaluate_agent(agent_dir, cfg.env_id, episodes=5, seed=cfg.seed + CHECKPOINT_EVAL_OFFSET + step)
            rows.append(
                {
                    "label": "dreamer",
                    "seed": cfg.seed,
                    "updates": step,
                    "real_return": r["real"]["mean"],
                    "dream_return": r["dream"]["mean"],
                }
            )
            _log(f"dream update {step}: real {r['real']['mean']:.1f}, dream {r['dream']['mean']:.1f}")

        info = dream_agent(
            wm_ckpt,
            logs,
            agent_dir,
            cfg.dream.steps,
            seed=cfg.seed,
            save_every=cfg.dream.transfer_every,
            callback=checkpoint_eval,
            progress=cfg.progress,
            precision=cfg.precision,
        )
        if rows:
            write_csv(out / "transfer.csv", rows)
        return {**info, "checkpoints_evaluated": len(rows)}

    run.stage("dream", do_dream)

    def do_evaluate() -> dict[str, Any]:
        r = evaluate_agent(agent_dir, cfg.env_id, episodes=cfg.eval_episodes, seed=cfg.seed + EVAL_OFFSET)
        atomic_write_json(out / "evaluate.json", r)
        rows = []
        if (out / "transfer.csv").exists():
            with open(out / "transfer.csv", newline="") as fh:
                rows = [dict(x) for x in csv.DictReader(fh)]
        rows.append(
            {
                "label": "dreamer (final)",
                "seed": cfg.seed,
                "updates": cfg.dream.steps,
                "real_return": r["real"]["mean"],
                "dream_return": r["dream"]["mean"],
            }
        )
        write_csv(out / "transfer.csv", rows)
        return r

    eval_info = run.stage("evaluate", do_evaluate)
    distill_info = run.stage("distill", lambda: _distill(cfg, out, logs, wm_ckpt, agent_dir))
    return run.stage(
        "report",
        lambda: write_report(
            out, cfg, logs_info, wm_info, eval_info, distill_info, total_s=time.perf_counter() - t_start
        ),
    )


def _base_note(info: dict[str, Any]) -> str:
    name = info.get("base_llm_name", "toy")
    if name == "toy":
        return "a small GPT pre-trained on the logs (--llm toy)"
    return f"{name}, zero-shot (chat prompt, {info.get('finetune') or 'lora'} fine-tuning)"


def state_finetune(student_dir: Path) -> str | None:
    """How the student was fine-tuned (``lora`` or ``full``), from its ``distill.json``."""
    try:
        return json.loads((student_dir / "distill.json").read_text())["run"]["finetune"]
    except (OSError, KeyError, ValueError):
        return None


def _distill(cfg: QuickstartConfig, out: Path, logs: Path, wm_ckpt: Path, agent_dir: Path) -> dict[str, Any]:
    import gymnasium as gym

    from dreamlab.data.store import EpisodeStore
    from dreamlab.imagination.agent import DreamerAgent
    from dreamlab.imagination.dream_env import DreamEnv
    from dreamlab.policy.base_llm import BaseLLMConfig, make_base_llm
    from dreamlab.policy.distill import PRETRAINED_ROLLOUT, DistillConfig, Distiller
    from dreamlab.policy.llm import LLMPolicy
    from dreamlab.policy.llm import evaluate as eval_llm
    from dreamlab.policy.pretrained import resolve_llm
    from dreamlab.policy.teachers import ActorTeacher
    from dreamlab.worldmodel.model import WorldModel

    toy = cfg.llm.model == "toy"
    student_dir = out / "llm_opsd"
    if toy:
        base_dir = out / "llm_base"
        if not (base_dir / "config.json").exists():
            make_base_llm(
                logs, base_dir, BaseLLMConfig(steps=cfg.llm.pretrain_steps, seed=cfg.seed, progress=cfg.progress)
            )
    else:
        base_dir = resolve_llm(cfg.llm.model, log=_log)
    episodes = cfg.eval_episodes if toy else cfg.llm.eval_episodes
    eval_env = gym.make_vec(cfg.env_id, num_envs=episodes, vectorization_mode="sync")

    def real_return(policy: LLMPolicy) -> float:
        return float(np.mean(eval_llm(policy, eval_env, episodes, seed=20_000)))

    base_return = real_return(LLMPolicy.from_pretrained(base_dir, env_id=cfg.env_id))
    _log(f"base LLM real return {base_return:.1f}")
    store = EpisodeStore(logs)
    envs = cfg.distill.envs or (16 if toy else 8)
    dream = DreamEnv(WorldModel.load(wm_ckpt), store, num_envs=envs, max_steps=500, seed=cfg.seed)
    student = LLMPolicy.from_pretrained(base_dir, env_id=cfg.env_id)
    teacher = ActorTeacher.for_student(DreamerAgent.load(agent_dir), student)
    scale = {} if toy else PRETRAINED_ROLLOUT
    dcfg = DistillConfig(
        method="opsd",
        loss="reverse_kl",
        max_labelled_tokens=cfg.distill.tokens or (16_000 if toy else 256),
        teacher_mix=cfg.distill.teacher_mix,
        eval_every_tokens=cfg.distill.eval_every,
        seed=cfg.seed,
        progress=cfg.progress,
        precision=cfg.precision,
        **scale,  # type: ignore[arg-type]
    )
    state = Distiller(student, teacher, dream, dcfg, out=student_dir, eval_fn=real_return, env_id=cfg.env_id).run()
    final = real_return(LLMPolicy.from_pretrained(student_dir, env_id=cfg.env_id))
    rows = [{"method": "opsd", "seed": cfg.seed, "labelled_tokens": 0, "real_return": base_return}]
    rows += [
        {"method": "opsd", "seed": cfg.seed, "labelled_tokens": int(p["labelled_tokens"]), "real_return": p["return"]}
        for p in state.curve
    ]
    rows.append({"method": "opsd", "seed": cfg.seed, "labelled_tokens": state.labelled_tokens, "real_return": final})
    rows.append({"method": "ref:base LLM", "seed": cfg.seed, "labelled_tokens": 0, "real_return": base_return})
    if (out / "evaluate.json").exists():
        teacher = json.loads((out / "evaluate.json").read_text())["real"]["mean"]
        rows.append(
            {
                "method": "ref:teacher (dream-trained agent)",
                "seed": cfg.seed,
                "labelled_tokens": 0,
                "real_return": teacher,
            }
        )
    write_csv(out / "distill.csv", rows)
    return {
        "base_llm": str(base_dir),
        "base_llm_name": "toy" if toy else cfg.llm.model,
        "student": str(student_dir),
        "finetune": state_finetune(student_dir),
        "base_real_return": base_return,
        "student_real_return": final,
        "labelled_tokens": state.labelled_tokens,
        "updates": state.updates,
        "forgetting": state.forgetting,
    }


def _forgetting_lines(f: dict[str, Any]) -> list[str]:
    """What the distillation cost the LLM elsewhere (the general suite, before -> after), if measured."""
    if "perplexity_after" not in f:
        return []
    return [
        f"What the LLM kept (held-out general suite, {f['tokens']} prose tokens, {f['instructions_total']} "
        f"instructions): perplexity {f['perplexity_before']:.2f} -> {f['perplexity_after']:.2f} "
        f"({100 * f['perplexity_change']:+.1f}%), instruction accuracy {100 * f['instructions_before']:.1f}% -> "
        f"{100 * f['instructions_after']:.1f}% ({f['instructions_change_points']:+.1f} points).",
        "",
    ]


def write_report(
    out: Path,
    cfg: QuickstartConfig,
    logs_info: dict[str, Any],
    wm_info: dict[str, Any],
    eval_info: dict[str, Any],
    distill_info: dict[str, Any],
    total_s: float,
) -> dict[str, Any]:
    from dreamlab.commands.plot import make_plot

    plots = {}
    for kind in ("openloop", "transfer", "distill"):
        try:
            plots[kind] = [str(p.relative_to(out)) for p in make_plot(kind, out)]
        except ValueError as exc:
            _log(f"plot {kind} skipped: {exc}")
    om = wm_info["openloop_summary"]
    behaviour = float(logs_info["return_mean"])
    real = eval_info["real"]["mean"]
    lines = [
        f"# dreamlab quickstart: {cfg.env_id}",
        "",
        f"Logs: {logs_info['episodes']} episodes, {logs_info['steps']} steps of the heuristic with "
        f"epsilon {cfg.logs.epsilon} (return mean {behaviour:.1f}, best {logs_info['return_max']:.1f}).",
        "",
        "| who | real return (mean ± std) | dream return | note |",
        "| --- | --- | --- | --- |",
        f"| logged behaviour | {behaviour:.1f} ± {logs_info['return_std']:.1f} | | the deployed agent behind the logs |",
        f"| dream-trained agent | {real:.1f} ± {eval_info['real']['std']:.1f} | {eval_info['dream']['mean']:.1f} "
        f"| gap {eval_info['gap']:+.1f} ({100 * eval_info['gap_relative']:.0f}% of real) |",
        f"| base LLM | {distill_info['base_real_return']:.1f} | | {_base_note(distill_info)} |",
        f"| OPSD student | {distill_info['student_real_return']:.1f} | | {distill_info['labelled_tokens']} "
        "labelled tokens, distilled inside the dream |",
        "",
        *_forgetting_lines(distill_info.get("forgetting") or {}),
        f"Dream-trained agent beats the logged behaviour in the real env: "
        f"**{'yes' if real > behaviour else 'no'}** ({real:.1f} vs {behaviour:.1f}).",
        "",
        f"World model: {wm_info.get('global_step')} of {wm_info.get('step_budget', cfg.world_model.steps)} "
        f"training steps ({wm_info.get('precision') or 'fp32'}). Open loop on held-out episodes "
        "(normalised MSE, lower is better): "
        + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in om.items()),
        "",
        *([f"**{note}**", ""] if (note := cut_short_note("the world model", wm_info)) else []),
        f"Total wall time of this invocation: {total_s / 60:.1f} min ({torch.get_num_threads()} torch threads).",
        "",
    ]
    for kind, paths in plots.items():
        png = [p for p in paths if p.endswith(".png")]
        if png:
            lines += [f"![{kind}]({png[0]})", ""]
    atomic_write_text(out / "report.md", "\n".join(lines))
    print("\n".join(lines[:14]))
    _log(f"report: {out / 'report.md'}")
    return {
        "report": str(out / "report.md"),
        "plots": plots,
        "beats_behaviour": bool(real > behaviour),
        "agent_real": real,
        "behaviour": behaviour,
    }
