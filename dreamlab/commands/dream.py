"""``dreamlab dream``: train a policy only inside the dreams of a world model (offline).

``--algo dreamer`` (the default) is the Dreamer actor-critic of :mod:`imagination.dreamer`.
Other algorithms plug in without editing this file: a module ``dreamlab.<algo>_cli`` that
defines ``add_dream_args(parser)`` (extra flags) and ``run_dream(args) -> int`` is offered as
``--algo <algo>`` (see ``PLUGIN_ALGOS``; ``imagination.grpo`` is the first).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
from pathlib import Path
from typing import Any

from dreamlab.config import add_config_args, config_from_args, load_yaml

PLUGIN_ALGOS = ("grpo",)


def _plugins() -> dict[str, Any]:
    found = {}
    for name in PLUGIN_ALGOS:
        try:
            mod = importlib.import_module(f"dreamlab.{name}_cli")
        except ImportError:
            continue
        if callable(getattr(mod, "add_dream_args", None)) and callable(getattr(mod, "run_dream", None)):
            found[name] = mod
    return found


def register(subparsers: argparse._SubParsersAction) -> None:
    from imagination.dreamer import DreamerConfig
    from imagination.loops import OfflineConfig

    plugins = _plugins()
    p = subparsers.add_parser(
        "dream", help="train a policy inside the dreams of a world model (offline)",
        description="Train an agent only in imagination: start states come from the real logs, "
                    "the world model (frozen) is the simulator. Writes the agent directory OUT "
                    "(agent.json, actor.pt, worldmodel.ckpt) and OUT/train_state.pt; running again "
                    "with the same OUT resumes. YAML --config: flat keys, or sections 'dreamer' "
                    "and 'loop'.")
    p.add_argument("--wm", type=Path, required=True, help="world-model checkpoint (from train-wm)")
    p.add_argument("--logs", type=Path, required=True, help="EpisodeStore with the real logs")
    p.add_argument("--out", type=Path, required=True, help="agent directory to write")
    p.add_argument("--algo", choices=["dreamer", *sorted(plugins)], default="dreamer",
                   help="learning algorithm in the dream (default: dreamer)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_args(p, OfflineConfig, "loop (dreamer)")
    add_config_args(p, DreamerConfig, "actor-critic (dreamer)")
    for mod in plugins.values():
        mod.add_dream_args(p)
    p.set_defaults(func=run, _plugins=plugins)


def split_configs(args: argparse.Namespace, classes: list[type]) -> list[Any]:
    """Build each dataclass config from defaults, then ``--config`` YAML (flat, or one section per
    class: ``dreamer``/``loop``), then command-line flags. Unknown YAML keys are an error."""
    path = getattr(args, "config", None)
    values: dict[str, Any] = load_yaml(Path(path)) if path is not None else {}
    flat: dict[str, Any] = {}
    for k, v in values.items():
        if isinstance(v, dict):
            flat.update({kk.replace("-", "_"): tuple(vv) if isinstance(vv, list) else vv for kk, vv in v.items()})
        else:
            flat[k] = v
    known = {f.name for cls in classes for f in dataclasses.fields(cls)}
    unknown = sorted(set(flat) - known)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; known: {sorted(known)}")
    no_yaml = argparse.Namespace(**{**vars(args), "config": None})
    out = []
    for cls in classes:
        names = {f.name for f in dataclasses.fields(cls)}
        base = cls(**{k: v for k, v in flat.items() if k in names})
        out.append(config_from_args(cls, no_yaml, base=base))
    return out


def run(args: argparse.Namespace) -> int:
    if args.algo != "dreamer":
        return int(args._plugins[args.algo].run_dream(args))
    import torch

    from imagination.agent import load_world_model
    from imagination.dreamer import DreamerConfig
    from imagination.loops import OfflineConfig, dream_offline

    torch.set_num_threads(max(1, args.threads))
    try:
        loop_cfg, dcfg = split_configs(args, [OfflineConfig, DreamerConfig])
        wm = load_world_model(args.wm)
        dream_offline(wm, args.logs, args.out, loop_cfg, dcfg, wm_path=args.wm, progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as exc:
        print(f"dreamlab dream: error: {exc}", file=sys.stderr)
        return 1
    print(f"agent written to {args.out}")
    return 0

