"""World-model configuration: one dataclass and four size presets.

``tiny`` is for tests, ``small`` is the 2-core CPU default (the dataclass defaults; sized and
tuned with ``benchmarks/wm_targets.py`` on CartPole logs), ``medium`` and ``large`` are GPU sizes. Every field can be overridden from the command line (``--deter 512``) or a YAML file
(see :mod:`dreamlab.config`); a preset only changes the defaults it names.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from dreamlab.core.errors import ConfigError

REWARD_SOURCES = ("env", "feedback", "both")


@dataclass
class WorldModelConfig:
    # --- sizes
    deter: int = 128  # GRU state size D
    hidden: int = 128  # width of every MLP / input layer
    groups: int = 16  # stochastic latent: G categorical groups ...
    classes: int = 16  # ... of C classes each
    gru_blocks: int = 1  # block-diagonal GRU: number of blocks (1 = dense)
    mlp_layers: int = 2  # hidden layers of encoder / decoder / heads
    ensemble: int = 2  # K prior (dynamics) heads sharing everything else
    cnn_depth: int = 16  # first conv width for 64x64 image observations
    reward_bins: int = 255  # two-hot bins, symexp-spaced over [-bin_range, bin_range] in symlog
    bin_range: float = 20.0
    obs_norm: bool = True  # standardise vector obs per dimension (stats from the logs)
    symlog_obs: bool = False  # symlog vector obs on top of obs_norm (inputs and targets)
    # --- latent distribution and losses
    unimix: float = 0.01
    free_bits: float = 1.0
    dyn_scale: float = 0.5
    rep_scale: float = 0.1
    dec_scale: float = 1.0
    reward_scale: float = 1.0
    cont_scale: float = 1.0
    cont_terminal_weight: float = 10.0  # weight of terminal steps in the continue loss (rare class; 1 = plain BCE)
    reward_source: str = "env"  # env | feedback | both
    heads_on_prior: bool = True  # also train reward/continue heads on prior samples (as imagined)
    # --- optimisation
    optimizer: str = "adam"  # adam | adamw
    lr: float = 1e-3
    eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip: float = 100.0
    warmup_steps: int = 200
    lr_decay: str = "cosine"  # cosine: to lr_min_ratio * lr at the step budget (Trainer max_steps) | none
    lr_min_ratio: float = 0.1
    batch_size: int = 16
    seq_len: int = 32
    # --- data
    val_fraction: float = 0.1
    batches_per_epoch: int = 200
    seed: int = 0

    def validate(self) -> WorldModelConfig:
        positive = (
            "deter",
            "hidden",
            "groups",
            "classes",
            "gru_blocks",
            "ensemble",
            "cnn_depth",
            "reward_bins",
            "batch_size",
            "seq_len",
            "batches_per_epoch",
        )
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"WorldModelConfig field '{name}' must be >= 1, got {getattr(self, name)}")
        if self.mlp_layers < 0:
            raise ConfigError(f"WorldModelConfig field 'mlp_layers' must be >= 0, got {self.mlp_layers}")
        if self.deter % self.gru_blocks:
            raise ConfigError(
                f"WorldModelConfig field 'gru_blocks' ({self.gru_blocks}) must divide 'deter' ({self.deter})"
            )
        if self.reward_source not in REWARD_SOURCES:
            raise ConfigError(
                f"WorldModelConfig field 'reward_source' must be one of {REWARD_SOURCES}, got {self.reward_source!r}"
            )
        if self.optimizer not in ("adam", "adamw"):
            raise ConfigError(f"WorldModelConfig field 'optimizer' must be 'adam' or 'adamw', got {self.optimizer!r}")
        if not 0.0 <= self.unimix < 1.0:
            raise ConfigError(f"WorldModelConfig field 'unimix' must be in [0, 1), got {self.unimix}")
        if self.cont_terminal_weight <= 0:
            raise ConfigError(
                f"WorldModelConfig field 'cont_terminal_weight' must be > 0, got {self.cont_terminal_weight}"
            )
        if self.reward_bins < 2 or self.reward_bins % 2 == 0:
            raise ConfigError(
                f"WorldModelConfig field 'reward_bins' must be odd and >= 3 (a bin at 0), got {self.reward_bins}"
            )
        if self.lr_decay not in ("none", "cosine"):
            raise ConfigError(f"WorldModelConfig field 'lr_decay' must be 'none' or 'cosine', got {self.lr_decay!r}")
        if not 0.0 <= self.lr_min_ratio <= 1.0:
            raise ConfigError(f"WorldModelConfig field 'lr_min_ratio' must be in [0, 1], got {self.lr_min_ratio}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"WorldModelConfig field 'val_fraction' must be in [0, 1), got {self.val_fraction}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "<config>") -> WorldModelConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"{source}: unknown world-model config key(s) {unknown}")
        return cls(**values).validate()


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        deter=32,
        hidden=32,
        groups=4,
        classes=4,
        mlp_layers=1,
        ensemble=2,
        cnn_depth=4,
        reward_bins=41,
        batch_size=8,
        seq_len=32,
        warmup_steps=10,
        lr=2e-3,
    ),
    "small": dict(),
    "medium": dict(
        deter=1024,
        hidden=512,
        groups=32,
        classes=32,
        gru_blocks=4,
        ensemble=4,
        cnn_depth=32,
        lr=4e-4,
        batch_size=16,
        seq_len=64,
    ),
    "large": dict(
        deter=4096,
        hidden=1024,
        groups=32,
        classes=32,
        gru_blocks=8,
        mlp_layers=3,
        ensemble=5,
        cnn_depth=64,
        lr=3e-4,
        batch_size=16,
        seq_len=64,
    ),
}


def preset(name: str, **overrides: Any) -> WorldModelConfig:
    """The config of a preset (``tiny``/``small``/``medium``/``large``), with overrides."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return dataclasses.replace(WorldModelConfig(**PRESETS[name]), **overrides).validate()
