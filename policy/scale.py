"""Training loops across processes and devices with Lightning Fabric.

Fabric gives every command the same words for where it runs: ``precision`` (``32`` or
``bf16-mixed``, resolved from ``auto`` by :func:`dreamlab.core.precision.resolve_precision`),
``accelerator`` (``cpu``/``cuda``/``auto``), ``strategy`` (``auto``/``ddp``) and ``devices``.
Each rank runs its own rollouts (its own seeds, :func:`rank_seed`) and computes gradients on its
own data; :func:`sync_grads` averages them in one flat all-reduce before every optimiser step,
so all ranks take the same steps and keep identical weights (:func:`broadcast_modules` makes
them start identical). The models are not wrapped in DDP because the loops run several forward
passes per backward (LLM distillation: shared prefix, prompts, completions; Dreamer: an
imagined rollout, then actor and critic heads). Users: LLM distillation (:mod:`policy.distill`),
the Dreamer loops and GRPO in dreams (``imagination``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from dreamlab.core.errors import ConfigError
from dreamlab.core.io import atomic_write_json
from dreamlab.core.precision import PRECISIONS, resolve_precision

ACCELERATORS = ("auto", "cpu", "cuda", "gpu")
STRATEGIES = ("auto", "ddp", "ddp_spawn")


def check_placement(precision: str, accelerator: str, strategy: str, devices: int, where: str = "config") -> None:
    """One-line :class:`ConfigError` for an unknown precision/accelerator/strategy or ``devices < 1``."""
    if precision not in PRECISIONS:
        raise ConfigError(f"{where}: field 'precision' must be one of {PRECISIONS}, got {precision!r}")
    if accelerator not in ACCELERATORS:
        raise ConfigError(f"{where}: field 'accelerator' must be one of {ACCELERATORS}, got {accelerator!r}")
    if strategy not in STRATEGIES:
        raise ConfigError(f"{where}: field 'strategy' must be one of {STRATEGIES}, got {strategy!r}")
    if int(devices) < 1:
        raise ConfigError(f"{where}: field 'devices' must be >= 1, got {devices}")


def make_fabric(accelerator: str = "auto", strategy: str = "auto", devices: int = 1, precision: str = "auto") -> Any:
    from lightning.fabric import Fabric

    from dreamlab.core.quiet import quiet_third_party

    quiet_third_party()
    if strategy == "ddp" and accelerator in ("cpu", "auto") and not torch.cuda.is_available():
        accelerator = "cpu"  # gloo
    device = (
        "cuda" if accelerator in ("cuda", "gpu") or (accelerator == "auto" and torch.cuda.is_available()) else "cpu"
    )
    prec = resolve_precision(precision, device)
    fabric_prec: Any = "32-true" if prec == "32" else prec
    return Fabric(accelerator=accelerator, strategy=strategy, devices=devices, precision=fabric_prec)


def fabric_for(cfg: Any) -> Any:
    """A launched Fabric for a config with ``accelerator``, ``strategy``, ``devices`` and
    ``precision`` fields (``launch()`` starts the other ranks under ddp; a no-op when repeated)."""
    fabric = make_fabric(cfg.accelerator, cfg.strategy, cfg.devices, cfg.precision)
    fabric.launch()
    return fabric


def rank_seed(seed: int, rank: int) -> int:
    """Rank ``rank``'s seed: ``seed`` itself on rank 0 (one process runs exactly as without Fabric)."""
    return int(seed) + 1000 * int(rank)


def sync_grads(fabric: Any, params: list[torch.nn.Parameter], weight: float | None = None) -> None:
    """Average the gradients of ``params`` over all ranks (one flat all-reduce; missing grads count as 0).

    With ``weight`` the average is weighted (``sum_r w_r g_r / sum_r w_r``): a rank with nothing
    to learn from this step passes 0 and does not dilute the others (all zero: gradients 0)."""
    if fabric.world_size <= 1:
        return
    parts = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params]
    if weight is not None:
        w = torch.tensor([float(weight)], dtype=parts[0].dtype, device=parts[0].device)
        flat = fabric.all_reduce(torch.cat([torch.cat(parts) * w, w]), reduce_op="sum")
        flat = flat[:-1] / flat[-1].clamp(min=1e-12)
    else:
        flat = fabric.all_reduce(torch.cat(parts), reduce_op="mean")
    i = 0
    for p in params:
        n = p.numel()
        p.grad = flat[i : i + n].view_as(p).clone()
        i += n


def broadcast_modules(fabric: Any, *modules: torch.nn.Module) -> None:
    """Copy rank 0's weights and buffers into every other rank's ``modules`` (in place)."""
    if fabric.world_size <= 1:
        return
    states = fabric.broadcast([{k: v.cpu() for k, v in m.state_dict().items()} for m in modules], src=0)
    for m, sd in zip(modules, states):
        m.load_state_dict(sd)


def agree_min(fabric: Any, n: int) -> int:
    """The smallest ``n`` over all ranks (so every rank runs the same number of minibatches)."""
    if fabric.world_size <= 1:
        return n
    return int(fabric.all_reduce(torch.tensor(int(n)), reduce_op="min"))


def agree_all(fabric: Any, flag: bool) -> bool:
    """Whether ``flag`` holds on every rank."""
    return agree_min(fabric, int(bool(flag))) == 1


def agree_any(fabric: Any, flag: bool) -> bool:
    """Whether ``flag`` holds on some rank."""
    return total(fabric, float(bool(flag))) > 0


def total(fabric: Any, x: float) -> float:
    """``x`` summed over all ranks."""
    if fabric.world_size <= 1:
        return x
    return float(fabric.all_reduce(torch.tensor(float(x), dtype=torch.float64), reduce_op="sum"))


def mean(fabric: Any, x: float) -> float:
    """``x`` averaged over all ranks (``x`` itself on one process)."""
    if fabric.world_size <= 1:
        return x
    return total(fabric, x) / fabric.world_size


def mean_over_ranks(fabric: Any, values: dict[str, float]) -> dict[str, float]:
    """Each value averaged over all ranks, in one all-reduce (``values`` itself on one process)."""
    if fabric.world_size <= 1:
        return values
    t = torch.tensor([float(v) for v in values.values()], dtype=torch.float64)
    t = fabric.all_reduce(t, reduce_op="mean")
    return {k: float(v) for k, v in zip(values, t.tolist())}


def weights_digest(model: torch.nn.Module) -> str:
    """A short hash of the trainable weights (ranks that stayed in step print the same digest)."""
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        if p.requires_grad:
            h.update(name.encode())
            h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def write_rank_file(out: str | Path, fabric: Any, info: dict[str, Any]) -> None:
    """On a rank other than 0: ``OUT/rank{r}.json`` with ``info`` (its weight digests), the one
    file such a rank writes, so a run can be checked for ranks that stayed in step."""
    rank = int(fabric.global_rank)
    if rank == 0:
        return
    Path(out).mkdir(parents=True, exist_ok=True)
    atomic_write_json(Path(out) / f"rank{rank}.json", {"rank": rank, **info}, indent=1)
