"""Distillation across processes and devices with Lightning Fabric.

Fabric gives every command the same words for where it runs: ``precision`` (``32`` or
``bf16-mixed``, resolved from ``auto`` by :func:`dreamlab.core.precision.resolve_precision`),
``accelerator`` (``cpu``/``cuda``/``auto``), ``strategy`` (``auto``/``ddp``) and ``devices``.
Each rank runs its own rollouts (its own env seeds) and computes gradients on its own decisions;
:func:`sync_grads` averages them in one flat all-reduce before every optimiser step, so all
ranks take the same steps and keep identical weights. The model is not wrapped in DDP because a
decision's scoring runs several forward passes (shared prefix, prompts, completions) per backward.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from dreamlab.core.precision import resolve_precision


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


def sync_grads(fabric: Any, params: list[torch.nn.Parameter]) -> None:
    """Average the gradients of ``params`` over all ranks (one flat all-reduce; missing grads count as 0)."""
    if fabric.world_size <= 1:
        return
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    flat = fabric.all_reduce(flat, reduce_op="mean")
    i = 0
    for p in params:
        n = p.numel()
        p.grad = flat[i : i + n].view_as(p).clone()
        i += n


def agree_min(fabric: Any, n: int) -> int:
    """The smallest ``n`` over all ranks (so every rank runs the same number of minibatches)."""
    if fabric.world_size <= 1:
        return n
    return int(fabric.all_gather(torch.tensor(n)).min())


def total(fabric: Any, x: float) -> float:
    """``x`` summed over all ranks."""
    if fabric.world_size <= 1:
        return x
    return float(fabric.all_reduce(torch.tensor(float(x), dtype=torch.float64), reduce_op="sum"))


def weights_digest(model: torch.nn.Module) -> str:
    """A short hash of the trainable weights (ranks that stayed in step print the same digest)."""
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        if p.requires_grad:
            h.update(name.encode())
            h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]
