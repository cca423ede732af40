"""Shared helpers for the hostile-input tests: each case builds a bad input, runs the command in
process, and checks the one-line error, the exit code, that no marker file appeared (no code
ran) and that every input file is byte-identical afterwards."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest

from dreamlab.cli import main
from tests.data.helpers import CARTPOLE, cartpole_episode, make_store

__all__ = ["CARTPOLE", "cartpole_episode", "make_store"]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``dreamlab ARGV`` in process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code: int, err: str, command: str, *needles: str | Path) -> str:
    """Exit code 2 and one line ``dreamlab COMMAND: error: ...`` naming every needle; returns the message."""
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith(f"dreamlab {command}: error: ")]
    assert len(errors) == 1, err
    assert "Traceback" not in err, err
    for n in needles:
        assert str(n) in errors[0], (n, errors[0])
    return errors[0]


def tree_bytes(*roots: Path) -> dict[str, bytes]:
    """Every file under ``roots`` (or the file itself) -> its bytes: what 'unchanged' means."""
    snap: dict[str, bytes] = {}
    for root in roots:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in paths:
            snap[str(p)] = p.read_bytes()
    return snap


def hostile_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """An importable module that writes a marker file when imported: (module name, marker path).
    If any test imports it, the marker appears."""
    name = f"hostile_{uuid.uuid4().hex[:10]}"
    marker = tmp_path / f"{name}.ran"
    code = f"from pathlib import Path\nPath({str(marker)!r}).write_text('code ran')\ndef fn(*a, **k):\n    return 0\n"
    mod_dir = tmp_path / "hostile_modules"
    mod_dir.mkdir(exist_ok=True)
    (mod_dir / f"{name}.py").write_text(code)
    monkeypatch.syspath_prepend(str(mod_dir))
    return name, marker


class PickleBomb:
    """Unpickling this (``torch.load(weights_only=False)``) writes the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({self.marker!r}, 'w').write('code ran')",))


def pickle_bomb(path: Path, marker: Path) -> Path:
    import torch

    torch.save({"state_dict": PickleBomb(marker), "dreamlab": {"format": "dreamlab-worldmodel", "version": 1}}, path)
    return path


def tiny_agent(directory: Path, env_id: str = CARTPOLE) -> Path:
    """An (untrained) DreamerAgent directory for ``env_id``: agent.json, actor.pt, worldmodel.ckpt."""
    from dreamlab.imagination.agent import DreamerAgent
    from dreamlab.imagination.dreamer import DreamerConfig
    from dreamlab.policy.actor_critic import Actor
    from dreamlab.worldmodel.config import preset
    from dreamlab.worldmodel.model import WorldModel

    env = gym.make(env_id)
    wm = WorldModel(preset("tiny"), env.observation_space, env.action_space).eval()
    cfg = DreamerConfig()
    DreamerAgent(wm, Actor(wm.feature_dim, wm.action_space, cfg.net_config()), env_id=env_id, dreamer_config=cfg).save(
        directory
    )
    return directory


def edit_json(path: Path, **changes: Any) -> None:
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta, indent=1))
