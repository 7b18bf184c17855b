"""Contact sheet of what the model sees: N face crops over N spectrograms, with segment times."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_emotion.config import PreprocessConfig
from edge_emotion.deps import require
from edge_emotion.io.atomic import atomic_path
from edge_emotion.io.decode import open_clip
from edge_emotion.preprocess.faces import FaceDetector
from edge_emotion.preprocess.segments import SegmentInputs, extract, plan_clip


def _face_image(face: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """[3, S, S] normalised -> [S, S, 3] in [0, 1] for display."""
    std, mean = np.asarray(config.face.std)[:, None, None], np.asarray(config.face.mean)[:, None, None]
    return np.clip(face * std + mean, 0, 1).transpose(1, 2, 0)


def render_sheet(inputs: SegmentInputs, config: PreprocessConfig, title: str, output: Path) -> None:
    """Draw the sheet with matplotlib (Agg) and write it atomically as PNG."""
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    plt = require("matplotlib.pyplot")
    n = len(inputs.segments)
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.8), squeeze=False)
    for k, seg in enumerate(inputs.segments):
        axes[0, k].imshow(_face_image(inputs.faces[k], config))
        axes[0, k].set_title(f"#{k} f{seg.frame}\n{seg.centre:.2f}s", fontsize=7)
        axes[1, k].imshow(inputs.spectrograms[k, 0], origin="lower", aspect="auto", cmap="magma")
        for ax in (axes[0, k], axes[1, k]):
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(output) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def write_contact_sheet(video: str | Path, output: str | Path, n_segments: int = 10) -> str:
    """Decode, plan (test mode), detect and crop, compute spectrograms; draw them. Returns a one-line summary."""
    config = PreprocessConfig(n_segments=n_segments)
    clip = open_clip(video, config.audio.sample_rate)
    segments = plan_clip(clip, config)
    inputs = extract(clip, segments, config, detector=FaceDetector(config.face))
    summary = (
        f"{clip.frame_count} frames at {clip.fps:.2f} fps ({clip.duration:.2f} s), "
        f"{n_segments} segments, {inputs.faceless} without a face, {inputs.silent} silent"
    )
    render_sheet(inputs, config, f"{Path(video).name}: {summary}", Path(output))
    return summary
