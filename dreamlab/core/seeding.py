"""Seed derivation, written once: every seed a run uses follows from its one ``seed``.

* :func:`round_seed` -- the seed of round ``r`` of a multi-round run (``seed * 1000 + r``), so
  rounds differ and a rerun of a round draws the same numbers;
* :func:`derive_seed` -- an independent 32-bit seed for any tuple of integers (numpy's
  ``SeedSequence``: well-mixed, so neighbouring inputs give unrelated streams);
* the offsets that keep evaluation seeds apart from training seeds.
"""

from __future__ import annotations

import numpy as np

EVAL_OFFSET = 10_000  # final real/dream evaluations: seed + EVAL_OFFSET + i for episode i
CHECKPOINT_EVAL_OFFSET = 1000  # evaluations of intermediate checkpoints: seed + 1000 + step
PRIOR_LOGS_OFFSET = 7919  # logs collected before a run starts (a base model's pre-training data)


def round_seed(seed: int, r: int, stride: int = 1) -> int:
    """The seed of round ``r`` (``stride`` spaces several streams within a round)."""
    return int(seed) * 1000 + stride * int(r)


def derive_seed(*parts: int) -> int:
    """An independent seed in [0, 2**32) for the integers ``parts``."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])
