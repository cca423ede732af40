"""The forgetting measurement: the shipped general suite, evaluate_general on the toy GPT and on
SmolLM2 (slow), batched greedy generation against a no-cache reference, the ``forgetting`` block of
distill.json (kept across a resume, chained from a previous run), and ``dreamlab eval-llm``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import gymnasium as gym
import pytest
import torch

from dreamlab.cli import main
from dreamlab.policy.base_llm import BaseLLMConfig, build_model, char_tokenizer
from dreamlab.policy.distill import DistillConfig, Distiller
from dreamlab.policy.forgetting import (
    CATEGORIES,
    SUITE_DIR,
    ForgettingError,
    chain_before,
    evaluate_general,
    greedy_generate,
    instruction_prompts,
    load_instructions,
    load_lm,
    load_prose,
    normalise,
)
from dreamlab.policy.pretrained import DEFAULT_LLM, resolve_llm
from dreamlab.policy.teachers import ActorTeacher
from tests.policy.conftest import ConstantProbs, load_student

ROOT = Path(__file__).resolve().parents[2]
KEYS = ("perplexity_before", "perplexity_after", "instructions_before", "instructions_after")


def toy() -> tuple[torch.nn.Module, object]:
    tok = char_tokenizer()
    cfg = BaseLLMConfig(n_layer=1, n_embd=32, n_head=2, n_positions=256, seed=3)
    return build_model(cfg, len(tok), tok.pad_token_id, tok.eos_token_id).eval(), tok


def test_suite_files_are_well_formed_held_out_and_installed() -> None:
    prose = load_prose()
    assert 2000 <= len(prose.split()) <= 4000 and prose.isascii()  # the char tokenizer covers it
    items = load_instructions()
    assert 25 <= len(items) <= 40 and len({it.prompt for it in items}) == len(items)
    assert {it.category for it in items} == set(CATEGORIES)
    assert all(sum(it.category == c for it in items) >= 5 for c in CATEGORIES)
    assert all(normalise(it.answer) and not it.prefix.endswith(" ") for it in items)
    readme = (SUITE_DIR / "README.md").read_text()
    assert "written for the dreamlab repository" in readme and "held out" in readme
    assert (SUITE_DIR / "prose.txt").read_text().startswith("# Held-out prose")
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '[tool.setuptools.package-data]\n"dreamlab.policy" = ["general_suite/*"]' in pyproject


def test_normalise_and_one_line_suite_errors(tmp_path: Path) -> None:
    assert normalise("  Paris.\nThe capital") == "paris"
    assert normalise('blue river stone"') == "blue river stone" and normalise(" 12\n") == "12"
    assert normalise("Madrid, Spain.") == "madrid, spain" and normalise("") == ""
    bad = tmp_path / "instructions.jsonl"
    cases = {
        '{"prompt": "Hi", "category": "copy"}': "instructions.jsonl:1: field 'answer' must be a non-empty string",
        '{"prompt": "Hi", "answer": "x", "category": "poetry"}': "field 'category' must be one of",
        '{"prompt": "Hi", "answer": "...", "category": "copy"}': "field 'answer' is empty once normalised",
        "[1, 2]": "instructions.jsonl:1: expected a JSON object, got list",
        "{oops": "instructions.jsonl:1: not valid JSON",
    }
    for line, msg in cases.items():
        bad.write_text(line + "\n")
        with pytest.raises(ForgettingError, match=msg.replace("(", r"\(")) as exc:
            load_instructions(bad)
        assert "\n" not in str(exc.value)
    (tmp_path / "short.txt").write_text("# header\nToo short to measure anything.\n")
    with pytest.raises(ForgettingError, match="short.txt: expected a few thousand tokens"):
        load_prose(tmp_path / "short.txt")


def test_evaluate_general_on_the_toy_gpt_is_deterministic_and_reports_what_it_measured() -> None:
    model, tok = toy()
    a, b = evaluate_general(model, tok), evaluate_general(model, tok)
    assert a["perplexity"] == b["perplexity"] and a["instructions"] == b["instructions"]
    assert math.isfinite(a["perplexity"]) and 1.0 < a["perplexity"] < 200.0  # about 98 (99 symbols)
    prose = load_prose()
    # one character a token; the first token of every window is not predicted
    assert a["tokens"] == len(prose) - a["windows"] and a["unknown_tokens"] == 0 and a["window"] == 256
    assert 0.0 <= a["instructions"] <= 1.0 and a["instructions_total"] == len(load_instructions())
    assert a["chat"] is False and "no chat template" in a["note"] and "answers" not in a


def test_prose_the_tokenizer_cannot_encode_is_not_scored(tmp_path: Path) -> None:
    model, tok = toy()
    (tmp_path / "instructions.jsonl").write_text((SUITE_DIR / "instructions.jsonl").read_text())
    prose = load_prose().replace("e", "\u00e9")  # every 'e' becomes an unknown character
    (tmp_path / "prose.txt").write_text(prose)
    res = evaluate_general(model, tok, suite=tmp_path)
    assert res["unknown_tokens"] > 1000 and "not scored" in res["note"]
    assert res["tokens"] + res["unknown_tokens"] == len(prose) - res["windows"] and math.isfinite(res["perplexity"])


def test_batched_greedy_generation_equals_a_no_cache_reference() -> None:
    model, tok = toy()
    texts, _ = instruction_prompts(tok, load_instructions()[::3])
    got = greedy_generate(model, tok, texts, max_new_tokens=8)
    for text, g in zip(texts, got):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        ref: list[int] = []
        with torch.no_grad():
            for _ in range(8):
                k = int(model(input_ids=torch.tensor([ids + ref])).logits[0, -1].argmax())
                if k == tok.eos_token_id or k == tok.pad_token_id:
                    break
                ref.append(k)
                if "\n" in tok.decode([k]):
                    break
        assert g == ref


def distill_once(base: Path, out: Path, updates: int, forgetting: bool = True, held: dict | None = None) -> dict:
    st = load_student(base)
    cfg = DistillConfig(
        lr=1e-2,
        steps_per_rollout=4,
        minibatch=8,
        max_updates=updates,
        max_labelled_tokens=10**9,
        progress=False,
        precision="32",  # "before" is compared with a fresh fp32 measurement below
    )
    cfg.forgetting = forgetting
    teacher = ActorTeacher.for_student(ConstantProbs([0.2, 0.8]), st)
    d = Distiller(st, teacher, gym.make_vec("CartPole-v1", num_envs=2), cfg, out=out, env_id="CartPole-v1")
    if held is not None:
        d.state.forgetting = held
    d.run()
    return json.loads((out / "distill.json").read_text())


def test_distill_json_has_the_forgetting_block_and_keeps_before_across_a_resume(tmp_path: Path, base_dir) -> None:
    first = distill_once(base_dir, tmp_path / "a", updates=2)["forgetting"]
    assert all(math.isfinite(first[k]) for k in KEYS) and first["tokens"] > 1000
    assert 0.0 <= first["instructions_after"] <= 1.0 and first["return_before"] is None  # no eval_fn given
    assert first["perplexity_change"] == pytest.approx(first["perplexity_after"] / first["perplexity_before"] - 1)
    # a fresh measurement of the untouched base model gives the same "before"
    model, tok = load_lm(base_dir)
    assert evaluate_general(model, tok)["perplexity"] == pytest.approx(first["perplexity_before"], rel=1e-5)
    assert first["perplexity_after"] != first["perplexity_before"]  # lr 1e-2: the weights moved
    resumed = distill_once(base_dir, tmp_path / "a", updates=3)["forgetting"]  # resumes at update 2
    assert resumed["perplexity_before"] == first["perplexity_before"]
    # "after" measured the weights that were saved; a next distillation can start from it
    model, tok = load_lm(tmp_path / "a")
    assert evaluate_general(model, tok)["perplexity"] == pytest.approx(resumed["perplexity_after"], rel=1e-5)
    chained = distill_once(tmp_path / "a", tmp_path / "c", updates=1, held=chain_before(resumed))["forgetting"]
    assert chained["perplexity_before"] == resumed["perplexity_after"]
    assert chained["instructions_before"] == resumed["instructions_after"]
    off = distill_once(base_dir, tmp_path / "b", updates=1, forgetting=False)
    assert off["forgetting"] == {} and off["config"]["forgetting"] is False


def test_eval_llm_json_prints_the_figures_and_errors_in_one_line(base_dir, capsys: pytest.CaptureFixture) -> None:
    assert main(["eval-llm", str(base_dir), "--json", "--threads", "1"]) == 0
    res = json.loads(capsys.readouterr().out)
    for key in ("perplexity", "instructions", "tokens", "by_category", "note", "seconds"):
        assert key in res
    assert math.isfinite(res["perplexity"]) and res["llm"] == str(base_dir)
    assert main(["eval-llm", str(base_dir), "--threads", "1"]) == 0
    assert "perplexity" in capsys.readouterr().out
    assert main(["eval-llm", str(base_dir / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dreamlab eval-llm: error:") and "not an LLM folder" in err and "\n" not in err


@pytest.mark.slow
def test_smollm2_base_figures_are_in_a_sane_range_and_generation_matches_transformers() -> None:
    model, tok = load_lm(resolve_llm(DEFAULT_LLM, log=lambda m: None))
    res = evaluate_general(model, tok, answers=True)
    # measured: perplexity 31.31 over 2649 tokens, 20/30 instructions (fp32, 1 thread)
    assert 20.0 < res["perplexity"] < 45.0 and res["tokens"] > 2500 and res["unknown_tokens"] == 0
    assert 0.3 <= res["instructions"] <= 0.8 and res["chat"] is True and res["note"] == ""
    items = load_instructions()
    right = {it.answer: normalise(a) == normalise(it.answer) for it, a in zip(items, res["answers"])}
    assert right["Paris"] and right["12"]  # the plainest items stay right
    texts, _ = instruction_prompts(tok, items[::6])
    tok.padding_side = "left"
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        ref = model.generate(**enc, max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
    for answer, row in zip(res["answers"][::6], ref[:, enc["input_ids"].shape[1] :]):
        assert normalise(answer) == normalise(tok.decode(row, skip_special_tokens=True))
