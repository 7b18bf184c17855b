"""Actor-independent cross-validation: train and test every fold (or some), for one N or a sweep over N.

Each (N, fold) run lives in OUT/n{N}/fold{k} and is resumable: a finished run is
read back, an interrupted one continues from its checkpoint. Under torchrun all
ranks train every fold together (DDP); rank 0 alone writes folds.json and
cv.json. The summary holds
per-fold and mean +- std accuracy (sample std over folds), the confusion matrix
summed over folds, and, when CREMA-D's summaryTable.csv is given, the crowd's
accuracy on exactly the same test clips (a tie counts as a miss).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_emotion.io.atomic import atomic_write_text, exclusive_lock
from edge_emotion.toolchain.train.crema import (
    ClipItem,
    human_accuracy,
    index_corpus,
    make_folds,
    read_votes,
    split,
    write_folds,
)
from edge_emotion.toolchain.train.distributed import Dist, barrier, distributed, pick_device
from edge_emotion.toolchain.train.loop import TrainConfig, train, with_options

HUMAN_COLUMNS = {"audio": "VoiceVote", "video": "FaceVote", "both": "MultiModalVote"}


@dataclass
class FoldResult:
    n_segments: int
    fold: int
    accuracy: float
    clips: int
    confusion: list[list[int]]
    run_dir: str
    human: dict[str, Any] | None = None


@dataclass
class CVSummary:
    folds: list[FoldResult] = field(default_factory=list)

    def for_n(self, n: int) -> list[FoldResult]:
        return [f for f in self.folds if f.n_segments == n]

    def mean_std(self, n: int) -> tuple[float, float]:
        """Mean and sample standard deviation of the fold accuracies (std 0 for one fold)."""
        acc = np.array([f.accuracy for f in self.for_n(n)])
        return float(acc.mean()), float(acc.std(ddof=1)) if len(acc) > 1 else 0.0

    def to_dict(self) -> dict[str, Any]:
        per_n = {}
        for n in sorted({f.n_segments for f in self.folds}):
            mean, std = self.mean_std(n)
            humans = [f.human["accuracy"] for f in self.for_n(n) if f.human]
            per_n[str(n)] = {
                "folds": [f.fold for f in self.for_n(n)],
                "accuracy": [f.accuracy for f in self.for_n(n)],
                "mean": mean,
                "std": std,
                "human_mean": float(np.mean(humans)) if humans else None,
                "confusion": np.sum([f.confusion for f in self.for_n(n)], axis=0).tolist(),
            }
        return {"per_n": per_n, "runs": [f.__dict__ for f in self.folds]}


def fold_human(
    votes: dict[str, str] | None, items: list[ClipItem], folds: list[list[int]], fold: int
) -> dict[str, Any] | None:
    """The crowd's accuracy on this fold's test clips, or None without votes (no summaryTable.csv)."""
    if votes is None:
        return None
    _, test = split(items, folds, fold)
    return human_accuracy(votes, test)


def run_fold(data_dir: Path, cache_dir: Path, run_dir: Path, config: TrainConfig, folds_path: Path) -> FoldResult:
    """Train and test one (N, fold), or read it back if it already finished."""
    eval_file = run_dir / "eval.json"
    if not eval_file.exists():
        train(data_dir, cache_dir, run_dir, config, resume=(run_dir / "checkpoint.pt").exists(), folds_path=folds_path)
    result = json.loads(eval_file.read_text())
    return FoldResult(
        config.n_segments, config.fold, result["accuracy"], result["clips"], result["confusion"], str(run_dir)
    )


def run_cv(
    data_dir: str | Path,
    cache_dir: str | Path,
    out_dir: str | Path,
    config: TrainConfig,
    folds: Sequence[int] | None = None,
    sweep_n: Sequence[int] = (),
    summary_table: str | Path | None = None,
    on_fold: Callable[[FoldResult], None] | None = None,
) -> CVSummary:
    """Cross-validate config.n_segments (and every N of sweep_n) over the chosen folds; write OUT/cv.json."""
    data_dir, cache_dir, out_dir = Path(data_dir), Path(cache_dir), Path(out_dir)
    with distributed(pick_device(config.device)) as dist, _sole_writer(out_dir, dist):  # every fold on all ranks
        return _run_folds(data_dir, cache_dir, out_dir, config, folds, sweep_n, summary_table, on_fold, dist)


def _sole_writer(out_dir: Path, dist: Dist) -> contextlib.AbstractContextManager:
    """One cv per output folder, held by rank 0: two runs would train the same folds into the same files."""
    if not dist.main:
        return contextlib.nullcontext()
    out_dir.mkdir(parents=True, exist_ok=True)
    return exclusive_lock(out_dir)


def _run_folds(
    data_dir: Path,
    cache_dir: Path,
    out_dir: Path,
    config: TrainConfig,
    folds: Sequence[int] | None,
    sweep_n: Sequence[int],
    summary_table: str | Path | None,
    on_fold: Callable[[FoldResult], None] | None,
    dist: Dist,
) -> CVSummary:
    items, _ = index_corpus(data_dir)
    all_folds = make_folds([i.actor for i in items], config.n_folds, config.folds_seed)
    folds_path = out_dir / "folds.json"
    if dist.main:
        write_folds(folds_path, all_folds, config.folds_seed)
    barrier(dist)
    chosen = list(range(config.n_folds)) if folds is None else list(folds)
    # the crowd's votes of the same modality, read once for all folds
    votes = read_votes(summary_table, HUMAN_COLUMNS[config.modality]) if summary_table else None
    summary = CVSummary()
    for n in dict.fromkeys([config.n_segments, *sweep_n]):
        for k in chosen:
            result = run_fold(
                data_dir,
                cache_dir,
                out_dir / f"n{n}" / f"fold{k}",
                with_options(config, n_segments=n, fold=k),
                folds_path,
            )
            result.human = fold_human(votes, items, all_folds, k)
            summary.folds.append(result)
            if on_fold is not None and dist.main:
                on_fold(result)
    if dist.main:
        atomic_write_text(out_dir / "cv.json", json.dumps(summary.to_dict(), indent=1) + "\n")
    return summary
