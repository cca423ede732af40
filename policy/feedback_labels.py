"""Written feedback into reward labels: the LLM reads each text and answers a scored question.

Deployment logs may carry a user's written evaluation of a transition beside (or instead of) a
thumb (``feedback_text`` in the JSONL format, :mod:`data.formats`). :class:`FeedbackLabeller`
turns each text into a thumb, +1 (positive) or -1 (negative), so the world model learns it like
any other feedback (``reward_source: feedback``).

**The question.** Each text goes into the tokenizer's chat template as a user turn ("A user wrote
this feedback about an AI agent: "...". Is the feedback positive or negative?") with the assistant
turn opened and begun with "The feedback is"; the score is the log-probability of the next token
" positive" minus that of " negative", from one batched forward pass (the shared head once,
:func:`policy.forgetting.prompt_pass`). The question is asked in both orders ("positive or
negative", "negative or positive") and the two scores averaged, which cancels the pull of the
option named last.

**Calibration.** A small model leans to one answer whatever the text (SmolLM2-135M-Instruct calls
almost everything positive), so the score is compared with a threshold set per model from ten
fixed anchor sentences, plainly positive or plainly negative and about no task in particular
(:data:`ANCHORS`): the midpoint of the two groups' mean scores. A plain yes/no question ("Was this
feedback positive? Answer yes or no", " yes" against " no") was measured first: with SmolLM2 its
score barely depends on the text (50% agreement on a balanced set), hence the two named answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dreamlab.core.errors import DreamlabError
from dreamlab.core.precision import autocast, resolve_precision
from dreamlab.policy.forgetting import load_lm, prompt_pass

QUESTIONS = (
    'A user wrote this feedback about an AI agent: "{text}"\nIs the feedback positive or negative?',
    'A user wrote this feedback about an AI agent: "{text}"\nIs the feedback negative or positive?',
)
ANSWER_PREFIX = "The feedback is"
ANSWERS = (" positive", " negative")
ANCHORS: tuple[tuple[str, ...], tuple[str, ...]] = (
    (
        "Thank you, this is great.",
        "Well done.",
        "Excellent work!",
        "Perfect, exactly right.",
        "I am very happy with this.",
    ),
    ("This is bad.", "Terrible work.", "Wrong, this failed.", "Awful, I am unhappy.", "That was a mistake."),
)
MAX_CHARS = 1000  # a longer text is cut to its first MAX_CHARS characters before it is asked about


class FeedbackLabelError(DreamlabError):
    """An LLM or a text that the written-feedback labeller cannot use."""


class FeedbackLabeller:
    """``labeller(texts) -> (n,) float32`` thumbs (+1 / -1) for written feedback (module docstring).

    ``scores(texts)`` gives the calibrated scores (> 0: positive); ``threshold`` (per question order)
    is measured from :data:`ANCHORS` on first use unless given."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        precision: str = "32",
        batch: int = 32,
        threshold: tuple[float, float] | None = None,
    ):
        if not getattr(tokenizer, "chat_template", None):
            raise FeedbackLabelError(
                "the labeller's LLM has no chat template; use an instruct model such as smollm2-135m-instruct"
            )
        self.model, self.tokenizer, self.batch = model, tokenizer, int(batch)
        self.precision = resolve_precision(precision, next(model.parameters()).device)
        ids = [tokenizer(a, add_special_tokens=False)["input_ids"] for a in ANSWERS]
        if any(len(i) != 1 for i in ids) or ids[0] == ids[1]:
            raise FeedbackLabelError(f"the answers {ANSWERS} are not two distinct single tokens for this tokenizer")
        self.answer_ids = (int(ids[0][0]), int(ids[1][0]))
        self.threshold = threshold

    @classmethod
    def from_folder(cls, path: str | Path, **kw: Any) -> FeedbackLabeller:
        model, tokenizer = load_lm(path)
        return cls(model, tokenizer, **kw)

    def raw_scores(self, texts: Sequence[str]) -> np.ndarray:
        """(n, 2) log p(" positive") - log p(" negative") for each text, in both question orders."""
        tok, pad = self.tokenizer, int(self.tokenizer.pad_token_id or 0)
        out = np.zeros((len(texts), len(QUESTIONS)), np.float64)
        pos, neg = self.answer_ids
        for q, question in enumerate(QUESTIONS):
            prompts = []
            for t in texts:
                msgs = [{"role": "user", "content": question.format(text=" ".join(str(t).split())[:MAX_CHARS])}]
                prompts.append(str(tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)))
            ids = [list(p) for p in tok([p + ANSWER_PREFIX for p in prompts], add_special_tokens=False)["input_ids"]]
            device = next(self.model.parameters()).device
            for b in range(0, len(ids), self.batch):
                with torch.no_grad(), autocast(self.precision, device):
                    logits = prompt_pass(self.model, ids[b : b + self.batch], pad).logits
                lp = torch.log_softmax(logits.float(), -1)  # (n, V)
                out[b : b + self.batch, q] = (lp[:, pos] - lp[:, neg]).double().cpu().numpy()
        return out

    def calibrate(self) -> tuple[float, float]:
        """The per-order threshold: the midpoint of the positive and the negative anchors' mean scores."""
        good, bad = self.raw_scores(ANCHORS[0]), self.raw_scores(ANCHORS[1])
        mid = (good.mean(0) + bad.mean(0)) / 2
        self.threshold = (float(mid[0]), float(mid[1]))
        return self.threshold

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """(n,) calibrated scores: > 0 reads as positive feedback, < 0 as negative."""
        for i, t in enumerate(texts):
            if not isinstance(t, str) or not t.strip():
                raise FeedbackLabelError(f"written feedback {i}: expected a non-empty string, got {t!r:.60}")
        if not texts:
            return np.zeros(0, np.float64)
        thr = self.threshold if self.threshold is not None else self.calibrate()
        return (self.raw_scores(texts) - np.asarray(thr)[None]).mean(1)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """(n,) float32 thumbs: +1 for positive written feedback, -1 for negative."""
        return np.where(self.scores(texts) > 0, 1.0, -1.0).astype(np.float32)
