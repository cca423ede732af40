"""Numeric precision: the words Lightning uses (``32``, ``bf16-mixed``), detected defaults, one autocast.

``auto`` resolves to ``bf16-mixed`` where bf16 matmuls are fast (a CUDA device that supports
bf16, or a CPU with AMX-BF16 or AVX512-BF16) and to ``32`` elsewhere. ``bf16-mixed`` keeps the
weights and the optimiser in fp32 and runs the forward pass under ``torch.autocast``; losses,
softmaxes over the vocabulary and anything the caller converts with ``.float()`` stay in fp32.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from dreamlab.core.errors import ConfigError
from dreamlab.core.machine import cpu_flags

PRECISIONS = ("auto", "32", "32-true", "bf16-mixed")


def bf16_fast(device: str | torch.device = "cpu") -> bool:
    """Whether bf16 matmuls are fast on ``device`` (CUDA with bf16 support, or AMX/AVX512 BF16 on CPU)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool({"amx_bf16", "avx512_bf16"} & cpu_flags())


def resolve_precision(precision: str, device: str | torch.device = "cpu") -> str:
    """``auto`` -> ``bf16-mixed`` or ``32``; ``32-true`` -> ``32``; anything else must be a known word."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return "bf16-mixed" if bf16_fast(device) else "32"
    return "32" if precision == "32-true" else precision


def autocast(precision: str, device: str | torch.device = "cpu") -> Any:
    """The forward-pass context for a resolved precision (a no-op for ``32``)."""
    if precision == "bf16-mixed":
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
