"""--faces and --detector, shared by score, predict, stream (and bench's --detector), checked before any work.

Light: no av, no onnxruntime (the net names come from the detector's data package).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional, cast

import typer

from edge_emotion.cli import paths

if TYPE_CHECKING:
    from edge_emotion.preprocess.people import WhichFaces

FACE_CHOICES = ("largest", "all")

FacesOption = Annotated[
    str,
    typer.Option("--faces", help="largest: the largest person (one row per file, the paper's one subject); all: everyone, one row per person."),
]
DetectorOption = Annotated[
    Optional[Path],
    typer.Option("--detector", help="A folder of face detector nets (FP16 ONNX or TensorRT engines: python -m edge_emotion.toolchain.export.detector_nets --out DIR); default: the packaged ONNX."),
]


def which_faces(value: str) -> WhichFaces:
    """'largest' or 'all', else a bad --faces."""
    if value not in FACE_CHOICES:
        raise typer.BadParameter(f"{value!r}: choose largest or all", param_hint="--faces")
    return cast("WhichFaces", value)


def detector_dir(path: Path | None, option: str = "--detector") -> Path | None:
    """A folder holding each MTCNN net as NAME.engine, NAME.fp16.onnx or NAME.onnx (what FaceDetector(nets=) opens)."""
    from edge_emotion.detector.nets import NET_SPECS

    if path is None:
        return None
    paths.existing_dir(path, option)
    for name in NET_SPECS:
        candidates = (f"{name}.engine", f"{name}.fp16.onnx", f"{name}.onnx")
        if not any((path / c).is_file() for c in candidates):
            raise typer.BadParameter(
                f"{path}: no {', '.join(candidates)}: not a folder of detector nets "
                "(python -m edge_emotion.toolchain.export.detector_nets --fp16 --out DIR writes one)",
                param_hint=option,
            )
    return path
