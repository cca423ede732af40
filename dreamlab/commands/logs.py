"""``dreamlab logs``: inspect, check, import and export episode stores."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("logs", help="inspect, validate, import and export episode stores")
    sub = p.add_subparsers(dest="logs_command", metavar="ACTION", required=True)

    info = sub.add_parser("info", help="episodes, steps, returns and spaces of a store (reads only the index)")
    info.add_argument("dir", type=Path)
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=run_info)

    check = sub.add_parser(
        "check",
        help="read and validate every indexed episode and compare it with the index; exit 1 on any "
        "disagreement (changes nothing)",
    )
    check.add_argument("dir", type=Path)
    check.set_defaults(func=run_check)

    imp = sub.add_parser("import", help="import JSONL deployment logs or a local Minari dataset into a store")
    imp.add_argument("--format", required=True, choices=["jsonl", "minari"])
    imp.add_argument("src", help="JSONL file, or Minari dataset id (under MINARI_DATASETS_PATH) or directory")
    imp.add_argument("--out", required=True, type=Path, help="episode store (created or appended to)")
    imp.add_argument("--env", default=None, help="env id the logs belong to (gives the spaces for JSONL)")
    imp.add_argument(
        "--label-llm",
        default=None,
        metavar="NAME|DIR",
        help="JSONL: turn written feedback (feedback_text without a thumb) into +1/-1 labels with this LLM "
        "(e.g. smollm2-135m-instruct); without it such lines are imported unlabelled",
    )
    imp.set_defaults(func=run_import)

    exp = sub.add_parser("export", help="export a store as JSONL or as a local Minari dataset")
    exp.add_argument("--format", required=True, choices=["jsonl", "minari"])
    exp.add_argument("dir", type=Path)
    exp.add_argument(
        "--out",
        required=True,
        help="JSONL file (never inside DIR; an existing file is replaced only with --force), or a Minari "
        "dataset id such as dreamlab/cartpole/random-v0 (written under MINARI_DATASETS_PATH)",
    )
    exp.set_defaults(func=run_export)


def info_dict(root: Path) -> dict[str, Any]:
    from dreamlab.data.spaces import space_to_json
    from dreamlab.data.store import EpisodeStore

    store = EpisodeStore(root)
    d: dict[str, Any] = {"dir": str(root), "env_id": store.env_id}
    d.update(store.stats().summary())
    terminated = sum(1 for e in store.meta["index"].values() if e.get("terminated"))
    d["terminated_episodes"] = terminated
    d["truncated_episodes"] = d["episodes"] - terminated
    d["feedback_episodes"] = sum(1 for e in store.meta["index"].values() if e.get("feedback"))
    d["observation_space"] = space_to_json(store.observation_space)
    d["action_space"] = space_to_json(store.action_space)
    return d


def run_info(args: argparse.Namespace) -> int:
    d = info_dict(args.dir)
    if args.json:
        print(json.dumps(d, indent=1))
        return 0
    print(f"{d['dir']}: env {d['env_id']}")
    print(
        f"  episodes {d['episodes']} ({d['terminated_episodes']} terminated, {d['truncated_episodes']} truncated), "
        f"steps {d['steps']}"
    )
    if d["episodes"]:
        pct = "  ".join(f"{k} {v:.2f}" for k, v in d["return_percentiles"].items())
        print(
            f"  return mean {d['return_mean']:.2f} (std {d['return_std']:.2f}) min {d['return_min']:.2f} "
            f"max {d['return_max']:.2f}; {pct}"
        )
        print(f"  mean episode length {d['length_mean']:.1f} steps; episodes with feedback {d['feedback_episodes']}")
    print(f"  observation space {d['observation_space']}")
    print(f"  action space {d['action_space']}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from dreamlab.data.store import EpisodeStore

    store = EpisodeStore(args.dir)
    bad = store.check()
    n = len(store)
    for path, why in bad:
        print(f"BAD {path}: {why}")
    if bad:
        print(
            f"{len(bad)} disagreement(s) between {args.dir}/metadata.json and the episode files "
            f"({n} indexed episodes); nothing was changed",
            file=sys.stderr,
        )
        return 1
    print(f"{args.dir}: all {n} indexed episodes valid and matching the index ({store.num_steps} steps)")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from dreamlab.core.io import check_output_dir
    from dreamlab.data.formats import read_minari
    from dreamlab.data.store import EpisodeStore

    check_output_dir(args.out)
    if args.format == "jsonl":
        from dreamlab.cycle_feedback import import_jsonl

        logs = import_jsonl(Path(args.src), args.env, args.label_llm)
    else:
        logs = read_minari(args.src, args.env)
    env_id = args.env or logs.env_id or "unknown"
    store = EpisodeStore.create(args.out, env_id, logs.observation_space, logs.action_space)
    store.add_many(logs.episodes, [f"{args.src} (episode {i})" for i in range(len(logs.episodes))])
    steps = sum(e.num_steps for e in logs.episodes)
    notes = ", ".join(f"{k} {v}" for k, v in logs.notes.items() if v)
    print(
        f"imported {len(logs.episodes)} episodes ({steps} steps) from {args.src} into {args.out}"
        + (f" [{notes}]" if notes else "")
        + f"; the store now holds {store.num_steps} steps"
    )
    return 0


def run_export(args: argparse.Namespace) -> int:
    from dreamlab.core.io import check_not_inside, check_output_file
    from dreamlab.data.formats import export_minari, write_jsonl
    from dreamlab.data.store import EpisodeStore

    store = EpisodeStore(args.dir)
    if args.format == "jsonl":
        check_output_file(args.out, args.force, inputs=[args.dir])
        lines = write_jsonl(iter(store), args.out, store.env_id, store.observation_space, store.action_space)
        print(f"exported {len(store)} episodes ({lines} step lines) to {args.out}")
    else:
        if Path(args.out).exists():  # a path, not a dataset id: the same rules as a JSONL file
            check_not_inside(args.out, [args.dir])
        where = export_minari(iter(store), args.out, store.env_id, store.observation_space, store.action_space)
        print(f"exported {len(store)} episodes as Minari dataset '{args.out}' at {where}")
    return 0
