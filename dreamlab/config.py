"""One config story: nested dataclasses, one YAML shape, dotted command-line overrides.

A command's settings are one dataclass whose fields are scalars, tuples, or further dataclasses
(sections). The same tree is

* the **YAML file** given with ``--config FILE``: a mapping mirroring the dataclass, sections as
  nested mappings (``dreamer: {lr: 3.0e-4}``); keys may use ``-`` or ``_``;
* the **flags**: ``--field-name`` for a top-level field, ``--section.field-name`` for a field of a
  section (``--dreamer.lr 3e-4``, ``--world-model.preset tiny``); a bool field also takes
  ``--no-field-name``, and ``--field-name true|false``;
* the **record** a run writes (``dataclasses.asdict``) and reads back on resume.

:func:`config_from_args` builds the config in that order (defaults, then YAML, then flags) and
:func:`validate` checks it: every value against its field's type, then each section's own
``validate()`` method. Errors are one line naming the file (or flag), the dotted key and what
was expected (:class:`~dreamlab.core.errors.ConfigError`).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from dreamlab.core.errors import ConfigError, DreamlabError

T = TypeVar("T")

__all__ = [
    "ConfigError",
    "add_config_args",
    "config_from_args",
    "from_mapping",
    "load_yaml",
    "validate",
    "add_run_args",
    "add_safety_args",
    "apply_threads",
    "run_with_config",
]


# ----------------------------------------------------------------------------------- types
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return hint, False


def _is_section(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _type_name(hint: Any) -> str:
    inner, optional = _unwrap_optional(hint)
    origin = typing.get_origin(inner)
    if origin in (tuple, list):
        name = f"a list of {_type_name(typing.get_args(inner)[0])}"
    else:
        name = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(inner, str(inner))
    return name + (" or null" if optional else "")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked against ``hint`` (ints accepted for floats, lists for tuples)."""
    inner, optional = _unwrap_optional(hint)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}: expected {_type_name(hint)}, got null")
    origin = typing.get_origin(inner)
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected {_type_name(hint)}, got {value!r}")
        item = typing.get_args(inner)[0]
        return tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if inner is bool:
        if isinstance(value, bool):
            return value
    elif inner is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif inner is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif inner is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):  # e.g. penalty: 0.5 ("auto" | number)
            return str(value)
    else:
        return value
    raise ConfigError(f"{where}: expected {_type_name(hint)}, got {value!r}")


# ----------------------------------------------------------------------------------- trees
def from_mapping(cfg: T, values: dict[str, Any], source: str, prefix: str = "") -> T:
    """``cfg`` with the (nested) ``values`` applied; unknown keys and wrong types name ``source`` and the key."""
    if not isinstance(values, dict):
        raise ConfigError(
            f"{source}: {prefix or 'the file'}: expected a mapping of config keys, got {type(values).__name__}"
        )
    hints = _hints(type(cfg))
    names = {f.name for f in dataclasses.fields(cfg)}  # type: ignore[arg-type]
    changes: dict[str, Any] = {}
    for raw_key, value in values.items():
        key = str(raw_key).replace("-", "_")
        where = f"{source}: key '{prefix}{key}'"
        if key not in names:
            raise ConfigError(f"{source}: unknown key '{prefix}{key}' for {type(cfg).__name__}; known: {sorted(names)}")
        hint = hints[key]
        if _is_section(hint):
            changes[key] = from_mapping(getattr(cfg, key), value, source, f"{prefix}{key}.")
        else:
            changes[key] = _coerce(value, hint, where)
    return dataclasses.replace(cfg, **changes)  # type: ignore[type-var]


def validate(cfg: T, source: str = "config") -> T:
    """Check every field against its type (recursively), then each section's ``validate()``."""

    def walk(node: Any, prefix: str) -> None:
        hints = _hints(type(node))
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            if _is_section(hints[f.name]):
                walk(value, f"{prefix}{f.name}.")
            else:
                _coerce(value, hints[f.name], f"{source}: key '{prefix}{f.name}'")
        check = getattr(node, "validate", None)
        if callable(check):
            try:
                check()
            except DreamlabError:  # our own errors already name the field
                raise
            except ValueError as exc:
                raise ConfigError(f"{source}: {prefix.rstrip('.') or type(node).__name__}: {exc}") from None

    walk(cfg, "")
    return cfg


def load_yaml(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found (expected a YAML file)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return data


# ----------------------------------------------------------------------------------- flags
def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _flag(path: str) -> str:
    return "--" + path.replace("_", "-")


def _dest(path: str) -> str:
    return "cfg:" + path


def _fields(cls: type, prefix: str = "") -> typing.Iterator[tuple[str, Any, Any]]:
    """(dotted path, type hint, default) of every scalar field of ``cls``, sections flattened."""
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if _is_section(hint):
            yield from _fields(hint, f"{prefix}{f.name}.")
            continue
        default = (
            f.default
            if f.default is not dataclasses.MISSING
            else (f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        )  # type: ignore[misc]
        yield f"{prefix}{f.name}", hint, default


def _add_bool(group: Any, path: str, dest: str, default: bool | None, help: str) -> None:
    """``--a.b`` (true), ``--a.b true|false`` and the hidden ``--a.no-b`` (false), all into ``dest``."""
    section, _, leaf = path.rpartition(".")
    group.add_argument(
        _flag(path), dest=dest, nargs="?", const=True, type=_parse_bool, metavar="BOOL", default=default, help=help
    )
    group.add_argument(
        _flag(f"{section}.no_{leaf}" if section else f"no_{leaf}"),
        dest=dest,
        action="store_false",
        default=default,
        help=argparse.SUPPRESS,
    )


def add_config_args(
    parser: argparse.ArgumentParser, cls: type, title: str | None = None, skip: tuple[str, ...] = ()
) -> None:
    """Flags for every field of ``cls`` (dotted for sections), and ``--config FILE.yaml``."""
    taken = {s for a in parser._actions for s in a.option_strings}
    groups: dict[str, argparse._ArgumentGroup] = {}
    for path, hint, default in _fields(cls):
        if path in skip or _flag(path) in taken:
            continue
        section = path.rpartition(".")[0]
        if section not in groups:
            groups[section] = parser.add_argument_group(
                f"{title or cls.__name__}: {section}" if section else (title or cls.__name__)
            )
        group = groups[section]
        inner, _ = _unwrap_optional(hint)
        name = path.rpartition(".")[2].upper()
        kwargs: dict[str, Any] = {"dest": _dest(path), "default": None, "help": f"(default: {default})"}
        if inner is bool:
            _add_bool(group, path, _dest(path), None, kwargs["help"])
            continue
        if inner in (int, float, str):
            kwargs["type"] = inner
        elif typing.get_origin(inner) in (tuple, list):
            kwargs["type"] = typing.get_args(inner)[0]
            kwargs["nargs"] = "+"
        else:
            continue
        group.add_argument(_flag(path), metavar=name, **kwargs)
    if "--config" not in taken:
        parser.add_argument(
            "--config",
            type=Path,
            default=None,
            metavar="FILE.yaml",
            help="YAML file of settings (the same tree as the flags)",
        )


def config_from_args(cls: type[T], args: argparse.Namespace, base: T | None = None) -> T:
    """Defaults (or ``base``), then the ``--config`` YAML, then flags; validated."""
    cfg: Any = base if base is not None else cls()
    path = getattr(args, "config", None)
    if path is not None:
        cfg = from_mapping(cfg, load_yaml(Path(path)), str(path))
    flags: dict[str, Any] = {}
    for key, value in vars(args).items():
        if key.startswith("cfg:") and value is not None:
            node = flags
            *parents, leaf = key[4:].split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = list(value) if isinstance(value, list) else value
    cfg = from_mapping(cfg, flags, "command line")
    return validate(cfg, str(path) if path is not None else "config")


# --------------------------------------------------------------------------- shared flags
def add_safety_args(parser: argparse.ArgumentParser) -> None:
    """``--trust-code`` (import ``module:attr`` code named in an input folder's files; default off)
    and ``--force`` (replace an existing output file); each added once."""
    taken = {s for a in parser._actions for s in a.option_strings}
    if "--trust-code" not in taken:
        parser.add_argument(
            "--trust-code",
            dest="trust_code",
            action="store_true",
            default=False,
            help="allow code (module:attr) named in the files of an input folder to be imported; "
            "names from the command line or --config are always allowed (default: off)",
        )
    if "--force" not in taken:
        parser.add_argument(
            "--force", dest="force", action="store_true", default=False, help="replace existing output files"
        )


def add_run_args(parser: argparse.ArgumentParser, progress: bool = True) -> None:
    """The flags every command shares, spelled the same everywhere: ``--threads`` (0 = torch's
    default), ``--progress/--no-progress``, ``--trust-code`` and ``--force``
    (:func:`add_safety_args`). Commands whose config has these fields get them from
    :func:`add_config_args` instead."""
    add_safety_args(parser)
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        metavar="N",
        help="torch CPU threads (default: 0 = torch's default; 1 on a shared machine)",
    )
    if progress:
        _add_bool(parser, "progress", "progress", True, "show progress (default: true)")


def apply_threads(threads: int) -> None:
    """``threads > 0``: use that many torch CPU threads; 0 keeps torch's default."""
    if threads < 0:
        raise ConfigError(f"threads: expected >= 0 (0 = torch's default), got {threads}")
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


def run_with_config(cls: type[T], args: argparse.Namespace, job: Callable[[T], Any]) -> int:
    """The body of a config-driven command: build ``cls`` from ``args``, apply its ``threads``,
    run ``job(cfg)``. Errors propagate to :func:`dreamlab.cli.main` (one line, exit code 2)."""
    cfg = config_from_args(cls, args)
    apply_threads(int(getattr(cfg, "threads", 0)))
    job(cfg)
    return 0
