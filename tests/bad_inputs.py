"""The bad-input corpus: every kind of broken or odd video a folder can hold, made on the spot.

Used by tests/test_reliability.py (which asserts the outcome of each kind) and
runnable as a script, which scores the corpus and prints the markdown table
of docs/RELIABILITY.md:

    python tests/bad_inputs.py CHECKPOINT
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from conftest import HAP, tone, write_video

#: kind -> (file name under the corpus folder, expected status, words the error must contain)
EXPECTED: dict[str, tuple[str, str, str]] = {
    "zero bytes": ("zero.mp4", "error", "empty file"),
    "random bytes named .flv": ("random.flv", "error", "not a readable video"),
    "random bytes named .mp4": ("random.mp4", "error", "not a readable video"),
    "real clip truncated at 1 KB": ("truncated_1k.flv", "error", ""),
    "real clip truncated at half": ("truncated_half.flv", "degraded", "cut short"),
    "audio only": ("audio_only.mp4", "error", "no video stream"),
    "video only": ("video_only.mp4", "degraded", "no audio stream"),
    "zero duration (header, no frames)": ("zero_duration.flv", "error", "zero-duration"),
    "silent audio": ("silent.mp4", "degraded", ""),
    "no face (blank frames)": ("blank.mp4", "degraded", ""),
    "one frame": ("one_frame.mp4", "ok", ""),
    "shorter than d = 1.28 s": ("short.mp4", "ok", ""),
    "3840x2160 frames": ("uhd.mp4", "ok", ""),
    "17x9 frames": ("tiny.mp4", "degraded", ""),
    "variable frame rate": ("vfr.mp4", "ok", ""),
    "rotation metadata": ("rotated.mp4", "ok", ""),
    "unicode and spaces in the path": ("ünï cødé/émotion clip.mp4", "ok", ""),
    "unreadable (chmod 000)": ("unreadable.mp4", "error", "permission denied"),
    "a directory named x.mp4": ("x.mp4", "error", "directory"),
    "symlink loop": ("loop.mp4", "error", "symbolic link"),
    "10-minute video": ("ten_minutes.mkv", "ok", ""),
    # special files are never opened: a FIFO would block the worker, /dev/zero and /dev/urandom never end
    "FIFO named .mp4": ("fifo.mp4", "error", "not a regular file (FIFO)"),
    "symlink to /dev/zero": ("dev_zero.mp4", "error", "not a regular file (character device)"),
    "symlink to /dev/urandom": ("dev_urandom.flv", "error", "not a regular file (character device)"),
    "Unix socket named .mkv": ("socket.mkv", "error", "not a regular file (socket)"),
}


def face_frames(count: int, size: tuple[int, int] | None = None) -> np.ndarray:
    """[count, H, W, 3] frames of the real CREMA-D clip (a face MTCNN finds), optionally resized (W, H)."""
    from PIL import Image

    with av.open(str(HAP)) as container:
        frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(count), container.decode(video=0))]
    while len(frames) < count:
        frames += frames[: count - len(frames)]
    if size is not None:
        frames = [np.asarray(Image.fromarray(f).resize(size, Image.BILINEAR)) for f in frames]
    return np.stack(frames)


def write_audio_only(path: Path) -> None:
    """An MP4 holding a 1 s AAC tone and no video stream."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16_000, layout="mono")
        frame = av.AudioFrame.from_ndarray(tone(1.0).reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = 16_000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)


def _zero_duration(path: Path) -> None:
    """Like CREMA-D's damaged clips: the real clip's FLV header and metadata tag, no audio or video tag."""
    data = HAP.read_bytes()
    end = 9 + 4  # FLV header, PreviousTagSize0
    while data[end] == 18:  # script-data tags (onMetaData) come first
        end += 11 + int.from_bytes(data[end + 1 : end + 4], "big") + 4
    path.write_bytes(data[:end])


def _vfr(path: Path) -> None:
    """Frames at irregular times (10 to 40 ms apart... and a 300 ms gap), time base 1/1000."""
    frames = face_frames(20, (160, 120))
    pts = np.cumsum([0, *[(33, 12, 40, 300)[i % 4] for i in range(19)]])
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        audio = container.add_stream("aac", rate=16_000, layout="mono")
        for image, t in zip(frames, pts):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = int(t), Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
        pcm = av.AudioFrame.from_ndarray(tone(pts[-1] / 1000 + 0.1).reshape(1, -1), format="flt", layout="mono")
        pcm.sample_rate = 16_000
        container.mux(audio.encode(pcm))
        container.mux(audio.encode())


def _rotated(path: Path) -> None:
    """A phone-style portrait video: frames stored sideways, a display matrix saying turn them 90 degrees."""
    frames = np.rot90(face_frames(10, (160, 120)), -1, axes=(1, 2))  # [10, 160, 120, 3], turned clockwise
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 120, 160, "yuv420p"
        stream.set_display_rotation(90)
        audio = container.add_stream("aac", rate=16_000, layout="mono")
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")))
        container.mux(stream.encode())
        pcm = av.AudioFrame.from_ndarray(tone(1.0).reshape(1, -1), format="flt", layout="mono")
        pcm.sample_rate = 16_000
        container.mux(audio.encode(pcm))
        container.mux(audio.encode())


def _ten_minutes(path: Path) -> None:
    """600 s at 2 fps, 240x180, PCM audio in Matroska: long enough to show memory stays bounded, cheap to write."""
    frames = face_frames(30, (240, 180))
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("mpeg4", rate=2)
        stream.width, stream.height, stream.pix_fmt = 240, 180, "yuv420p"
        audio = container.add_stream("pcm_s16le", rate=16_000, layout="mono")
        for i in range(600 * 2):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frames[i % 30], format="rgb24")))
        container.mux(stream.encode())
        chunk = (tone(10.0, freq=220.0) * 32767).astype(np.int16)
        for k in range(60):
            pcm = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
            pcm.sample_rate, pcm.pts = 16_000, k * chunk.size
            container.mux(audio.encode(pcm))
        container.mux(audio.encode())


def _socket(path: Path) -> None:
    """A Unix-domain socket file (it stays on disk after the socket is closed)."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))


def build_corpus(root: Path) -> dict[str, Path]:
    """Write every kind of EXPECTED under root; returns kind -> path."""
    real = HAP.read_bytes()
    rng = np.random.default_rng(0)
    makers: dict[str, Callable[[Path], object]] = {
        "zero bytes": lambda p: p.write_bytes(b""),
        "random bytes named .flv": lambda p: p.write_bytes(rng.integers(0, 256, 8192, dtype=np.uint8).tobytes()),
        "random bytes named .mp4": lambda p: p.write_bytes(rng.integers(0, 256, 8192, dtype=np.uint8).tobytes()),
        "real clip truncated at 1 KB": lambda p: p.write_bytes(real[:1024]),
        "real clip truncated at half": lambda p: p.write_bytes(real[: len(real) // 2]),
        "audio only": write_audio_only,
        "video only": lambda p: write_video(p, face_frames(10, (160, 120)), fps=10),
        "zero duration (header, no frames)": _zero_duration,
        "silent audio": lambda p: write_video(p, face_frames(20, (160, 120)), fps=10, audio=np.zeros(32_000, np.float32)),
        "no face (blank frames)": lambda p: write_video(p, np.full((20, 120, 160, 3), 200, np.uint8), fps=10, audio=tone(2.0)),
        "one frame": lambda p: write_video(p, face_frames(1, (160, 120)), fps=10, audio=tone(0.1)),
        "shorter than d = 1.28 s": lambda p: write_video(p, face_frames(5, (160, 120)), fps=10, audio=tone(0.5)),
        "3840x2160 frames": lambda p: write_video(p, face_frames(2, (3840, 2160)), fps=2, audio=tone(1.0)),
        "17x9 frames": lambda p: write_video(p, face_frames(10, (17, 9)), fps=10, audio=tone(1.0)),
        "variable frame rate": _vfr,
        "rotation metadata": _rotated,
        "unicode and spaces in the path": lambda p: write_video(p, face_frames(10, (160, 120)), fps=10, audio=tone(1.0)),
        "unreadable (chmod 000)": lambda p: (write_video(p, face_frames(5, (160, 120)), fps=10, audio=tone(0.5)), p.chmod(0)),
        "a directory named x.mp4": lambda p: p.mkdir(),
        "symlink loop": lambda p: (p.symlink_to(p.with_name("loop_b.mp4")), p.with_name("loop_b.mp4").symlink_to(p)),
        "10-minute video": _ten_minutes,
        "FIFO named .mp4": os.mkfifo,
        "symlink to /dev/zero": lambda p: p.symlink_to("/dev/zero"),
        "symlink to /dev/urandom": lambda p: p.symlink_to("/dev/urandom"),
        "Unix socket named .mkv": _socket,
    }
    paths = {}
    for kind, (name, _, _) in EXPECTED.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        makers[kind](path)
        paths[kind] = path
    return paths


def can_read_unreadable() -> bool:
    """Root reads a chmod 000 file anyway: then that kind scores normally."""
    return os.geteuid() == 0


def table(rows_by_path: dict[str, dict], paths: dict[str, Path]) -> str:
    lines = ["| kind of input | status | error (cause) |", "|---|---|---|"]
    for kind, path in paths.items():
        row = rows_by_path.get(str(path))
        if row is None:
            lines.append(f"| {kind} | (no row) | |")
            continue
        cause = row["error"].replace(str(path), "FILE").replace("|", "/") or (
            f"{row['faceless']} segments without a face, {row['silent']} silent" if row["status"] == "degraded" else ""
        )
        lines.append(f"| {kind} | {row['status']} | {cause} |")
    return "\n".join(lines)


if __name__ == "__main__":
    import json
    import tempfile

    from edge_emotion.run.score import ScoreOptions, score_folder

    with tempfile.TemporaryDirectory() as tmp:
        paths = build_corpus(Path(tmp) / "corpus")
        out = Path(tmp) / "rows.jsonl"
        score_folder(Path(tmp) / "corpus", Path(sys.argv[1]), out, ScoreOptions(workers=1, timeout=120))
        rows = {r["path"]: r for r in map(json.loads, out.read_text().splitlines())}
        print(table(rows, paths))
