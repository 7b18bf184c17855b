"""Training options and recipes: the config, the learning-rate schedule, the optimizer and each epoch's batches.

All pure functions of the config and (seed, epoch, step), so a resumed run needs
no scheduler or sampler state to continue exactly where it stopped.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

#: options that change how a run executes, not what it computes: a resume may change them
RUNTIME_KEYS = ("workers", "device", "checkpoint_every", "stop_after")


@dataclass(frozen=True)
class TrainConfig:
    """Every training option; stored in the checkpoint (config hash, resume check)."""

    n_segments: int = 10
    epochs: int = 10
    batch_size: int = 16  # global batch (split over DDP ranks)
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "paper"  # paper (step, restarts each epoch) | cosine (warm-up + cosine) | constant
    step_size: int = 50  # paper: steps between lr divisions
    gamma: float = 0.1  # paper: the division
    warmup_fraction: float = 0.05  # cosine: share of all steps spent warming up
    modality: str = "both"  # both | audio | video
    fold: int = 0
    n_folds: int = 10
    folds_seed: int = 0
    seed: int = 0
    eval_each_epoch: bool = True  # test loss/accuracy per epoch, for the curves
    workers: int = 0  # DataLoader workers
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda | cuda:1 ...
    checkpoint_every: int = 0  # also checkpoint every this many steps (0: at epoch ends only)
    stop_after: int = 0  # stop, as if killed, after this many steps in all (0: run to the end)


RECIPES: dict[str, dict[str, Any]] = {
    "paper": {"optimizer": "sgd", "lr": 1e-3, "momentum": 0.9, "weight_decay": 0.0, "schedule": "paper"},
    "modern": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.05, "schedule": "cosine", "warmup_fraction": 0.05},
}


def recipe_config(recipe: str = "paper", **overrides: Any) -> TrainConfig:
    """A TrainConfig from a recipe; overrides with value None are ignored (so CLI defaults can be None)."""
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {sorted(RECIPES)}, got {recipe!r}")
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown training options {sorted(unknown)}")
    values = {**RECIPES[recipe], **{k: v for k, v in overrides.items() if v is not None}}
    return TrainConfig(**values)


def learning_rate(config: TrainConfig, epoch: int, step: int, steps_per_epoch: int) -> float:
    """The learning rate of a step, from the epoch and the step inside it: no scheduler state to save."""
    if config.schedule == "paper":
        return config.lr * config.gamma ** (step // config.step_size)
    if config.schedule == "constant":
        return config.lr
    if config.schedule == "cosine":
        total = max(1, config.epochs * steps_per_epoch)
        t = epoch * steps_per_epoch + step
        warmup = int(config.warmup_fraction * total)
        if t < warmup:
            return config.lr * (t + 1) / warmup
        return 0.5 * config.lr * (1 + math.cos(math.pi * (t - warmup) / max(1, total - warmup)))
    raise ValueError(f"schedule must be paper, cosine or constant, got {config.schedule!r}")


def make_optimizer(config: TrainConfig, params: Iterator[nn.Parameter]) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    raise ValueError(f"optimizer must be sgd or adamw, got {config.optimizer!r}")


def epoch_batches(
    n_items: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1
) -> list[list[int]]:
    """This rank's batches of one epoch: a (seed, epoch) permutation, padded to a multiple of the world size.

    A pure function of (seed, epoch): a resumed run sees the same batches, and skips those it has done.
    """
    order = torch.randperm(n_items, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()
    order += order[: (-len(order)) % world]
    mine = order[rank::world]
    per_rank = batch_size // world
    return [mine[i : i + per_rank] for i in range(0, len(mine), per_rank)]
