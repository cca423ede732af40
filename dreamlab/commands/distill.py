"""``dreamlab distill``: distil a teacher into an LLM policy by OPSD (on-policy) or SFT."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dreamlab.config import add_config_args, add_run_args, apply_threads, config_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    from dreamlab.policy.distill import DistillConfig

    p = subparsers.add_parser(
        "distill",
        help="distil a teacher (agent or context) into an LLM by OPSD or SFT",
        description="The student LLM acts in ENV (a gymnasium id, or dream:WM_CKPT for a DreamEnv of "
        "that world model started from --logs) and the teacher labels every action token "
        "(--method opsd), or the teacher acts and the student imitates it (--method sft). "
        "The result in OUT loads with AutoModelForCausalLM.from_pretrained and acts "
        "through LLMPolicy. Runs resume from OUT/checkpoint.",
    )
    p.add_argument(
        "--teacher",
        required=True,
        help="AGENT dir (agent.json) | context | heuristic | random | module:attr (a Policy)",
    )
    p.add_argument(
        "--student",
        required=True,
        help="LLM folder (Hugging Face causal LM) or a known name (smollm2-135m-instruct: prepared once in the cache)",
    )
    p.add_argument("--env", required=True, help="gymnasium id, or dream:WM_CKPT (needs --logs)")
    p.add_argument("--out", required=True, type=Path, help="folder for the distilled model")
    p.add_argument(
        "--logs", type=Path, default=None, help="episode store: DreamEnv start states; experience for --teacher context"
    )
    p.add_argument("--lessons", type=Path, default=None, help="--teacher context: a lessons text file")
    p.add_argument("--context-mode", default="frozen", choices=["frozen", "live", "ema"])
    p.add_argument("--context-best", type=int, default=3, help="best logged episodes shown as experience")
    p.add_argument("--context-chars", type=int, default=600, help="experience length (characters)")
    p.add_argument("--ema-decay", type=float, default=0.99)
    p.add_argument(
        "--renderer",
        default=None,
        help="renderer name or module:function (default: the "
        "student's dreamlab_policy.json, else the env id's built-in)",
    )
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--max-steps", type=int, default=500, help="DreamEnv episode limit")
    p.add_argument(
        "--eval-env",
        default=None,
        help="real env id for the return curve (default: ENV when it is real, the logs' env id for a dream)",
    )
    p.add_argument("--eval-episodes", type=int, default=8)
    add_run_args(p, progress=False)
    add_config_args(p, DistillConfig, "distillation")
    p.set_defaults(func=run)


def make_env(
    spec: str, num_envs: int, logs: Path | None, max_steps: int, seed: int, trust_code: bool = False
) -> tuple[Any, str | None]:
    """(vector env, real env id) for ``spec``: a gymnasium id, or ``dream:WM_CKPT``."""
    import gymnasium as gym

    from dreamlab.core.imports import check_code_name

    if spec.startswith("dream:"):
        from dreamlab.data.store import EpisodeStore
        from dreamlab.imagination.dream_env import DreamEnv
        from dreamlab.worldmodel.model import WorldModel

        if logs is None:
            raise ValueError(f"--env {spec}: a DreamEnv draws its start states from logged episodes; pass --logs DIR")
        ckpt = Path(spec[len("dream:") :])
        if not ckpt.exists():
            raise ValueError(f"--env {spec}: world-model checkpoint {ckpt} not found")
        store = EpisodeStore(logs)
        env_id = store.env_id
        if env_id is not None:  # it reaches gym.make for the teacher and the evaluation
            check_code_name(env_id, f"{logs}/metadata.json: field 'env_id'", trust_code)
        env = DreamEnv(WorldModel.load(ckpt), store, num_envs=num_envs, max_steps=max_steps, seed=seed)
        return env, env_id
    if spec not in gym.registry:
        raise ValueError(f"--env {spec!r}: not a registered gymnasium id and not dream:WM_CKPT")
    return gym.make_vec(spec, num_envs=num_envs, vectorization_mode="sync"), spec


def make_teacher(args: argparse.Namespace, student: Any, env_id: str | None, seed: int, smoothing: float = 1e-3) -> Any:
    import gymnasium as gym

    from dreamlab.policy.teachers import ActorTeacher, ContextTeacher, experience_text

    if args.teacher == "context":
        if args.lessons is not None:
            if not args.lessons.exists():
                raise ValueError(f"--lessons {args.lessons}: file not found")
            text = args.lessons.read_text()
        elif args.logs is not None:
            from dreamlab.data.store import EpisodeStore

            text = experience_text(
                EpisodeStore(args.logs),
                student.renderer,
                student.vocab,
                student.sep,
                args.context_best,
                args.context_chars,
            )
        else:
            raise ValueError("--teacher context needs --logs DIR (best episodes as experience) or --lessons FILE")
        return ContextTeacher(student, text, args.context_mode, args.ema_decay)
    if (Path(args.teacher) / "agent.json").exists():
        from dreamlab.imagination.agent import DreamerAgent

        policy: Any = DreamerAgent.load(args.teacher)
    else:
        from dreamlab.imagination.registry import load_any_policy

        if env_id is None:
            raise ValueError(f"--teacher {args.teacher}: needs a real env id (from --env or the logs' metadata)")
        probe = gym.make(env_id)
        policy = load_any_policy(args.teacher, probe, seed=seed, env_id=env_id)
    return ActorTeacher.for_student(policy, student, smoothing)


def run(args: argparse.Namespace) -> int:
    import gymnasium as gym
    import numpy as np

    from dreamlab.policy.distill import DistillConfig, Distiller
    from dreamlab.policy.llm import LLMPolicy, evaluate, read_policy_meta, task_meta
    from dreamlab.policy.pretrained import resolve_llm
    from dreamlab.policy.scale import make_fabric

    apply_threads(args.threads)
    cfg = config_from_args(DistillConfig, args)
    fabric = make_fabric(cfg.accelerator, cfg.strategy, cfg.devices, cfg.precision)
    fabric.launch()  # strategy ddp: starts the other ranks (each runs this command)
    student_dir = resolve_llm(args.student, log=lambda m: print(m, file=sys.stderr, flush=True))
    env, env_id = make_env(
        args.env, args.num_envs, args.logs, args.max_steps, cfg.seed + 1000 * fabric.global_rank, args.trust_code
    )
    needs_space = "vocab" not in task_meta(read_policy_meta(student_dir), env_id)
    student = LLMPolicy.from_pretrained(
        student_dir,
        renderer=args.renderer,
        env_id=env_id,
        action_space=env.single_action_space if needs_space else None,
        trust_code=args.trust_code,
    )
    teacher = make_teacher(args, student, env_id, cfg.seed, cfg.teacher_smoothing)
    eval_id = args.eval_env or env_id
    eval_fn = None
    if eval_id is not None and cfg.eval_every_tokens > 0:
        eval_env = gym.make_vec(eval_id, num_envs=min(args.eval_episodes, 8), vectorization_mode="sync")
        eval_fn = lambda pol: float(np.mean(evaluate(pol, eval_env, args.eval_episodes, seed=10_000)))  # noqa: E731
    state = Distiller(student, teacher, env, cfg, out=args.out, eval_fn=eval_fn, env_id=env_id, fabric=fabric).run()
    if fabric.global_rank != 0:
        return 0
    recent = state.returns[-20:]
    print(
        json.dumps(
            {
                "out": str(args.out),
                "method": cfg.method,
                "labelled_tokens": state.labelled_tokens,
                "updates": state.updates,
                "train_return_recent": float(np.mean(recent)) if recent else None,
                "curve": state.curve[-3:],
            },
            indent=1,
        )
    )
    return 0
