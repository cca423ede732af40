"""The fast scoring passes (shared prefix, per-prompt KV cache, logits only where needed) give the
reference pass's logits and gradients, on the toy GPT (fast) and whatever the prompts look like."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dreamlab.policy.base_llm import build_model, char_tokenizer
from dreamlab.policy.llm import tokenize
from dreamlab.policy.lm_forward import completion_logits, plain_completion_logits
from tests.policy.conftest import TINY


@pytest.fixture(scope="module")
def toy() -> tuple[torch.nn.Module, object]:
    torch.manual_seed(0)
    tok = char_tokenizer()
    return build_model(TINY, len(tok), tok.pad_token_id, tok.eos_token_id).eval(), tok


CASES = {
    # every prompt shares a long prefix, two completions of different lengths each
    "shared prefix, K per prompt": (
        ["You balance a pole. x=+0.02 > ", "You balance a pole. x=-1.50 v=+2 > "],
        ["left\n", "right\n"],
        True,
    ),
    # no common prefix at all, one completion per prompt (the training case)
    "distinct prompts, one each": (["abc > ", "x=+0.02 v=-0.15 > ", "Q"], ["+1\n", "-1\n", "0\n"], False),
    # one prompt only, single-token completions
    "one prompt": (["only one prompt > "], ["a", "b"], True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fast_equals_plain_logits_and_gradients(toy, case: str) -> None:
    model, tok = toy
    texts, comps_text, per_prompt = CASES[case]
    prompts_once, comps_once = tokenize(tok, texts), tokenize(tok, comps_text)
    if per_prompt:  # each prompt with every completion (acting)
        prompts = [p for p in prompts_once for _ in comps_once]
        comps = [c for _ in prompts_once for c in comps_once]
    else:
        prompts, comps = prompts_once, comps_once
    grads = []
    outs = []
    for fn in (plain_completion_logits, completion_logits):
        model.zero_grad()
        logits, tokens, mask = fn(model, prompts, comps, tok.pad_token_id)
        lp = torch.log_softmax(logits.float(), -1).gather(-1, tokens[..., None])[..., 0]
        (lp * mask).sum().backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None]))
        outs.append((logits.detach(), tokens, mask))
    (a, ta, ma), (b, tb, mb) = outs
    assert torch.equal(ta, tb) and torch.equal(ma, mb)
    assert a.shape == b.shape
    assert torch.allclose(a[ma], b[mb], atol=1e-4), (a[ma] - b[mb]).abs().max()
    assert torch.allclose(grads[0], grads[1], atol=1e-4, rtol=1e-3), (grads[0] - grads[1]).abs().max()


def test_prefix_cache_is_dropped_when_weights_change(toy) -> None:
    model, tok = toy
    prompts = tokenize(tok, ["The same long prefix, obs 1 > ", "The same long prefix, obs 2 > "])
    comps = tokenize(tok, ["left\n", "left\n"])
    with torch.no_grad():
        before = completion_logits(model, prompts, comps, tok.pad_token_id)[0]
        again = completion_logits(model, prompts, comps, tok.pad_token_id)[0]  # served from the kept prefix
        assert torch.equal(before, again)
        p = next(model.parameters())
        p.add_(0.05)  # an optimiser step changes the weights in place
        after = completion_logits(model, prompts, comps, tok.pad_token_id)[0]
        reference = plain_completion_logits(model, prompts, comps, tok.pad_token_id)[0]
        p.sub_(0.05)
    assert not torch.allclose(before, after)
    assert torch.allclose(after, reference, atol=1e-4)


def test_bf16_mixed_agrees_with_fp32(student) -> None:
    obs = np.random.default_rng(0).normal(0, 0.1, (6, 4)).astype(np.float32)
    student.precision = "32"
    p32 = student.action_probs(obs)
    student.precision = "bf16-mixed"
    pbf = student.action_probs(obs)
    student.precision = "32"
    assert np.abs(p32 - pbf).max() < 0.03, np.abs(p32 - pbf).max()
