"""Score a folder as timelines (`score --window W --hop H`): one row per (file, person, window), each segment scored once.

The one driver (run/score.py `score_files`) with window rows: files, long ones cut into keyframe chunks that the
workers share (timeline/chunks.py), read in parts (timeline/recording.py), their segments batched across files,
each file's windows built from its segments' probabilities (run/rows.py), rows written ROW_GROUP windows a write.
"""

from __future__ import annotations

from pathlib import Path

from edge_emotion.run.score import ScoreOptions, ScoreProgress, score_files
from edge_emotion.run.summary import Summary
from edge_emotion.timeline.chunks import Chunking


def score_timelines(
    root: str | Path, artifact: str | Path, output: str | Path, options: ScoreOptions = ScoreOptions(),
    progress: ScoreProgress | None = None, chunking: Chunking = Chunking(),
) -> Summary:
    """Score every video under `root` into window rows in `output`, skipping files already complete there."""
    return score_files(root, artifact, output, options, progress, windows=True, chunking=chunking)
