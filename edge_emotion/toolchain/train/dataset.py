"""A torch Dataset of clips from the prepare cache: [N, 3, 224, 224] faces, [N, 1, 192, 120] spectrograms, label.

Every step after the face box is the scorer's own code (`segments.plan_clip` and
`segments.extract`); only the boxes come from the cache instead of MTCNN, and they are
scoring's boxes: test mode's planned frames are the ones prepare tracked (for the cache's
N), any other frame takes its nearest tracked frame's box (box_cache.CachedClip.boxes_for).
Train mode plans a random frame per segment (and the audio jitter b) with an rng
seeded by (seed, epoch, clip), so an epoch's samples are the same whatever the
worker, the process count or a resume: that is what makes resumed training exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from edge_emotion.config import PreprocessConfig
from edge_emotion.preprocess.plan import Mode
from edge_emotion.preprocess.segments import extract, plan_clip
from edge_emotion.toolchain.train.box_cache import cache_file, load_cached
from edge_emotion.toolchain.train.crema import ClipItem


def missing_from_cache(items: Sequence[ClipItem], cache_dir: str) -> list[ClipItem]:
    """Indexed clips without a cache file (failed in prepare, or not prepared yet)."""
    return [i for i in items if not cache_file(cache_dir, i.name).exists()]


class CachedClips(Dataset):
    """Clips of one split, read through the prepare cache."""

    def __init__(
        self, items: Sequence[ClipItem], cache_dir: str, config: PreprocessConfig, mode: Mode, seed: int = 0
    ) -> None:
        self.items = list(items)
        self.cache_dir = str(cache_dir)
        self.config = config
        self.mode = mode
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Train mode draws new frames each epoch; call before iterating."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        item = self.items[index]
        cached = load_cached(self.cache_dir, item)
        rng = self.rng(index) if self.mode == "train" else None
        segments = plan_clip(cached.clip, self.config, self.mode, rng)
        inputs = extract(cached.clip, segments, self.config, boxes=cached.boxes_for([s.frame for s in segments]))
        # faces [N, 3, 224, 224], spectrograms [N, 1, 192, 120]
        return torch.from_numpy(inputs.faces), torch.from_numpy(inputs.spectrograms), item.label
