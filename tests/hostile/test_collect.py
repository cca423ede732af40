"""Collection under SIGKILL: each episode leaves the collector as it ends, so a kill loses only
the episodes in flight; the writer child writes and indexes what it holds and ends with its
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


COUNTING_COLLECT = """
import os, sys
import gymnasium as gym
from dreamlab.core.protocol import RandomPolicy
from dreamlab.data.collect import collect

class Counting:
    # Writes, before each step, how many episodes have ended so far (all handed to the writer).
    def __init__(self, path, k):
        self.inner = RandomPolicy(gym.make("CartPole-v1").action_space, seed=0)
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        self.ended = -k  # the first call marks every env's first episode as new

    def reset(self, n):
        self.inner.reset(n)

    def act(self, obs, is_first):
        self.ended += int(is_first.sum())
        os.pwrite(self.fd, b"%12d" % self.ended, 0)
        return self.inner.act(obs, is_first)

out, count, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
collect("CartPole-v1", Counting(count, k), steps=10**9, num_envs=k, out=out, progress=False)
"""


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_sigkill_loses_only_episodes_in_flight_and_the_writer_ends_with_its_parent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, count, k = tmp_path / "s", tmp_path / "ended", 2
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-c", COUNTING_COLLECT, str(out), str(count), str(k)]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while _indexed(out) < 10 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert _indexed(out) >= 10, proc.stderr.read().decode() if proc.poll() is not None else "too slow"
        writers = _children(proc.pid)
        assert writers, "expected the forked episode writer"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        ended = int(count.read_bytes())  # episodes that ended before the last step began
        deadline = time.monotonic() + 15
        while not all(_gone(w) for w in writers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(_gone(w) for w in writers), "the writer outlived its parent"
    finally:
        if proc.poll() is None:
            proc.kill()
    # every episode that ended is stored and indexed; only the last step's may be missing
    store = EpisodeStore(out)
    assert ended >= 10 and ended <= len(store) <= ended + k, (ended, len(store))
    assert store.orphans() == [] and store.check() == [] and store.version == 2
    # the next collection removes a dead writer's temporary chunk and adopts an unindexed one
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = store.chunk_dir / f".tmp-ck-{time.time_ns():020d}-{int(dead.stdout)}-deadbeef.npz"
    stale.write_bytes(b"half a chunk")
    orphan = store.chunk_dir / f"ck-{time.time_ns():020d}-{int(dead.stdout)}-0rphan00.npz"
    orphan.write_bytes(store.files()[0].read_bytes())  # as a writer killed before indexing leaves it
    before = len(store)
    code, _, err = run_cli(["collect", "--env", "CartPole-v1", "--steps", "20", "--out", out, "--no-progress"], capsys)
    assert code == 0, err
    notes = [ln for ln in err.splitlines() if "appending to the existing store" in ln]
    assert len(notes) == 1 and str(out) in notes[0], err
    assert "stale temporary files removed" in notes[0] and "unindexed episodes adopted" in notes[0]
    assert not list(store.chunk_dir.glob(".tmp-*"))
    store.refresh()
    adopted = len(store.read_chunk(orphan.name))
    assert len(store) >= before + adopted + 1 and store.orphans() == []
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
