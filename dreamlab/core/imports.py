"""Resolve ``module:attr`` import paths (user verifiers, renderers, envs and policies), and the
trust rule for code named in files.

Names of code come from the command line or a config file only. A folder someone hands you (an
agent directory, an episode store, a model folder) may *name* built-ins (``CartPole-v1``,
``cartpole``), but a ``module:attr`` path read from one of its files is imported only with an
explicit ``--trust-code`` (the ``trust_remote_code`` convention): :func:`check_code_name`.
"""

from __future__ import annotations

import importlib
from collections.abc import Collection
from typing import Any

from dreamlab.core.errors import DreamlabError


class UntrustedCodeError(DreamlabError):
    """A file names code to import (``module:attr``) and ``--trust-code`` was not given."""


def is_code_path(name: object) -> bool:
    """True for a name whose use would import a module: ``module:attr`` (also gymnasium's ``module:EnvId``)."""
    return isinstance(name, str) and ":" in name


def check_code_name(name: str, source: str, trust_code: bool, builtins: Collection[str] = ()) -> str:
    """``name`` (read from ``source``, e.g. ``"AGENT/agent.json: field 'env_id'"``) when it may be used.

    Built-in names (anything in ``builtins``, and any name that imports nothing) always pass; a
    ``module:attr`` path passes only with ``trust_code``. Otherwise :class:`UntrustedCodeError`
    names the file and field and says that ``--trust-code`` allows it. Nothing is imported here.
    """
    if name in builtins or not is_code_path(name) or trust_code:
        return name
    raise UntrustedCodeError(
        f"{source}: names code to import ({name!r}); code named in a file is never run without --trust-code "
        "(pass --trust-code to allow it, or name a built-in)"
    )


def import_attr(
    spec: str,
    what: str,
    error: type[Exception] = ValueError,
    require_callable: bool = True,
    source: str | None = None,
    trust_code: bool = False,
) -> Any:
    """``"pkg.module:name"`` -> the attribute; errors (of type ``error``) name ``what`` and the spec.

    ``source`` is where the spec was read when it came from a file (``"DIR/x.json: field 'f'"``):
    then it is imported only with ``trust_code`` (:func:`check_code_name`). ``source=None`` means
    the command line or a config, which are trusted.
    """
    if source is not None:
        check_code_name(spec, source, trust_code)
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise error(f"{what} {spec!r}: expected 'module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise error(f"{what} {spec!r}: cannot import module {module_name!r}: {exc}") from exc
    obj = getattr(module, attr, None)
    if obj is None or (require_callable and not callable(obj)):
        raise error(f"{what} {spec!r}: module {module_name!r} has no callable {attr!r}")
    return obj
