"""Feedback for deployment logs: thumbs up/down from a rule or a user function (``--deploy.feedback``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from dreamlab.cycle_config import CycleError


def feedback_fn(spec: str, env_id: str) -> Callable[[Any], np.ndarray] | None:
    """``env`` -> None; ``rule`` -> the verifier's thumbs; ``module:function`` -> that function."""
    if spec == "env":
        return None
    if spec == "rule":
        from dreamlab.imagination.verifiers import get_verifier

        verifier = get_verifier(env_id)

        def rule(ep: Any) -> np.ndarray:
            ok = np.asarray(verifier(np.asarray(ep.obs[1:], np.float32)), np.float32) > 0.5  # (num_steps,)
            return np.where(ok, 1.0, -1.0).astype(np.float32)

        return rule
    if ":" in spec:
        from dreamlab.core.imports import import_attr

        return import_attr(spec, "--feedback")
    raise CycleError(f"feedback: expected 'env', 'rule' or module:function, got {spec!r}")


def with_feedback(episodes: list[Any], fn: Callable[[Any], np.ndarray] | None, source: str) -> list[Any]:
    if fn is None:
        return episodes
    for ep in episodes:
        fb = np.asarray(fn(ep), np.float32)
        if fb.shape != (ep.num_steps,) or not np.isfinite(fb).all():
            raise CycleError(
                f"{source}: the feedback function returned shape {fb.shape} (finite: "
                f"{bool(np.isfinite(fb).all())}); expected ({ep.num_steps},) finite values"
            )
        ep.feedback = np.concatenate([[0.0], fb]).astype(np.float32)
    return episodes
