"""What kind of file a path holds, from its first bytes: so a wrong file is named for what it is.

Why sniff instead of trusting the suffix alone: an ONNX file handed to `export`
used to fail inside torch.load as "holds objects other than weights", as if it
were a malicious pickle. Reading 64 bytes tells a checkpoint (zip archive or
pickle), an ONNX model (protobuf starting with ir_version), an edge-emotion
engine (uint32 length + JSON header) and the common video containers apart.

Only regular files are opened: a FIFO or a device is never read (it could block
or never end). No heavy imports: the runtime and the CLI use this.
"""

from __future__ import annotations

import stat
import struct
from pathlib import Path

from edge_emotion.io.scan import DEFAULT_EXTENSIONS

HEAD_BYTES = 64

#: kind -> how a message names it
DESCRIPTIONS: dict[str, str] = {
    "checkpoint": "a PyTorch checkpoint",
    "onnx": "an ONNX model",
    "engine": "an edge-emotion TensorRT engine",
    "video": "a video",
    "empty": "an empty file (0 bytes)",
    "directory": "a directory",
    "missing": "no such file",
    "special": "not a regular file",
    "unknown": "not a file this toolkit knows",
}

#: artifact kind -> the suffix an artifact of that kind carries
ARTIFACT_SUFFIXES: dict[str, str] = {"checkpoint": ".pt", "onnx": ".onnx", "engine": ".engine"}

_VIDEO_MAGIC: tuple[tuple[int, bytes], ...] = (
    (0, b"FLV"),  # Flash video (CREMA-D)
    (4, b"ftyp"),  # MP4, MOV, M4V
    (0, b"\x1aE\xdf\xa3"),  # Matroska, WebM
    (8, b"AVI "),  # RIFF AVI
    (0, b"\x00\x00\x01\xba"),  # MPEG program stream
    (0, b"\x30\x26\xb2\x75"),  # ASF / WMV
)


def sniff(path: str | Path) -> str:
    """The kind of `path`: one of DESCRIPTIONS' keys. Reads at most HEAD_BYTES of a regular file."""
    path = Path(path)
    try:
        mode = path.stat().st_mode  # follows symlinks: a link to /dev/zero is a character device
    except OSError:
        return "missing"
    if stat.S_ISDIR(mode):
        return "directory"
    if not stat.S_ISREG(mode):
        return "special"
    try:
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
    except OSError:
        return "unknown"
    return kind_of_bytes(head, path.suffix.lower())


def kind_of_bytes(head: bytes, suffix: str = "") -> str:
    """The kind of a file from its first bytes (and its lower-case suffix where the bytes are ambiguous)."""
    if not head:
        return "empty"
    if head.startswith(b"PK\x03\x04") or (head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5):
        return "checkpoint"  # torch.save writes a zip archive; older checkpoints are a bare pickle
    if len(head) >= 6 and head[4:5] == b"{" and struct.unpack("<I", head[:4])[0] < 1 << 20:
        return "engine"  # our engine files: header length (uint32 LE), then the JSON header
    if any(head[at : at + len(magic)] == magic for at, magic in _VIDEO_MAGIC):
        return "video"
    if head[0] == 0x08 and (suffix == ".onnx" or (len(head) > 2 and head[2] == 0x12)):
        return "onnx"  # ModelProto: field 1 (ir_version, varint) first, then producer_name (field 2)
    if suffix in DEFAULT_EXTENSIONS:
        return "video"  # a damaged video is still a video: the decoder says what is wrong with it
    return "unknown"


def describe(kind: str) -> str:
    """How a message names a file of this kind."""
    return DESCRIPTIONS.get(kind, kind)
