"""Prompting a real instruct model: task descriptions, readable observations, the chat template.

The toy GPT made by ``make-base-llm`` reads compact lines (``x=+0.02 v=-0.15 ...``). A pretrained
instruct model is prompted as its makers trained it: a *system* message that describes the task
and the answer format, a *user* message with the observation written with names and units
(renderer ``text:<Env>``), and the tokenizer's chat template with the assistant turn opened. The
answer is one of the valid action strings followed by the template's end-of-turn token
(``<|im_end|>`` for SmolLM2), scored by the trie-constrained scores of :mod:`policy.llm`. Every
prompt of a task starts with the same system message and template head, which the scoring passes
compute once per batch (:mod:`policy.lm_forward`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from dreamlab.core.errors import DreamlabError

Renderer = Callable[[np.ndarray], str]
OBS = "\x00obs\x00"  # placeholder split out of the rendered chat template


class PromptError(DreamlabError):
    """A chat template or task description that cannot build a prompt."""


def _text(fields: tuple[tuple[str, str, int], ...]) -> Renderer:
    """Observation fields (name, unit, decimals) written as a sentence a model can read."""

    def render(obs: np.ndarray) -> str:
        o = np.asarray(obs, dtype=np.float64).reshape(-1)
        if o.shape[0] != len(fields):
            raise PromptError(f"renderer for {[f[0] for f in fields]} expected {len(fields)} numbers, got {o.shape[0]}")
        parts = [
            f"{name} {round(float(v), d) + 0.0:+.{d}f}{(' ' + unit) if unit else ''}"
            for (name, unit, d), v in zip(fields, o)
        ]
        return ", ".join(parts) + "."

    render.__name__ = "render_text_" + "_".join(f[0].split()[0] for f in fields)
    return render


TEXT_RENDERERS: dict[str, Renderer] = {
    "CartPole": _text(
        (
            ("cart position", "m", 2),
            ("cart velocity", "m/s", 2),
            ("pole angle", "rad", 3),
            ("pole angular velocity", "rad/s", 2),
        )
    ),
    "Acrobot": _text(
        (
            ("cos(joint 1)", "", 2),
            ("sin(joint 1)", "", 2),
            ("cos(joint 2)", "", 2),
            ("sin(joint 2)", "", 2),
            ("joint 1 velocity", "rad/s", 2),
            ("joint 2 velocity", "rad/s", 2),
        )
    ),
    "Pendulum": _text((("cos(angle)", "", 2), ("sin(angle)", "", 2), ("angular velocity", "rad/s", 2))),
    "MountainCar": _text((("car position", "", 3), ("car velocity", "", 4))),
    "MountainCarContinuous": _text((("car position", "", 3), ("car velocity", "", 4))),
}

TASKS: dict[str, str] = {
    "CartPole": (
        "You control a cart on a track that balances an upright pole. Each turn you read the cart's "
        "position and velocity and the pole's angle and angular velocity (a positive angle means the "
        "pole leans right). Push the cart so the pole stays upright and the cart stays near the centre: "
        "push right when the pole falls to the right, left when it falls to the left. "
        "Answer with one word: left or right."
    ),
    "Acrobot": (
        "You control the Acrobot: two links hanging from a pivot, with a motor at the joint between them. "
        "Each turn you read the cosine and sine of both joint angles and their velocities. Swing the free "
        "end up above the pivot as fast as you can by applying torque in step with the swing. "
        "Answer with the torque only: -1, 0 or +1."
    ),
    "Pendulum": (
        "You control a pendulum with a motor at its pivot. Each turn you read the cosine and sine of its "
        "angle (cos(angle) = +1 is upright) and its angular velocity. Swing it up and hold it upright "
        "with as little torque as possible. Answer with the torque only, a number from -2.00 to +2.00."
    ),
    "MountainCar": (
        "You drive a car in a valley that is too weak to climb the right hill directly. Each turn you read "
        "the car's position and velocity. Rock back and forth to build momentum and reach the flag on the "
        "right hill. Answer with one word: left, none or right."
    ),
    "MountainCarContinuous": (
        "You drive a car in a valley that is too weak to climb the right hill directly. Each turn you read "
        "the car's position and velocity. Rock back and forth to build momentum and reach the flag on the "
        "right hill, using little force. Answer with the force only, a number from -1.00 to +1.00."
    ),
}
GENERIC_TASK = (
    "You control an agent in an environment. Each turn you read its observation as numbers. "
    "Choose the action that earns the most reward over the episode. Answer with one of: {actions}."
)


def text_renderer(base: str) -> Renderer:
    if base not in TEXT_RENDERERS:
        raise PromptError(f"no text renderer for {base!r}; text renderers: {sorted(TEXT_RENDERERS)}")
    return TEXT_RENDERERS[base]


def task_description(base: str | None, action_strings: list[str]) -> str:
    if base is not None and base in TASKS:
        return TASKS[base]
    return GENERIC_TASK.format(actions=", ".join(action_strings))


def chat_frame(tokenizer: Any, system: str) -> tuple[str, str]:
    """(head, tail) such that ``head + observation + tail`` is the chat prompt with the assistant turn open."""
    if not getattr(tokenizer, "chat_template", None):
        raise PromptError("the tokenizer has no chat template; use a plain prompt (chat: false)")
    msgs = [{"role": "system", "content": system}, {"role": "user", "content": OBS}]
    text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    if not isinstance(text, str) or text.count(OBS) != 1:
        raise PromptError("the chat template did not place the user message exactly once")
    head, tail = text.split(OBS)
    return head, tail


def end_of_turn(tokenizer: Any) -> str:
    """The token that closes an assistant turn (the eos token of an instruct model)."""
    eos = getattr(tokenizer, "eos_token", None)
    if not eos:
        raise PromptError("the tokenizer has no eos token to end the answer with")
    return str(eos)


def policy_meta_for(tokenizer: Any, model_name: str) -> dict[str, Any]:
    """``dreamlab_policy.json`` of a pretrained base model: per-env tasks checked against its tokenizer."""
    from dreamlab.policy.llm import ActionVocab, completion_ids

    terminator = end_of_turn(tokenizer)
    tasks: dict[str, Any] = {}
    for env_id in ("CartPole-v1", "Acrobot-v1", "Pendulum-v1", "MountainCar-v0", "MountainCarContinuous-v0"):
        base = env_id.split("-v")[0]
        space = gym.make(env_id).action_space
        vocab = ActionVocab.for_space(space, env_id, terminator=terminator)
        completion_ids(tokenizer, vocab)  # raises if not prefix-free with this tokenizer's BPE tokens
        tasks[env_id] = {"renderer": f"text:{base}", "system": TASKS[base], "vocab": vocab.to_json()}
    chat_frame(tokenizer, "check")
    return {"model": model_name, "pretrained": True, "chat": True, "terminator": terminator, "tasks": tasks}
