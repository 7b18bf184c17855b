"""How much each step does on one kind of device: full sizes on a GPU, small ones that finish on 2 CPU cores."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    batches: tuple[int, ...]  # branch throughput batch sizes
    compile_batches: tuple[int, ...]  # torch.compile recompiles per shape: only these
    compile_cell_s: float  # estimated seconds of one compiled cell (compile + timing)
    cell_s: float  # minimum timed seconds per throughput cell
    synth_actors: int
    synth_clips_per_class: int
    train_segments: int  # N for training
    train_batch: int  # clips per step of `train`
    amp_clips: int  # clips in the fixed AMP batch
    amp_steps: int
    parity_segments: int  # N per fixture clip for parity
    detector_frames: int  # frames of the fixture clips for the detector (0: all)
    score_clips: int  # copies of the fixture clips scored end to end
    score_workers: int
    score_batch: int


CUDA_SIZES = Sizes(
    batches=(1, 4, 16, 64, 256, 1024, 4096), compile_batches=(1, 256, 4096), compile_cell_s=45.0, cell_s=0.4,
    synth_actors=3, synth_clips_per_class=2, train_segments=10, train_batch=8, amp_clips=16,
    amp_steps=12, parity_segments=32, detector_frames=0, score_clips=128,
    score_workers=max(1, min(8, (os.cpu_count() or 2) - 2)), score_batch=256,
)  # fmt: skip
CPU_SIZES = Sizes(
    batches=(1, 8), compile_batches=(1,), compile_cell_s=40.0, cell_s=0.2,
    synth_actors=2, synth_clips_per_class=1, train_segments=2, train_batch=2, amp_clips=2,
    amp_steps=4, parity_segments=4, detector_frames=5, score_clips=3, score_workers=0, score_batch=64,
)  # fmt: skip
# --quick (CI's smoke run): every step's code at the smallest sizes, torch.compile left out (its cells are recorded as
# skipped, saying why), so the run checks the accounting in well under the full CPU run's time; the figures mean nothing
QUICK_SIZES = Sizes(
    batches=(1,), compile_batches=(), compile_cell_s=40.0, cell_s=0.0,
    synth_actors=2, synth_clips_per_class=1, train_segments=2, train_batch=2, amp_clips=2,
    amp_steps=3, parity_segments=2, detector_frames=5, score_clips=2, score_workers=0, score_batch=64,
)  # fmt: skip
