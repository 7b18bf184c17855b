"""The paper's figures as PNG (matplotlib, Agg): curves (Fig. 3), confusion matrix (Fig. 4), accuracy vs N (Fig. 5)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_emotion.deps import require
from edge_emotion.io.atomic import write_png


def _pyplot() -> Any:
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    return require("matplotlib.pyplot")


def _save(fig: Any, output: Path) -> None:
    fig.tight_layout()
    write_png(fig, output)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot_curves(runs: dict[str, Path], output: str | Path) -> None:
    """Loss and accuracy per epoch, train (solid) and test (dashed), one colour per run folder (Fig. 3)."""
    plt = _pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for colour, (name, run_dir) in enumerate(runs.items()):
        rows = read_jsonl(Path(run_dir) / "epochs.jsonl")
        epochs = [r["epoch"] + 1 for r in rows]
        for ax, key in ((ax_loss, "loss"), (ax_acc, "accuracy")):
            ax.plot(epochs, [r[f"train_{key}"] for r in rows], "-o", color=f"C{colour}", ms=3, label=f"{name} train")
            if rows and f"test_{key}" in rows[0]:
                ax.plot(epochs, [r[f"test_{key}"] for r in rows], "--s", color=f"C{colour}", ms=3, label=f"{name} test")
    ticker = require("matplotlib.ticker")
    for ax, title in ((ax_loss, "cross-entropy loss"), (ax_acc, "accuracy")):
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    ax_acc.set_ylim(0, 1)
    ax_acc.legend(fontsize=7)
    _save(fig, Path(output))


def normalise_rows(confusion: np.ndarray) -> np.ndarray:
    """Each true class's row divided by its count (rows without clips stay zero)."""
    counts = confusion.sum(axis=1, keepdims=True)
    return np.divide(confusion, counts, out=np.zeros(confusion.shape, dtype=float), where=counts > 0)


def plot_confusion(
    confusion: Sequence[Sequence[int]], labels: Sequence[str], output: str | Path, title: str = ""
) -> None:
    """Per-class normalised confusion matrix, rows = true class (Fig. 4)."""
    plt = _pyplot()
    norm = normalise_rows(np.asarray(confusion, dtype=float))  # [K, K]
    fig, ax = plt.subplots(figsize=(5, 4.4))
    image = ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
    for i in range(norm.shape[0]):
        for j in range(norm.shape[1]):
            ax.text(
                j,
                i,
                f"{norm[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if norm[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "normalised confusion matrix")
    fig.colorbar(image, ax=ax, fraction=0.046)
    _save(fig, Path(output))


def plot_accuracy_vs_n(
    ns: Sequence[int], means: Sequence[float], stds: Sequence[float], output: str | Path, human: float | None = None
) -> None:
    """Mean test accuracy over folds against the number of segments N, +- one std (Fig. 5)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.errorbar(list(ns), list(means), yerr=list(stds), fmt="-o", capsize=3, label="model")
    if human is not None:
        ax.axhline(human, color="grey", ls=":", label="human (crowd vote)")
    ax.set_xlabel("segments N")
    ax.set_ylabel("accuracy")
    ax.set_xticks(list(ns))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, Path(output))


def cv_figures(summary: dict[str, Any], out_dir: str | Path, main_n: int, labels: Sequence[str]) -> list[Path]:
    """The three figures of a cross-validation summary (cv.json's content) -> paths written."""
    out_dir = Path(out_dir)
    main = summary["per_n"][str(main_n)]
    runs = {f"fold {r['fold']}": Path(r["run_dir"]) for r in summary["runs"] if r["n_segments"] == main_n}
    written = [out_dir / "curves.png", out_dir / "confusion.png"]
    plot_curves(runs, written[0])
    plot_confusion(
        main["confusion"], labels, written[1], f"N = {main_n}, {len(main['folds'])} fold(s), acc {main['mean']:.3f}"
    )
    if len(summary["per_n"]) > 1:
        ns = sorted(int(n) for n in summary["per_n"])
        per_n = [summary["per_n"][str(n)] for n in ns]
        written.append(out_dir / "accuracy_vs_n.png")
        plot_accuracy_vs_n(ns, [p["mean"] for p in per_n], [p["std"] for p in per_n], written[-1], main["human_mean"])
    return written
