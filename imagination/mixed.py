"""Mixed precision for imagination and the policy updates: bf16 matmuls, fp32 where it matters.

Under ``bf16-mixed`` (Lightning's word; resolved from ``auto`` by
:func:`dreamlab.core.precision.resolve_precision`), :func:`mixed` runs a block under
``torch.autocast`` (bf16) *and* hands back in fp32 the output of every
:class:`~dreamlab.core.nn.MLP` and of every ``LayerNorm`` outside an MLP inside the modules it
is given (forward hooks, removed on exit). So the matmuls (``Linear``, ``addmm``, ``einsum``)
and an MLP's hidden layers run in bf16, while the RSSM's gate nonlinearities and its GRU state
(``deter``), the categorical softmaxes and samples, the actor's log-probabilities and entropy,
the critic's two-hot logits and the reward/continue heads all come out in fp32, as CUDA's
autocast policy keeps them (CPU autocast alone leaves softmax and LayerNorm in bf16, and the
GRU's ``lerp`` would then mix dtypes). Weights and optimiser states never leave fp32; losses,
lambda-returns and the return normaliser are computed from those fp32 outputs. Under ``32``
the context does nothing at all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from dreamlab.core.nn import MLP
from dreamlab.core.precision import autocast


def _to_fp32(_module: nn.Module, _args: Any, out: Any) -> Any:
    if isinstance(out, torch.Tensor) and out.is_floating_point() and out.dtype != torch.float32:
        return out.float()
    return out


@contextlib.contextmanager
def mixed(precision: str, device: str | torch.device, *modules: Any) -> Iterator[None]:
    """The forward-pass context for a resolved ``precision`` (``32``: a no-op; ``bf16-mixed``:
    autocast plus fp32 outputs of the MLPs and free LayerNorms of ``modules``; arguments that
    are not ``nn.Module`` s are ignored)."""
    if precision != "bf16-mixed":
        yield
        return
    handles = [m.register_forward_hook(_to_fp32) for m in fp32_output_modules(*modules)]
    try:
        with autocast(precision, device):
            yield
    finally:
        for h in handles:
            h.remove()


def fp32_output_modules(*modules: Any) -> list[nn.Module]:
    """The MLPs, and the LayerNorms outside any MLP, of ``modules`` (each once; non-modules skipped)."""
    modules = tuple(m for m in modules if isinstance(m, nn.Module))
    mlps = {id(m): m for root in modules for m in root.modules() if isinstance(m, MLP)}
    inside = {id(sub) for m in mlps.values() for sub in m.modules()}
    norms = {
        id(m): m for root in modules for m in root.modules() if isinstance(m, nn.LayerNorm) and id(m) not in inside
    }
    return [*mlps.values(), *norms.values()]


def module_device(module: Any) -> torch.device:
    """The device of a module's first parameter (cpu for a module without any, or a non-module)."""
    p = next(module.parameters(), None) if isinstance(module, nn.Module) else None
    return p.device if p is not None else torch.device("cpu")


__all__ = ["fp32_output_modules", "mixed", "module_device"]
