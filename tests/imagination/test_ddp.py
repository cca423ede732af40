"""The Dreamer and GRPO loops on Lightning Fabric with strategy ddp: 2 CPU processes (gloo) stay in step.

Each test runs the real command in two processes and checks that both ranks end with the same
weight digest, and that this digest differs from a one-process run with the same seed: had the
second rank drawn the same start states as the first, the averaged gradients would equal the
first rank's, and so would the weights.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dreamlab.cli import main
from dreamlab.core.precision import resolve_precision


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _two_processes(args: list[str]) -> str:
    env = dict(
        os.environ, OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), PYTHONWARNINGS="ignore"
    )
    cmd = [sys.executable, "-m", "dreamlab", *args, "--strategy", "ddp", "--devices", "2", "--accelerator", "cpu"]
    proc = subprocess.run(
        cmd + ["--threads", "1", "--no-progress"], env=env, capture_output=True, text=True, timeout=240
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    return log


def _dream_args(tiny_dream: dict, out: Path) -> list[str]:
    args = ["dream", "--wm", str(tiny_dream["wm_path"]), "--logs", str(tiny_dream["logs"]), "--out", str(out)]
    return args + ["--steps", "3", "--batch-size", "2", "--seq-len", "8", "--save-every", "2"]


@pytest.mark.slow
def test_dream_on_two_cpu_processes_ends_with_identical_actor_weights(tiny_dream: dict, tmp_path: Path) -> None:
    small = ["--dreamer.hidden", "16", "--dreamer.max-starts", "16", "--dreamer.horizon", "5"]
    args = _dream_args(tiny_dream, tmp_path / "ddp") + small + ["--precision", "bf16-mixed"]
    _two_processes(args)
    summary = json.loads((tmp_path / "ddp" / "dream.json").read_text())
    other = json.loads((tmp_path / "ddp" / "rank1.json").read_text())
    assert summary["run"]["world_size"] == 2 and summary["run"]["precision"] == "bf16-mixed"
    assert summary["run"]["actor_digest"] == other["actor_digest"]
    assert summary["run"]["critic_digest"] == other["critic_digest"]
    state = torch.load(tmp_path / "ddp" / "train_state.pt", weights_only=True)
    assert state["step"] == 3 and state["learner"]["updates"] == 3
    # the same run in one process (in-process, same seed) ends elsewhere: the ranks had their own data
    one = _dream_args(tiny_dream, tmp_path / "one") + small + ["--precision", "bf16-mixed", "--no-progress"]
    assert main(one + ["--threads", "1"]) == 0
    single = json.loads((tmp_path / "one" / "dream.json").read_text())["run"]
    assert single["world_size"] == 1 and not (tmp_path / "one" / "rank1.json").exists()
    assert single["actor_digest"] != summary["run"]["actor_digest"]


@pytest.mark.slow
def test_grpo_on_two_cpu_processes_ends_with_identical_weights(tiny_dream: dict, tmp_path: Path) -> None:
    base = ["dream", "--algo", "grpo", "--wm", str(tiny_dream["wm_path"]), "--logs", str(tiny_dream["logs"])]
    grpo = ["--grpo.iterations", "2", "--grpo.groups", "2", "--grpo.group-size", "4", "--grpo.horizon", "10"]
    grpo += ["--grpo.epochs", "1", "--grpo.bc-steps", "5", "--grpo.hidden", "16", "--grpo.layers", "1"]
    log = _two_processes(base + ["--out", str(tmp_path / "ddp")] + grpo)
    assert log.count("GRPO agent written to") == 1  # rank 0 reports
    meta = json.loads((tmp_path / "ddp" / "grpo_agent.json").read_text())
    other = json.loads((tmp_path / "ddp" / "rank1.json").read_text())
    auto = resolve_precision("auto", "cpu")  # 32 here, or bf16-mixed on a CPU with fast bf16
    assert meta["run"]["world_size"] == 2 and meta["run"]["precision"] == auto
    assert meta["run"]["weights_digest"] == other["weights_digest"]
    assert meta["last"]["kept_groups"] > 0  # both iterations updated the policy on kept groups
    assert meta["imagined_steps"] > 2 * 2 * 4 * 10  # more than one rank can imagine: both are counted
    assert main(base + ["--out", str(tmp_path / "one"), "--threads", "1", "--no-progress"] + grpo) == 0
    single = json.loads((tmp_path / "one" / "grpo_agent.json").read_text())["run"]
    assert single["world_size"] == 1 and single["weights_digest"] != meta["run"]["weights_digest"]
