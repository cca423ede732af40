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
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from dreamlab.stages import Stages, run_stage, write_csv

STAGES = ("collect", "worldmodel", "dream", "evaluate", "distill", "report")


@dataclass
class QuickstartConfig:
    out: str = "runs/quickstart"
    env_id: str = "CartPole-v1"
    seed: int = 0
    # logs of a mediocre deployed agent: the heuristic with epsilon-random actions
    log_steps: int = 20_000
    log_epsilon: float = 0.75
    num_envs: int = 8
    # world model
    wm_preset: str = "small"
    wm_steps: int = 6000
    wm_minutes: float = 5.0
    # dreaming (actor-critic updates) and the transfer checkpoints
    dream_steps: int = 500
    transfer_every: int = 100
    eval_episodes: int = 10
    # LLM
    llm_pretrain_steps: int = 1000
    distill_tokens: int = 16_000
    distill_eval_every: int = 4000
    distill_teacher_mix: float = 0.5
    distill_envs: int = 16
    threads: int = 0  # torch CPU threads (0 = torch's default); 1 is safer on a machine shared with other jobs
    progress: bool = True


def _log(msg: str) -> None:
    print(f"[quickstart {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_quickstart(cfg: QuickstartConfig) -> dict[str, Any]:
    from data.collect import collect
    from data.sampling import split_names
    from data.store import EpisodeStore
    from imagination.agent import DreamerAgent
    from imagination.evaluate import dream_vs_real
    from imagination.loops import OfflineConfig, dream_offline
    from worldmodel.config import preset
    from worldmodel.evaluate import evaluate as eval_wm
    from worldmodel.model import WorldModel
    from worldmodel.train import train as train_wm

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "quickstart_config.json").write_text(json.dumps(asdict(cfg), indent=1))
    stages = Stages(out)
    logs, wm_dir, agent_dir = out / "logs", out / "worldmodel", out / "agent"
    t_start = time.perf_counter()

    def do_collect() -> dict[str, Any]:
        have = EpisodeStore(logs).num_steps if (logs / "metadata.json").exists() else 0
        if have < cfg.log_steps:
            collect(cfg.env_id, "heuristic", cfg.log_steps - have, num_envs=cfg.num_envs, seed=cfg.seed + have,
                    out=logs, epsilon=cfg.log_epsilon, progress=cfg.progress)
        return EpisodeStore(logs).stats().summary()

    logs_info = run_stage(stages, "collect", do_collect, _log)

    def do_worldmodel() -> dict[str, Any]:
        wcfg = preset(cfg.wm_preset, seed=cfg.seed)
        ckpt = train_wm(logs, wm_dir, wcfg, max_steps=cfg.wm_steps, max_minutes=cfg.wm_minutes,
                        progress=cfg.progress, accelerator="cpu")
        wm = WorldModel.load(ckpt)
        store = EpisodeStore(logs)
        _, val = split_names(store.names(), wcfg.val_fraction, wcfg.seed)
        result = eval_wm(wm, store.episodes(val), context=8, horizon=15, seed=cfg.seed)
        (out / "openloop.json").write_text(json.dumps(result, indent=1))
        s = result["summary"]
        return {"checkpoint": str(ckpt), "val_episodes": len(val), "openloop_summary": s,
                "one_step": result["one_step"]}

    wm_info = run_stage(stages, "worldmodel", do_worldmodel, _log)
    wm_ckpt = Path(wm_info["checkpoint"])

    def do_dream() -> dict[str, Any]:
        wm = WorldModel.load(wm_ckpt)
        rows: list[dict[str, Any]] = []
        ocfg = OfflineConfig(steps=cfg.dream_steps, seed=cfg.seed, save_every=cfg.transfer_every)

        def checkpoint_eval(step: int, metrics: dict[str, float]) -> None:
            if step % cfg.transfer_every:
                return
            agent = DreamerAgent.load(agent_dir) if (agent_dir / "agent.json").exists() else None
            if agent is None:
                return
            r = dream_vs_real(agent, cfg.env_id, episodes=5, seed=cfg.seed + 1000 + step)
            rows.append({"label": "dreamer", "seed": cfg.seed, "updates": step,
                         "real_return": r["real"]["mean"], "dream_return": r["dream"]["mean"]})
            _log(f"dream update {step}: real {r['real']['mean']:.1f}, dream {r['dream']['mean']:.1f}")

        dream_offline(wm, logs, agent_dir, ocfg, wm_path=wm_ckpt, progress=cfg.progress, callback=checkpoint_eval)
        if rows:
            write_csv(out / "transfer.csv", rows)
        return {"agent": str(agent_dir), "updates": cfg.dream_steps, "checkpoints_evaluated": len(rows)}

    run_stage(stages, "dream", do_dream, _log)

    def do_evaluate() -> dict[str, Any]:
        agent = DreamerAgent.load(agent_dir)
        r = dream_vs_real(agent, cfg.env_id, episodes=cfg.eval_episodes, seed=cfg.seed + 10_000)
        (out / "evaluate.json").write_text(json.dumps(r, indent=1))
        rows = []
        if (out / "transfer.csv").exists():
            with open(out / "transfer.csv", newline="") as fh:
                rows = [dict(x) for x in csv.DictReader(fh)]
        rows.append({"label": "dreamer (final)", "seed": cfg.seed, "updates": cfg.dream_steps,
                     "real_return": r["real"]["mean"], "dream_return": r["dream"]["mean"]})
        write_csv(out / "transfer.csv", rows)
        return r

    eval_info = run_stage(stages, "evaluate", do_evaluate, _log)

    def do_distill() -> dict[str, Any]:
        return _distill(cfg, out, logs, wm_ckpt, agent_dir)

    distill_info = run_stage(stages, "distill", do_distill, _log)

    def do_report() -> dict[str, Any]:
        return write_report(out, cfg, logs_info, wm_info, eval_info, distill_info,
                            total_s=time.perf_counter() - t_start)

    return run_stage(stages, "report", do_report, _log)


def _distill(cfg: QuickstartConfig, out: Path, logs: Path, wm_ckpt: Path, agent_dir: Path) -> dict[str, Any]:
    import gymnasium as gym

    from data.store import EpisodeStore
    from imagination.agent import DreamerAgent
    from imagination.dream_env import DreamEnv
    from policy.base_llm import BaseLLMConfig, make_base_llm
    from policy.distill import DistillConfig, Distiller
    from policy.llm import LLMPolicy, evaluate as eval_llm
    from policy.teachers import ActorTeacher
    from worldmodel.model import WorldModel

    base_dir, student_dir = out / "llm_base", out / "llm_opsd"
    if not (base_dir / "config.json").exists():
        make_base_llm(logs, base_dir, BaseLLMConfig(steps=cfg.llm_pretrain_steps, seed=cfg.seed,
                                                    progress=cfg.progress))
    eval_env = gym.make_vec(cfg.env_id, num_envs=cfg.eval_episodes, vectorization_mode="sync")

    def real_return(policy: LLMPolicy) -> float:
        return float(np.mean(eval_llm(policy, eval_env, cfg.eval_episodes, seed=20_000)))

    base_return = real_return(LLMPolicy.from_pretrained(base_dir))
    _log(f"base LLM real return {base_return:.1f}")
    store = EpisodeStore(logs)
    dream = DreamEnv(WorldModel.load(wm_ckpt), store, num_envs=cfg.distill_envs, max_steps=500, seed=cfg.seed)
    student = LLMPolicy.from_pretrained(base_dir)
    teacher = ActorTeacher.for_student(DreamerAgent.load(agent_dir), student)
    dcfg = DistillConfig(method="opsd", loss="reverse_kl", max_labelled_tokens=cfg.distill_tokens,
                         teacher_mix=cfg.distill_teacher_mix,
                         eval_every_tokens=cfg.distill_eval_every, seed=cfg.seed, progress=cfg.progress)
    state = Distiller(student, teacher, dream, dcfg, out=student_dir, eval_fn=real_return, env_id=cfg.env_id).run()
    final = real_return(LLMPolicy.from_pretrained(student_dir))
    rows = [{"method": "opsd", "seed": cfg.seed, "labelled_tokens": 0, "real_return": base_return}]
    rows += [{"method": "opsd", "seed": cfg.seed, "labelled_tokens": int(p["labelled_tokens"]), "real_return": p["return"]}
             for p in state.curve]
    rows.append({"method": "opsd", "seed": cfg.seed, "labelled_tokens": state.labelled_tokens, "real_return": final})
    rows.append({"method": "ref:base LLM", "seed": cfg.seed, "labelled_tokens": 0, "real_return": base_return})
    if (out / "evaluate.json").exists():
        teacher = json.loads((out / "evaluate.json").read_text())["real"]["mean"]
        rows.append({"method": "ref:teacher (dream-trained agent)", "seed": cfg.seed, "labelled_tokens": 0,
                     "real_return": teacher})
    write_csv(out / "distill.csv", rows)
    return {"base_llm": str(base_dir), "student": str(student_dir), "base_real_return": base_return,
            "student_real_return": final, "labelled_tokens": state.labelled_tokens, "updates": state.updates}


def write_report(out: Path, cfg: QuickstartConfig, logs_info: dict[str, Any], wm_info: dict[str, Any],
                 eval_info: dict[str, Any], distill_info: dict[str, Any], total_s: float) -> dict[str, Any]:
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
        f"epsilon {cfg.log_epsilon} (return mean {behaviour:.1f}, best {logs_info['return_max']:.1f}).",
        "",
        "| who | real return (mean ± std) | dream return | note |",
        "| --- | --- | --- | --- |",
        f"| logged behaviour | {behaviour:.1f} ± {logs_info['return_std']:.1f} | | the deployed agent behind the logs |",
        f"| dream-trained agent | {real:.1f} ± {eval_info['real']['std']:.1f} | {eval_info['dream']['mean']:.1f} "
        f"| gap {eval_info['gap']:+.1f} ({100 * eval_info['gap_relative']:.0f}% of real) |",
        f"| base LLM | {distill_info['base_real_return']:.1f} | | pre-trained on the logs |",
        f"| OPSD student | {distill_info['student_real_return']:.1f} | | {distill_info['labelled_tokens']} "
        "labelled tokens, distilled inside the dream |",
        "",
        f"Dream-trained agent beats the logged behaviour in the real env: "
        f"**{'yes' if real > behaviour else 'no'}** ({real:.1f} vs {behaviour:.1f}).",
        "",
        "World model, open loop on held-out episodes (normalised MSE, lower is better): "
        + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in om.items()),
        "",
        f"Total wall time of this invocation: {total_s / 60:.1f} min ({torch.get_num_threads()} torch threads).",
        "",
    ]
    for kind, paths in plots.items():
        png = [p for p in paths if p.endswith(".png")]
        if png:
            lines += [f"![{kind}]({png[0]})", ""]
    (out / "report.md").write_text("\n".join(lines))
    print("\n".join(lines[:14]))
    _log(f"report: {out / 'report.md'}")
    return {"report": str(out / "report.md"), "plots": plots, "beats_behaviour": bool(real > behaviour),
            "agent_real": real, "behaviour": behaviour}
