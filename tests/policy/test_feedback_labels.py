"""Written feedback read by an LLM: deployment logs of real CartPole episodes whose written
evaluations follow a rule (praise when the action brought the pole nearer upright, criticism when
it leaned further), imported through the JSONL path with SmolLM2 as the labeller: the thumbs it
gives recover the rule. The wording here is not the wording the question was tuned on."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from dreamlab.cli import main
from dreamlab.data.store import EpisodeStore
from dreamlab.policy.base_llm import BaseLLMConfig, build_model, char_tokenizer
from dreamlab.policy.feedback_labels import FeedbackLabelError, FeedbackLabeller
from dreamlab.policy.pretrained import DEFAULT_LLM

PRAISE = [
    "Nice, that push straightened the pole.",
    "Good call, the pole is coming back to vertical.",
    "Well done, that was the right way to push.",
    "That correction was spot on.",
    "Great, the pole is more upright now.",
    "Lovely recovery.",
    "Helpful move, the lean got smaller.",
    "Yes, exactly the push it needed.",
    "Very good, steadier than before.",
    "I am pleased with that action.",
    "Good job keeping it balanced.",
    "Smart push, the pole settled.",
]
CRITICISM = [
    "No, that push made the lean worse.",
    "Bad call, the pole is falling further.",
    "Wrong way, it tilted even more.",
    "That was a poor choice.",
    "Not helpful, the pole is less upright now.",
    "Clumsy move, the lean grew.",
    "That action made things worse.",
    "Ugh, pushing that way was a mistake.",
    "Unhelpful, it is more unstable than before.",
    "I am not happy with that action.",
    "The pole is about to fall, bad push.",
    "Careless, you let it tip over.",
]


def rule_logs(path: Path, episodes: int = 6, every: int = 3) -> dict[tuple[int, int], float]:
    """JSONL logs of random-action CartPole episodes; every ``every``-th transition carries written
    feedback by the rule (praise when |angle| shrank, criticism when it grew) and no thumb.
    Returns the rule's thumb per (episode, transition) that has a text."""
    env, rng = gym.make("CartPole-v1"), np.random.default_rng(7)
    truth: dict[tuple[int, int], float] = {}
    lines = []
    for e in range(episodes):
        o, _ = env.reset(seed=e)
        for t in range(200):
            a = int(rng.integers(2))
            o2, r, term, trunc, _ = env.step(a)
            rec = {"episode": e, "obs": o.tolist(), "action": a, "reward": float(r)}
            rec.update(terminated=bool(term), truncated=bool(trunc or t == 199))
            if t % every == 1:
                good = abs(float(o2[2])) < abs(float(o[2]))
                rec["feedback_text"] = str(rng.choice(PRAISE if good else CRITICISM))
                truth[(e, t)] = 1.0 if good else -1.0
            if term or trunc or t == 199:
                rec["next_obs"] = o2.tolist()
                lines.append(rec)
                break
            lines.append(rec)
            o = o2
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return truth


def test_the_labeller_needs_a_chat_model() -> None:
    tok = char_tokenizer()
    model = build_model(BaseLLMConfig(n_layer=1, n_embd=32, n_head=2), len(tok), tok.pad_token_id, tok.eos_token_id)
    with pytest.raises(FeedbackLabelError, match="no chat template"):
        FeedbackLabeller(model, tok)


@pytest.mark.slow
def test_smollm2_recovers_a_written_feedback_rule_through_the_jsonl_import(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    truth = rule_logs(tmp_path / "deploy.jsonl")
    assert 30 <= len(truth) <= 60 and min(sum(v > 0 for v in truth.values()), sum(v < 0 for v in truth.values())) >= 8
    # through the command a user runs: `dreamlab logs import --format jsonl ... --label-llm NAME`
    argv = ["logs", "import", "--format", "jsonl", str(tmp_path / "deploy.jsonl"), "--out", str(tmp_path / "store")]
    assert main([*argv, "--env", "CartPole-v1", "--label-llm", DEFAULT_LLM]) == 0
    assert f"feedback_text_labelled {len(truth)}" in capsys.readouterr().out
    episodes = EpisodeStore(tmp_path / "store").episodes()  # stored like thumbs: the feedback field
    got = {(e, t): float(ep.feedback[t + 1]) for e, ep in enumerate(episodes) for t in range(ep.num_steps)}
    labelled = {k: v for k, v in got.items() if v != 0}
    assert set(labelled) == set(truth)  # only the texts became feedback, each on the step after its action
    agree = np.mean([labelled[k] == truth[k] for k in truth])
    assert agree >= 0.9, agree  # measured 0.97: 58 of 60 (SmolLM2-135M-Instruct, fp32)
    # without a labeller the same lines import unlabelled, and the summary says how many
    assert main([*argv[:-1], str(tmp_path / "plain"), "--env", "CartPole-v1"]) == 0
    assert f"feedback_text_unlabelled {len(truth)}" in capsys.readouterr().out
