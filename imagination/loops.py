"""The two training loops: offline dreaming from fixed logs, and online Dreamer training.

**Offline** (:func:`dream_offline`, ``dreamlab dream``): a trained world model and fixed logs;
each update replays a batch of real sequences, filters them into posterior states, imagines
from there and updates the actor-critic. No real env is touched. The world model is frozen.

**Online** (:func:`train_online`, ``dreamlab train``): collect with the current agent (random
during ``prefill``), store finished episodes in ``RUN/replay`` (an EpisodeStore), train the
world model on replayed sequences, dream, act. ``replay_ratio`` is the number of replayed
time steps (``batch_size * seq_len`` per update) per real env step: with 16 x 64 batches a
ratio of 64 means one world-model + actor-critic update every 16 env steps.

Both write their agent directory (see :mod:`imagination.agent`) plus ``train_state.pt`` (all
weights, optimiser states, counters; ``torch.load(weights_only=True)``) every ``save_every``
updates/steps, and resume from it when started again with the same output directory.

**Where they run** (the same four settings as every dreamlab command, Lightning's words):
``precision`` (``auto`` = ``bf16-mixed`` where bf16 is fast, else ``32``; see
:mod:`imagination.mixed`), ``accelerator``, ``strategy`` (``ddp`` for several processes) and
``devices``, on Lightning Fabric (:mod:`policy.scale`). Under ddp every rank replays its own
batches (its own seed, ``seed + 1000 * rank``) and, online, steps its own env; the gradients of
the actor, the critic and (online) the world model are averaged before every optimiser step, so
all ranks keep identical weights. Rank 0 alone writes the outputs (the agent, ``train_state.pt``,
``metrics.jsonl``, the replay); another rank writes only ``rank{r}.json`` with its weight digests.
A resumed rank 0 continues its random streams exactly; other ranks reseed from (seed, rank, step)
and, online, start from rank 0's stored replay. The resolved precision and the world size are
recorded in ``OUT/dream.json`` (offline) and the last row of ``metrics.jsonl`` (online).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch

from dreamlab.core.errors import DreamlabError
from dreamlab.core.io import atomic_torch_save, atomic_write_json, safe_torch_load
from dreamlab.core.precision import resolve_precision
from dreamlab.core.progress import Progress
from dreamlab.core.seeding import derive_seed
from dreamlab.data.episodes import Episode
from dreamlab.data.sampling import SequenceSampler
from dreamlab.data.store import EpisodeStore
from dreamlab.imagination.agent import DreamerAgent
from dreamlab.imagination.dreamer import DreamerConfig, DreamerLearner
from dreamlab.policy.scale import (
    agree_all,
    broadcast_modules,
    check_placement,
    fabric_for,
    rank_seed,
    sync_grads,
    weights_digest,
    write_rank_file,
)


class LoopError(DreamlabError):
    """Bad inputs to a training loop (names the file or field)."""


@dataclass
class OfflineConfig:
    steps: int = 300  # actor-critic updates
    batch_size: int = 16  # replayed sequences per update (start states come from these)
    seq_len: int = 64
    save_every: int = 250
    seed: int = 0
    precision: str = "auto"  # auto | 32 | bf16-mixed (Lightning's words; auto = bf16 where it is fast)
    accelerator: str = "auto"  # auto | cpu | cuda
    strategy: str = "auto"  # auto | ddp (several processes, gradients averaged)
    devices: int = 1  # processes (ddp) or devices

    def validate(self) -> OfflineConfig:
        check_placement(self.precision, self.accelerator, self.strategy, self.devices, type(self).__name__)
        return self


@dataclass
class OnlineConfig:
    steps: int = 10_000  # real env steps
    preset: str = "small"  # world-model preset
    prefill: int = 1000  # random-policy steps before learning starts
    pretrain: int = 200  # world-model-only updates right after prefill (covers its lr warm-up)
    replay_ratio: float = 64.0  # replayed steps per env step
    batch_size: int = 16
    seq_len: int = 64
    eval_every: int = 2500  # env steps between real evaluations (0 = never)
    eval_episodes: int = 5
    save_every: int = 2000  # env steps
    cont_terminal_weight: float = 10.0  # world model: weight of terminal steps in the continue loss
    seed: int = 0
    precision: str = "auto"  # auto | 32 | bf16-mixed (the actor-critic; the world model trains in fp32)
    accelerator: str = "auto"  # auto | cpu | cuda
    strategy: str = "auto"  # auto | ddp (several processes, each with its own env)
    devices: int = 1

    def validate(self) -> OnlineConfig:
        check_placement(self.precision, self.accelerator, self.strategy, self.devices, type(self).__name__)
        return self


def _load_state(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    state = safe_torch_load(path, "training state to resume from (delete it to start over)", LoopError)
    if not isinstance(state, dict):
        raise LoopError(
            f"{path}: expected a dict of training state, got {type(state).__name__}; delete it to start over"
        )
    return state


def _rng_to_json(rng: np.random.Generator) -> str:
    return json.dumps(rng.bit_generator.state)


def _rng_from_json(text: str) -> np.random.Generator:
    rng = np.random.default_rng()
    rng.bit_generator.state = json.loads(text)
    return rng


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


# ====================================================================================== offline
def dream_offline(
    wm: Any,
    logs: str | Path,
    out: str | Path,
    cfg: OfflineConfig | None = None,
    dcfg: DreamerConfig | None = None,
    wm_path: str | Path | None = None,
    progress: bool = True,
    callback: Callable[[int, dict[str, float]], None] | None = None,
    fabric: Any = None,
) -> DreamerAgent:
    """Train an actor-critic in the dreams of a frozen world model, starting from ``logs``.

    ``fabric``: a launched Lightning Fabric (default: one made from ``cfg``'s placement fields);
    the world model is moved to its device. ``callback`` runs on rank 0 only."""
    cfg, dcfg = (cfg or OfflineConfig()).validate(), dcfg or DreamerConfig()
    fabric = fabric if fabric is not None else fabric_for(cfg)
    rank, device = int(fabric.global_rank), fabric.device
    precision = resolve_precision(cfg.precision, device)
    out = Path(out)
    store = EpisodeStore(logs)
    if len(store) == 0:
        raise LoopError(f"{logs}: the store is empty (no episodes to dream from)")
    if hasattr(wm, "check_spaces"):
        wm.check_spaces(store.observation_space, store.action_space, logs)
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    seed = rank_seed(cfg.seed, rank)
    sampler = SequenceSampler(store.episodes(), wm.codec, cfg.seq_len, seed=seed, source=str(logs))
    learner = DreamerLearner(wm.feature_dim, wm.action_space, dcfg, precision=precision, fabric=fabric)
    wm = fabric.to_device(wm).eval()
    learner = fabric.to_device(learner)
    start = 0
    blob = _load_state(out / "train_state.pt")
    if blob is not None:
        learner.load_full_state(blob["learner"])
        start = int(blob["step"])
        if rank == 0:
            sampler.rng = _rng_from_json(blob["sampler_rng"])
            torch.set_rng_state(blob["torch_rng"])
        else:
            sampler.rng = np.random.default_rng(derive_seed(cfg.seed, rank, start))
            torch.manual_seed(derive_seed(cfg.seed, rank, start, 1))
    elif rank > 0:
        torch.manual_seed(seed)  # its own imagination samples
    broadcast_modules(fabric, learner)
    agent = DreamerAgent(wm, learner.actor, env_id=store.env_id, dreamer_config=dcfg)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)

    def save(step: int) -> None:
        if rank != 0:
            return
        agent.save(out, wm_path=wm_path)
        atomic_torch_save(
            {
                "learner": learner.full_state(),
                "step": step,
                "sampler_rng": _rng_to_json(sampler.rng),
                "torch_rng": torch.get_rng_state(),
            },
            out / "train_state.pt",
        )

    bar = Progress(
        range(start, cfg.steps),
        initial=start,
        total=cfg.steps,
        desc="dream",
        enabled=progress and rank == 0,
        unit="upd",
    )
    t0 = time.time()
    m: dict[str, float] = {}
    for step in bar:
        batch = _to(sampler.sample(cfg.batch_size), device)
        starts, cont = learner.starts_from_batch(wm, batch)
        m = learner.train_step(wm, starts, cont)
        bar.set_postfix(
            ret=f"{m['return']:.2f}",
            ent=f"{m['entropy']:.2f}",
            closs=f"{m['critic_loss']:.2f}",
            ups=f"{(step + 1 - start) / max(1e-9, time.time() - t0):.1f}",
        )
        if (step + 1) % cfg.save_every == 0:
            save(step + 1)
        if callback is not None and rank == 0:  # after the save, so a callback may load the agent of this step
            callback(step + 1, m)
    save(cfg.steps)
    seconds = time.time() - t0
    digests = {"actor_digest": weights_digest(learner.actor), "critic_digest": weights_digest(learner.critic)}
    run = {"precision": precision, "world_size": int(fabric.world_size), "device": str(device), **digests}
    if rank == 0:
        done = cfg.steps - start
        atomic_write_json(
            out / "dream.json",
            {
                "run": run,
                "steps": cfg.steps,
                "session_updates": done,
                "session_seconds": seconds,
                "updates_per_s": done / max(seconds, 1e-9),
                "last": m,
            },
            indent=1,
        )
    write_rank_file(out, fabric, run)
    return agent


# ====================================================================================== online
def _prefill_policy(space: gym.Space, rng: np.random.Generator) -> Callable[[np.ndarray], np.ndarray]:
    def act(obs: np.ndarray) -> np.ndarray:
        if isinstance(space, gym.spaces.Discrete):
            return rng.integers(space.start, space.start + space.n, size=obs.shape[0])
        box = cast(gym.spaces.Box, space)
        return rng.uniform(box.low, box.high, size=(obs.shape[0],) + box.shape).astype(box.dtype)

    return act


def train_online(
    env_id: str,
    out: str | Path,
    cfg: OnlineConfig | None = None,
    dcfg: DreamerConfig | None = None,
    wm_overrides: dict[str, Any] | None = None,
    progress: bool = True,
    log: Callable[[dict[str, Any]], None] | None = None,
    fabric: Any = None,
) -> DreamerAgent:
    """Collect -> train the world model -> dream -> act, for ``cfg.steps`` real env steps
    (per rank; ``fabric`` as in :func:`dream_offline`; ``log`` runs on rank 0 only)."""
    from dreamlab.imagination.evaluate import evaluate_real  # noqa: PLC0415 (avoid a cycle at import)
    from dreamlab.worldmodel.config import preset
    from dreamlab.worldmodel.model import WorldModel

    cfg, dcfg = (cfg or OnlineConfig()).validate(), dcfg or DreamerConfig()
    fabric = fabric if fabric is not None else fabric_for(cfg)
    rank, device = int(fabric.global_rank), fabric.device
    precision = resolve_precision(cfg.precision, device)
    out = Path(out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    env = gym.make(env_id)
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    wcfg = preset(cfg.preset, **{"cont_terminal_weight": cfg.cont_terminal_weight, **(wm_overrides or {})})
    wm = WorldModel(wcfg, env.observation_space, env.action_space)
    opt_conf = wm.configure_optimizers()
    wm_opt, wm_sched = opt_conf["optimizer"], opt_conf["lr_scheduler"]["scheduler"]
    learner = DreamerLearner(wm.feature_dim, wm.action_space, dcfg, precision=precision, fabric=fabric)
    wm, learner = fabric.to_device(wm), fabric.to_device(learner)
    replay_dir = out / "replay"
    store: EpisodeStore | None = None  # rank 0's replay on disk; other ranks keep theirs in memory
    if rank == 0:
        store = (
            EpisodeStore(replay_dir)
            if (replay_dir / "metadata.json").exists()
            else EpisodeStore.create(replay_dir, env_id, env.observation_space, env.action_space)
        )
    fabric.barrier()
    episodes = (store or EpisodeStore(replay_dir)).episodes()  # resumed ranks > 0: rank 0's replay
    seed = rank_seed(cfg.seed, rank)
    rng = np.random.default_rng(seed)
    env_steps, updates, credit = sum(ep.num_steps for ep in episodes), 0, 0.0
    blob = _load_state(out / "train_state.pt")
    if blob is not None:
        wm.load_state_dict(blob["wm"])
        wm_opt.load_state_dict(blob["wm_opt"])
        wm_sched.load_state_dict(blob["wm_sched"])
        learner.load_full_state(blob["learner"])
        updates, credit = int(blob["updates"]), float(blob["credit"])
        rng = _rng_from_json(blob["rng"]) if rank == 0 else np.random.default_rng(derive_seed(cfg.seed, rank, updates))
    if rank > 0:
        torch.manual_seed(derive_seed(cfg.seed, rank, updates, 1) if blob is not None else seed)
    broadcast_modules(fabric, wm, learner)
    wm_params = list(wm.parameters())
    agent = DreamerAgent(wm, learner.actor, greedy=False, env_id=env_id, dreamer_config=dcfg, seed=seed)
    random_act = _prefill_policy(env.action_space, rng)
    per_update = cfg.batch_size * cfg.seq_len
    sampler: SequenceSampler | None = None
    metrics_path = out / "metrics.jsonl"

    def save() -> None:
        if rank != 0:
            return
        agent.save(out / "agent")
        atomic_torch_save(
            {
                "wm": wm.state_dict(),
                "wm_opt": wm_opt.state_dict(),
                "wm_sched": wm_sched.state_dict(),
                "learner": learner.full_state(),
                "updates": updates,
                "credit": credit,
                "env_steps": env_steps,
                "rng": _rng_to_json(rng),
            },
            out / "train_state.pt",
        )

    def record(row: dict[str, Any]) -> None:
        if rank != 0:
            return
        with open(metrics_path, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        if log is not None:
            log(row)

    def update(actor_critic: bool = True) -> dict[str, float]:
        nonlocal sampler, updates
        if updates == 0 and blob is None and hasattr(wm, "set_obs_stats"):
            wm.set_obs_stats(np.concatenate([ep.obs for ep in episodes]))  # fixed from the prefill data
            broadcast_modules(fabric, wm)  # several ranks: rank 0's statistics for all
        if sampler is None:
            sampler = SequenceSampler(episodes, wm.codec, cfg.seq_len, seed=int(rng.integers(2**31)))
        batch = _to(sampler.sample(cfg.batch_size), device)
        wm.train()
        loss, wm_m, post = wm.loss(batch, return_post=True)
        wm_opt.zero_grad(set_to_none=True)
        loss.backward()
        sync_grads(fabric, wm_params)
        torch.nn.utils.clip_grad_norm_(wm_params, wcfg.grad_clip)
        wm_opt.step()
        wm_sched.step()
        wm.eval()
        m: dict[str, float] = {}
        if actor_critic:
            # start states: the posteriors of the world-model pass just made (no second filtering)
            starts, cont = learner.starts_from_post(post, batch["is_terminal"])
            m = learner.train_step(wm, starts, cont)
        updates += 1
        m.update({f"wm_{k}": float(v) for k, v in wm_m.items()})
        return m

    bar: Progress[Any] = Progress(
        total=cfg.steps,
        initial=min(env_steps, cfg.steps),
        desc=f"train {env_id}",
        enabled=progress and rank == 0,
        unit="step",
    )
    obs, _ = env.reset(seed=int(rng.integers(2**31)))
    ep_obs, ep_act, ep_rew = [obs], [], []
    agent.reset(1)
    first = True
    last_m: dict[str, float] = {}
    next_eval = (env_steps // cfg.eval_every + 1) * cfg.eval_every if cfg.eval_every else None
    next_save = (env_steps // cfg.save_every + 1) * cfg.save_every
    t0, s0, cpu0 = time.time(), env_steps, time.process_time()
    spent = {"act": 0.0, "update": 0.0, "eval": 0.0}  # wall seconds by phase (this session)
    learning = False  # set once every rank is past the prefill with a sequence's worth of replay
    try:
        while env_steps < cfg.steps:
            tic = time.perf_counter()
            if env_steps < cfg.prefill:
                action = random_act(obs[None])[0]
            else:
                action = agent.act(obs[None], np.array([first]))[0]
            spent["act"] += time.perf_counter() - tic
            first = False
            obs, rew, term, trunc, _ = env.step(action)
            ep_obs.append(obs)
            ep_act.append(action)
            ep_rew.append(float(rew))
            env_steps += 1
            bar.update(1)
            if term or trunc:
                ep = Episode.from_transitions(ep_obs, ep_act, ep_rew, bool(term), action_space=env.action_space)
                if store is not None:
                    store.add(ep)
                episodes.append(ep)
                sampler = None
                record({"env_steps": env_steps, "episode_return": ep.ret, "updates": updates})
                bar.set_postfix(
                    ret=f"{ep.ret:.1f}",
                    upd=updates,
                    sps=f"{(env_steps - s0) / (time.time() - t0):.1f}",
                    **({"wm": f"{last_m.get('wm_loss', 0):.2f}"} if last_m else {}),
                )
                obs, _ = env.reset(seed=int(rng.integers(2**31)))
                ep_obs, ep_act, ep_rew = [obs], [], []
                first = True
            tic = time.perf_counter()
            if not learning and env_steps >= cfg.prefill:
                learning = agree_all(fabric, sum(e.length for e in episodes) >= cfg.seq_len)
            if learning:
                if updates == 0 and cfg.pretrain > 0:
                    for _ in range(cfg.pretrain):
                        last_m = update(actor_critic=False)
                credit += cfg.replay_ratio / per_update
                while credit >= 1.0:
                    credit -= 1.0
                    last_m = update()
            spent["update"] += time.perf_counter() - tic
            if next_eval is not None and env_steps >= next_eval:
                next_eval += cfg.eval_every
                if rank == 0:  # rank 0 evaluates and records
                    tic = time.perf_counter()
                    rets = evaluate_real(
                        DreamerAgent(wm, learner.actor, greedy=True), env_id, cfg.eval_episodes, seed=10_000 + env_steps
                    )
                    spent["eval"] += time.perf_counter() - tic
                    record(
                        {
                            "env_steps": env_steps,
                            "eval_mean": float(rets.mean()),
                            "eval_std": float(rets.std()),
                            "updates": updates,
                            "minutes": (time.time() - t0) / 60,
                            **last_m,
                        }
                    )
            if env_steps >= next_save:
                next_save += cfg.save_every
                save()
    finally:
        bar.close()
    save()
    run = {
        "precision": precision,
        "world_size": int(fabric.world_size),
        "device": str(device),
        "actor_digest": weights_digest(learner.actor),
        "wm_digest": weights_digest(wm),
    }
    record(
        {
            "env_steps": env_steps,
            "updates": updates,
            "final": True,
            "wall_s": time.time() - t0,
            "cpu_s": time.process_time() - cpu0,
            **{f"{k}_s": v for k, v in spent.items()},
            **run,
        }
    )
    write_rank_file(out, fabric, run)
    return DreamerAgent(wm, learner.actor, greedy=True, env_id=env_id, dreamer_config=dcfg)
