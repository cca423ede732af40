"""``dreamlab dream``: train a policy only inside the dreams of a world model (offline).

``--algo dreamer`` (the default) is the Dreamer actor-critic of :mod:`dreamlab.imagination.dreamer`:
the loop's settings are top-level flags (``--steps``, ``--batch-size``), the actor-critic's are
the ``dreamer`` section (``--dreamer.lr``). ``--algo grpo`` is GRPO with a verifier
(:mod:`dreamlab.imagination.grpo`), settings in the ``grpo`` section (``--grpo.iterations``,
``--grpo.dream.penalty``). A ``--config FILE.yaml`` holds the same tree.

Where it runs is top level for either algorithm, in Lightning's words, as in every dreamlab
command: ``--precision auto|32|bf16-mixed``, ``--accelerator auto|cpu|cuda``, ``--strategy
auto|ddp`` and ``--devices N`` (``--strategy ddp --devices 2`` starts two processes that dream
from their own start states and average their gradients; rank 0 writes OUT).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from dreamlab.config import ConfigError, add_config_args, add_run_args, apply_threads, config_from_args
from dreamlab.core.imports import check_code_name
from dreamlab.core.io import check_output_dir
from dreamlab.imagination.dreamer import DreamerConfig
from dreamlab.imagination.grpo import GRPOConfig
from dreamlab.imagination.grpo_agent import GRPODreamConfig
from dreamlab.imagination.loops import OfflineConfig


@dataclass
class GRPOJob(GRPOConfig):
    """GRPO's settings plus its dreams' (verifier, uncertainty penalty and halting)."""

    dream: GRPODreamConfig = field(default_factory=GRPODreamConfig)


@dataclass
class DreamJob(OfflineConfig):
    """``dreamlab dream``: the offline loop (top level), the actor-critic and GRPO (sections)."""

    dreamer: DreamerConfig = field(default_factory=DreamerConfig)
    grpo: GRPOJob = field(default_factory=GRPOJob)


PLACEMENT = ("precision", "accelerator", "strategy", "devices")


def base_part(cfg: Any, cls: type) -> Any:
    """The ``cls`` fields of a job config that extends ``cls`` (drops the sections it adds)."""
    return cls(**{f.name: getattr(cfg, f.name) for f in fields(cls)})


def placed(section: Any, job: Any, name: str) -> Any:
    """``section`` with the job's top-level placement (precision, accelerator, strategy, devices);
    a section value set apart from its default must agree with the top level."""
    defaults = type(section)()
    for key in PLACEMENT:
        mine, top = getattr(section, key), getattr(job, key)
        if mine != getattr(defaults, key) and mine != top:
            raise ConfigError(f"config: key '{name}.{key}' is {mine!r}; set it at the top level ('{key}') instead")
    return dataclasses.replace(section, **{key: getattr(job, key) for key in PLACEMENT})


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "dream",
        help="train a policy inside the dreams of a world model (offline)",
        description="Train an agent only in imagination: start states come from the real logs, "
        "the world model (frozen) is the simulator. Writes the agent directory OUT "
        "(agent.json, actor.pt, worldmodel.ckpt; a GRPO agent: grpo_agent.json, actor.pt) "
        "and OUT/train_state.pt; running again with the same OUT resumes.",
    )
    p.add_argument("--wm", type=Path, required=True, help="world-model checkpoint (from train-wm)")
    p.add_argument("--logs", type=Path, required=True, help="EpisodeStore with the real logs")
    p.add_argument("--out", type=Path, required=True, help="agent directory to write")
    p.add_argument(
        "--algo",
        choices=["dreamer", "grpo"],
        default="dreamer",
        help="learning algorithm in the dream (default: dreamer)",
    )
    add_run_args(p)
    add_config_args(p, DreamJob, "dream", skip=tuple(f"grpo.{k}" for k in PLACEMENT))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dreamlab.imagination.agent import load_world_model

    apply_threads(args.threads)
    job = config_from_args(DreamJob, args)
    gcfg = placed(base_part(job.grpo, GRPOConfig), job, "grpo")
    check_output_dir(args.out, inputs=[args.logs])
    if args.algo == "grpo" and not job.grpo.dream.verifier:  # the verifier is named by the store's env id
        from dreamlab.data.store import EpisodeStore

        env_id = EpisodeStore(args.logs).env_id or ""
        check_code_name(env_id, f"{Path(args.logs) / 'metadata.json'}: field 'env_id'", args.trust_code)
    if args.algo == "grpo" and ":" in job.grpo.dream.verifier:  # the user's module: PYTHONPATH or the current dir
        from dreamlab.data.collect import import_user_module

        import_user_module(
            job.grpo.dream.verifier.partition(":")[0], f"--grpo.dream.verifier '{job.grpo.dream.verifier}'"
        )
    from dreamlab.policy.scale import fabric_for

    fabric = fabric_for(job)  # strategy ddp: starts the other ranks here (each runs this command)
    wm = load_world_model(args.wm)
    if args.algo == "grpo":
        from dreamlab.grpo_cli import report_grpo, train_grpo

        trainer = train_grpo(wm.eval(), args.logs, args.out, gcfg, job.grpo.dream, args.progress, fabric)
        if fabric.global_rank == 0:
            report_grpo(trainer, args.out)
        return 0
    from dreamlab.imagination.loops import dream_offline

    ocfg = base_part(job, OfflineConfig)
    dream_offline(wm, args.logs, args.out, ocfg, job.dreamer, wm_path=args.wm, progress=args.progress, fabric=fabric)
    if fabric.global_rank == 0:
        print(f"agent written to {args.out}")
    return 0
