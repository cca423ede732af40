"""Written feedback in JSONL deployment logs (``feedback_text``): where the labels land, which lines
are labelled, the import notes, and one-line errors for a wrong type or a broken labeller. The
labeller here is a plain keyword rule given as ``label_text`` (the LLM one: tests/policy)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from dreamlab.cli import main
from dreamlab.data.formats import FormatError, read_jsonl


def keyword_thumbs(texts: Sequence[str]) -> list[float]:
    return [1.0 if "good" in t.lower() else -1.0 for t in texts]


def step(ep: int, t: int, last: bool = False, **extra: object) -> dict:
    rec: dict = {"episode": ep, "obs": [0.01 * t, 0.0, 0.0, 0.0], "action": t % 2, "reward": 1.0}
    rec.update(terminated=last, truncated=False, **extra)
    return rec


def write(path: Path, recs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def test_texts_without_thumbs_are_labelled_and_land_after_the_action(tmp_path: Path) -> None:
    recs = [
        step(0, 0, feedback_text="Good push"),
        step(0, 1, feedback=0.5, feedback_text="bad, but the thumb says otherwise"),  # the thumb is kept
        step(0, 2, feedback_text="   "),  # blank: no text
        step(0, 3, feedback_text=None),
        step(0, 4, last=True, feedback_text="That made it fall"),
        step(1, 0, feedback_text="GOOD recovery"),
        step(1, 1, feedback_text="dropped with the last line"),  # truncated without next_obs: dropped
    ]
    recs[-1]["truncated"] = True
    path = write(tmp_path / "logs.jsonl", recs)
    calls: list[list[str]] = []

    def labeller(texts: Sequence[str]) -> list[float]:
        calls.append(list(texts))
        return keyword_thumbs(texts)

    logs = read_jsonl(path, "CartPole-v1", label_text=labeller)
    assert calls == [["Good push", "That made it fall", "GOOD recovery"]]  # one batched call
    a, b = logs.episodes
    assert a.feedback.tolist() == [0.0, 1.0, 0.5, 0.0, 0.0, -1.0] and b.feedback.tolist() == [0.0, 1.0]
    assert logs.notes["feedback_text"] == 4 and logs.notes["feedback_text_labelled"] == 3
    assert logs.notes["feedback_text_with_thumb"] == 1 and logs.notes["feedback_text_empty"] == 1
    assert logs.notes["feedback_text_unlabelled"] == 0
    unlabelled = read_jsonl(path, "CartPole-v1")  # no labeller: the texts stay feedback 0
    assert unlabelled.notes["feedback_text_unlabelled"] == 3
    assert unlabelled.episodes[0].feedback.tolist() == [0.0, 0.0, 0.5, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("value", [3, ["nice"], {"text": "nice"}, True])
def test_a_text_that_is_not_a_string_is_a_one_line_error(tmp_path: Path, value: object) -> None:
    path = write(tmp_path / "bad.jsonl", [step(0, 0), step(0, 1, last=True, feedback_text=value)])
    with pytest.raises(FormatError) as exc:
        read_jsonl(path, "CartPole-v1", label_text=keyword_thumbs)
    msg = str(exc.value)
    assert msg.startswith(f"{path}:2: field 'feedback_text' must be a string") and "\n" not in msg


def test_a_labeller_that_returns_the_wrong_shape_or_nan_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "logs.jsonl", [step(0, 0, feedback_text="good"), step(0, 1, last=True, feedback_text="x")])
    with pytest.raises(FormatError, match=r"labeller returned shape \(1,\).*expected \(2,\) finite"):
        read_jsonl(path, "CartPole-v1", label_text=lambda texts: [1.0])
    with pytest.raises(FormatError, match=r"finite: False"):
        read_jsonl(path, "CartPole-v1", label_text=lambda texts: [1.0, float("nan")])
    logs = read_jsonl(path, "CartPole-v1", label_text=lambda texts: np.array([1.0, -1.0]))
    assert logs.episodes[0].feedback.tolist() == [0.0, 1.0, -1.0]


def test_logs_import_cli_reports_a_wrong_type_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write(tmp_path / "bad.jsonl", [step(0, 0, feedback_text=7), step(0, 1, last=True)])
    argv = ["logs", "import", "--format", "jsonl", str(path), "--out", str(tmp_path / "store"), "--env", "CartPole-v1"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "bad.jsonl:1: field 'feedback_text' must be a string" in err and "\n" not in err
    good = write(tmp_path / "good.jsonl", [step(0, 0, feedback_text="good"), step(0, 1, last=True)])
    argv[4] = str(good)
    assert main(argv) == 0  # without a labeller the import keeps going and says what it left
    assert "feedback_text 1" in capsys.readouterr().out
