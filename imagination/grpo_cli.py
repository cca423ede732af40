"""``dreamlab dream --algo grpo``: the command-line glue, the agent directory and its loader.

The agent directory OUT holds ``grpo_agent.json`` (format, env id, verifier, configs),
``actor.pt`` (the :class:`~imagination.grpo.ObsActor` weights, ``weights_only`` loadable) and
``train_state.pt`` (optimiser, history, RNG; running again with the same OUT resumes).
``data.behaviour.load_policy`` resolves such a directory to a greedy
:class:`~imagination.grpo.ObsActorPolicy`, so ``dreamlab evaluate --agent OUT`` runs it in the
real env (it acts on real observations directly; no world-model filter is needed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch

from data.spaces import space_from_json, space_to_json
from imagination.grpo import (GRPOConfig, GRPOTrainer, IterationLog, ObsActor, ObsActorPolicy,
                              behaviour_clone, dream_env_factory)
from imagination.grpo_eval import resolve_uncertainty
from imagination.verifiers import get_verifier

FORMAT = "dreamlab-grpo-agent"
VERSION = 1


class GRPOAgentError(ValueError):
    """A directory that is not a loadable GRPO agent (names the file and what is wrong)."""


@dataclass
class GRPODreamConfig:
    verifier: str = ""         # name, env id or module:function; "" = the logs' env id
    penalty: str = "auto"      # MOPO: reward - penalty x ensemble disagreement; auto | off | number
    halt_threshold: str = "auto"  # MOReL: end a dream when disagreement exceeds it; auto | off | number
    save_every: int = 10       # iterations between checkpoints
    # "auto" (the offline default) measures the disagreement on the logs: see
    # imagination.grpo_eval.resolve_uncertainty


def add_dream_args(parser: argparse.ArgumentParser) -> None:
    """Add the GRPO flags; fields whose flag the dreamer already defines share it (e.g. --horizon)."""
    from dreamlab.config import add_config_args  # CLI glue only

    taken = {s for a in parser._actions for s in a.option_strings}
    for cls, title in ((GRPODreamConfig, "GRPO dreams (--algo grpo)"),
                       (GRPOConfig, "GRPO (--algo grpo; shared flags such as --horizon, --seed, "
                                    "--hidden apply to it too)")):
        skip = tuple(f.name for f in dataclasses.fields(cls) if "--" + f.name.replace("_", "-") in taken)
        add_config_args(parser, cls, title, skip=skip)
        taken = {s for a in parser._actions for s in a.option_strings}


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_agent(out: Path, trainer: GRPOTrainer, env_id: str | None, dream_cfg: GRPODreamConfig,
               verifier: str, uncertainty: dict[str, Any] | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    agent = trainer.agent
    _atomic_save(agent.state_dict(), out / "actor.pt")
    _atomic_save(trainer.state_dict(), out / "train_state.pt")
    meta = {"format": FORMAT, "version": VERSION, "env_id": env_id, "verifier": verifier,
            "obs_space": space_to_json(agent.obs_space), "action_space": space_to_json(agent.action_space),
            "grpo": asdict(trainer.cfg), "dream": asdict(dream_cfg), "uncertainty": uncertainty or {},
            "iterations_done": len(trainer.history), "imagined_steps": trainer.total_steps,
            "last": asdict(trainer.history[-1]) if trainer.history else None}
    tmp = out / f".tmp-{uuid.uuid4().hex[:8]}-grpo_agent.json"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, out / "grpo_agent.json")


def load_agent(directory: str | Path) -> tuple[ObsActor, dict[str, Any]]:
    d = Path(directory)
    meta_path = d / "grpo_agent.json"
    if not meta_path.exists():
        raise GRPOAgentError(f"{meta_path}: not found; {d} is not a GRPO agent directory")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise GRPOAgentError(f"{meta_path}: not valid JSON: {exc}") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise GRPOAgentError(f"{meta_path}: field 'format'/'version' is {meta.get('format')!r}/"
                             f"{meta.get('version')!r}; expected {FORMAT!r}/{VERSION}")
    obs_space, act_space = space_from_json(meta["obs_space"]), space_from_json(meta["action_space"])
    dim = int(torch.tensor(obs_space.shape).prod()) if obs_space.shape else 1
    g = meta["grpo"]
    agent = ObsActor(obs_space, act_space, [0.0] * dim, [1.0] * dim, int(g["hidden"]), int(g["layers"]))
    try:
        agent.load_state_dict(torch.load(d / "actor.pt", map_location="cpu", weights_only=True))
    except Exception as exc:  # noqa: BLE001 - any failure here means a bad file
        raise GRPOAgentError(f"{d / 'actor.pt'}: cannot load the actor weights: {exc}") from None
    return agent.eval(), meta


def grpo_agent_loader(spec: str, env: gym.Env) -> ObsActorPolicy | None:
    """``data.behaviour`` policy loader: a directory with grpo_agent.json loads as a greedy policy."""
    if (Path(spec) / "grpo_agent.json").exists():
        return ObsActorPolicy(load_agent(spec)[0], greedy=True)
    return None


def run_dream(args: argparse.Namespace) -> int:
    from dreamlab.commands.dream import split_configs  # CLI glue only
    from data.store import EpisodeStore
    from imagination.agent import load_world_model

    torch.set_num_threads(max(1, args.threads))
    try:
        cfg, dcfg = split_configs(args, [GRPOConfig, GRPODreamConfig])
        cfg = cfg.validate()
        store = EpisodeStore(args.logs)
        if len(store) == 0:
            raise GRPOAgentError(f"{args.logs}: the store is empty (no episodes to dream from)")
        wm = load_world_model(args.wm).eval()
        wm.check_spaces(store.observation_space, store.action_space, args.logs)
        name = dcfg.verifier or (store.env_id or "")
        verifier = get_verifier(name)
        episodes = store.episodes()
        penalty, halt, calib = resolve_uncertainty(wm, episodes, cfg.horizon, dcfg.penalty, dcfg.halt_threshold)
        unc = {"penalty": penalty, "halt_threshold": halt, **calib}
        print(f"uncertainty: penalty {penalty:.4g}, halt threshold {halt}", file=sys.stderr)
        torch.manual_seed(cfg.seed)
        make = dream_env_factory(wm, episodes, verifier, cfg.horizon, penalty=penalty,
                                 halt_threshold=halt, seed=cfg.seed)
        agent = ObsActor.from_episodes(episodes, store.observation_space, store.action_space, cfg.hidden, cfg.layers)
        out = Path(args.out)
        state = out / "train_state.pt"
        if not state.exists() and cfg.bc_steps > 0:  # the "SFT" start; also the KL reference
            nll = behaviour_clone(agent, episodes, cfg.bc_steps, seed=cfg.seed)
            print(f"behaviour cloning on the logs: {cfg.bc_steps} steps, NLL {nll:.3f}", file=sys.stderr)
        trainer = GRPOTrainer(make, agent, verifier, cfg)
        if state.exists():
            try:
                trainer.load_state_dict(torch.load(state, map_location="cpu", weights_only=True))
            except Exception as exc:  # noqa: BLE001
                raise GRPOAgentError(f"{state}: cannot resume from it ({exc}); delete it to start over") from None
            print(f"resuming from iteration {len(trainer.history)}", file=sys.stderr)

        def checkpoint(tr: GRPOTrainer, log: IterationLog) -> None:
            if len(tr.history) % max(1, dcfg.save_every) == 0:
                save_agent(out, tr, store.env_id, dcfg, name, unc)

        trainer.train(progress=not args.no_progress, callback=checkpoint)
        save_agent(out, trainer, store.env_id, dcfg, name, unc)
    except (ValueError, FileNotFoundError) as exc:
        print(f"dreamlab dream: error: {exc}", file=sys.stderr)
        return 1
    last = trainer.history[-1] if trainer.history else None
    if last is not None:
        print(f"dream success {last.dream_success:.2f} after {len(trainer.history)} iterations, "
              f"{trainer.total_steps} imagined steps")
    print(f"GRPO agent written to {args.out}")
    return 0
