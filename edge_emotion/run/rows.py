"""A clip's results: one window over the whole file per person scored (run/result.py), or one error result.

Apart from result.py because it reads a clip's model inputs (ClipInputs), which the
window and stream builders never see. One result per person scored (`--faces
largest`: one per clip); person null for a clip where nobody was seen (centre crops).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from edge_emotion.preprocess.segments import SegmentInputs
from edge_emotion.run.clip_inputs import ClipInputs
from edge_emotion.run.result import FileKey, Result, error_result, segment_result, window_result


def build_rows(clip: ClipInputs, probs: np.ndarray | None, labels: Sequence[str], key: FileKey) -> list[Result]:
    """The clip's results: one per person (probs [P, N, K] backend output, in clip.people's order), or one error result."""
    if not clip.people or probs is None:
        return [error_result("clip", key, clip.error or "", clip.duration)]
    return [_person(clip, inputs, segment_probs, labels, key) for inputs, segment_probs in zip(clip.people, probs)]


def _person(clip: ClipInputs, inputs: SegmentInputs, segment_probs: np.ndarray, labels: Sequence[str], key: FileKey) -> Result:
    """One person's result. segment_probs: [N, K]."""
    segments = [
        replace(segment_result(k, seg.frame, seg.centre, seg.centre, box, inputs.detected[k], segment_probs[k], labels), video=seg.video)
        for k, (seg, box) in enumerate(zip(inputs.segments, inputs.boxes))
    ]
    return window_result(
        "clip", key, key.path, person=inputs.person if inputs.people else None, people=inputs.people, window=0, n_windows=1,
        t_start=0.0, t_end=clip.duration or 0.0, segment_probs=segment_probs, detected=inputs.detected, silent=inputs.silent,
        labels=labels, duration_s=clip.duration, segments=segments, problems=clip.problems,
    )
