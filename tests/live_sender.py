"""Test sources for `edge-emotion stream`: real clips decoded once, sent as MPEG-TS over UDP at real-time pace,
written to files, or cut into the clip `predict` would see for one window.

A Recording is frames and sound in memory; everything here is PyAV (no ffmpeg binary):
- send_mpegts(recording, "udp://127.0.0.1:PORT"): mpeg2video + mp2 in MPEG-TS, monotonic pts, paced at the
  clip's own timestamps (a live sender); `stop_after` stops mid-stream (a source that dies).
- write_lossless(recording, path): FFV1 + PCM in NUT: decodes to the very pixels and samples the stream
  sees; given parts at frame offsets, a file whose timestamps jump over a gap.
- write_mp4(recording, path): H.264 + AAC in MP4, what tests/rtsp_server.py serves over RTSP.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

FPS = Fraction(30000, 1001)  # CREMA-D's 29.97 fps as MPEG-2 allows it
AUDIO_RATE = 44_100


@dataclass
class Recording:
    frames: np.ndarray  # [F, H, W, 3] uint8 RGB
    audio: np.ndarray  # [T] float32 mono at AUDIO_RATE, t = 0 at frame 0
    fps: Fraction = FPS

    @property
    def duration(self) -> float:
        return len(self.frames) / float(self.fps)

    def cut(self, first: int, count: int, t_start: float) -> Recording:
        """Frames first .. first+count-1 and the sound from t_start for count / fps seconds."""
        start = round(t_start * AUDIO_RATE)
        length = round(count / float(self.fps) * AUDIO_RATE)
        audio = np.zeros(length, np.float32)
        piece = self.audio[max(0, start) : start + length]
        audio[: len(piece)] = piece
        return Recording(self.frames[first : first + count], audio, self.fps)


def load(paths: list[Path]) -> Recording:
    """Decode clips one after another; each clip's sound cut or padded to its frames, so picture and sound stay in step."""
    frames, audio = [], []
    for path in paths:
        with av.open(str(path)) as container:
            clip_frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        with av.open(str(path)) as container:
            resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE)
            chunks = [o.to_ndarray().reshape(-1) for f in container.decode(audio=0) for o in resampler.resample(f)]
            chunks += [o.to_ndarray().reshape(-1) for o in resampler.resample(None)]
        sound = np.concatenate(chunks)
        length = round(len(clip_frames) / float(FPS) * AUDIO_RATE)
        sound = np.pad(sound, (0, max(0, length - len(sound))))[:length]
        frames += clip_frames
        audio.append(sound)
    return Recording(np.stack(frames), np.concatenate(audio).astype(np.float32))


Part = tuple[Recording, int]  # a recording and the frame index its first frame goes to (frames between are a gap)


def _timeline(parts: list[Part], audio_chunk: int) -> list[tuple[float, str, int, int]]:
    """(time, kind, part, index) of every video frame and audio chunk of the parts, in time order."""
    events = []
    for p, (recording, first) in enumerate(parts):
        start = first / float(recording.fps)
        events += [(start + i / float(recording.fps), "v", p, i) for i in range(len(recording.frames))]
        events += [(start + s / AUDIO_RATE, "a", p, s) for s in range(0, len(recording.audio), audio_chunk)]
    return sorted(events)


def _looped(recording: Recording, loops: int) -> list[Part]:
    """The recording `loops` times over, back to back (its sound is padded to its frames, so loops join up)."""
    return [(recording, loop * len(recording.frames)) for loop in range(loops)]


def _encode(parts: list[Part], container: av.container.OutputContainer, vcodec: str, acodec: str,
            realtime: bool, stop_after: float | None, stop: threading.Event | None, options: dict[str, str]) -> None:
    first = parts[0][0]
    h, w = first.frames.shape[1:3]
    vstream = container.add_stream(vcodec, rate=first.fps, options=options)
    vstream.width, vstream.height, vstream.pix_fmt = w, h, "yuv420p"
    astream = container.add_stream(acodec, rate=AUDIO_RATE, layout="mono")
    chunk = 1152
    start = time.monotonic()
    for t, kind, p, i in _timeline(parts, chunk):
        if (stop_after is not None and t >= stop_after) or (stop is not None and stop.is_set()):
            break
        if realtime and (delay := start + t - time.monotonic()) > 0:
            time.sleep(delay)
        recording, offset = parts[p]
        if kind == "v":
            frame = av.VideoFrame.from_ndarray(recording.frames[i], format="rgb24")
            frame.pts, frame.time_base = offset + i, 1 / recording.fps
            packets = vstream.encode(frame)
        else:
            pcm = recording.audio[i : i + chunk].reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm), format="flt", layout="mono")
            frame.sample_rate, frame.time_base = AUDIO_RATE, Fraction(1, AUDIO_RATE)
            frame.pts = round(offset / recording.fps * AUDIO_RATE) + i
            packets = astream.encode(frame)
        container.mux(packets)
    container.mux(vstream.encode())
    container.mux(astream.encode())


def send_mpegts(recording: Recording, url: str, realtime: bool = True, stop_after: float | None = None,
                stop: threading.Event | None = None, loops: int = 1) -> None:
    """Stream the recording (`loops` times over) as MPEG-TS (mpeg2video + mp2) to `url`, e.g.
    udp://127.0.0.1:PORT?pkt_size=1316. No B-frames and a GOP of 15: a receiver joins within half a second."""
    with av.open(url, mode="w", format="mpegts", container_options={"muxdelay": "0.1"}) as container:
        _encode(_looped(recording, loops), container, "mpeg2video", "mp2", realtime, stop_after, stop,
                {"b": "4000000", "g": "15", "bf": "0"})


def write_lossless(recording: Recording | list[Part], path: Path) -> Path:
    """FFV1 + 16-bit PCM in NUT: what it decodes to depends only on the recording. A list of parts puts each
    part's first frame (and its sound) at its frame index: a file with gaps in its timestamps."""
    parts = recording if isinstance(recording, list) else [(recording, 0)]
    with av.open(str(path), mode="w", format="nut") as container:
        _encode(parts, container, "ffv1", "pcm_s16le", False, None, None, {})
    return path


def write_mp4(recording: Recording, path: Path, loops: int = 1) -> Path:
    """H.264 (libx264, near-lossless, no B-frames, a keyframe every 15 frames) + AAC in MP4: what an IP camera
    sends, for the RTSP server (tests/rtsp_server.py)."""
    with av.open(str(path), mode="w", format="mp4") as container:
        _encode(_looped(recording, loops), container, "libx264", "aac", False, None, None,
                {"crf": "12", "g": "15", "bf": "0", "preset": "veryfast"})
    return path


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_listener(port: int, timeout: float = 60.0) -> None:
    """Return once something has bound the UDP port (the stream's reader), so no packet is sent into the void."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listened on udp port {port} within {timeout:g} s")


def main() -> None:
    """python tests/live_sender.py PORT SECONDS [CLIP ...]: the fixture clips (or CLIPs) looped to UDP for SECONDS."""
    import sys

    port, seconds = int(sys.argv[1]), float(sys.argv[2])
    fixtures = Path(__file__).parent / "fixtures"
    clips = [Path(p) for p in sys.argv[3:]] or [fixtures / "1001_DFA_HAP_XX.flv", fixtures / "1001_DFA_NEU_XX.flv"]
    recording = load(clips)
    wait_for_listener(port)
    send_mpegts(recording, f"udp://127.0.0.1:{port}?pkt_size=1316", stop_after=seconds,
                loops=int(seconds // recording.duration) + 1)


if __name__ == "__main__":
    main()
