"""Renderers: write one observation as a short line of text for a language-model policy.

A renderer is any callable ``obs (*obs_shape) np.ndarray -> str``. Built-ins exist for the
classic-control suite; they are compact (named fields, fixed precision, explicit signs) so that
a character-level model sees numbers of a constant width::

    CartPole-v1        "x=+0.02 v=-0.15 a=+0.03 w=+0.21"
    Acrobot-v1         "c1=+1.00 s1=+0.00 c2=+1.00 s2=+0.00 w1=+0.01 w2=-0.03"
    Pendulum-v1        "cos=+0.98 sin=-0.17 w=+0.40"
    MountainCar-v0     "pos=-0.523 vel=+0.0012"
    MountainCarContinuous-v0  (the same as MountainCar)

``text:<Env>`` (e.g. ``text:CartPole``) names the readable renderers for pretrained instruct models
(names and units, :mod:`policy.prompting`). Any other renderer is named by import path,
``"package.module:function"``; a path is code, so one read from a model folder runs only when the
caller trusts it (``trusted=True``, the ``--trust-code`` flag). :func:`get_renderer` accepts an env
id (version suffix optional), a built-in name, ``generic``, ``text:<Env>`` or such a path;
:func:`generic_renderer` writes ``o0=.. o1=..`` for any flat Box observation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dreamlab.core.errors import DreamlabError
from dreamlab.core.imports import check_code_name, import_attr

Renderer = Callable[[np.ndarray], str]


class RendererError(DreamlabError):
    """A renderer name that cannot be resolved, or an observation it cannot write."""


def _fields(names: tuple[str, ...], decimals: tuple[int, ...]) -> Renderer:
    def render(obs: np.ndarray) -> str:
        o = np.asarray(obs, dtype=np.float64).reshape(-1)
        if o.shape[0] != len(names):
            raise RendererError(
                f"renderer for fields {names} expected an observation of {len(names)} "
                f"numbers, got shape {np.asarray(obs).shape}"
            )
        # `+0.0` avoids printing "-0.00" for tiny negatives; the sign is always written
        return " ".join(f"{n}={round(float(v), d) + 0.0:+.{d}f}" for n, v, d in zip(names, o, decimals))

    render.__name__ = "render_" + "_".join(names)
    return render


render_cartpole = _fields(("x", "v", "a", "w"), (2, 2, 2, 2))
render_acrobot = _fields(("c1", "s1", "c2", "s2", "w1", "w2"), (2, 2, 2, 2, 2, 2))
render_pendulum = _fields(("cos", "sin", "w"), (2, 2, 2))
render_mountaincar = _fields(("pos", "vel"), (3, 4))

BUILTIN: dict[str, Renderer] = {
    "CartPole": render_cartpole,
    "Acrobot": render_acrobot,
    "Pendulum": render_pendulum,
    "MountainCar": render_mountaincar,
    "MountainCarContinuous": render_mountaincar,
}


def generic_renderer(decimals: int = 2) -> Renderer:
    """``o0=+0.12 o1=-3.40 ...`` for any observation (flattened)."""

    def render(obs: np.ndarray) -> str:
        o = np.asarray(obs, dtype=np.float64).reshape(-1)
        return " ".join(f"o{i}={round(float(v), decimals) + 0.0:+.{decimals}f}" for i, v in enumerate(o))

    return render


def builtin_name(env_id: str) -> str | None:
    """The built-in renderer name for an env id such as ``CartPole-v1`` (None if there is none)."""
    base = env_id.split("/")[-1].split("-v")[0]
    return base if base in BUILTIN else None


def get_renderer(name: str, trusted: bool = True, source: str = "") -> Renderer:
    """Resolve ``name``: ``"generic"``, an env id / built-in name, ``text:<Env>`` or ``"module:function"``.

    ``trusted=False`` (a name read from a data file ``source``) refuses import paths."""
    if name == "generic":
        return generic_renderer()
    if name.startswith("text:"):
        from dreamlab.policy.prompting import PromptError, text_renderer

        try:
            return text_renderer(builtin_name(name[5:]) or name[5:])
        except PromptError as exc:
            raise RendererError(f"renderer {name!r}: {exc}") from exc
    if ":" in name:
        check_code_name(name, f"{source or 'a data file'}: field 'renderer'", trusted)
        fn = import_attr(name, "renderer", RendererError)
        return fn
    builtin = builtin_name(name)
    if builtin is None:
        raise RendererError(
            f"no built-in renderer for {name!r}; built-ins: {sorted(BUILTIN)}; "
            "pass 'generic' or a 'module:function' path"
        )
    return BUILTIN[builtin]


def render_batch(renderer: Renderer, obs: np.ndarray) -> list[str]:
    """(n, *obs_shape) observations -> n lines; each must be one line of text."""
    out = []
    for row in np.asarray(obs):
        text = renderer(row)
        if not isinstance(text, str) or "\n" in text:
            raise RendererError(
                f"renderer {getattr(renderer, '__name__', renderer)!r} must return one line "
                f"of text (a str without newlines), got {text!r}"
            )
        out.append(text)
    return out
