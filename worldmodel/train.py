"""Training the world model from an EpisodeStore with a Lightning Trainer.

``OUT/`` receives ``last.ckpt`` (resume point, refreshed every ``ckpt_every`` steps and at the
end), ``step=N.ckpt`` (the latest periodic one), ``logs/`` (CSV), ``tb/`` (TensorBoard) and
``world_model.ckpt``: a compact copy of the final weights that downstream commands take as
``--wm``. A run whose ``OUT`` already holds ``last.ckpt`` resumes from exactly that file (never
Lightning's "newest ``last*.ckpt``"), read by the one safe loader
(:func:`~dreamlab.worldmodel.checkpoint.read_checkpoint`, ``weights_only=True``, also for
Lightning's own restore through :class:`~dreamlab.worldmodel.checkpoint.SafeCheckpointIO`).
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from dreamlab.core.io import OutputError, atomic_write_json, check_output_dir
from dreamlab.core.precision import resolve_precision
from dreamlab.core.progress import LINE_EVERY_S, Progress, progress_mode
from dreamlab.core.quiet import own_checkpoint_dir, quiet_third_party
from dreamlab.data.sampling import EpisodeDataModule, split_names
from dreamlab.data.store import EpisodeStore, StoreError
from dreamlab.worldmodel.checkpoint import SafeCheckpointIO, read_checkpoint
from dreamlab.worldmodel.config import WorldModelConfig
from dreamlab.worldmodel.model import WorldModel

FINAL_NAME = "world_model.ckpt"


class StepsProgressBar(TQDMProgressBar):
    """The default bar plus the global step (the bar itself shows it/s = steps/s)."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        items["step"] = trainer.global_step
        return items

    def init_train_tqdm(self) -> Tqdm:
        """Lightning's training bar, drawn on stderr (stdout carries results)."""
        with contextlib.redirect_stdout(sys.stderr):  # Lightning passes file=sys.stdout
            return super().init_train_tqdm()

    def init_validation_tqdm(self) -> Tqdm:
        """Lightning's validation bar, drawn on stderr."""
        with contextlib.redirect_stdout(sys.stderr):
            return super().init_validation_tqdm()


class StatusLines(L.Callback):
    """In place of the bar when stderr is not a terminal: a status line every ``every`` seconds and
    at the end, with the bar's metrics (loss, dec, rew, ...) and steps/s."""

    def __init__(self, every: float = LINE_EVERY_S):
        self.every = every
        self.line: Progress[Any] | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        total = trainer.max_steps if trainer.max_steps > 0 else None
        self.line = Progress(
            total=total,
            initial=trainer.global_step,
            desc="world model",
            unit="step",
            enabled=trainer.is_global_zero,
            every=self.every,
        )

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self.line is not None:
            metrics = {k: f"{v:.3g}" for k, v in trainer.progress_bar_metrics.items() if k != "v_num"}
            self.line.set_postfix(**metrics)
            self.line.update(trainer.global_step - self.line.n)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.line is not None:
            self.line.close()
            self.line = None


class WallClockLimit(L.Callback):
    """Stop after ``minutes`` of wall time *in this invocation*. (Lightning's ``max_time`` keeps
    its elapsed time in the checkpoint, so a resumed run would stop at once; continued training,
    as in ``dreamlab cycle``, needs a fresh budget per call.)"""

    def __init__(self, minutes: float):
        self.minutes = minutes
        self.seconds = 60.0 * minutes
        self.start = time.monotonic()
        self.fired = False  # whether it stopped the run (then the run is cut short of its step budget)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.monotonic()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        stop = time.monotonic() - self.start >= self.seconds
        stop = bool(trainer.strategy.broadcast(stop))  # every rank stops at the same step
        if stop:
            self.fired = True
            trainer.should_stop = True


def open_logs(logs: str | Path) -> EpisodeStore:
    """Open an EpisodeStore for training/evaluation; an empty store is an error."""
    store = EpisodeStore(logs)
    if len(store) == 0:
        raise StoreError(
            f"{Path(logs) / 'metadata.json'}: the store is empty (no episodes); "
            "collect some first with `dreamlab collect`"
        )
    return store


def build_trainer(
    out: Path,
    max_steps: int,
    max_minutes: float | None = None,
    strategy: str = "auto",
    devices: int | str = 1,
    accelerator: str = "auto",
    ckpt_every: int = 500,
    progress: bool = True,
    log_every: int = 10,
    val_every_epochs: int = 1,
    grad_clip: float = 100.0,
    extra_callbacks: list[Any] | None = None,
    precision: str = "32",
) -> L.Trainer:
    ckpt = ModelCheckpoint(
        dirpath=out,
        filename="{step}",
        save_last=True,
        save_top_k=1,
        every_n_train_steps=ckpt_every,
        save_on_train_epoch_end=True,
        enable_version_counter=False,  # always last.ckpt / step=N.ckpt: never last-v1.ckpt beside ours
    )
    loggers = [CSVLogger(out, name="logs"), TensorBoardLogger(out, name="tb")]
    callbacks: list[Any] = [ckpt, *(extra_callbacks or [])]
    quiet_third_party()  # before the Trainer: it prints its tips and banners when built
    mode = progress_mode(progress)
    if mode == "bar":
        callbacks.append(StepsProgressBar(refresh_rate=10))
    elif mode == "lines":
        callbacks.append(StatusLines())
    if max_minutes:
        callbacks.append(WallClockLimit(max_minutes))
    return L.Trainer(
        max_steps=max_steps,
        precision="bf16-mixed" if precision == "bf16-mixed" else "32-true",
        max_epochs=-1,
        strategy=strategy,
        devices=devices,
        accelerator=accelerator,
        gradient_clip_val=grad_clip if grad_clip > 0 else None,
        gradient_clip_algorithm="norm",
        callbacks=callbacks,
        logger=loggers,
        log_every_n_steps=log_every,
        enable_progress_bar=mode == "bar",
        enable_model_summary=False,
        num_sanity_val_steps=0,
        check_val_every_n_epoch=val_every_epochs,
        default_root_dir=out,
        plugins=[SafeCheckpointIO()],
    )


def train(
    logs: str | Path,
    out: str | Path,
    cfg: WorldModelConfig,
    max_steps: int = 5000,
    max_minutes: float | None = None,
    strategy: str = "auto",
    devices: int | str = 1,
    accelerator: str = "auto",
    ckpt_every: int = 500,
    progress: bool = True,
    resume: bool = True,
    log: Any = None,
    callbacks: list[Any] | None = None,
    precision: str = "auto",
) -> Path:
    """Train (or resume) a world model on ``logs``; returns the path of ``OUT/world_model.ckpt``.

    ``max_steps`` is the budget; ``max_minutes`` is a safety net: when it stops the run first, a
    warning says so and ``train_summary.json`` records ``cut_short``. ``precision`` is ``auto``
    (bf16-mixed where bf16 is fast, see :mod:`dreamlab.core.precision`), ``32`` or ``bf16-mixed``."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    out = Path(out)
    cfg = cfg.validate()
    check_output_dir(out, "--out", inputs=[logs])
    for sub in ("logs", "tb"):  # the loggers write OUT/logs and OUT/tb
        if Path(logs).resolve() == (out / sub).resolve():
            raise OutputError(f"--out {out}: training writes {out / sub}, which is the input store --logs {logs}")
    store = open_logs(logs)
    use_cuda = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    prec = resolve_precision(precision, "cuda" if use_cuda else "cpu")
    last = out / "last.ckpt"
    resuming = resume and last.is_file()
    ours = resuming or not out.is_dir() or not any(out.iterdir())  # a folder we make, or resume from
    if resuming:
        ckpt = read_checkpoint(last)
        model = WorldModel(
            ckpt["hyper_parameters"]["cfg"],
            ckpt["hyper_parameters"]["obs_space"],
            ckpt["hyper_parameters"]["action_space"],
        )
        model.check_spaces(store.observation_space, store.action_space, Path(logs) / "metadata.json")
        ignored = {k: v for k, v in cfg.to_dict().items() if model.cfg.to_dict()[k] != v}
        if ignored:
            log(f"resuming from {last}: its config is kept; ignoring differing values {sorted(ignored)}")
        cfg = model.cfg
        del ckpt
    else:
        model = WorldModel(cfg, store.observation_space, store.action_space)
        train_names, _ = split_names(store.names(), cfg.val_fraction, cfg.seed)
        model.set_obs_stats(np.concatenate([ep.obs for ep in store.episodes(train_names)]))
    dm = EpisodeDataModule(
        logs,
        batch_size=cfg.batch_size,
        seq_len=cfg.seq_len,
        val_fraction=cfg.val_fraction,
        batches_per_epoch=cfg.batches_per_epoch,
        seed=cfg.seed,
    )
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    clock = WallClockLimit(max_minutes) if max_minutes else None
    trainer = build_trainer(
        out,
        max_steps,
        None,
        strategy,
        devices,
        accelerator,
        ckpt_every,
        progress,
        grad_clip=cfg.grad_clip,
        extra_callbacks=[*(callbacks or []), *([clock] if clock else [])],
        precision=prec,
    )
    if resuming:
        log(f"resuming from {last}")
    start = time.perf_counter()
    with own_checkpoint_dir(out) if ours else contextlib.nullcontext():
        trainer.fit(model, datamodule=dm, ckpt_path=str(last) if resuming else None)
    wall = time.perf_counter() - start
    cut_short = None
    if clock is not None and clock.fired and trainer.global_step < max_steps:
        cut_short = {"by": "wall-clock safety net", "minutes": clock.minutes, "steps": int(trainer.global_step)}
        log(
            f"warning: the {clock.minutes:g}-minute wall-clock safety net stopped the world model at "
            f"{trainer.global_step} of {max_steps} steps ({trainer.global_step / max(wall, 1e-9):.1f} steps/s); "
            "results are not those of the step budget: raise the time limit or lower the steps"
        )
    final = out / FINAL_NAME
    trainer.save_checkpoint(last, weights_only=False)  # every rank calls it; rank 0 writes the final resume point
    if trainer.is_global_zero:
        model.save(final)  # the stable copy downstream commands take as --wm
        summary = {
            "global_step": int(trainer.global_step),
            "wall_s": wall,
            "resumed": resuming,
            "interrupted": bool(trainer.interrupted),
            "max_steps": int(max_steps),
            "cut_short": cut_short,
            "precision": prec,
            "logs": str(logs),
            "config": cfg.to_dict(),
            "world_model": str(final),
        }
        atomic_write_json(out / "train_summary.json", summary, indent=1)
    return final
