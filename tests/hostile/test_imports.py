"""Imports never change a value silently: every bad value is an error naming file:line and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.hostile.helpers import assert_user_error, run_cli, tree_bytes

OBS = [0.01, 0.02, 0.03, 0.04]


def _step(action: Any = 1, obs: Any = OBS, reward: Any = 1.0, end: bool = False, **extra: Any) -> str:
    rec = {"episode": 0, "obs": obs, "action": action, "reward": reward, "terminated": end, "truncated": False}
    return json.dumps({**rec, **extra})


def _import(src: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    return run_cli(["logs", "import", "--format", "jsonl", src, "--out", out, "--env", "CartPole-v1"], capsys)


@pytest.mark.parametrize(
    "bad_line, field, needle",
    [
        (_step(action=0.5), "action", "must be an integer"),
        (_step(action=1.9), "action", "must be an integer"),
        (_step(action=True), "action", "true/false"),
        (_step(action=1e30), "action", "out of range"),
        (_step(action=10**30), "action", "out of range"),
        (_step(action="1"), "action", "string"),
        (_step(action=5), "action", "outside the action space"),
        (_step(action=-1), "action", "outside the action space"),
        (_step(obs=["0.01", 0.02, 0.03, 0.04]), "obs", "string"),
        (_step(obs=[True, 0.02, 0.03, 0.04]), "obs", "true/false"),
        (_step(obs=[1e39, 0.02, 0.03, 0.04]), "obs", "out of range"),
        (_step(reward="1.0"), "reward", "finite number"),
        (_step(reward=10**400), "reward", "finite number"),
        (_step(feedback=True), "feedback", "finite number"),
    ],
)
def test_a_bad_value_is_reported_at_its_own_line(
    bad_line: str, field: str, needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "deploy.jsonl"
    src.write_text("\n".join([_step(action=0), _step(action=1), bad_line, _step(action=0, end=True)]) + "\n")
    before = tree_bytes(src)
    code, _, err = _import(src, tmp_path / "s", capsys)
    assert_user_error(code, err, "logs", f"{src}:3", f"'{field}'", needle)
    assert tree_bytes(src) == before and not (tmp_path / "s" / "metadata.json").exists()


def test_unreadable_jsonl_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases: list[tuple[str, bytes | None, str]] = [
        ("utf8.jsonl", (_step() + "\n").encode() + b'{"episode": 0, "obs": "\xff"}\n', ":2: not UTF-8"),
        ("deep.jsonl", b"[" * 200_000 + b"]" * 200_000 + b"\n", ":1: not valid JSON"),
        ("notjson.jsonl", b"{oops\n", ":1: not valid JSON"),
        ("adir", None, "is a directory"),
    ]
    for name, payload, needle in cases:
        src = tmp_path / name
        if payload is None:
            src.mkdir()
        else:
            src.write_bytes(payload)
        before = tree_bytes(src) if payload is not None else {}
        code, _, err = _import(src, tmp_path / "s", capsys)
        assert_user_error(code, err, "logs", src, needle)
        assert (tree_bytes(src) if payload is not None else {}) == before


def test_good_values_still_import_exactly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "ok.jsonl"
    src.write_text("\n".join([_step(action=0, obs=[0, 0, 0, 0]), _step(action=1.0, end=True)]) + "\n")
    code, out, err = _import(src, tmp_path / "s", capsys)
    assert code == 0, err
    from dreamlab.data.store import EpisodeStore

    (ep,) = EpisodeStore(tmp_path / "s").episodes()
    assert ep.action[:2].tolist() == [0, 1] and ep.obs[1].tolist() == pytest.approx(OBS)


def test_a_truncated_minari_dataset_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("minari")
    from tests.hostile.helpers import make_store

    store = make_store(tmp_path / "s", n=3).root
    dataset = tmp_path / "minari"
    import os

    os.environ["MINARI_DATASETS_PATH"] = str(dataset)
    try:
        code, out, err = run_cli(["logs", "export", "--format", "minari", store, "--out", "dreamlab/h/x-v0"], capsys)
        assert code == 0, err
        (h5,) = list(dataset.rglob("*.hdf5"))
        h5.write_bytes(h5.read_bytes()[: h5.stat().st_size // 3])
        before = tree_bytes(dataset)
        code, _, err = run_cli(
            ["logs", "import", "--format", "minari", h5.parent.parent, "--out", tmp_path / "o"], capsys
        )
        assert_user_error(code, err, "logs", h5.parent.parent, "Minari")
        assert tree_bytes(dataset) == before
    finally:
        del os.environ["MINARI_DATASETS_PATH"]
