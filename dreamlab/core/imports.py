"""Resolve ``module:attr`` import paths (user verifiers, renderers, envs and policies)."""

from __future__ import annotations

import importlib
from typing import Any


def import_attr(spec: str, what: str, error: type[Exception] = ValueError, require_callable: bool = True) -> Any:
    """``"pkg.module:name"`` -> the attribute; errors (of type ``error``) name ``what`` and the spec."""
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
