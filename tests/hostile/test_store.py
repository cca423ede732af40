"""Episode stores as hostile input: index keys and chunk names, metadata structure, version-1
archives and version-2 chunks, and `logs check`."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.data.helpers import make_v1_store
from tests.hostile.helpers import assert_user_error, edit_json, make_store, run_cli, tree_bytes


def _meta(root: Path) -> dict:
    return json.loads((root / "metadata.json").read_text())


def bad_lines(out: str) -> dict[str, str]:
    """``logs check``'s ``BAD path: why`` lines, the reasons of each path joined by `` | ``."""
    bad: dict[str, str] = {}
    for ln in out.splitlines():
        if ln.startswith("BAD "):
            path, why = ln[4:].split(": ", 1)
            bad[path] = bad.get(path, "") + why + " | "
    return bad


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("key", ["../../x.npz", "/etc/passwd.npz", "sub/ep.npz", "..\\x.npz", ".hidden.npz", "ep.txt"])
def test_index_keys_must_be_plain_file_names_inside_the_store(
    key: str, version: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = (make_v1_store(tmp_path / "s", n=2) if version == 1 else make_store(tmp_path / "s", n=2)).root
    meta = _meta(store)
    name = next(iter(meta["index"]))
    entry = meta["index"].pop(name)
    meta["index"][key] = entry
    (store / "metadata.json").write_text(json.dumps(meta))
    held = store / ("chunks/" + entry["chunk"] if "chunk" in entry else "episodes/" + name)
    (tmp_path / "x.npz").write_bytes(held.read_bytes())  # what ../../x.npz would reach
    before = tree_bytes(tmp_path)
    for argv in (
        ["logs", "info", store],
        ["logs", "check", store],
        ["logs", "export", "--format", "jsonl", store, "--out", tmp_path / "o.jsonl"],
    ):
        code, _, err = run_cli(argv, capsys)
        assert_user_error(code, err, "logs", store / "metadata.json", "field 'index'", "plain episode file name")
    assert tree_bytes(tmp_path) == before


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"chunk": "../../x.npz"}, "plain chunk file name"),
        ({"chunk": "/etc/passwd.npz"}, "plain chunk file name"),
        ({"chunk": "sub/c.npz"}, "plain chunk file name"),
        ({"chunk": ".hidden.npz"}, "plain chunk file name"),
        ({"chunk": "c.txt"}, "plain chunk file name"),
        ({"chunk": 7}, "plain chunk file name"),
        ({"start": -1}, ".start: expected a non-negative integer"),
        ({"start": "0"}, ".start: expected a non-negative integer"),
        ({"start": True}, ".start: expected a non-negative integer"),
    ],
)
def test_chunk_entries_must_name_a_plain_chunk_inside_the_store(
    change: dict, needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = make_store(tmp_path / "s", n=2).root
    meta = _meta(store)
    name = next(iter(meta["index"]))
    meta["index"][name].update(change)
    (store / "metadata.json").write_text(json.dumps(meta))
    (tmp_path / "x.npz").write_bytes(next((store / "chunks").glob("*.npz")).read_bytes())
    before = tree_bytes(tmp_path)
    for argv in (["logs", "info", store], ["logs", "check", store]):
        code, _, err = run_cli(argv, capsys)
        assert_user_error(code, err, "logs", store / "metadata.json", f"field 'index.{name}", needle)
    assert tree_bytes(tmp_path) == before


def test_a_version_1_store_holds_no_chunks_and_unknown_versions_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = make_store(tmp_path / "s", n=2).root
    edit_json(store / "metadata.json", version=1)
    code, _, err = run_cli(["logs", "check", store], capsys)
    assert_user_error(code, err, "logs", store / "metadata.json", ".chunk", "a version-1 store holds no chunks")
    edit_json(store / "metadata.json", version=3)
    code, _, err = run_cli(["logs", "info", store], capsys)
    assert_user_error(code, err, "logs", store / "metadata.json", "field 'version' is 3", "reads versions 1, 2")


@pytest.mark.parametrize(
    "change, needle",
    [
        (lambda m: m.pop("index"), "field 'index' is missing"),
        (lambda m: m.update(index=["a.npz"]), "field 'index' must be a mapping"),
        (lambda m: m["index"].update({k: "a string" for k in list(m["index"])[:1]}), "expected an object"),
        (lambda m: m["index"].update({k: {**v, "length": "9"} for k, v in list(m["index"].items())[:1]}), ".length"),
        (lambda m: m.update(steps="lots"), "field 'steps'"),
        (lambda m: m.update(observation_space="Box"), "field 'observation_space'"),
    ],
)
def test_malformed_metadata_is_one_line(
    change, needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = make_store(tmp_path / "s", n=2).root
    meta = _meta(store)
    change(meta)
    (store / "metadata.json").write_text(json.dumps(meta))
    before = tree_bytes(store)
    for argv in (["logs", "info", store], ["logs", "check", store]):
        code, _, err = run_cli(argv, capsys)
        assert_user_error(code, err, "logs", store / "metadata.json", needle)
    assert tree_bytes(store) == before


def _huge_header_archive(path: Path) -> None:
    """Rewrite ``path`` so that its obs.npy header declares shape (10**12, 4) (16 TB) over 64 bytes."""
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 4)})
    members["obs.npy"] = buf.getvalue() + b"\0" * 64
    with zipfile.ZipFile(path, "w") as zf:
        for n, data in members.items():
            zf.writestr(n, data)


def test_logs_check_lists_every_bad_archive_and_index_disagreement(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = make_v1_store(tmp_path / "s", n=5).root
    paths = [store / "episodes" / n for n in sorted(_meta(store)["index"])]
    _huge_header_archive(paths[0])
    paths[1].write_bytes(b"junk that is no zip archive at all" * 10)
    meta = _meta(store)
    meta["index"][paths[2].name].update(length=10**12 + 1, steps=10**12)  # claims a trillion steps
    meta["steps"] = 10**12
    (store / "metadata.json").write_text(json.dumps(meta))
    paths[3].unlink()
    orphan = store / "episodes" / "ep-00000000000000000001-1-aaaaaaaa.npz"
    orphan.write_bytes(paths[4].read_bytes())
    (store / "episodes" / "ep-00000000000000000002-1-bbbbbbbb.npz").write_bytes(paths[4].read_bytes())
    before = tree_bytes(store)
    code, out, err = run_cli(["logs", "check", store], capsys)
    assert code == 1 and "Traceback" not in err
    bad = bad_lines(out)
    assert "field 'obs'" in bad[str(paths[0])] and "(1000000000000, 4)" in bad[str(paths[0])]
    assert "not a valid episode file" in bad[str(paths[1])] and "allow_pickle" not in out
    assert "says length 1000000000001, the file holds" in bad[str(paths[2])]
    assert "says steps 1000000000000, the file holds" in bad[str(paths[2])]
    assert "missing on disk" in bad[str(paths[3])]
    assert "not listed in metadata.json" in bad[str(orphan)]
    assert "field 'steps' is 1000000000000" in bad[str(store / "metadata.json")]
    assert "(5 indexed episodes)" in err  # 6 archives on disk: the orphans are not counted
    assert tree_bytes(store) == before
    code, _, err = run_cli(["logs", "export", "--format", "jsonl", store, "--out", tmp_path / "o.jsonl"], capsys)
    assert_user_error(code, err, "logs", paths[0], "field 'obs'", "header declares shape")
    assert not (tmp_path / "o.jsonl").exists()


def test_logs_check_lists_every_bad_chunk_and_index_disagreement(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = make_store(tmp_path / "s", n=5, chunk_each=True).root
    meta = _meta(store)
    names = sorted(meta["index"])
    paths = [store / "chunks" / meta["index"][n]["chunk"] for n in names]
    _huge_header_archive(paths[0])
    paths[1].write_bytes(b"junk that is no zip archive at all" * 10)
    meta["index"][names[2]].update(length=10**12 + 1, steps=10**12)  # claims a trillion steps
    meta["steps"] = 10**12
    (store / "metadata.json").write_text(json.dumps(meta))
    paths[3].unlink()
    orphan = store / "chunks" / "ck-00000000000000000001-1-aaaaaaaa.npz"
    orphan.write_bytes(paths[4].read_bytes())
    before = tree_bytes(store)
    code, out, err = run_cli(["logs", "check", store], capsys)
    assert code == 1 and "Traceback" not in err
    bad = bad_lines(out)
    assert "field 'obs'" in bad[str(paths[0])] and "(1000000000000, 4)" in bad[str(paths[0])]
    assert "not a valid chunk file" in bad[str(paths[1])] and "allow_pickle" not in out
    assert f"episode {names[2]}: field 'offsets'" in bad[str(paths[2])]
    assert "length 1000000000001) matches no episode of this chunk" in bad[str(paths[2])]
    assert "missing on disk" in bad[str(paths[3])]
    assert "not listed in metadata.json" in bad[str(orphan)]
    assert "field 'steps' is 1000000000000" in bad[str(store / "metadata.json")]
    assert "(5 indexed episodes)" in err
    assert tree_bytes(store) == before
    code, _, err = run_cli(["logs", "export", "--format", "jsonl", store, "--out", tmp_path / "o.jsonl"], capsys)
    assert_user_error(code, err, "logs", paths[0], "field 'obs'", "header declares shape")
    assert not (tmp_path / "o.jsonl").exists()


def test_a_clean_store_checks_clean_and_counts_indexed_episodes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = make_store(tmp_path / "s", n=3).root
    edit_json(store / "metadata.json")  # rewritten, same content
    code, out, err = run_cli(["logs", "check", store], capsys)
    assert code == 0, out + err
    assert "all 3 indexed episodes valid" in out
