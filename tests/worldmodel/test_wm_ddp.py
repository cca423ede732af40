"""Multi-process training through Lightning's strategy="ddp": 2 CPU processes (gloo)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dreamlab.worldmodel.model import WorldModel


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_ddp_two_cpu_processes_train_and_checkpoint_loads(cartpole_logs: Path, tmp_path: Path):
    out = tmp_path / "ddp"
    env = dict(
        os.environ, OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), PYTHONWARNINGS="ignore"
    )
    cmd = [
        sys.executable,
        "-m",
        "dreamlab",
        "train-wm",
        "--logs",
        str(cartpole_logs),
        "--out",
        str(out),
        "--preset",
        "tiny",
        "--max-steps",
        "4",
        "--batches-per-epoch",
        "4",
        "--no-progress",
        "--strategy",
        "ddp",
        "--devices",
        "2",
        "--accelerator",
        "cpu",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=150)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "MEMBER: 2/2" in log, log[-3000:]  # both ranks joined the process group
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["global_step"] == 4
    model = WorldModel.load(out / "world_model.ckpt")
    assert model.cfg.deter == 32
    WorldModel.load(out / "last.ckpt")
