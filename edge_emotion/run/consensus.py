"""Consensus over segments: the clip score is the sum of the segment probabilities (the paper's aggregation).

One numpy implementation, used by every backend, by scoring and by evaluation.
"""

from __future__ import annotations

import numpy as np


def consensus(segment_probs: np.ndarray) -> np.ndarray:
    """[N, K] per-segment probabilities -> [K] clip scores (sum over N; each clip's scores sum to N)."""
    if segment_probs.ndim != 2 or segment_probs.shape[0] == 0:
        raise ValueError(f"expected [N, K] segment probabilities with N >= 1, got shape {segment_probs.shape}")
    return segment_probs.sum(axis=0)


def clip_probabilities(segment_probs: np.ndarray) -> np.ndarray:
    """[N, K] -> [K] consensus scores divided by N, so they read as probabilities."""
    return consensus(segment_probs) / segment_probs.shape[0]

