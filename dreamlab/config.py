"""Dataclass configs on the command line and in YAML.

``add_config_args(parser, Cls)`` adds ``--field-name`` for every field of a dataclass config
(defaults shown in ``--help``) and ``--config FILE.yaml``; ``config_from_args(Cls, args, base)``
builds the config: dataclass defaults (or ``base``), then the YAML file, then flags given on the
command line. Unknown YAML keys are an error naming the file and the key.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def add_config_args(parser: argparse.ArgumentParser, cls: type, group_title: str | None = None,
                    skip: tuple[str, ...] = ()) -> None:
    group = parser.add_argument_group(group_title or cls.__name__)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        hint = hints[f.name]
        origin = typing.get_origin(hint)
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)  # type: ignore[misc]
        kwargs: dict[str, Any] = {"dest": f"cfg_{f.name}", "default": None,
                                  "help": f"(default: {default})"}
        if hint is bool:
            kwargs["type"] = _parse_bool
            kwargs["metavar"] = "BOOL"
        elif hint in (int, float, str):
            kwargs["type"] = hint
        elif origin in (tuple, list):
            inner = typing.get_args(hint)[0]
            kwargs["type"] = inner
            kwargs["nargs"] = "+"
        elif origin in (typing.Union, types.UnionType):
            inner = [a for a in typing.get_args(hint) if a is not type(None)][0]
            kwargs["type"] = inner
        else:
            continue
        group.add_argument(_flag(f.name), **kwargs)
    if not any(a.dest == "config" for a in parser._actions):
        parser.add_argument("--config", type=Path, default=None, help="YAML file of config values")


def config_from_args(cls: type[T], args: argparse.Namespace, base: T | None = None,
                     section: str | None = None) -> T:
    cfg = base if base is not None else cls()
    path = getattr(args, "config", None)
    if path is not None:
        values = load_yaml(Path(path), section)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"{path}: unknown key(s) {unknown} for {cls.__name__}; known: {sorted(names)}")
        cfg = dataclasses.replace(cfg, **values)  # type: ignore[type-var]
    overrides = {}
    for f in dataclasses.fields(cls):
        v = getattr(args, f"cfg_{f.name}", None)
        if v is not None:
            overrides[f.name] = tuple(v) if isinstance(v, list) else v
    return dataclasses.replace(cfg, **overrides)  # type: ignore[type-var]


def load_yaml(path: Path, section: str | None = None) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    if section is not None and section in data and isinstance(data[section], dict):
        data = data[section]
    return {k.replace("-", "_"): tuple(v) if isinstance(v, list) else v for k, v in data.items()}


def run_with_config(cls: type[T], args: argparse.Namespace, job: typing.Callable[[T], Any]) -> int:
    """The body of a config-driven command: build ``cls`` from ``args`` (YAML, then flags), apply
    its ``threads`` field (when > 0) to torch, run ``job(cfg)``. Errors propagate to
    :func:`dreamlab.cli.main`, which prints library errors (naming file and field) and exits 1."""
    cfg = config_from_args(cls, args)
    if getattr(cfg, "threads", 0) > 0:
        import torch

        torch.set_num_threads(cfg.threads)
    job(cfg)
    return 0
