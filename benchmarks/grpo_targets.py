"""Issue 5 targets: GRPO trained only in dreams, scored by verifiers, measured in the real env.

Tasks (each seed: collect logs -> train a world model -> GRPO in its dreams -> real episodes):

* ``mcc``      MountainCarContinuous-v0 from noisy-heuristic logs (epsilon 0.85: the goal is
               reached in a minority of episodes), goal verifier, with and without the MOPO
               penalty / MOReL halt; target >= 90% real goal rate (median of seeds).
* ``cartpole`` CartPole-v1 from 20k steps of the mediocre heuristic (epsilon 0.5; the offline
               logs of Imagination I), upright verifier scored by steps upright; target >= 450
               real return (median of seeds).
* ``ablation`` forks vs. independent starts on the MCC dream: dream success per iteration,
               imagined steps to reach a dream success of 0.5 / 0.8, real goal rate.

    python -m dreamlab.benchmarks.grpo_targets --tasks mcc cartpole ablation --seeds 0 1 2

Writes ``benchmarks/results/grpo_targets.json`` (merged per task, so tasks may run separately).
World models and logs are cached under ``--work`` so a rerun skips what is done.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dreamlab.core.io import atomic_write_json
from dreamlab.core.machine import run_manifest
from dreamlab.data.behaviour import CARTPOLE_MEDIOCRE_EPSILON, MCC_MINORITY_EPSILON, make_behaviour
from dreamlab.data.collect import collect
from dreamlab.data.sampling import SequenceSampler
from dreamlab.data.store import EpisodeStore
from dreamlab.imagination.grpo import (
    GRPOConfig,
    GRPOTrainer,
    ObsActor,
    ObsActorPolicy,
    behaviour_clone,
    dream_env_factory,
)
from dreamlab.imagination.grpo_eval import dream_success, real_success, resolve_uncertainty
from dreamlab.imagination.verifiers import get_verifier
from dreamlab.worldmodel.config import preset
from dreamlab.worldmodel.model import WorldModel

RESULTS = Path(__file__).parent / "results" / "grpo_targets.json"

TASKS: dict[str, dict[str, Any]] = {
    "mcc": dict(
        env_id="MountainCarContinuous-v0",
        epsilon=MCC_MINORITY_EPSILON,
        log_steps=30_000,
        wm=dict(deter=128, hidden=128, groups=8, classes=8, ensemble=3, lr=1e-3, warmup_steps=50),
        wm_steps=1200,
        grpo=dict(iterations=40, groups=16, group_size=8, horizon=250, lr=1e-3, hidden=64, layers=2),
        variants={
            "no_penalty": dict(penalty=0.0, halt_threshold=None),
            "penalty": dict(penalty="auto", halt_threshold="auto"),
            "no_penalty_no_bc": dict(penalty=0.0, halt_threshold=None, bc_steps=0),
        },
        eval_episodes=20,
    ),
    "cartpole": dict(
        env_id="CartPole-v1",
        epsilon=CARTPOLE_MEDIOCRE_EPSILON,
        log_steps=20_000,
        wm=dict(deter=128, hidden=128, groups=8, classes=8, ensemble=3, lr=1e-3, warmup_steps=50),
        wm_steps=1500,
        grpo=dict(
            iterations=40,
            groups=16,
            group_size=8,
            horizon=200,
            lr=1e-3,
            hidden=64,
            layers=2,
            score="reward",
            target_success=0.95,
        ),
        variants={
            "no_penalty": dict(penalty=0.0, halt_threshold=None),
            "no_penalty_no_bc": dict(penalty=0.0, halt_threshold=None, bc_steps=0),
            # no BC, dreams as long as the real episode limit (500), not 200
            "no_bc_h500": dict(penalty=0.0, halt_threshold=None, bc_steps=0, horizon=500),
        },
        eval_episodes=10,
    ),
}

TASKS_DEFAULT_WM_STEPS = {t["env_id"]: t["wm_steps"] for t in TASKS.values()}


def logs_for(task: dict[str, Any], seed: int, work: Path) -> EpisodeStore:
    out = work / f"logs-{task['env_id']}-s{seed}"
    if not (out / "metadata.json").exists() or EpisodeStore(out).num_steps < task["log_steps"]:
        collect(
            task["env_id"],
            "heuristic",
            task["log_steps"],
            num_envs=4,
            seed=seed,
            out=out,
            epsilon=task["epsilon"],
            progress=False,
        )
    return EpisodeStore(out)


def world_model_for(
    task: dict[str, Any], store: EpisodeStore, seed: int, work: Path
) -> tuple[WorldModel, dict[str, Any]]:
    suffix = "" if task["wm_steps"] == TASKS_DEFAULT_WM_STEPS[task["env_id"]] else f"-n{task['wm_steps']}"
    suffix += task.get("wm_tag", "")
    path = work / f"wm-{task['env_id']}-s{seed}{suffix}.ckpt"
    info_path = path.with_suffix(".json")
    if path.exists() and info_path.exists():
        return WorldModel.load(path).eval(), json.loads(info_path.read_text())
    torch.manual_seed(seed)
    cfg = preset("small", **task["wm"], seed=seed)
    wm = WorldModel(cfg, store.observation_space, store.action_space)
    obs_stats = hasattr(wm, "set_obs_stats") and task.get("obs_stats", True)
    if obs_stats:  # per-dimension standardisation from the logs (MountainCar's velocity is ~0.07)
        wm.set_obs_stats(np.concatenate([e.obs for e in store.episodes()]))
    sampler = SequenceSampler(store.episodes(), wm.codec, cfg.seq_len, seed=seed)
    opt = torch.optim.Adam(wm.parameters(), lr=cfg.lr, eps=cfg.eps)
    t0 = time.time()
    metrics: dict[str, float] = {}
    for step in range(task["wm_steps"]):
        for g in opt.param_groups:
            g["lr"] = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps)
        loss, m = wm.loss(sampler.sample(cfg.batch_size))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(wm.parameters(), cfg.grad_clip)
        opt.step()
        metrics = {k: float(v) for k, v in m.items()}
    print(
        f"world model {task['env_id']} seed {seed}: {task['wm_steps']} steps in {time.time() - t0:.0f}s, "
        f"loss {metrics.get('loss', float('nan')):.3f}",
        flush=True,
    )
    info = {
        "steps": task["wm_steps"],
        "obs_stats_from_logs": obs_stats,
        "seconds": time.time() - t0,
        "final_loss": metrics,
        "config": cfg.to_dict(),
    }
    wm.save(path)
    atomic_write_json(info_path, info, indent=1)
    return wm.eval(), info


def log_stats(store: EpisodeStore) -> dict[str, Any]:
    eps = store.episodes()
    return {
        "episodes": len(eps),
        "steps": int(sum(e.num_steps for e in eps)),
        "terminated_fraction": float(np.mean([e.terminated for e in eps])),
        "mean_return": float(np.mean([e.ret for e in eps])),
        "best_return": float(max(e.ret for e in eps)),
    }


def run_grpo(
    task: dict[str, Any],
    store: EpisodeStore,
    wm: WorldModel,
    seed: int,
    penalty: float | str,
    halt_threshold: float | str | None,
    forked: bool = True,
    progress: bool = False,
    **grpo_overrides: Any,
) -> dict[str, Any]:
    torch.manual_seed(seed)
    env_id = task["env_id"]
    verifier = get_verifier(env_id)
    episodes = store.episodes()
    cfg = GRPOConfig(**{**task["grpo"], **grpo_overrides}, forked=forked, seed=seed)
    # "auto": on the model's own scale, from the disagreement measured on the logs' steps
    penalty, halt_threshold, calib = resolve_uncertainty(wm, episodes, cfg.horizon, penalty, halt_threshold)
    make = dream_env_factory(
        wm, episodes, verifier, cfg.horizon, penalty=penalty, halt_threshold=halt_threshold, seed=seed
    )
    agent = ObsActor.from_episodes(episodes, store.observation_space, store.action_space, cfg.hidden, cfg.layers)
    real_untrained = real_success(env_id, agent, verifier, task["eval_episodes"], seed=10_000 + seed)
    bc_nll = behaviour_clone(agent, episodes, cfg.bc_steps, seed=seed)
    real_before = real_success(env_id, agent, verifier, task["eval_episodes"], seed=10_000 + seed)
    trainer = GRPOTrainer(make, agent, verifier, cfg)
    t0 = time.time()
    history = trainer.train(progress=progress)
    seconds = time.time() - t0
    dream_after = dream_success(make, ObsActorPolicy(agent, greedy=True), verifier, 128, cfg.horizon, seed=999)
    real = real_success(env_id, agent, verifier, task["eval_episodes"], seed=10_000 + seed)
    curve = [h.dream_success for h in history]
    steps = [h.total_imagined_steps for h in history]

    def steps_to(level: float) -> int | None:
        hit = [s for c, s in zip(curve, steps) if c >= level]
        return hit[0] if hit else None

    return {
        "seed": seed,
        "penalty": penalty,
        "halt_threshold": halt_threshold,
        "calibration": calib,
        "forked": forked,
        "halted_fraction_curve": [h.halted for h in history],
        "mean_penalty_curve": [h.penalty for h in history],
        "config": dataclasses.asdict(cfg),
        "train_seconds": seconds,
        "imagined_steps": trainer.total_steps,
        "imagined_steps_to_dream_success_0.5": steps_to(0.5),
        "imagined_steps_to_dream_success_0.8": steps_to(0.8),
        "dream_success_curve": curve,
        "kept_groups_curve": [h.kept_groups for h in history],
        "dream_success_greedy": dream_after["success_rate"],
        "bc_steps": cfg.bc_steps,
        "bc_nll": bc_nll if bc_nll == bc_nll else None,  # (NaN: no cloning; JSON has no NaN)
        "real_untrained": {k: real_untrained[k] for k in ("mean_return", "success_rate")},
        "real_after_bc": {k: real_before[k] for k in ("mean_return", "success_rate")},
        "real": {k: real[k] for k in ("mean_return", "success_rate", "returns")},
    }


def dream_check(task: dict[str, Any], store: EpisodeStore, wm: WorldModel) -> dict[str, Any]:
    """How good is the dream itself? The heuristic that wrote the logs (without its noise) succeeds
    in every real episode; its verifier success inside the dream bounds what any policy can show there."""
    verifier = get_verifier(task["env_id"])
    horizon = task["grpo"]["horizon"]
    make = dream_env_factory(wm, store.episodes(), verifier, horizon, seed=0)
    heur = make_behaviour(task["env_id"], store.action_space, 0.0, seed=0)
    r = dream_success(make, heur, verifier, 64, horizon, seed=1)
    return {"heuristic_dream_success": r["success_rate"], "horizon": horizon, "envs": 64}


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def task_main(
    name: str,
    seeds: list[int],
    work: Path,
    progress: bool,
    reuse: dict[str, Any] | None = None,
    ablation_task: str = "cartpole",
    only: list[str] | None = None,
    previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``reuse``: for the ablation, the base task's results (its forked no-penalty runs are reused).
    ``only``: run just these variants and keep the other variants' runs from ``previous``."""
    base = ablation_task if name == "ablation" else name
    task = TASKS[base]
    out: dict[str, Any] = {
        "env_id": task["env_id"],
        "seeds": seeds,
        "runs": {},
        "wm_steps": task["wm_steps"],
        "wm_overrides": dict(task["wm"]),
    }
    variants = (
        {"forked": dict(forked=True), "independent_starts": dict(forked=False)}
        if name == "ablation"
        else task["variants"]
    )
    if only:
        variants = {k: v for k, v in variants.items() if k in only}
        for k, runs in (previous or {}).get("runs", {}).items():
            if k not in variants:
                out["runs"][k] = runs
        for key in ("logs", "dream_check", "world_models"):
            if key in (previous or {}):
                out[key] = dict((previous or {})[key])
    for seed in seeds:
        store = logs_for(task, seed, work)
        wm, wm_info = world_model_for(task, store, seed, work)
        out.setdefault("logs", {})[str(seed)] = log_stats(store)
        out.setdefault("dream_check", {})[str(seed)] = dream_check(task, store, wm)
        out.setdefault("world_models", {})[str(seed)] = {
            k: wm_info.get(k) for k in ("steps", "seconds", "final_loss", "obs_stats_from_logs")
        }
        for vname, v in variants.items():
            kw = dict(penalty=0.0, halt_threshold=None) if name == "ablation" else {}
            prior = [r for r in (reuse or {}).get("runs", {}).get("no_penalty", []) if r["seed"] == seed]
            if name == "ablation" and vname == "forked" and prior:
                out["runs"].setdefault(vname, []).append({**prior[0], "reused_from": f"{base}/no_penalty"})
                continue
            r = run_grpo(task, store, wm, seed, progress=progress, **{**kw, **v})
            out["runs"].setdefault(vname, []).append(r)
            print(
                f"[{name}] seed {seed} {vname}: real success {r['real']['success_rate']:.2f} "
                f"return {r['real']['mean_return']:.1f} imagined {r['imagined_steps']} ({r['train_seconds']:.0f}s)",
                flush=True,
            )
    summary = {}
    for vname, runs in out["runs"].items():
        s: dict[str, Any] = {
            "median_real_success_rate": median([r["real"]["success_rate"] for r in runs]),
            "median_real_return": median([r["real"]["mean_return"] for r in runs]),
            "median_imagined_steps": median([r["imagined_steps"] for r in runs]),
            "median_final_dream_success": median([r["dream_success_curve"][-1] for r in runs]),
        }
        for lvl in ("0.5", "0.8"):
            vals = [r[f"imagined_steps_to_dream_success_{lvl}"] for r in runs]
            s[f"imagined_steps_to_dream_success_{lvl}"] = vals
        summary[vname] = s
    out["summary"] = summary
    if name == "mcc":
        out["target"] = {
            "what": "median real goal rate >= 0.90, with and without penalty",
            "met": {k: v["median_real_success_rate"] >= 0.9 for k, v in summary.items()},
        }
    elif name == "cartpole":
        out["target"] = {
            "what": "median real return >= 450",
            "met": {k: v["median_real_return"] >= 450 for k, v in summary.items()},
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--tasks", nargs="+", default=["mcc", "cartpole", "ablation"], choices=["mcc", "cartpole", "ablation"]
    )
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--work", type=Path, default=Path("/tmp/dreamlab-grpo-bench"))
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--progress", action="store_true")
    p.add_argument(
        "--ablation-task",
        choices=["mcc", "cartpole"],
        default="cartpole",
        help="which task's dream the forking ablation runs in (default: cartpole)",
    )
    p.add_argument("--wm-steps", type=int, default=None, help="override the world-model training steps")
    p.add_argument("--log-steps", type=int, default=None, help="override the logged transitions per seed")
    p.add_argument(
        "--no-obs-stats",
        action="store_true",
        help="leave the world model's observation standardisation at identity (raw units)",
    )
    p.add_argument(
        "--wm-set",
        nargs="+",
        default=[],
        metavar="FIELD=VALUE",
        help="override world-model config fields, e.g. symlog_obs=true (cached under another name)",
    )
    p.add_argument(
        "--variants",
        nargs="+",
        default=None,
        help="run only these variants; the task's other variants keep their stored runs",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results.update(run_manifest(note="CPU shared with other engineers' jobs while measured: timings are noisy"))
    previous_commands = {
        k: v.get("commands", [v["command"]] if "command" in v else [])
        for k, v in results.items()
        if isinstance(v, dict) and k in ("mcc", "cartpole", "ablation")
    }
    if args.wm_steps is not None:
        for t in TASKS.values():
            t["wm_steps"] = args.wm_steps
    if args.log_steps is not None:
        for t in TASKS.values():
            t["log_steps"] = args.log_steps
    if args.no_obs_stats:
        for t in TASKS.values():
            t["obs_stats"] = False
            t["wm_tag"] = t.get("wm_tag", "") + "-rawobs"
    for item in args.wm_set:
        key, _, value = item.partition("=")
        parsed: Any = {"true": True, "false": False}.get(value.lower(), value)
        if isinstance(parsed, str):
            parsed = float(value) if "." in value else int(value)
        for t in TASKS.values():
            t["wm"][key] = parsed
            t["wm_tag"] = t.get("wm_tag", "") + f"-{key}{value}"
    for name in args.tasks:
        t0 = time.time()
        results[name] = task_main(
            name,
            args.seeds,
            args.work,
            args.progress,
            reuse=results.get(args.ablation_task),
            ablation_task=args.ablation_task,
            only=args.variants,
            previous=results.get(name),
        )
        if name == "ablation":
            results[name]["base_task"] = args.ablation_task
        results[name]["wall_seconds"] = time.time() - t0
        extra = (
            (f" --ablation-task {args.ablation_task}" if name == "ablation" else "")
            + (f" --wm-steps {args.wm_steps}" if args.wm_steps is not None else "")
            + (f" --variants {' '.join(args.variants)}" if args.variants else "")
            + (f" --wm-set {' '.join(args.wm_set)}" if args.wm_set else "")
            + (" --no-obs-stats" if args.no_obs_stats else "")
            + (f" --log-steps {args.log_steps}" if args.log_steps is not None else "")
            + (f" --work {args.work}" if str(args.work) != "/tmp/dreamlab-grpo-bench" else "")
            + (f" --out {args.out}" if args.out != RESULTS else "")
        )
        command = (
            f"python -m dreamlab.benchmarks.grpo_targets --tasks {name} --seeds {' '.join(map(str, args.seeds))}{extra}"
        )
        earlier = (previous_commands.get(name) or []) if args.variants else []
        results[name]["commands"] = earlier + [command]
        merged = json.loads(args.out.read_text()) if args.out.exists() else {}  # other tasks may run in parallel
        merged.update({"machine": results["machine"], name: results[name]})
        atomic_write_json(args.out, merged, indent=1)
        print(json.dumps({name: results[name].get("summary"), "target": results[name].get("target")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
