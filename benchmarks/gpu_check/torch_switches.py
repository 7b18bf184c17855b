"""Process-wide torch switches, set for a block and put back after it, so that one step's settings do not leak."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def tf32(enabled: bool | None) -> Iterator[None]:
    """Set cuDNN's and cuBLAS's TF32 switches for the block (None: leave them), restoring them after."""
    import torch

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    if enabled is not None:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@contextlib.contextmanager
def cudnn_flags_kept() -> Iterator[None]:
    """`train` sets cudnn.deterministic / benchmark for the whole process: put them back for the steps after it."""
    import torch

    saved = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved
