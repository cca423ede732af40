"""Collection under SIGKILL: each episode is written as it ends, the writer child ends with its
parent, and the next collection tidies up and says it appends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dreamlab.data.store import EpisodeStore
from tests.hostile.helpers import assert_user_error, make_store, run_cli

REPO = Path(__file__).resolve().parents[2]


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def _gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" in status or "\nState:\tX" in status


def _indexed(root: Path) -> int:
    try:
        return len(json.loads((root / "metadata.json").read_text())["index"])
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_sigkill_loses_only_episodes_in_flight_and_the_writer_ends_with_its_parent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    code = (  # the library call `dreamlab collect` makes (the CLI imports every command: seconds)
        "from dreamlab.data.collect import collect\n"
        f"collect('CartPole-v1', 'random', steps=10**9, num_envs=2, out={str(out)!r}, progress=False)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while _indexed(out) < 10 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert _indexed(out) >= 10, proc.stderr.read().decode() if proc.poll() is not None else "too slow"
        writers = _children(proc.pid)
        assert writers, "expected the forked episode writer"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 15
        while not all(_gone(w) for w in writers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(_gone(w) for w in writers), "the writer outlived its parent"
    finally:
        if proc.poll() is None:
            proc.kill()
    # every archive on disk is a whole, valid episode (nothing half-written was renamed in)
    store = EpisodeStore(out)
    for p in sorted(store.episode_dir.glob("ep-*.npz")):
        store.load(p.name)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = store.episode_dir / f".tmp-ep-{time.time_ns():020d}-{int(dead.stdout)}-deadbeef.npz"
    stale.write_bytes(b"half an archive")
    on_disk = len(list(store.episode_dir.glob("ep-*.npz")))
    code, _, err = run_cli(["collect", "--env", "CartPole-v1", "--steps", "20", "--out", out, "--no-progress"], capsys)
    assert code == 0, err
    notes = [ln for ln in err.splitlines() if "appending to the existing store" in ln]
    assert len(notes) == 1 and str(out) in notes[0], err
    assert "stale temporary files removed" in notes[0]
    assert not list(store.episode_dir.glob(".tmp-*"))
    store.refresh()
    assert len(store) >= on_disk  # every archive that was on disk is indexed now, plus the new ones
    code, cout, cerr = run_cli(["logs", "check", out], capsys)
    assert code == 0, cout + cerr


def test_appending_announces_itself_and_an_out_store_of_another_env_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = make_store(tmp_path / "s", n=2).root
    before = (store / "metadata.json").read_bytes()
    code, _, err = run_cli(
        ["collect", "--env", "Pendulum-v1", "--steps", "20", "--out", store, "--no-progress"], capsys
    )
    assert_user_error(code, err, "collect", "env id 'Pendulum-v1' does not match")
    assert (store / "metadata.json").read_bytes() == before
    code, _, err = run_cli(
        ["collect", "--env", "CartPole-v1", "--steps", "20", "--out", store, "--no-progress"], capsys
    )
    assert code == 0 and f"appending to the existing store {store} (2 episodes" in err
