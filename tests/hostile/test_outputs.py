"""No command writes into or over an input store, and none replaces an output file without --force."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile.helpers import assert_user_error, make_store, run_cli, tree_bytes


def test_export_into_the_input_store_is_refused_even_with_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = make_store(tmp_path / "s", n=2).root
    before = tree_bytes(store)
    for target in (store / "metadata.json", store / "episodes" / "x.jsonl", store):
        for force in ([], ["--force"]):
            code, _, err = run_cli(["logs", "export", "--format", "jsonl", store, "--out", target, *force], capsys)
            assert_user_error(code, err, "logs", target, "inside the input")
    assert tree_bytes(store) == before


def test_an_existing_output_file_needs_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = make_store(tmp_path / "s", n=2).root
    out = tmp_path / "old.jsonl"
    out.write_text("precious\n")
    before = tree_bytes(store, out)
    code, _, err = run_cli(["logs", "export", "--format", "jsonl", store, "--out", out], capsys)
    assert_user_error(code, err, "logs", out, "exists", "--force")
    assert tree_bytes(store, out) == before
    code, _, err = run_cli(["logs", "export", "--format", "jsonl", store, "--out", out, "--force"], capsys)
    assert code == 0, err
    assert out.read_text() != "precious\n"
    assert tree_bytes(store) == {k: v for k, v in before.items() if k != str(out)}

    plot = tmp_path / "curve.png"
    plot.write_bytes(b"old plot")
    code, _, err = run_cli(["eval-wm", "--wm", tmp_path / "none.ckpt", "--logs", store, "--plot", plot], capsys)
    assert_user_error(code, err, "eval-wm", plot, "--force")
    assert plot.read_bytes() == b"old plot"
    (tmp_path / "curves.csv").write_text("real_steps,real_return\n1,2\n")
    code, _, err = run_cli(["plot", "curves", tmp_path, "--out", tmp_path / "curve"], capsys)
    assert_user_error(code, err, "plot", plot, "--force")
    assert plot.read_bytes() == b"old plot"


def test_an_out_folder_that_is_a_file_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = make_store(tmp_path / "s", n=2).root
    afile = tmp_path / "a_file"
    afile.write_text("not a folder")
    src = tmp_path / "x.jsonl"
    src.write_text(
        '{"episode": 0, "obs": [0, 0, 0, 0], "action": 1, "reward": 1, "terminated": true, "truncated": false}\n'
    )
    before = tree_bytes(store, afile, src)
    cases = [
        ("collect", ["collect", "--env", "CartPole-v1", "--out", afile, "--steps", "10", "--no-progress"]),
        ("collect", ["collect", "--env", "CartPole-v1", "--out", afile / "sub", "--steps", "10", "--no-progress"]),
        ("logs", ["logs", "import", "--format", "jsonl", src, "--out", afile, "--env", "CartPole-v1"]),
        ("train-wm", ["train-wm", "--logs", store, "--out", afile, "--no-progress"]),
        ("dream", ["dream", "--wm", afile, "--logs", store, "--out", afile, "--no-progress"]),
        ("train", ["train", "--env", "CartPole-v1", "--out", afile, "--no-progress"]),
    ]
    for command, argv in cases:
        code, _, err = run_cli(argv, capsys)
        assert_user_error(code, err, command, afile, "a file", "expected a directory")
    assert tree_bytes(store, afile, src) == before


def test_outputs_inside_the_input_store_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = make_store(tmp_path / "s", n=2).root
    before = tree_bytes(store)
    for command, argv in [
        ("train-wm", ["train-wm", "--logs", store, "--out", store, "--no-progress"]),
        ("train-wm", ["train-wm", "--logs", store, "--out", store / "episodes", "--no-progress"]),
        ("dream", ["dream", "--wm", tmp_path / "wm.ckpt", "--logs", store, "--out", store / "agent", "--no-progress"]),
        ("eval-wm", ["eval-wm", "--wm", tmp_path / "wm.ckpt", "--logs", store, "--plot", store / "p.png"]),
    ]:
        code, _, err = run_cli(argv, capsys)
        assert_user_error(code, err, command, "inside the input")
    # the trainer writes OUT/logs and OUT/tb: a store there is an input too
    nested = make_store(tmp_path / "run" / "logs", n=2).root
    code, _, err = run_cli(["train-wm", "--logs", nested, "--out", tmp_path / "run", "--no-progress"], capsys)
    assert_user_error(code, err, "train-wm", nested)
    assert tree_bytes(store) == before
