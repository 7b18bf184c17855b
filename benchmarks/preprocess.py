"""Preprocessing costs on the real CREMA-D fixture clips (N = 10): decode, MTCNN, spectrogram, cold starts.

Each MTCNN speed lever is reported beside its box agreement (IoU) with
full-resolution detection on the same frames, so a speed-up is never bought
blind. Usage:

    python benchmarks/preprocess.py [--repeats 5] [--json out.json]

Prints a markdown table (paste it into benchmarks/README.md with the machine).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from edge_emotion.config import FaceParams, SpectrogramParams
from edge_emotion.io.decode import open_clip, read_frames
from edge_emotion.preprocess.audio import audio_windows, spectrograms
from edge_emotion.preprocess.faces import FaceDetector, box_iou, downscale
from edge_emotion.preprocess.plan import plan_segments

CLIPS = sorted((Path(__file__).resolve().parents[1] / "tests" / "fixtures").glob("*.flv"))
N = 10


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median wall time in ms over `repeats` runs (after one warm-up), and the last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result


def clip_frames(path: Path) -> tuple[list[np.ndarray], float]:
    clip = open_clip(path)
    plan = plan_segments(N, clip.frame_times, "test")
    frames = read_frames(clip, [s.frame for s in plan])
    return [frames[s.frame] for s in plan], clip.duration


def mtcnn_rows(repeats: int) -> list[dict]:
    """Per-clip detection time (N frames) and mean IoU against full resolution, per lever."""
    clips = [clip_frames(p) for p in CLIPS]
    full = FaceDetector(FaceParams(detect_max_side=0))
    reference = [full.detect(frames) for frames, _ in clips]
    levers = {
        "full resolution, one call for N frames": (FaceParams(detect_max_side=0), "batch"),
        "full resolution, one call per frame": (FaceParams(detect_max_side=0), "per-frame"),
        "full resolution, min_face_size 80": (FaceParams(detect_max_side=0, min_face_size=80), "batch"),
        "downscale to 320 px (default)": (FaceParams(detect_max_side=320), "batch"),
        "downscale to 240 px": (FaceParams(detect_max_side=240), "batch"),
        "downscale to 160 px": (FaceParams(detect_max_side=160, min_face_size=20), "batch"),
        "full resolution, detect first frame only, reuse box": (FaceParams(detect_max_side=0), "reuse"),
        "downscale 320 + reuse box": (FaceParams(detect_max_side=320), "reuse"),
    }
    rows = []
    for name, (params, mode) in levers.items():
        detector = FaceDetector(params, threads=torch.get_num_threads())
        ms, ious = [], []
        for (frames, _), ref in zip(clips, reference):
            run = {
                "batch": lambda: detector.detect(frames),
                "per-frame": lambda: [detector.detect([f])[0] for f in frames],
                "reuse": lambda: detector.detect(frames[:1]) * len(frames),
            }[mode]
            t, boxes = timed(run, repeats)
            ms.append(t)
            ious += [box_iou(a, b) for a, b in zip(ref, boxes)]
        rows.append({"stage": f"MTCNN: {name}", "ms_per_clip": statistics.mean(ms), "ms_per_frame": statistics.mean(ms) / N,
                     "iou_mean": float(np.mean(ious)), "iou_min": float(np.min(ious))})
    return rows


def decode_and_audio_rows(repeats: int) -> list[dict]:
    rows = []
    params = SpectrogramParams()
    t_open = statistics.mean(timed(lambda p=p: open_clip(p), repeats)[0] for p in CLIPS)
    rows.append({"stage": "decode: open_clip (demux + audio)", "ms_per_clip": t_open})
    t_frames = statistics.mean(timed(lambda p=p: clip_frames(p), repeats)[0] for p in CLIPS) - t_open
    rows.append({"stage": "decode: read_frames (N frames kept)", "ms_per_clip": t_frames})
    frames = np.stack(clip_frames(CLIPS[0])[0])  # [N, 360, 480, 3]
    scale = 320 / max(frames.shape[1:3])
    size = (round(frames.shape[2] * scale), round(frames.shape[1] * scale))
    t_down, _ = timed(lambda: downscale(frames, scale), repeats)
    rows.append({"stage": "downscale N frames to 320 px: this package (PIL, per frame)", "ms_per_clip": t_down})
    t_torch_down, _ = timed(lambda: torch.nn.functional.interpolate(torch.from_numpy(frames).permute(0, 3, 1, 2), size=size[::-1], mode="bilinear", antialias=True), repeats)
    rows.append({"stage": "downscale N frames to 320 px: torch uint8 interpolate, one call (the previous way)", "ms_per_clip": t_torch_down})
    clip = open_clip(CLIPS[0])
    centres = np.array([s.centre for s in plan_segments(N, clip.frame_times, "test")])
    windows = audio_windows(clip.waveform, clip.sample_rate, centres, params.window_s)
    t_np, ours = timed(lambda: spectrograms(windows, params), repeats)
    rows.append({"stage": "spectrogram: this package (DFT as one matrix product, N windows)", "ms_per_clip": t_np})
    import librosa

    def librosa_specs() -> np.ndarray:
        return np.stack([np.abs(librosa.stft(w, n_fft=params.n_fft, hop_length=params.hop_length, pad_mode="constant")) for w in windows])

    t_lr, _ = timed(librosa_specs, repeats)
    rows.append({"stage": "spectrogram: librosa.stft, one call per window (magnitude only)", "ms_per_clip": t_lr})
    window = torch.hann_window(params.n_fft, periodic=True)
    x = torch.from_numpy(windows)
    t_torch, _ = timed(lambda: torch.stft(x, params.n_fft, params.hop_length, window=window, center=True, pad_mode="constant", return_complex=True).abs(), repeats)
    rows.append({"stage": "spectrogram: torch.stft, N windows (magnitude only; the previous way)", "ms_per_clip": t_torch})
    padded = np.pad(windows, ((0, 0), (params.n_fft // 2, params.n_fft // 2)))
    frames_view = np.lib.stride_tricks.sliding_window_view(padded, params.n_fft, axis=1)[:, :: params.hop_length]
    hann = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(params.n_fft) / params.n_fft)).astype(np.float32)
    t_rfft, _ = timed(lambda: np.abs(np.fft.rfft(frames_view * hann, axis=-1)), repeats)
    rows.append({"stage": "spectrogram: numpy rfft, N windows (magnitude only)", "ms_per_clip": t_rfft})
    return rows


def cold_start_rows() -> list[dict]:
    """Fresh interpreter each: CLI help, and the first spectrogram with numpy vs librosa (numba compile)."""
    def run(code: list[str]) -> float:
        start = time.perf_counter()
        subprocess.run(code, check=True, capture_output=True)
        return (time.perf_counter() - start) * 1000

    torch_free = subprocess.run([sys.executable, "-c", "import sys, edge_emotion.cli; print('torch' in sys.modules)"],
                                capture_output=True, text=True, check=True).stdout.strip()
    first_numpy = ("import numpy as np; from edge_emotion.preprocess.audio import SpectrogramParams, spectrograms; "
                   "spectrograms(np.zeros((1, 20480), np.float32), SpectrogramParams())")
    first_librosa = "import numpy as np, librosa; librosa.feature.melspectrogram(y=np.zeros(20480, np.float32), sr=16000)"
    return [
        {"stage": f"cold: edge-emotion --help (imports torch: {torch_free})", "ms_per_clip": run([sys.executable, "-m", "edge_emotion", "--help"])},
        {"stage": "cold: first spectrogram, this package", "ms_per_clip": run([sys.executable, "-c", first_numpy])},
        {"stage": "cold: first librosa mel spectrogram (numba)", "ms_per_clip": run([sys.executable, "-c", first_librosa])},
    ]


def to_markdown(rows: list[dict]) -> str:
    lines = ["| stage | ms per clip (N=10) | ms per frame | IoU vs full res (mean / min) |", "|---|---:|---:|---|"]
    for r in rows:
        per_frame = f"{r['ms_per_frame']:.1f}" if "ms_per_frame" in r else ""
        agree = f"{r['iou_mean']:.3f} / {r['iou_min']:.3f}" if "iou_mean" in r else ""
        lines.append(f"| {r['stage']} | {r['ms_per_clip']:.1f} | {per_frame} | {agree} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = decode_and_audio_rows(args.repeats) + mtcnn_rows(args.repeats) + cold_start_rows()
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, clips: {', '.join(p.name for p in CLIPS)}")
    print(to_markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
