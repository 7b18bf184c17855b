"""Training: one fold of actor-independent cross-validation, resumable exactly, on one process or under torchrun.

Recipes (every value overridable):
- "paper": SGD momentum 0.9, lr 1e-3 divided by 10 every 50 steps, the schedule
  restarting each epoch (Birhala et al. 2020), batch 16, N = 10, cross entropy on
  the consensus (`model.clip_loss`).
- "modern": AdamW (weight decay 0.05), lr 1e-3, linear warm-up over 5 % of the
  steps then cosine decay to 0 over the whole run.

Exact resume: the model is initialised from the seed; each epoch's clip order is
a permutation seeded by (seed, epoch), each clip's random frames by (seed, epoch,
clip); the learning rate is a pure function of (epoch, step); so the checkpoint
needs only weights, optimizer state, epoch, step and the torch RNG to continue a
killed run to the same weights, bit for bit, as an uninterrupted one.

Scale-out: under torchrun (WORLD_SIZE > 1) the same function runs
DistributedDataParallel (nccl on CUDA, gloo on the CPU); `batch_size` stays the
global batch, split evenly over the ranks; rank 0 alone evaluates and writes the
checkpoint and the logs.

Run folder: config.json, folds.json, steps.jsonl (loss/accuracy per step),
epochs.jsonl (train and test loss/accuracy per epoch), checkpoint.pt, eval.json
(test accuracy, confusion matrix, per-clip predictions).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from edge_emotion import LABELS
from edge_emotion.config import PreprocessConfig
from edge_emotion.io.atomic import atomic_write_text
from edge_emotion.run.consensus import consensus
from edge_emotion.toolchain.checkpoint import load_checkpoint, save_checkpoint
from edge_emotion.toolchain.model import WIDTHS, ClipModel, SegmentBranch, clip_loss
from edge_emotion.toolchain.train.box_cache import cache_face_params
from edge_emotion.toolchain.train.config import (
    RUNTIME_KEYS,
    TrainConfig,
    epoch_batches,
    learning_rate,
    make_optimizer,
    recipe_config,
)
from edge_emotion.toolchain.train.crema import ClipItem, index_corpus, make_folds, read_folds, split, write_folds
from edge_emotion.toolchain.train.dataset import CachedClips, missing_from_cache
from edge_emotion.toolchain.train.distributed import Dist, all_reduce_sum, barrier, distributed, pick_device

__all__ = ["TrainConfig", "TrainResult", "build_model", "evaluate", "learning_rate", "recipe_config", "train", "with_options"]

@dataclass
class TrainResult:
    run_dir: Path
    global_step: int
    stopped: bool  # True when stop_after ended the run early
    accuracy: float | None  # test accuracy of the finished run (None when stopped early)


class SegmentLogits(nn.Module):
    """Training forward for DDP (which syncs gradients only through forward()): [B, N, ...] -> [B, N, K] logits."""

    def __init__(self, clip_model: ClipModel) -> None:
        super().__init__()
        self.clip_model = clip_model

    def forward(self, faces: torch.Tensor, spectrograms: torch.Tensor) -> torch.Tensor:
        return self.clip_model.segment_logits(faces, spectrograms)  # [B, N, K]


def fold_items(
    data_dir: str | Path, cache_dir: str | Path, config: TrainConfig, folds_path: str | Path | None
) -> tuple[list[ClipItem], list[ClipItem], list[list[int]], list[str]]:
    """(train, test, folds, notes): the fold's clips that the cache holds; the others are reported in notes."""
    items, skipped = index_corpus(data_dir)
    notes = [f"skipped {s.path}: {s.reason}" for s in skipped]
    # folds come from every indexed actor, so they do not change when more clips get prepared
    folds = (
        read_folds(folds_path)
        if folds_path
        else make_folds([i.actor for i in items], config.n_folds, config.folds_seed)
    )
    missing = missing_from_cache(items, str(cache_dir))
    notes += [f"not in the prepare cache (failed or not prepared): {i.path}" for i in missing]
    missing_names = {i.name for i in missing}
    items = [i for i in items if i.name not in missing_names]
    train_items, test_items = split(items, folds, config.fold)
    if not train_items or not test_items:
        raise ValueError(f"fold {config.fold} leaves {len(train_items)} training and {len(test_items)} test clips")
    return train_items, test_items, folds, notes


def build_model(config: TrainConfig) -> ClipModel:
    """The clip model, initialised from the seed (identical on every rank)."""
    torch.manual_seed(config.seed)
    return ClipModel(SegmentBranch(n_classes=len(LABELS), modality=config.modality, widths=WIDTHS))


def _loader(dataset: CachedClips, batches: Sequence[Sequence[int]], workers: int) -> DataLoader:
    return DataLoader(
        dataset, batch_sampler=list(batches), num_workers=workers, generator=torch.Generator().manual_seed(0)
    )


@torch.no_grad()
def evaluate(
    model: ClipModel, dataset: CachedClips, batch_size: int, device: torch.device, workers: int = 0
) -> dict[str, Any]:
    """Test-mode scores of every clip: loss, accuracy, confusion matrix (rows: true class) and predictions."""
    was_training = model.training
    model.eval()
    n_classes = len(LABELS)
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    loss_sum, predictions = 0.0, []
    batches = [list(range(i, min(i + batch_size, len(dataset)))) for i in range(0, len(dataset), batch_size)]
    for batch, (faces, specs, labels) in zip(batches, _loader(dataset, batches, workers)):
        logits = model.segment_logits(faces.to(device), specs.to(device))  # [B, N, K]
        labels = labels.to(device)
        loss_sum += float(clip_loss(logits, labels)) * len(labels)
        probs = logits.softmax(dim=-1).cpu().numpy()  # [B, N, K]
        for index, truth, segment_probs in zip(batch, labels.cpu().tolist(), probs):
            score = consensus(segment_probs)  # [K], the scorer's own aggregation
            guess = int(score.argmax())
            confusion[truth, guess] += 1
            predictions.append(
                {
                    "clip": dataset.items[index].name,
                    "label": LABELS[truth],
                    "predicted": LABELS[guess],
                    "scores": [round(float(s), 5) for s in score],
                }
            )
    model.train(was_training)
    total = int(confusion.sum())
    return {
        "clips": total,
        "loss": loss_sum / max(1, total),
        "accuracy": float(np.trace(confusion)) / max(1, total),
        "labels": list(LABELS),
        "confusion": confusion.tolist(),
        "predictions": predictions,
    }


def _append_jsonl(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def _truncate_jsonl(path: Path, keep: Any) -> None:
    """Drop log rows written after the checkpoint we resume from (they will be written again)."""
    if path.exists():
        rows = [line for line in path.read_text().splitlines() if line.strip() and keep(json.loads(line))]
        atomic_write_text(path, "".join(r + "\n" for r in rows))


def _comparable(train_config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in train_config.items() if k not in RUNTIME_KEYS}


@dataclass
class Progress:
    """Where training stands; all of it goes into the checkpoint."""

    epoch: int = 0
    step: int = 0  # next step inside the epoch
    global_step: int = 0
    loss_sum: float = 0.0  # this epoch's running sums, for its epochs.jsonl row
    correct: int = 0
    seen: int = 0
    finished: bool = False


@dataclass
class Run:
    """What the steps of one training run share, built once by `train` (no globals)."""

    config: TrainConfig
    preprocess: PreprocessConfig
    run_dir: Path
    device: torch.device
    dist: Dist
    model: ClipModel
    step_model: nn.Module  # the model's training forward, wrapped in DDP under torchrun
    optimizer: torch.optim.Optimizer
    train_set: CachedClips
    test_set: CachedClips
    progress: Progress


def _save(run: Run) -> None:
    """Rank 0 writes everything needed to score the model and to resume the run exactly."""
    if not run.dist.main:
        return
    state = {
        "model": run.model.branch.state_dict(),
        "model_config": {"n_classes": len(LABELS), "modality": run.config.modality, "widths": list(WIDTHS)},
        "labels": list(LABELS),
        "preprocess": run.preprocess.to_dict(),
        "train_config": asdict(run.config),
        "optimizer": run.optimizer.state_dict(),
        "progress": asdict(run.progress),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    save_checkpoint(run.run_dir / "checkpoint.pt", state)


def _restore(run_dir: Path, model: ClipModel, optimizer: torch.optim.Optimizer, config: TrainConfig) -> Progress:
    state = load_checkpoint(run_dir / "checkpoint.pt")
    if _comparable(state["train_config"]) != _comparable(asdict(config)):
        diff = {
            k: (state["train_config"].get(k), v)
            for k, v in _comparable(asdict(config)).items()
            if state["train_config"].get(k) != v
        }
        raise ValueError(f"{run_dir}: cannot resume with different options (checkpoint, now): {diff}")
    model.branch.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return Progress(**state["progress"])


def train(
    data_dir: str | Path,
    cache_dir: str | Path,
    run_dir: str | Path,
    config: TrainConfig = TrainConfig(),
    resume: bool = False,
    folds_path: str | Path | None = None,
) -> TrainResult:
    """Train one fold (test set: the fold's actors) and evaluate it; see the module docstring."""
    run_dir = Path(run_dir)
    device = pick_device(config.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    with distributed(device) as dist:
        return _train(Path(data_dir), Path(cache_dir), run_dir, config, resume, folds_path, device, dist)


def _train(
    data_dir: Path,
    cache_dir: Path,
    run_dir: Path,
    config: TrainConfig,
    resume: bool,
    folds_path: str | Path | None,
    device: torch.device,
    dist: Dist,
) -> TrainResult:
    if config.batch_size % dist.world:
        raise ValueError(f"batch size {config.batch_size} does not split evenly over {dist.world} processes")
    preprocess = PreprocessConfig(n_segments=config.n_segments, face=cache_face_params(cache_dir))
    has_checkpoint = (run_dir / "checkpoint.pt").exists()
    if has_checkpoint and not resume:
        raise ValueError(f"{run_dir} already holds a checkpoint: pass --resume, or use another run folder")
    if resume and has_checkpoint and folds_path is None and (run_dir / "folds.json").exists():
        folds_path = run_dir / "folds.json"  # the folds the run started with
    train_items, test_items, folds, notes = fold_items(data_dir, cache_dir, config, folds_path)
    model = build_model(config).to(device)
    optimizer = make_optimizer(config, model.parameters())
    progress = _restore(run_dir, model, optimizer, config) if has_checkpoint else Progress()
    if dist.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        info = {
            "train_config": asdict(config),
            "preprocess": preprocess.to_dict(),
            "world_size": dist.world,
            "train_clips": len(train_items),
            "test_clips": len(test_items),
            "notes": notes,
        }
        atomic_write_text(run_dir / "config.json", json.dumps(info, indent=1) + "\n")
        write_folds(run_dir / "folds.json", folds, config.folds_seed)
        _truncate_jsonl(run_dir / "steps.jsonl", lambda r: r["global_step"] <= progress.global_step)
        _truncate_jsonl(run_dir / "epochs.jsonl", lambda r: r["epoch"] < progress.epoch)
    barrier(dist)
    step_model: nn.Module = SegmentLogits(model)
    if dist.world > 1:
        step_model = nn.parallel.DistributedDataParallel(
            step_model, device_ids=[device.index] if device.type == "cuda" else None
        )
    run = Run(
        config, preprocess, run_dir, device, dist, model, step_model, optimizer,
        train_set=CachedClips(train_items, str(cache_dir), preprocess, "train", config.seed),
        test_set=CachedClips(test_items, str(cache_dir), preprocess, "test", config.seed),
        progress=progress,
    )  # fmt: skip
    stopped = False
    while progress.epoch < config.epochs and not stopped:
        stopped = _train_epoch(run)
    accuracy = None if stopped else _finish(run)
    barrier(dist)
    return TrainResult(run_dir, progress.global_step, stopped, accuracy)


def _finish(run: Run) -> float | None:
    """Rank 0 tests the trained model on the held-out fold (eval.json) and marks the checkpoint finished."""
    if not run.dist.main:
        return None
    result = evaluate(run.model, run.test_set, run.config.batch_size, run.device, run.config.workers)
    header = {"fold": run.config.fold, "n_segments": run.config.n_segments, "modality": run.config.modality}
    atomic_write_text(run.run_dir / "eval.json", json.dumps({**header, **result}, indent=1) + "\n")
    run.progress.finished = True
    _save(run)
    return result["accuracy"]


def _train_epoch(run: Run) -> bool:
    """Run the rest of the current epoch; True when stop_after stopped it."""
    config, progress, dist = run.config, run.progress, run.dist
    run.model.train()
    run.train_set.set_epoch(progress.epoch)
    batches = epoch_batches(len(run.train_set), config.batch_size, config.seed, progress.epoch, dist.rank, dist.world)
    for faces, specs, labels in _loader(run.train_set, batches[progress.step :], config.workers):
        lr = learning_rate(config, progress.epoch, progress.step, len(batches))
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        labels = labels.to(run.device)
        logits = run.step_model(faces.to(run.device), specs.to(run.device))  # [B, N, K]
        loss = clip_loss(logits, labels)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        hits = int((logits.detach().softmax(-1).sum(1).argmax(-1) == labels).sum())  # consensus = sum over N
        loss_sum, correct, seen = all_reduce_sum([float(loss.detach()) * len(labels), hits, len(labels)], run.device, dist)
        progress.loss_sum, progress.correct, progress.seen = (
            progress.loss_sum + loss_sum,
            progress.correct + int(correct),
            progress.seen + int(seen),
        )
        progress.step, progress.global_step = progress.step + 1, progress.global_step + 1
        if dist.main:
            row = {
                "epoch": progress.epoch,
                "step": progress.step,
                "global_step": progress.global_step,
                "lr": lr,
                "loss": loss_sum / seen,
                "accuracy": correct / seen,
            }
            _append_jsonl(run.run_dir / "steps.jsonl", row)
        if config.stop_after and progress.global_step >= config.stop_after:
            _save(run)
            return True
        if config.checkpoint_every and progress.global_step % config.checkpoint_every == 0:
            _save(run)
    _end_epoch(run)
    return False


def _end_epoch(run: Run) -> None:
    """Log the epoch (train and test loss/accuracy), move to the next one and checkpoint."""
    progress = run.progress
    if run.dist.main:
        row = {
            "epoch": progress.epoch,
            "global_step": progress.global_step,
            "train_loss": progress.loss_sum / max(1, progress.seen),
            "train_accuracy": progress.correct / max(1, progress.seen),
        }
        if run.config.eval_each_epoch:
            result = evaluate(run.model, run.test_set, run.config.batch_size, run.device, run.config.workers)
            row.update(test_loss=result["loss"], test_accuracy=result["accuracy"])
        _append_jsonl(run.run_dir / "epochs.jsonl", row)
    progress.epoch, progress.step = progress.epoch + 1, 0
    progress.loss_sum, progress.correct, progress.seen = 0.0, 0, 0
    _save(run)
    barrier(run.dist)


def with_options(config: TrainConfig, **changes: Any) -> TrainConfig:
    """A copy of the config with some options changed (cv: per fold, per N)."""
    return replace(config, **changes)
