"""Time of one world-model training step (batch 16 x length 64) per preset, against a plain
PyTorch RSSM of identical sizes written here, timed in the same run (issue 3, item 8).

"Ours" is :class:`worldmodel.model.WorldModel` (``loss`` + backward + clip + Adam step), and the
same step inside Lightning's ``Trainer.fit`` (per-step time between batch starts). "Plain" is a
straightforward single-file RSSM: concatenations feeding each linear layer inside the time loop,
``torch.distributions.OneHotCategoricalStraightThrough`` for the latents, the same heads and losses.
Ours and plain alternate repetition by repetition so that load from other jobs hits both alike.

    python -m dreamlab.benchmarks.perf_worldmodel [--presets tiny small medium large] [--reps N]

Writes ``benchmarks/results/perf_worldmodel.json`` with the machine and thread count.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dreamlab.core.io import atomic_write_json
from dreamlab.core.machine import run_manifest
from dreamlab.core.precision import autocast, bf16_fast, resolve_precision
from dreamlab.worldmodel.config import WorldModelConfig, preset
from dreamlab.worldmodel.model import WorldModel

RESULTS = Path(__file__).resolve().parent / "results"
OBS_DIM, N_ACT, B, T = 8, 4, 16, 64


def make_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    first = torch.zeros(B, T, dtype=torch.bool)
    first[:, 0] = True
    term = torch.rand(B, T, generator=g) < 0.02
    return {
        "obs": torch.randn(B, T, OBS_DIM, generator=g),
        "action": F.one_hot(torch.randint(0, N_ACT, (B, T), generator=g), N_ACT).float(),
        "reward": torch.randn(B, T, generator=g),
        "feedback": torch.zeros(B, T),
        "is_first": first,
        "is_last": term.clone(),
        "is_terminal": term,
    }


# ----------------------------------------------------------------------------- plain RSSM
def mlp(inp: int, hidden: int, layers: int, out: int | None) -> nn.Sequential:
    mods: list[nn.Module] = []
    for _ in range(layers):
        mods += [nn.Linear(inp, hidden, bias=False), nn.LayerNorm(hidden, eps=1e-3), nn.SiLU()]
        inp = hidden
    if out is not None:
        mods.append(nn.Linear(inp, out))
    return nn.Sequential(*mods)


class PlainRSSM(nn.Module):
    """A plain DreamerV3-style RSSM world model with the sizes of a WorldModelConfig."""

    bins: torch.Tensor  # buffer

    def __init__(self, c: WorldModelConfig):
        super().__init__()
        self.c = c
        S, D, H = c.groups * c.classes, c.deter, c.hidden
        self.enc = mlp(OBS_DIM, H, max(1, c.mlp_layers), None)
        self.img_in = nn.Sequential(nn.Linear(S + N_ACT, H), nn.LayerNorm(H, eps=1e-3), nn.SiLU())
        self.blocks = c.gru_blocks
        w = D // c.gru_blocks
        self.gru_x = nn.Linear(H, 3 * D, bias=False)
        self.gru_h = nn.Parameter(torch.randn(c.gru_blocks, w, 3 * w) * w**-0.5)
        self.gru_norm = nn.LayerNorm(3 * w, eps=1e-3)
        self.post = mlp(D + H, H, 1, S)
        self.priors = nn.ModuleList([mlp(D, H, 1, S) for _ in range(c.ensemble)])
        F_ = D + S
        self.dec = mlp(F_, H, c.mlp_layers, OBS_DIM)
        self.rew = mlp(F_, H, c.mlp_layers, c.reward_bins)
        self.cont = mlp(F_, H, c.mlp_layers, 1)
        self.register_buffer("bins", torch.linspace(-c.bin_range, c.bin_range, c.reward_bins))

    def dist(self, logits: torch.Tensor) -> torch.distributions.OneHotCategoricalStraightThrough:
        c = self.c
        logits = logits.float()  # distributions validate in fp32 (also under bf16 autocast)
        probs = torch.softmax(logits.reshape(*logits.shape[:-1], c.groups, c.classes), -1)
        probs = probs * (1 - c.unimix) + c.unimix / c.classes
        return torch.distributions.OneHotCategoricalStraightThrough(probs=probs)

    def gru(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        hb = h.reshape(h.shape[0], self.blocks, -1).transpose(0, 1)  # (g, B, w)
        rec = torch.bmm(hb, self.gru_h).transpose(0, 1).reshape(h.shape[0], -1)
        g = self.gru_norm((self.gru_x(x) + rec).reshape(h.shape[0], self.blocks, -1))
        r, cand, u = g.chunk(3, -1)
        cand = torch.tanh(torch.sigmoid(r) * cand).reshape(h.shape)
        u = torch.sigmoid(u - 1).reshape(h.shape)
        return u * cand + (1 - u) * h

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        c = self.c
        target = torch.sign(batch["obs"]) * torch.log1p(batch["obs"].abs())
        embed = self.enc(target)  # encoder on the whole sequence
        h = torch.zeros(B, c.deter)
        z = torch.zeros(B, c.groups * c.classes)
        prev_a = torch.zeros(B, N_ACT)
        hs, zs, post_logits = [], [], []
        for t in range(T):
            keep = (~batch["is_first"][:, t]).float()[:, None]
            h, z, prev_a = h * keep, z * keep, prev_a * keep
            h = self.gru(self.img_in(torch.cat([z, prev_a], -1)), h)
            logits = self.post(torch.cat([h, embed[:, t]], -1))
            d = self.dist(logits)
            z = d.rsample().reshape(B, -1)
            hs.append(h)
            zs.append(z)
            post_logits.append(d.logits)
            prev_a = batch["action"][:, t]
        h_all, z_all = torch.stack(hs, 1), torch.stack(zs, 1)
        post_l = torch.stack(post_logits, 1)  # (B, T, G, C)
        feat = torch.cat([h_all, z_all], -1)
        dec = ((self.dec(feat) - target) ** 2).sum(-1).mean()
        y = torch.sign(batch["reward"]) * torch.log1p(batch["reward"].abs())
        idx = torch.searchsorted(self.bins, y.clamp(self.bins[0], self.bins[-1]).contiguous()).clamp(
            1, c.reward_bins - 1
        )
        w_hi = ((y - self.bins[idx - 1]) / (self.bins[idx] - self.bins[idx - 1])).clamp(0, 1)
        lp = F.log_softmax(self.rew(feat), -1)
        rew = -(
            (1 - w_hi) * lp.gather(-1, (idx - 1)[..., None])[..., 0] + w_hi * lp.gather(-1, idx[..., None])[..., 0]
        ).mean()
        cont = F.binary_cross_entropy_with_logits(self.cont(feat)[..., 0], 1 - batch["is_terminal"].float())
        kl: torch.Tensor | float = 0.0
        prior_logits = []
        for prior in self.priors:
            pl = self.dist(prior(h_all)).logits
            prior_logits.append(pl)
            dyn = (post_l.detach().exp() * (post_l.detach() - pl)).sum((-1, -2)).clamp(min=c.free_bits).mean()
            rep = (post_l.exp() * (post_l - pl.detach())).sum((-1, -2)).clamp(min=c.free_bits).mean()
            kl = kl + (c.dyn_scale * dyn + c.rep_scale * rep) / len(self.priors)
        if c.heads_on_prior:  # the same extra head losses as ours: on a random prior head's sample
            pick = torch.randint(0, len(self.priors), (B, T))
            pl = torch.stack(prior_logits, 2)[torch.arange(B)[:, None], torch.arange(T)[None, :], pick]
            z_prior = torch.distributions.OneHotCategoricalStraightThrough(logits=pl.float()).rsample()
            feat_p = torch.cat([h_all, z_prior.reshape(B, T, -1)], -1)
            lp = F.log_softmax(self.rew(feat_p), -1)
            rew_p = -(
                (1 - w_hi) * lp.gather(-1, (idx - 1)[..., None])[..., 0] + w_hi * lp.gather(-1, idx[..., None])[..., 0]
            ).mean()
            cont_p = F.binary_cross_entropy_with_logits(self.cont(feat_p)[..., 0], 1 - batch["is_terminal"].float())
            rew, cont = (rew + rew_p) / 2, (cont + cont_p) / 2
        return dec + rew + cont + kl


# ----------------------------------------------------------------------------- timing
def step_fn(module: nn.Module, loss_fn: Any, batch: dict[str, torch.Tensor], precision: str = "32"):
    opt = torch.optim.Adam(module.parameters(), lr=1e-4)

    def step() -> float:
        t0 = time.perf_counter()
        with autocast(precision):  # bf16-mixed: the forward pass under autocast, weights and Adam in fp32
            loss = loss_fn(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 100.0)
        opt.step()
        return time.perf_counter() - t0

    return step


class _StepTimer(L.Callback):
    def __init__(self) -> None:
        self.starts: list[float] = []

    def on_train_batch_start(self, *args: Any) -> None:
        self.starts.append(time.perf_counter())


def lightning_step_time(cfg: WorldModelConfig, batch: dict[str, torch.Tensor], steps: int) -> float:
    model = WorldModel(cfg, gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32), gym.spaces.Discrete(N_ACT))
    timer = _StepTimer()
    trainer = L.Trainer(
        max_steps=steps + 1,
        accelerator="cpu",
        devices=1,
        logger=False,
        callbacks=[timer],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        gradient_clip_val=cfg.grad_clip,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    # a list is a map-style dataset at runtime; torch's stubs only accept Dataset subclasses
    data: Any = [batch] * (steps + 1)
    loader: torch.utils.data.DataLoader[dict[str, torch.Tensor]] = torch.utils.data.DataLoader(data, batch_size=None)
    trainer.fit(model, train_dataloaders=loader)
    diffs = np.diff(timer.starts)
    return float(np.median(diffs)) if len(diffs) else float("nan")


def bench_preset(name: str, reps: int, lightning: bool = True, bf16: bool = True) -> dict[str, Any]:
    cfg = preset(name, batch_size=B, seq_len=T)
    torch.manual_seed(0)
    ours = WorldModel(cfg, gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32), gym.spaces.Discrete(N_ACT))
    plain = PlainRSSM(cfg)
    batch = make_batch()
    ours_step, plain_step = step_fn(ours, lambda b: ours.loss(b)[0], batch), step_fn(plain, plain.loss, batch)
    ours_step(), plain_step()  # warm-up
    t_ours, t_plain = [], []
    steps16 = (
        (step_fn(ours, lambda b: ours.loss(b)[0], batch, "bf16-mixed"), step_fn(plain, plain.loss, batch, "bf16-mixed"))
        if bf16
        else None
    )
    t_ours16: list[float] = []
    t_plain16: list[float] = []
    if steps16:
        steps16[0](), steps16[1]()  # warm-up
    for _ in range(reps):
        t_ours.append(ours_step())
        t_plain.append(plain_step())
        if steps16:
            t_ours16.append(steps16[0]())
            t_plain16.append(steps16[1]())
    row = {
        "preset": name,
        "config": cfg.to_dict(),
        "reps": reps,
        "params_ours": sum(p.numel() for p in ours.parameters()),
        "params_plain": sum(p.numel() for p in plain.parameters()),
        "ours_s": statistics.median(t_ours),
        "plain_s": statistics.median(t_plain),
        "ours_all_s": t_ours,
        "plain_all_s": t_plain,
    }
    row["ratio_ours_over_plain"] = row["ours_s"] / row["plain_s"]
    if steps16:
        row["ours_bf16_s"], row["plain_bf16_s"] = statistics.median(t_ours16), statistics.median(t_plain16)
    # what a user gets: ours at the precision ``auto`` resolves to on this machine
    row["auto_precision"] = resolve_precision("auto")
    row["ours_auto_s"] = row["ours_bf16_s"] if row["auto_precision"] == "bf16-mixed" and steps16 else row["ours_s"]
    row["speedup_auto_over_plain_fp32"] = row["plain_s"] / row["ours_auto_s"]
    if lightning and name in ("tiny", "small"):
        row["ours_lightning_s"] = lightning_step_time(cfg, batch, max(reps, 5))
        row["ratio_lightning_over_plain"] = row["ours_lightning_s"] / row["plain_s"]
    print(
        f"{name:>6}: ours {row['ours_s'] * 1e3:8.1f} ms  plain {row['plain_s'] * 1e3:8.1f} ms  "
        f"ratio {row['ratio_ours_over_plain']:.2f}"
        + (
            f"  bf16: ours {row['ours_bf16_s'] * 1e3:.1f} ms plain {row['plain_bf16_s'] * 1e3:.1f} ms"
            if steps16
            else ""
        )
        + (f"  (through Lightning {row['ours_lightning_s'] * 1e3:.1f} ms)" if "ours_lightning_s" in row else ""),
        flush=True,
    )
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["tiny", "small", "medium", "large"])
    p.add_argument("--reps", type=int, default=None, help="timed steps per model (default: 10, medium 3, large 2)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--bf16-presets",
        nargs="*",
        default=["tiny", "small"],
        help="presets also timed under bf16 autocast, ours and plain (default: tiny small)",
    )
    p.add_argument("--out", type=Path, default=RESULTS / "perf_worldmodel.json")
    p.add_argument(
        "--update", action="store_true", help="keep the rows of presets not run now from an existing --out file"
    )
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    default_reps = {"tiny": 10, "small": 10, "medium": 3, "large": 2}
    rows = [bench_preset(n, args.reps or default_reps.get(n, 3), bf16=n in args.bf16_presets) for n in args.presets]
    if args.update and args.out.exists():
        old = json.loads(args.out.read_text())
        kept = [
            dict(r, machine_at_the_time=old["machine"], date=old["date"])
            for r in old["results"]
            if r["preset"] not in args.presets
        ]
        order = {n: i for i, n in enumerate(["tiny", "small", "medium", "large"])}
        rows = sorted(kept + rows, key=lambda r: order.get(r["preset"], 9))
    report = {
        "benchmark": "perf_worldmodel",
        "batch": B,
        "length": T,
        "obs_dim": OBS_DIM,
        "actions": N_ACT,
        "goal": "ours <= 1.25x plain (issue 3); small: ours at auto precision >= 2x faster than plain fp32 (issue 18)",
        "bf16_fast": bf16_fast(),
        **run_manifest(),
        "note": "CPU shared with other jobs during the run: absolute times are noisy; ours and plain "
        "alternate per repetition so the ratio is fairer than either time",
        "results": rows,
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, report, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
