"""A stand-in job that streams a file's results in parts, for WorkerPool tests (no torch, no MTCNN: workers start fast).

Spawned workers import the job's module, so it lives apart from the test modules (which import torch via conftest).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from edge_emotion.run.pieces import Piece


@dataclass(frozen=True)
class PartsJob:
    """parts_K: K parts (the last one marked last); die_K: K parts, then the worker dies (exit code 3);
    slow_K_S: K parts, S seconds apart (each part is progress, so a timeout shorter than K x S never fires)."""

    def setup(self, threads: int) -> Callable[[Path, int], Iterator[Piece]]:
        return _parts

    def failed(self, index: int, path: Path, cause: str) -> Piece:
        return Piece(index, str(path), error=cause)


def _parts(path: Path, index: int) -> Iterator[Piece]:
    kind, count, *rest = Path(path).name.split("_")
    for k in range(int(count)):
        if kind == "slow":
            time.sleep(float(rest[0]))
        yield Piece(index, str(path), last=kind != "die" and k == int(count) - 1, error=f"part {k}")
    if kind == "die":
        os._exit(3)


def write_recording(path: Path, frames, audio, fps: int = 20, rate: int = 16_000) -> Path:
    """Lossless video + 16-bit PCM audio in 20 ms frames, packets interleaved by time as a camera writes them.

    .mkv: FFV1 (a keyframe every 12 frames; the frames between depend on it), timestamps in milliseconds
    (20 ms frames are whole ones, so every audio frame is placed to the sample). .mov: PNG (every frame a
    keyframe), the PCM repacketised by the muxer into 1024-sample packets timed to the sample (at 48 kHz
    they start off the resampler's 3-sample phase). Either way a chunk decoded from a keyframe can equal the
    whole file to the bit."""
    import av
    import numpy as np

    png = Path(path).suffix == ".mov"
    step = rate // 50  # samples per audio frame
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    events = sorted([(i / fps, 0, i) for i in range(len(frames))] + [(j / rate, 1, j) for j in range(0, len(pcm), step)])
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("png" if png else "ffv1", rate=fps)
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "rgb24" if png else "yuv420p"
        sound = container.add_stream("pcm_s16le", rate=rate, layout="mono")
        for _, kind, i in events:
            if kind == 0:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[i]), format="rgb24")
                frame.pts = i
                packets = video.encode(frame)
            else:
                chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[None, i : i + step]), format="s16", layout="mono")
                chunk.sample_rate, chunk.pts = rate, i
                packets = sound.encode(chunk)
            for packet in packets:
                container.mux(packet)
        for packet in [*video.encode(), *sound.encode()]:
            container.mux(packet)
    return path


def checkpoint_following(source: Path, out: Path, follow: str) -> Path:
    """The checkpoint `source` with its faces followed by `follow` ("cascade": a followed face gets the full cascade's
    own box, so a window's boxes equal those of a file cut to it whatever the tracker saw before)."""
    from edge_emotion.toolchain.checkpoint import load_checkpoint, save_checkpoint

    state = load_checkpoint(source)
    state["preprocess"]["face"]["follow"] = follow
    save_checkpoint(out, state)
    return out
