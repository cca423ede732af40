"""Feedback for deployment logs: thumbs up/down from a rule or a user function (``--deploy.feedback``),
and written feedback read by an LLM (``feedback_text`` in JSONL logs: :func:`import_jsonl`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dreamlab.cycle_config import CycleError

if TYPE_CHECKING:
    from dreamlab.data.format_types import Logs


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


class TextLabeller:
    """``texts -> thumbs`` through :class:`~dreamlab.policy.feedback_labels.FeedbackLabeller` on the LLM
    ``llm`` (a folder or a known name), loaded on the first call: logs without written feedback never
    load a model."""

    def __init__(self, llm: str | Path = "smollm2-135m-instruct", precision: str = "32"):
        self.llm, self.precision = llm, precision
        self.labeller: Any = None

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        if self.labeller is None:
            from dreamlab.policy.feedback_labels import FeedbackLabeller
            from dreamlab.policy.pretrained import resolve_llm

            self.labeller = FeedbackLabeller.from_folder(resolve_llm(self.llm), precision=self.precision)
        return self.labeller(texts)


def import_jsonl(
    path: str | Path, env_id: str | None = None, label_llm: str | Path | None = "smollm2-135m-instruct"
) -> Logs:
    """:func:`~dreamlab.data.formats.read_jsonl` with written feedback (``feedback_text`` on a line
    without ``feedback``) labelled +1 / -1 by ``label_llm`` (None: left unlabelled, feedback 0);
    the world model then learns it like thumbs (``reward_source: feedback``)."""
    from dreamlab.data.formats import read_jsonl

    return read_jsonl(Path(path), env_id, label_text=TextLabeller(label_llm) if label_llm is not None else None)
