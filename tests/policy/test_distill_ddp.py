"""Distillation on Lightning Fabric with strategy ddp: 2 CPU processes (gloo) stay in step."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_ddp_two_cpu_processes_end_with_identical_weights(base_dir: Path, tmp_path: Path, finetune: str) -> None:
    out = tmp_path / "ddp"
    env = dict(
        os.environ, OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), PYTHONWARNINGS="ignore"
    )
    cmd = [sys.executable, "-m", "dreamlab", "distill", "--teacher", "heuristic", "--student", str(base_dir)]
    cmd += ["--env", "CartPole-v1", "--out", str(out), "--num-envs", "2", "--steps-per-rollout", "4"]
    cmd += ["--max-updates", "3", "--max-labelled-tokens", "100000", "--minibatch", "4", "--lr", "1e-2"]
    cmd += ["--finetune", finetune, "--strategy", "ddp", "--devices", "2", "--accelerator", "cpu", "--threads", "1"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    summary = json.loads((out / "distill.json").read_text())
    other = json.loads((out / "rank1.json").read_text())
    assert summary["run"]["world_size"] == 2 and summary["run"]["finetune"] == finetune
    assert summary["updates"] == 3
    # both ranks labelled their own decisions, the budget counts all of them ...
    assert summary["labelled_tokens"] > 3 * 4 * 2
    # ... and the averaged gradients kept the two copies of the model identical
    assert summary["run"]["weights_digest"] == other["weights_digest"]
    from dreamlab.policy.llm import LLMPolicy

    LLMPolicy.from_pretrained(out)  # the result (merged, for LoRA) reloads
