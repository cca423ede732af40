"""Data-layer performance: collection steps/s vs raw gymnasium vector stepping, and batches/s.

    python -m dreamlab.benchmarks.perf_data            # writes benchmarks/results/perf_data.json (~1.5 min)

Collection: ``data.collect.collect`` with a random policy into a fresh EpisodeStore (format
version 2: chunks), against raw ``gymnasium.vector.SyncVectorEnv`` stepping with random actions
(the same envs, same number of steps, no storage) in the same run, interleaved rep by rep and
best-of-``reps`` to damp the noise of a shared machine; ``ratio_*_paired_median`` is the median
over reps of the ratio within one rep (robust to load that drifts between reps). A collection's
time includes forking the writer and waiting, at the end, for its last chunk and index update
(tens of milliseconds), so ``--steps`` is large enough to measure sustained throughput. Two envs
bracket the cost of storage: CartPole-v1 under a random policy ends an episode every ~22 steps
(the worst case), Pendulum-v1 every 200 steps. Both writers are measured (``process``, the
default: each episode goes to a forked writer process as it ends, so a SIGKILL loses only the
episodes in flight; ``inline``: chunks written in the collecting thread, see ``data.writers``).
The collector steps its envs in its own lockstep loop, not through ``SyncVectorEnv``;
``raw_lockstep_steps_per_s`` times that loop alone (the same envs, random actions, reset on
done, no policy object, buffers or storage), so ``ratio_process_vs_lockstep`` is what storage and
bookkeeping cost. ``collector_excl_writes`` (inline writer) removes the time spent writing chunks.

Sampling: ``SequenceSampler.sample(16)`` windows of length 64 over a store of ~20k CartPole steps.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import cast

import gymnasium as gym
import numpy as np
import torch

from dreamlab.core.io import atomic_write_json
from dreamlab.core.machine import run_manifest
from dreamlab.data.collect import collect, make_env
from dreamlab.data.sampling import SequenceSampler
from dreamlab.data.spaces import ActionCodec
from dreamlab.data.store import EpisodeStore

RESULTS = Path(__file__).resolve().parent / "results" / "perf_data.json"


def random_actions(rng: np.random.Generator, sp: gym.Space, n: int) -> np.ndarray:
    """``n`` uniform random actions of a Discrete or Box space."""
    if isinstance(sp, gym.spaces.Discrete):
        return rng.integers(sp.start, sp.start + sp.n, size=n)
    box = cast(gym.spaces.Box, sp)
    return rng.uniform(box.low, box.high, size=(n,) + box.shape).astype(box.dtype)


def raw_steps_per_second(env_id: str, num_envs: int, steps: int, seed: int) -> float:
    envs = gym.vector.SyncVectorEnv([lambda: gym.make(env_id) for _ in range(num_envs)])
    envs.reset(seed=seed)
    rng = np.random.default_rng(seed)
    sp = envs.single_action_space
    n = -(-steps // num_envs)
    t = time.perf_counter()
    for _ in range(n):
        a = random_actions(rng, sp, num_envs)
        envs.step(a)
    dt = time.perf_counter() - t
    envs.close()
    return n * num_envs / dt


def raw_lockstep_steps_per_second(env_id: str, num_envs: int, steps: int, seed: int) -> float:
    """The same envs stepped one by one in a plain loop (reset on done), random actions, nothing stored."""
    envs = [make_env(env_id) for _ in range(num_envs)]
    for i, e in enumerate(envs):
        e.reset(seed=seed + i)
    rng = np.random.default_rng(seed)
    sp = envs[0].action_space
    n = -(-steps // num_envs)
    t = time.perf_counter()
    for _ in range(n):
        a = random_actions(rng, sp, num_envs)
        for i, e in enumerate(envs):
            _, _, term, trunc, _ = e.step(a[i])
            if term or trunc:
                e.reset()
    dt = time.perf_counter() - t
    for e in envs:
        e.close()
    return n * num_envs / dt


def bench_collection(env_id: str, num_envs: int, steps: int, reps: int, tmp: Path) -> dict:
    raw: list[float] = []
    lockstep: list[float] = []
    ours: dict[str, list[float]] = {"inline": [], "process": []}
    excl: list[float] = []
    episodes = chunks = 0
    for r in range(reps):
        raw.append(raw_steps_per_second(env_id, num_envs, steps, seed=r))
        lockstep.append(raw_lockstep_steps_per_second(env_id, num_envs, steps, seed=r))
        for writer in ours:
            out = tmp / f"{env_id}-{r}-{writer}"
            s = collect(
                env_id, "random", steps=steps, num_envs=num_envs, seed=r, out=out, progress=False, writer=writer
            )
            ours[writer].append(s.steps_per_second)
            if writer == "inline":
                excl.append(s.steps_taken / max(s.seconds - s.write_seconds, 1e-9))
            episodes, chunks = s.episodes_stored, len(EpisodeStore(out).files())
            shutil.rmtree(out)
    best_raw = max(raw)
    paired = {w: float(np.median([o / b for o, b in zip(v, raw)])) for w, v in ours.items()}
    return {
        "env": env_id,
        "num_envs": num_envs,
        "steps": steps,
        "reps": reps,
        "episodes_per_run": episodes,
        "chunks_per_run": chunks,
        "mean_episode_steps": steps / max(episodes, 1),
        "raw_steps_per_s": best_raw,
        "raw_lockstep_steps_per_s": max(lockstep),
        "collector_inline_steps_per_s": max(ours["inline"]),
        "collector_process_steps_per_s": max(ours["process"]),
        "collector_excl_writes_steps_per_s": max(excl),
        "ratio_inline": max(ours["inline"]) / best_raw,
        "ratio_process": max(ours["process"]) / best_raw,
        "ratio": max(max(ours["inline"]), max(ours["process"])) / best_raw,
        "ratio_inline_paired_median": paired["inline"],
        "ratio_process_paired_median": paired["process"],
        "ratio_process_vs_lockstep": max(ours["process"]) / max(lockstep),
        "ratio_excl_writes": max(excl) / best_raw,
        "all_raw": raw,
        "all_lockstep": lockstep,
        "all_collector": ours,
    }


def raw_batches_per_second(episodes: list, seconds: float, batch: int = 16, length: int = 64) -> float:
    """Raw ceiling for sampling: numpy gathers of ``batch`` random windows of ``length`` from arrays
    concatenated once (obs, one-hot actions, rewards, flags), with no episode bookkeeping."""
    obs = np.concatenate([ep.obs for ep in episodes]).astype(np.float32)  # (N, *obs)
    n_act = int(max(int(np.max(ep.action)) for ep in episodes)) + 1
    act = np.eye(n_act, dtype=np.float32)[np.concatenate([ep.action for ep in episodes]).astype(np.int64)]
    rew = np.concatenate([ep.reward for ep in episodes]).astype(np.float32)  # (N,)
    flags = np.stack(
        [np.concatenate([getattr(ep, f) for ep in episodes]) for f in ("is_first", "is_last", "is_terminal")], -1
    )
    rng = np.random.default_rng(0)
    win = np.arange(length)
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        idx = rng.integers(0, len(obs) - length, size=batch)[:, None] + win  # (batch, length)
        b = {"obs": obs[idx], "action": act[idx], "reward": rew[idx], "flags": flags[idx]}
        n += 1
    assert b["obs"].shape[:2] == (batch, length)
    return n / (time.perf_counter() - t)


def bench_sampling(tmp: Path, seconds: float = 3.0, steps: int = 20_000) -> dict:
    out = tmp / "cartpole-20k"
    collect("CartPole-v1", "heuristic", steps=steps, num_envs=8, seed=0, out=out, epsilon=0.75, progress=False)
    t = time.perf_counter()
    store = EpisodeStore(out)
    episodes = store.episodes()
    load_s = time.perf_counter() - t
    sampler = SequenceSampler(episodes, ActionCodec(store.action_space), length=64, seed=0)
    sampler.sample(16)
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        b = sampler.sample(16)
        n += 1
    dt = time.perf_counter() - t
    assert b["obs"].shape == (16, 64, 4)
    raw = raw_batches_per_second(episodes, seconds)
    return {
        "store_steps": store.num_steps,
        "store_episodes": len(store),
        "load_seconds": load_s,
        "batch_size": 16,
        "seq_len": 64,
        "batches_per_s": n / dt,
        "steps_per_s": n * 16 * 64 / dt,
        "raw_batches_per_s": raw,
        "ratio": n / dt / raw,
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=60_000, help="env steps per timed run")
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--reps", type=int, default=4)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="perf_data-"))
    try:
        t0 = time.perf_counter()
        collection = [
            bench_collection(e, args.num_envs, args.steps, args.reps, tmp) for e in ("CartPole-v1", "Pendulum-v1")
        ]
        sampling = bench_sampling(tmp)
        total = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "benchmark": "perf_data",
        **run_manifest(note="shared machine: timings are noisy"),
        "goal_ratio": 0.8,
        "collection": collection,
        "sampling": sampling,
        "seconds": total,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, result, indent=1)
    for c in collection:
        print(
            f"{c['env']:12s} raw {c['raw_steps_per_s']:8.0f}/s  collector process writer "
            f"{c['collector_process_steps_per_s']:8.0f}/s ({c['ratio_process']:.2f}x, paired median "
            f"{c['ratio_process_paired_median']:.2f}x)  inline {c['collector_inline_steps_per_s']:8.0f}/s "
            f"({c['ratio_inline']:.2f}x)  vs our plain stepping loop {c['ratio_process_vs_lockstep']:.2f}x  "
            f"({c['mean_episode_steps']:.0f} steps/episode, {c['chunks_per_run']} chunks)"
        )
    print(
        f"sampling: {sampling['batches_per_s']:.0f} batches/s of 16x64 over {sampling['store_steps']} steps "
        f"(store load {sampling['load_seconds']:.2f} s)"
    )
    print(f"wrote {args.out} in {total:.0f} s")
    return result


if __name__ == "__main__":
    main()
