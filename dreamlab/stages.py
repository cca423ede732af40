"""The stage library: the pieces every pipeline is built from, and one way to resume them.

``quickstart`` (:mod:`dreamlab.pipeline`), ``bench`` (:mod:`dreamlab.bench`), ``cycle``
(:mod:`dreamlab.cycle`) and the benchmark scripts (``benchmarks/dreamer_targets.py``) are all
sequences of the same stages: collect logs, train a world model, score it open-loop, train an
agent in its dreams (or online), evaluate it in the real env and in the dream.

A :class:`Run` is one output folder. It writes ``OUT/manifest.json`` (command, resolved config,
git commit, package versions, machine; one entry per invocation) and runs stages through
:meth:`Run.stage`: a stage is a function returning a JSON-able dict; when it finishes,
``OUT/stages/<name>.json`` records that dict plus ``wall_s`` (atomically), and a later invocation
returns the record instead of redoing the work. Stages with checkpoints of their own (world
model, dreaming, distillation) also resume mid-stage; collection tops its store up.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dreamlab.core.io import atomic_write_json, write_csv
from dreamlab.core.machine import run_manifest

__all__ = [
    "Run",
    "Stages",
    "run_stage",
    "write_csv",
    "collect_logs",
    "train_world_model",
    "score_world_model",
    "dream_agent",
    "train_online_agent",
    "evaluate_agent",
]

Log = Callable[[str], None]


def stderr_log(prefix: str = "dreamlab") -> Log:
    def log(msg: str) -> None:
        print(f"[{prefix} {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    return log


_stderr = stderr_log()


class Stages:
    """Completion markers: ``OUT/stages/<name>.json`` holds what the stage reported."""

    def __init__(self, out: Path):
        self.dir = Path(out) / "stages"
        self.dir.mkdir(parents=True, exist_ok=True)

    def done(self, name: str) -> dict[str, Any] | None:
        p = self.dir / f"{name}.json"
        if not p.exists():
            return None
        try:
            return json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{p}: stage marker is not valid JSON ({exc}); delete it to redo stage {name!r}") from None

    def mark(self, name: str, info: dict[str, Any]) -> dict[str, Any]:
        atomic_write_json(self.dir / f"{name}.json", info)
        return info


def run_stage(stages: Stages, name: str, fn: Callable[[], dict[str, Any]], log: Log = _stderr) -> dict[str, Any]:
    """Run ``fn`` unless stage ``name`` is already marked done; return its record."""
    prev = stages.done(name)
    if prev is not None:
        log(f"{name}: already done, skipping (delete {stages.dir / (name + '.json')} to redo)")
        return prev
    log(f"{name}: starting")
    t0 = time.perf_counter()
    info = fn()
    info["wall_s"] = round(time.perf_counter() - t0, 1)
    log(f"{name}: done in {info['wall_s']:.0f} s")
    return stages.mark(name, info)


class Run:
    """One output folder: its manifest and its resumable stages."""

    def __init__(self, out: str | Path, config: Any = None, log: Log = _stderr, manifest: bool = True):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.log = log
        self.stages = Stages(self.out)
        if manifest:
            self.write_manifest(config)

    def write_manifest(self, config: Any) -> dict[str, Any]:
        """``OUT/manifest.json``: this invocation's record appended to the earlier ones."""
        import dataclasses

        cfg = (
            dataclasses.asdict(config) if dataclasses.is_dataclass(config) and not isinstance(config, type) else config
        )
        path = self.out / "manifest.json"
        entry = run_manifest(cfg)
        previous: list[dict[str, Any]] = []
        if path.exists():
            try:
                previous = list(json.loads(path.read_text()).get("invocations", []))
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                previous = []  # an unreadable manifest is replaced, never trusted
        record = {**entry, "invocations": [*previous, {k: entry[k] for k in ("command", "commit", "time")}]}
        atomic_write_json(path, record)
        return record

    def stage(self, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        return run_stage(self.stages, name, fn, self.log)

    def done(self, name: str) -> dict[str, Any] | None:
        return self.stages.done(name)

    def seconds(self, names: tuple[str, ...] | list[str]) -> dict[str, float]:
        """Wall seconds of finished stages (summed over resumptions: each ran once)."""
        out = {}
        for n in names:
            rec = self.stages.done(n)
            if rec is not None:
                out[n] = float(rec.get("wall_s", 0.0))
        return out


# ------------------------------------------------------------------------------ the stages
def collect_logs(
    env_id: str,
    policy: Any,
    steps: int,
    out: Path,
    num_envs: int = 8,
    seed: int = 0,
    epsilon: float = 0.0,
    progress: bool = True,
    loaders: tuple[Any, ...] = (),
) -> dict[str, Any]:
    """Logs of ``policy`` (a Policy or a ``--policy`` spec) in ``env_id`` until the store at ``out``
    holds ``steps`` steps; an interrupted store is topped up (seeded past what it holds)."""
    from dreamlab.data.collect import collect
    from dreamlab.data.store import EpisodeStore

    out = Path(out)
    have = EpisodeStore(out).num_steps if (out / "metadata.json").exists() else 0
    if have < steps:
        collect(
            env_id,
            policy,
            steps - have,
            num_envs=num_envs,
            seed=seed + have,
            out=out,
            epsilon=epsilon,
            progress=progress,
            loaders=loaders,
        )
    return {"epsilon": epsilon, **EpisodeStore(out).stats().summary()}


def train_world_model(
    logs: Path,
    out: Path,
    cfg: Any,
    steps: int,
    minutes: float | None = None,
    progress: bool = True,
    log: Log | None = None,
    precision: str = "auto",
) -> dict[str, Any]:
    """Train (or continue training, up to ``steps`` in all) the world model ``cfg`` on ``logs``.

    ``steps`` is the budget; ``minutes`` is a safety net. The result says ``cut_short`` (a dict, or
    None) when the safety net stopped training before the budget, so reports can say so."""
    from dreamlab.worldmodel.train import train

    kwargs: dict[str, Any] = {"log": log} if log is not None else {}
    ckpt = train(
        logs,
        out,
        cfg,
        max_steps=steps,
        max_minutes=minutes,
        progress=progress,
        accelerator="auto",
        precision=precision,
        **kwargs,
    )
    summary_path = Path(out) / "train_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return {
        "checkpoint": str(ckpt),
        "global_step": summary.get("global_step"),
        "step_budget": int(steps),
        "cut_short": summary.get("cut_short"),
        "precision": summary.get("precision"),
    }


def episode_limit(env_id: str) -> int:
    """The env's registered episode limit (1000 when it has none)."""
    import gymnasium as gym

    return int(gym.spec(env_id).max_episode_steps or 1000)


def cut_short_note(what: str, info: dict[str, Any] | None) -> str | None:
    """A one-line warning for a report when a wall-clock safety net cut ``what`` short, else None."""
    cut = (info or {}).get("cut_short")
    if not cut:
        return None
    budget = info.get("step_budget") if info else None
    of = f" of {budget}" if budget else ""
    return (
        f"warning: {what} was cut short by its {cut['minutes']:g}-minute wall-clock safety net at "
        f"{cut['steps']}{of} steps: this machine was slower (or busier) than the budget assumes"
    )


def score_world_model(
    ckpt: Path, logs: Path, seed: int = 0, context: int = 8, horizon: int = 15, out_json: Path | None = None
) -> dict[str, Any]:
    """Open-loop error of the world model on the held-out episodes of ``logs`` (the split its
    training used), against copy-last; the horizon shrinks to fit short episodes (0: not scored)."""
    from dreamlab.data.sampling import split_names
    from dreamlab.data.store import EpisodeStore
    from dreamlab.worldmodel.evaluate import evaluate
    from dreamlab.worldmodel.model import WorldModel

    wm = WorldModel.load(ckpt)
    store = EpisodeStore(logs)
    _, val = split_names(store.names(), wm.cfg.val_fraction, wm.cfg.seed)
    episodes = store.episodes(val)
    horizon = min(horizon, max(ep.length for ep in episodes) - context)
    info: dict[str, Any] = {"val_episodes": len(val), "openloop_horizon": horizon, "openloop_summary": {}}
    if horizon >= 1:
        result = evaluate(wm, episodes, context=context, horizon=horizon, seed=seed)
        if out_json is not None:
            atomic_write_json(out_json, result)
        info.update(openloop_summary=result["summary"], one_step=result["one_step"])
    return info


def dream_agent(
    ckpt: Path,
    logs: Path,
    agent_dir: Path,
    steps: int,
    seed: int = 0,
    save_every: int = 250,
    dreamer: Any = None,
    callback: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = True,
    precision: str = "auto",
) -> dict[str, Any]:
    """A Dreamer actor-critic trained ``steps`` updates (in all: it resumes) only in the dreams of ``ckpt``."""
    from dreamlab.imagination.loops import OfflineConfig, dream_offline
    from dreamlab.worldmodel.model import WorldModel

    ocfg = OfflineConfig(steps=steps, seed=seed, save_every=save_every, precision=precision)
    dream_offline(
        WorldModel.load(ckpt), logs, agent_dir, ocfg, dreamer, wm_path=ckpt, progress=progress, callback=callback
    )
    return {"agent": str(agent_dir), "updates": steps}


def train_online_agent(env_id: str, out: Path, cfg: Any, dreamer: Any = None, progress: bool = True) -> dict[str, Any]:
    """Online Dreamer in the real env (resumes from ``out``); the agent lands in ``out/agent``."""
    import dataclasses

    from dreamlab.imagination.loops import train_online

    train_online(env_id, out, cfg, dreamer, progress=progress)
    return {"agent": str(Path(out) / "agent"), "online_config": dataclasses.asdict(cfg)}


def evaluate_agent(
    agent_dir: Path, env_id: str, episodes: int, seed: int, greedy: bool | None = None
) -> dict[str, Any]:
    """The agent's real return and its dream return from the same start states (``dream_vs_real``)."""
    from dreamlab.imagination.agent import DreamerAgent
    from dreamlab.imagination.evaluate import dream_vs_real

    return dream_vs_real(DreamerAgent.load(agent_dir, greedy=greedy), env_id, episodes, seed=seed)
