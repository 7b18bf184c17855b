"""Agreement: the share of segments whose top-1 class equals the FP32 reference's on the same inputs.

The reference is the first FP32 artifact that ran; the inputs are real segments when videos are given, seeded
random ones (random_inputs) otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge_emotion.contract import FACE_INPUT, SPEC_INPUT, ModelContract
from edge_emotion.run.bench.report import BenchRow


def random_inputs(contract: ModelContract, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded standard-normal inputs in the contract's shapes: faces [S, 3, H, W], spectrograms [S, 1, F, T]."""
    rng = np.random.default_rng(seed)
    shapes = contract.input_shapes()  # the first axis is the dynamic S, the others are ints
    faces = rng.standard_normal([count, *(int(d) for d in shapes[FACE_INPUT][1:])], dtype=np.float32)
    specs = rng.standard_normal([count, *(int(d) for d in shapes[SPEC_INPUT][1:])], dtype=np.float32)
    return faces, specs


def add_agreement(results: Sequence[tuple[list[BenchRow], np.ndarray | None]]) -> None:
    """Fill agreement and max |diff| of every target that ran, against the first FP32 one."""
    reference = next((probs for rows, probs in results if probs is not None and rows[0].precision == "fp32"), None)
    if reference is None:
        return
    for rows, probs in results:
        if probs is None or probs.shape != reference.shape:
            continue
        for row in rows:
            row.agreement = float(np.mean(probs.argmax(1) == reference.argmax(1)))
            row.max_abs_diff = float(np.abs(probs - reference).max())
