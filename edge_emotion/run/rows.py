"""Result rows: what one clip's scoring amounts to for each person, as plain dicts, and the key of the file.

Kept apart from the files rows go to (row_formats.py, results_file.py) because
`score`, `predict`, `stream` and `bench` all build rows, and only `score` writes
a results file.

One row per person scored (`--faces largest`: one per clip). Row fields: path,
person (the face track: 0, 1, 2 ... in order of first appearance on the planned
frames; with --faces largest the id of the person chosen), people (people seen on
the planned frames; 0: no face, centre crops), label, one probability per label
(consensus / N), n_segments, faceless (segments without this person's own face),
silent (segments with a silent audio window), duration_s, status (ok | degraded |
error), error, size_bytes, mtime_ns. JSONL rows also carry `timeline`: per segment
its frame, the frame's time, the audio window's centre, this person's face box
(null for a centre crop), whether its own frame had this person's face, and the
segment's probabilities. A file that could not be scored has one error row, with
person and people empty.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_emotion.preprocess.segments import SegmentInputs
from edge_emotion.run.clip_inputs import ClipInputs
from edge_emotion.run.consensus import clip_label, clip_probabilities

Row = dict[str, Any]
STATUSES = ("ok", "degraded", "error")
PROB_DECIMALS = 6


@dataclass(frozen=True)
class FileKey:
    """What identifies one version of a video file: its path, size and modification time."""

    path: str
    size: int
    mtime_ns: int


def file_key(path: str | Path) -> FileKey:
    """Stat the file (following links); an unstattable entry gets size and mtime -1."""
    try:
        st = os.stat(path)
    except OSError:
        try:
            st = os.lstat(path)
        except OSError:
            return FileKey(str(path), -1, -1)
    return FileKey(str(path), int(st.st_size), int(st.st_mtime_ns))


def row_key(row: Row) -> FileKey:
    return FileKey(str(row["path"]), int(row["size_bytes"]), int(row["mtime_ns"]))


def build_rows(clip: ClipInputs, probs: np.ndarray | None, labels: Sequence[str], key: FileKey) -> list[Row]:
    """The clip's rows: one per person (probs [P, N, K] backend output, in clip.people's order), or one error row."""
    if not clip.people or probs is None:
        return [_error_row(clip, key)]
    return [_person_row(clip, inputs, segment_probs, labels, key) for inputs, segment_probs in zip(clip.people, probs)]


def _error_row(clip: ClipInputs, key: FileKey) -> Row:
    return {
        "path": key.path,
        "person": None,
        "people": None,
        "label": None,
        "probabilities": None,
        "n_segments": 0,
        "faceless": 0,
        "silent": 0,
        "duration_s": None if clip.duration is None else round(clip.duration, 3),
        "status": "error",
        "error": _one_line(clip.error or "") or "no model inputs",
        "size_bytes": key.size,
        "mtime_ns": key.mtime_ns,
        "timeline": [],
    }


def _person_row(clip: ClipInputs, inputs: SegmentInputs, segment_probs: np.ndarray, labels: Sequence[str], key: FileKey) -> Row:
    """One person's row. segment_probs: [N, K]."""
    probs = clip_probabilities(segment_probs)  # [K]
    return {
        "path": key.path,
        "person": inputs.person,
        "people": inputs.people,
        "label": clip_label(segment_probs, labels),
        "probabilities": _prob_dict(probs, labels),
        "n_segments": len(inputs.segments),
        "faceless": inputs.faceless,
        "silent": inputs.silent,
        "duration_s": None if clip.duration is None else round(clip.duration, 3),
        "status": "degraded" if inputs.faceless or inputs.silent else "ok",
        "error": "",
        "size_bytes": key.size,
        "mtime_ns": key.mtime_ns,
        "timeline": [
            {
                "segment": k,
                "frame": seg.frame,
                "time_s": round(seg.frame / clip.fps, 4) if clip.fps else None,
                "audio_centre_s": round(seg.centre, 4),
                "box": None if box is None else [round(float(v), 1) for v in box],
                "detected": inputs.detected[k],
                "probabilities": _prob_dict(segment_probs[k], labels),
            }
            for k, (seg, box) in enumerate(zip(inputs.segments, inputs.boxes))
        ],
    }


def _prob_dict(probs: np.ndarray, labels: Sequence[str]) -> dict[str, float]:
    return {label: round(float(p), PROB_DECIMALS) for label, p in zip(labels, probs)}


def _one_line(text: str) -> str:
    return " ".join(text.split())


def error_cause(error: str) -> str:
    """Group key for failures: the cause without its details in parentheses (which often name the file)."""
    return error.split(" (", 1)[0].strip() or "unknown"
