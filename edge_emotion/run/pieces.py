"""The one unit that readers hand the scorer: a piece of a file's timeline, for clips and recordings alike.

    clip reader (run/read.py: one open, the N planned frames)      \
    recording reader (timeline/recording.py: one pass, in parts)    }--> Piece: some positions of one chunk of a
                                                                    /    file's timeline, their spectrograms and
    silent flags, and per person (None: centre crops) the uint8 face crops on some of them, the boxes and whether
    each was the person's own --run/score.py: batched into the backend--> run/rows.py: per file, windows, rows

A clip is a file whose timeline is one window over the whole file (grid.whole_file): its one piece holds
positions 0 .. N-1. A chunk's last piece carries the facts its timeline is planned by (frame times, what the
file lacks) and the tracks its tracker saw (who is in which window; people matched across chunks by them).
Faces travel as uint8 crops (4x fewer bytes than float32 through a worker's pipe) and a part's spectrograms
once for all its people; the scorer normalises the faces batch by batch (segments.model_faces).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_emotion.config import PreprocessConfig
from edge_emotion.io.probe import VideoFacts
from edge_emotion.preprocess.faces import Box, FaceDetector
from edge_emotion.preprocess.people import WhichFaces
from edge_emotion.preprocess.tracks import TrackStore
from edge_emotion.timeline.chunks import Chunk


@dataclass(frozen=True)
class FaceSetup:
    """Whose faces are scored, and the detector that finds them."""

    which: WhichFaces = "largest"  # the largest person (the paper's one subject), or everyone
    device: str = "cpu"  # MTCNN's device
    nets: Path | None = None  # a folder of detector nets (FP16 ONNX or TensorRT engines); None: the packaged ONNX

    def detector(self, config: PreprocessConfig, threads: int | None = None) -> FaceDetector:
        return FaceDetector(config.face, device=self.device, threads=threads, nets=self.nets)


@dataclass(frozen=True)
class Crops:
    """One person's face crops on some of a piece's segments."""

    person: int | None  # the chunk tracker's person; None: centre crops for windows without anyone
    rows: np.ndarray  # [M] into the piece's positions
    faces: np.ndarray  # [M, S, S, 3] uint8
    boxes: list[Box | None]  # [M] the box each crop used (None: centre crop)
    detected: np.ndarray  # [M] bool: the person's own face on the segment's frame (False: borrowed, or none)


@dataclass
class Piece:
    """Some positions of one chunk of a file's timeline and everyone's crops on them; or why the file failed."""

    index: int  # the file's place in the work list
    path: str
    chunk: Chunk | None = None  # None: an error piece (it ends its file)
    positions: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [C] timeline positions
    spectrograms: np.ndarray = field(default_factory=lambda: np.zeros((0, 1, 1, 1), np.float32))  # [C, 1, F, T]
    silent: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # [C] the segment's audio window is silent
    people: list[Crops] = field(default_factory=list)  # by person, None (centre crops) last
    last: bool = True  # the chunk's last piece
    facts: VideoFacts | None = None  # on the chunk's last piece (and on a clip's error piece once it decoded)
    tracks: TrackStore | None = None  # on the chunk's last piece: everyone its tracker saw, by position
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage: decode, frames, faces, spectrogram

    @property
    def size(self) -> int:
        """Segments this piece sends through the backend, over its people."""
        return sum(len(c.rows) for c in self.people)

    def stage_seconds(self) -> dict[str, float]:
        """Preprocessing seconds as reports name the stages: decode (demux + audio, then the planned frames),
        faces, spectrogram."""
        t = self.timings
        return {"decode": t.get("decode", 0.0) + t.get("frames", 0.0), "faces": t.get("faces", 0.0),
                "spectrogram": t.get("spectrogram", 0.0)}


@dataclass(frozen=True)
class ScoredPiece:
    """A piece and its backend output."""

    piece: Piece
    probs: list[np.ndarray] | None  # [M_i, K] per person of piece.people; None for an error piece
    infer_s: float = 0.0  # its share of the backend calls' time (the faces' normalisation for them included)
