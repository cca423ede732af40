"""Third-party noise, silenced in one place and by exact message (never a blanket filter).

:func:`quiet_third_party` (called by the entry points that start Lightning or load a Hugging Face
model) hides, for the process:

* Lightning's info-level advertising ("💡 Tip: ... litlogger" / "... litmodels") and its
  accelerator banners ("GPU available: ...", "TPU available: ...", "HPU available: ...");
* warnings about Lightning's and transformers' own code that a user cannot act on: torch's
  ``LeafSpec`` deprecation raised inside ``lightning.pytorch.utilities._pytree``, Lightning's note
  that an ``IterableDataset`` defines ``__len__`` (our loaders use no worker processes), its note
  that a mid-epoch resume is not exactly resumable (our sampler draws fresh random windows), and
  transformers' ``is_gradient_checkpointing`` deprecation (called by peft);
* transformers' own progress bars ("Loading weights", "Writing model shards") when stderr is
  not a terminal.

:func:`own_checkpoint_dir` hides Lightning's "Checkpoint directory ... exists and is not empty"
for one folder that we created ourselves (or resume from). Our own warnings are never touched.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dreamlab.core.progress import progress_mode

LIGHTNING = r"(lightning\.pytorch|pytorch_lightning)"  # the unified package and its standalone twin
# Lightning's info messages go through the logger of its rank_zero module.
RANK_ZERO_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "pytorch_lightning.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
)
INFO_PREFIXES = ("💡 Tip: ", "GPU available: ", "TPU available: ", "HPU available: ")
# (message regex, category, module regex) of each third-party warning we hide.
WARNINGS: tuple[tuple[str, type[Warning], str], ...] = (
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning, LIGHTNING + r"\.utilities\._pytree"),
    (r"Your `IterableDataset` has `__len__` defined\.", UserWarning, LIGHTNING + r"\.utilities\.data"),
    (r"`is_gradient_checkpointing` is deprecated", FutureWarning, r"transformers\.modeling_utils"),
    # our sequence sampler draws fresh random windows: resuming mid-"epoch" loses nothing
    (
        r"You're resuming from a checkpoint that ended before the epoch ended",
        UserWarning,
        LIGHTNING + r"\.loops\.training_epoch_loop",
    ),
)


class _DropInfo(logging.Filter):
    """Drop Lightning's advertising tips and accelerator banners (info level only)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.INFO and str(record.msg).startswith(INFO_PREFIXES))


_DROP_INFO = _DropInfo()


def quiet_third_party() -> None:
    """Install the filters listed in the module docstring; calling it again changes nothing."""
    for name in RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if _DROP_INFO not in logger.filters:
            logger.addFilter(_DROP_INFO)
    for message, category, module in WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    hf_logging = sys.modules.get("transformers.utils.logging")  # only when transformers is already in use
    if hf_logging is not None and progress_mode(True) != "bar":  # stderr is not a terminal
        hf_logging.disable_progress_bar()


@contextmanager
def own_checkpoint_dir(path: str | Path) -> Iterator[None]:
    """Within the block, hide Lightning's "Checkpoint directory PATH exists and is not empty" for ``path`` only."""
    names = {str(path), os.path.realpath(os.path.expanduser(path))}  # Lightning names the real path
    alternatives = "|".join(re.escape(n) for n in sorted(names))
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message=rf"Checkpoint directory ({alternatives}) exists and is not empty\.\Z",
            category=UserWarning,
            module=LIGHTNING + r"\.callbacks\.model_checkpoint",
        )
        yield
