"""Where and from what a result was made: machine facts, git commit, package versions.

:func:`run_manifest` is what every run and benchmark records beside its figures (the command,
the resolved config, the commit, the versions and the machine), so a number in the docs can be
traced to the code and the hardware that produced it.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("dreamlab", "torch", "lightning", "gymnasium", "numpy", "transformers", "peft", "stable-baselines3")


def cpu_flags() -> set[str]:
    """CPU feature flags from /proc/cpuinfo (empty where it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def machine_info(note: str | None = None) -> dict[str, Any]:
    """Platform, CPU, threads and load at the time of the call (plus ``note``, if given)."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "amx_bf16": "amx_bf16" in cpu_flags(),
        "load_avg": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
    if "torch" in sys.modules:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    if note:
        info["note"] = note
    return info


def git_commit(root: str | Path | None = None) -> str | None:
    """The checkout's commit (with ``-dirty`` when the tree has changes), or None outside git."""
    cwd = Path(root) if root is not None else Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty else "")


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def command_line(argv: list[str] | None = None) -> str:
    """The command as typed (``dreamlab ...`` or ``python -m module ...``)."""
    argv = list(sys.argv if argv is None else argv)
    prog = Path(argv[0]).name if argv else "python"
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and prog not in ("dreamlab",):
        name = spec.name.removesuffix(".__main__")
        return " ".join(["python -m", name, *argv[1:]])
    return " ".join([prog, *argv[1:]])


def run_manifest(config: Any = None, command: str | None = None, note: str | None = None) -> dict[str, Any]:
    """The record every run writes: command, resolved config, commit, package versions, machine, time."""
    return {
        "command": command if command is not None else command_line(),
        "config": config,
        "commit": git_commit(),
        "packages": package_versions(),
        "machine": machine_info(note),
        "time": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
