"""Library defaults in one torch-free place: the library's functions and the CLI's options both read them here,
so a default changes in one line and `--help` never disagrees with the code.
"""

from __future__ import annotations

# scoring
BATCH_SIZE = 64  # segments per backend call, across clips
FILE_TIMEOUT_S = 120.0  # seconds one file may take in a preprocessing worker before it becomes an error row
# A worker's setup (ONNX Runtime sessions, the face detector) takes 1-3 s here; 120 s means hung, not slow.
SETUP_TIMEOUT_S = 120.0
SAMPLE_RATE = 16_000  # audio is resampled to this; the model's contract says which rate it was trained on

# bench
BENCH_BATCH_SIZES = (1, 10, 64)
BENCH_ITERATIONS = 50
BENCH_WARMUP = 5
BENCH_MAX_SECONDS = 20.0
BENCH_MAX_VIDEOS = 10

# export
OPSET = 17  # TensorRT 10 and ONNX Runtime >= 1.13 both parse it; QDQ per-channel needs >= 13
ENGINE_WORKSPACE_BYTES = 1 << 30  # 1 GiB: plenty for a 0.4 M-parameter net, small enough for Jetson-class devices
ENGINE_PROFILE = (1, 10, 64)  # min, opt, max segments S of the branch engine's shape profile

# INT8 calibration
CALIB_SEGMENTS = 500
CALIB_HOLDOUT = 100
CALIB_MIN_SEGMENTS = 16  # fewer real segments than this cannot calibrate: refused, not guessed

# faces (FaceParams' defaults; they travel in every checkpoint and exported model)
MIN_FACE_SIZE = 40  # MTCNN's smallest face, in pixels of the source frame (40 px wide in a 1920x1080 frame too)
DETECT_MAX_SIDE = 0  # detect on the frame as decoded (> 0: downscaled to this longest side first; min face then in its pixels)
DETECT_EVERY_PLANNED = 10  # the full cascade on every k-th planned frame (and whenever a face is lost); faces followed between
FACE_FOLLOW = "onet"  # between full detections: "onet" (MTCNN's ONet near the last box) or "cascade" (exact)
TRACK_MAX_MISSES = 3  # a person missing from this many full detections in a row is dropped (a new track if they return)
TRACK_MATCH_IOU = 0.3  # a detection continues the track whose last box it overlaps at least this much (IoU)

# live streams (edge-emotion stream)
STREAM_HOP_S = 0.5  # seconds between events
STREAM_TIMEOUT_S = 10.0  # seconds without data before a source counts as stalled or lost
STREAM_SECONDS_PER_SEGMENT = 0.25  # default window: a CREMA-D clip (median ~2.5 s) over the paper's N = 10

# time (io/frame_times.py): one rule for clips, recordings and live sources
VIDEO_GAP_S = 1.0  # no video frame for longer than this: a gap; windows never hold frames from both sides of one
MAX_AV_SKEW_S = 2.0  # video this far past a segment's audio window: the sound there is missing (counted silent)
