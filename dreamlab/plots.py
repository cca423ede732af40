"""Figures of the dream-vs-real report (matplotlib, PNG and PDF, readable in black and white).

Each ``plot_*`` function takes plain records (lists of dicts, as read from the CSV/JSON files
the benchmarks write) and an output stem; it writes ``stem.png`` and ``stem.pdf`` and returns
the paths. Series are told apart by line style and marker, not only by colour.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

STYLES = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"), ((0, (5, 1)), "v"), ((0, (1, 1)), "x")]
GREYS = ["0.0", "0.35", "0.55", "0.2", "0.45", "0.65"]


def _save(fig: plt.Figure, stem: Path) -> list[Path]:
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.tight_layout()
    for p in paths:
        fig.savefig(p, dpi=150)
    plt.close(fig)
    return paths


def spearman(x: Iterable[float], y: Iterable[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN for fewer than 3 points."""
    xa, ya = np.asarray(list(x), float), np.asarray(list(y), float)
    if len(xa) < 3:
        return float("nan")

    def ranks(a: np.ndarray) -> np.ndarray:
        order = a.argsort(kind="mergesort")
        r = np.empty(len(a))
        r[order] = np.arange(len(a), dtype=float)
        for v in np.unique(a):  # average ranks of ties
            m = a == v
            r[m] = r[m].mean()
        return r

    rx, ry = ranks(xa), ranks(ya)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def plot_transfer(rows: list[dict[str, Any]], stem: Path, title: str = "Dream vs real return") -> list[Path]:
    """rows: {dream_return, real_return, [label]} per checkpoint; y = x line and Spearman rho."""
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[str(r.get("label", "agent"))].append(r)
    allv = []
    for i, (label, rs) in enumerate(sorted(groups.items())):
        d = [float(r["dream_return"]) for r in rs]
        x = [float(r["real_return"]) for r in rs]
        allv += d + x
        _, marker = STYLES[i % len(STYLES)]
        ax.scatter(
            x,
            d,
            marker=marker,
            facecolors="none" if i % 2 else GREYS[i % len(GREYS)],
            edgecolors=GREYS[i % len(GREYS)],
            label=label,
        )
    if allv:
        lo, hi = min(allv), max(allv)
        pad = 0.05 * (hi - lo + 1e-9)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=1, label="y = x")
    rho = spearman([r["real_return"] for r in rows], [r["dream_return"] for r in rows])
    ax.set_xlabel("real return")
    ax.set_ylabel("dream return")
    ax.set_title(f"{title}\nSpearman ρ = {rho:.2f} (n = {len(rows)})")
    ax.legend(fontsize=8)
    return _save(fig, stem)


def _band(ax: plt.Axes, xs: np.ndarray, ys: np.ndarray, i: int, label: str) -> None:
    ls, marker = STYLES[i % len(STYLES)]
    mean = np.nanmean(ys, 0)
    ax.plot(xs, mean, linestyle=ls, marker=marker, color=GREYS[i % len(GREYS)], ms=4, label=label)
    if ys.shape[0] > 1:
        ax.fill_between(
            xs,
            np.nanmin(ys, 0),
            np.nanmax(ys, 0),
            color=GREYS[i % len(GREYS)],
            alpha=0.15,
            hatch="//" if i % 2 else None,
        )


def _series(rows: list[dict[str, Any]], x: str, y: str, group: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Group rows by `group`, align seeds on the union of x values (forward-filled)."""
    out = {}
    by_group: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_group[str(r.get(group, "run"))].append(r)
    for g, rs in sorted(by_group.items()):
        xs = np.unique([float(r[x]) for r in rs])
        seeds = sorted({str(r.get("seed", 0)) for r in rs})
        ys = np.full((len(seeds), len(xs)), np.nan)
        for si, s in enumerate(seeds):
            pts = sorted((float(r[x]), float(r[y])) for r in rs if str(r.get("seed", 0)) == s)
            px = np.array([p[0] for p in pts])
            py = np.array([p[1] for p in pts])
            for xi, xv in enumerate(xs):
                k = np.searchsorted(px, xv, side="right") - 1
                if k >= 0:
                    ys[si, xi] = py[k]
        out[g] = (xs, ys)
    return out


def plot_curves(
    rows: list[dict[str, Any]],
    stem: Path,
    x: str = "real_steps",
    y: str = "real_return",
    group: str = "label",
    xlabel: str = "real env steps",
    ylabel: str = "real return",
    title: str = "Learning curves (band: min-max over seeds)",
    refs: dict[str, float] | None = None,
) -> list[Path]:
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    for i, (g, (xs, ys)) in enumerate(_series(rows, x, y, group).items()):
        _band(ax, xs, ys, i, f"{g} ({ys.shape[0]} seed{'s' if ys.shape[0] != 1 else ''})")
    for j, (name, value) in enumerate((refs or {}).items()):
        ax.axhline(value, color="0.4", lw=1, linestyle=STYLES[(j + 3) % len(STYLES)][0], label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, stem)


def plot_openloop(result: dict[str, Any], stem: Path, title: str | None = None) -> list[Path]:
    """result: the JSON of ``dreamlab eval-wm --json`` (``nmse`` and ``nmse_copy_last`` per horizon)."""
    model = np.asarray(result["nmse"], float)
    copy = np.asarray(result["nmse_copy_last"], float)
    h = np.arange(1, len(model) + 1)
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    ax.plot(h, model, "k-o", ms=4, label="world model")
    ax.plot(h, copy, "--s", color="0.45", ms=4, label="copy last observation")
    ax.set_yscale("log")
    ax.set_xlabel("open-loop horizon (steps)")
    ax.set_ylabel("normalised MSE (per dim / variance)")
    ax.set_title(title or f"Open-loop error (context {result.get('context', '?')})", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, stem)


def plot_distill(rows: list[dict[str, Any]], stem: Path, refs: dict[str, float] | None = None) -> list[Path]:
    """rows: {method, seed, labelled_tokens, real_return}; refs e.g. {"teacher": 500, "base LLM": 20}."""
    return plot_curves(
        rows,
        stem,
        x="labelled_tokens",
        y="real_return",
        group="method",
        xlabel="teacher-labelled action tokens",
        ylabel="student real return",
        title="Distillation: real return vs labelled tokens",
        refs=refs,
    )


def plot_cycle(rows: list[dict[str, Any]], stem: Path, title: str = "Learning on the job") -> list[Path]:
    """LLM real return against cumulative real steps (one series per ``label``, seeds as bands), the
    dream-trained teacher per round (dashed) and the base LLM (round ``base``) as a reference line."""

    def num(v: Any) -> bool:
        try:
            return np.isfinite(float(v))
        except (TypeError, ValueError):
            return False

    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    llm = [r for r in rows if num(r.get("llm_real"))]
    groups = _series(llm, "real_steps", "llm_real", "label")
    for i, (g, (xs, ys)) in enumerate(groups.items()):
        name = "LLM" if g == "run" else g
        n = ys.shape[0]
        _band(ax, xs, ys, i, f"{name} (mean of {n} seeds, band min–max)" if n > 1 else f"{name} (1 seed)")
    teach = [r for r in rows if num(r.get("teacher_real"))]
    for g, (xs, ys) in _series(teach, "real_steps", "teacher_real", "label").items():
        name = "teacher (dream-trained, mean)" + ("" if g == "run" else f": {g}")
        ax.plot(xs, np.nanmean(ys, 0), linestyle="--", marker="x", color="0.5", ms=5, label=name)
    base = [float(r["llm_real"]) for r in rows if str(r.get("round")) == "base" and num(r.get("llm_real"))]
    if base:
        ax.axhline(float(np.median(base)), color="0.3", lw=1, linestyle=":", label="base LLM")
    ax.set_xlabel("cumulative real env steps (deployment)")
    ax.set_ylabel("real return")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, stem)


def plot_openloop_panels(result: dict[str, Any], path: str | Path, title: str = "world model, open loop") -> None:
    """``eval-wm --plot``: observation error and reward error against horizon, model and copy-last."""
    h = np.arange(1, result["horizon"] + 1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].plot(h, result["nmse"], "o-", label="world model")
    axes[0].plot(h, result["nmse_copy_last"], "s--", label="copy last observation")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("horizon (steps)")
    axes[0].set_ylabel("normalised MSE")
    axes[0].legend()
    axes[1].plot(h, result["reward_mae"], "o-", label="world model")
    axes[1].plot(h, result["reward_mae_copy_last"], "s--", label="copy last reward")
    axes[1].set_xlabel("horizon (steps)")
    axes[1].set_ylabel("reward MAE")
    axes[1].legend()
    fig.suptitle(f"{title} (context {result['context']}, {result['windows']} windows)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
