"""LLM folders from someone else: code named by dreamlab_policy.json and broken folders."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dreamlab.policy.base_llm import make_base_llm
from dreamlab.policy.llm import LLMPolicy
from tests.hostile.helpers import assert_user_error, edit_json, hostile_module, run_cli, tree_bytes
from tests.policy.conftest import TINY


@pytest.fixture(scope="module")
def toy_llm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.data.helpers import make_store

    logs = make_store(tmp_path_factory.mktemp("logs") / "s", n=4).root
    out = tmp_path_factory.mktemp("llm") / "base"
    make_base_llm(logs, out, TINY)
    return out


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_renderer_named_by_the_folder_runs_only_with_trust_code(
    toy_llm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    mod, marker = hostile_module(tmp_path, monkeypatch)
    folder = _copy(toy_llm, tmp_path / "llm")
    edit_json(folder / "dreamlab_policy.json", renderer=f"{mod}:fn")
    before = tree_bytes(folder)
    argv = ["distill", "--teacher", "heuristic", "--student", folder, "--env", "CartPole-v1"]
    argv += ["--out", tmp_path / "out", "--max-updates", "1"]
    code, _, err = run_cli(argv, capsys)
    assert_user_error(code, err, "distill", folder / "dreamlab_policy.json", "field 'renderer'", "--trust-code")
    assert not marker.exists()
    assert tree_bytes(folder) == before
    with pytest.raises(ValueError):
        LLMPolicy.from_pretrained(folder)
    assert not marker.exists()
    LLMPolicy.from_pretrained(folder, trust_code=True)  # the caller's explicit choice: the code runs
    assert marker.exists()


@pytest.mark.parametrize("damage", ["weights only as pytorch_model.bin", "broken config.json", "no tokenizer"])
def test_broken_student_folder_is_one_line(
    toy_llm: Path, tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _copy(toy_llm, tmp_path / "llm")
    if damage.startswith("weights"):
        (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
        (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not a checkpoint")
    elif damage.startswith("broken"):
        (folder / "config.json").write_text('{"model_type": "gpt2", "n_layer": ')
    else:
        for f in folder.glob("tokenizer*"):
            f.unlink()
    before = tree_bytes(folder)
    argv = ["distill", "--teacher", "heuristic", "--student", folder, "--env", "CartPole-v1"]
    argv += ["--out", tmp_path / "out", "--max-updates", "1"]
    code, _, err = run_cli(argv, capsys)
    assert_user_error(code, err, "distill", folder)
    assert tree_bytes(folder) == before


def test_get_llm_out_that_is_a_file_or_a_foreign_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    afile = tmp_path / "notes.txt"
    afile.write_text("keep me")
    code, _, err = run_cli(["get-llm", "--out", afile], capsys)
    assert_user_error(code, err, "get-llm", afile, "expected a directory")
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "data.txt").write_text("keep me too")
    code, _, err = run_cli(["get-llm", "--out", folder], capsys)
    assert_user_error(code, err, "get-llm", folder, "--force")
    assert afile.read_text() == "keep me" and (folder / "data.txt").read_text() == "keep me too"
