"""GRPO in dreams from a saved world model and logs: the glue ``dreamlab dream --algo grpo`` and
``dreamlab cycle --practice grpo`` share (over :mod:`dreamlab.imagination.grpo` and
:mod:`dreamlab.imagination.grpo_agent`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from dreamlab.imagination.grpo import (
    GRPOConfig,
    GRPOTrainer,
    IterationLog,
    ObsActor,
    behaviour_clone,
    dream_env_factory,
)
from dreamlab.imagination.grpo_agent import GRPOAgentError, GRPODreamConfig, save_agent
from dreamlab.imagination.grpo_eval import resolve_uncertainty
from dreamlab.imagination.verifiers import get_verifier
from dreamlab.policy.scale import fabric_for, rank_seed, weights_digest, write_rank_file


def train_grpo(
    wm: Any,
    logs: str | Path,
    out: str | Path,
    cfg: GRPOConfig,
    dcfg: GRPODreamConfig,
    progress: bool = True,
    fabric: Any = None,
) -> GRPOTrainer:
    """GRPO in the dreams of ``wm`` from the episodes in ``logs``; saves (and resumes) the agent in ``out``.

    ``fabric``: a launched Lightning Fabric (default: one made from ``cfg``'s placement fields).
    Rank 0 writes ``out`` (its ``grpo_agent.json`` records the precision and world size); any
    other rank writes only ``out/rank{r}.json`` with its weight digest."""
    from dreamlab.data.store import EpisodeStore

    cfg = cfg.validate()
    fabric = fabric if fabric is not None else fabric_for(cfg)
    rank = int(fabric.global_rank)
    store = EpisodeStore(logs)
    if len(store) == 0:
        raise GRPOAgentError(f"{logs}: the store is empty (no episodes to dream from)")
    wm.check_spaces(store.observation_space, store.action_space, logs)
    name = dcfg.verifier or (store.env_id or "")
    if not dcfg.verifier and ":" in name:  # a user's own env (module:Class) has no built-in verifier
        raise GRPOAgentError(
            f"{Path(logs) / 'metadata.json'}: env {name!r} has no built-in verifier; pass --grpo.dream.verifier "
            "module:function (a batched check of observations returning 0..1, see dreamlab.imagination.verifiers)"
        )
    verifier = get_verifier(name)
    episodes = store.episodes()
    penalty, halt, calib = resolve_uncertainty(wm, episodes, cfg.horizon, dcfg.penalty, dcfg.halt_threshold)
    unc = {"penalty": penalty, "halt_threshold": halt, **calib}
    say = (lambda msg: print(msg, file=sys.stderr)) if rank == 0 else (lambda msg: None)
    say(f"uncertainty: penalty {penalty:.4g}, halt threshold {halt}")
    wm = fabric.to_device(wm)  # after the calibration above, which runs on the CPU
    torch.manual_seed(cfg.seed)  # the same initial policy on every rank
    seed = rank_seed(cfg.seed, rank)
    make = dream_env_factory(wm, episodes, verifier, cfg.horizon, penalty=penalty, halt_threshold=halt, seed=seed)
    agent = ObsActor.from_episodes(episodes, store.observation_space, store.action_space, cfg.hidden, cfg.layers)
    out = Path(out)
    state = out / "train_state.pt"
    resume = state.exists()
    if not resume and cfg.bc_steps > 0:  # the "SFT" start; also the KL reference
        nll = behaviour_clone(agent, episodes, cfg.bc_steps, seed=cfg.seed)
        say(f"behaviour cloning on the logs: {cfg.bc_steps} steps, NLL {nll:.3f}")
    trainer = GRPOTrainer(make, agent, verifier, cfg, fabric=fabric)
    if resume:
        try:
            trainer.load_state_dict(torch.load(state, map_location="cpu", weights_only=True))
        except Exception as exc:  # noqa: BLE001
            raise GRPOAgentError(f"{state}: cannot resume from it ({exc}); delete it to start over") from None
        say(f"resuming from iteration {len(trainer.history)}")
    fabric.barrier()  # every rank has read the checkpoint before rank 0 may write the next one

    def run_info() -> dict[str, Any]:
        return {
            "precision": trainer.precision,
            "world_size": int(fabric.world_size),
            "device": str(fabric.device),
            "weights_digest": weights_digest(trainer.agent),
        }

    def checkpoint(tr: GRPOTrainer, log: IterationLog) -> None:
        if rank == 0 and len(tr.history) % max(1, dcfg.save_every) == 0:
            save_agent(out, tr, store.env_id, dcfg, name, unc, run_info())

    trainer.train(progress=progress and rank == 0, callback=checkpoint)
    if rank == 0:
        save_agent(out, trainer, store.env_id, dcfg, name, unc, run_info())
    write_rank_file(out, fabric, run_info())
    return trainer


def report_grpo(trainer: GRPOTrainer, out: str | Path) -> None:
    """The one-paragraph summary ``dreamlab dream --algo grpo`` prints."""
    last = trainer.history[-1] if trainer.history else None
    if last is not None:
        print(
            f"dream success {last.dream_success:.2f} after {len(trainer.history)} iterations, "
            f"{trainer.total_steps} imagined steps"
        )
    print(f"GRPO agent written to {out}")
