"""Commands of the export stage: `export` (checkpoint -> checked ONNX / engine) and `check` (artifact vs checkpoint).

Thin: parse options, call edge_emotion.toolchain.export, print the parity report. Heavy
imports (torch, onnx, onnxruntime, MTCNN, tensorrt) happen inside the bodies.
"""

from __future__ import annotations

import tempfile
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from edge_emotion import defaults
from edge_emotion.cli import paths


class Format(str, Enum):
    onnx = "onnx"
    engine = "engine"


class CalibMethod(str, Enum):
    minmax = "minmax"
    entropy = "entropy"
    percentile = "percentile"


def _default_output(checkpoint: Path, precision: str, fmt: Format) -> Path:
    suffix = "" if precision == "fp32" else f".{precision}"
    return checkpoint.with_suffix(f"{suffix}.{fmt.value}")


def _parity_sources(given: list[Path] | None, scratch: Path) -> list[Path]:
    """The videos parity runs on: the ones given, else six generated synthetic clips (said on stderr)."""
    if given:
        return given
    from edge_emotion.toolchain.export.parity import synthetic_parity_videos

    typer.echo("no --parity-data: checking parity on 6 generated synthetic clips (pass real videos for a closer check)", err=True)
    return [synthetic_parity_videos(scratch)]


def _check_export_paths(
    checkpoint: Path, output: Path, fmt: Format, calib: Path | None, calib_size: tuple[int, int | None],
    prepare_cache: Path | None, parity_data: list[Path] | None,
) -> None:
    """Every path export is given, checked before torch, MTCNN and minutes of calibration."""
    paths.artifact(checkpoint, "CHECKPOINT", ("checkpoint",))
    paths.output_file(output, "--output", (f".{fmt.value}",))
    for source in parity_data or []:
        paths.video_source(source, "--parity-data")
    if prepare_cache is not None:
        paths.existing_dir(prepare_cache, "--prepare-cache")
    if calib is not None:
        paths.video_source(paths.existing_dir(calib, "--calib"), "--calib")
        _check_calib_size(checkpoint, calib, *calib_size, prepare_cache)


def _check_calib_size(
    checkpoint: Path, calib: Path, segments: int, per_clip: int | None, prepare_cache: Path | None
) -> None:
    """Refuse at once a folder that cannot give the minimum of calibration segments (a small one is used as is)."""
    from edge_emotion.toolchain.calibration.data import cached_clips, check_enough_clips, list_videos
    from edge_emotion.toolchain.checkpoint import load_checkpoint, preprocess_config

    clips = cached_clips(calib, prepare_cache) if prepare_cache is not None else list_videos(calib)
    per_clip = per_clip or preprocess_config(load_checkpoint(checkpoint)).n_segments
    try:
        check_enough_clips(len(clips), per_clip, segments, calib, prepare_cache)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--calib") from exc


def export(
    checkpoint: Annotated[Path, typer.Argument(help="Training checkpoint (.pt).")],
    fmt: Annotated[
        Format, typer.Option("--format", help="onnx, or a TensorRT engine (built from the ONNX).")
    ] = Format.onnx,
    fp16: Annotated[bool, typer.Option("--fp16", help="FP16 ONNX (pooling, linear, softmax stay FP32).")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="INT8 Q/DQ ONNX, calibrated on --calib videos.")] = False,
    calib: Annotated[Path | None, typer.Option("--calib", help="Folder of videos for INT8 calibration.")] = None,
    calib_method: Annotated[CalibMethod, typer.Option("--calib-method", help="Range estimation.")] = CalibMethod.minmax,
    calib_segments: Annotated[int, typer.Option("--calib-segments", min=1, help="Calibration segments.")] = defaults.CALIB_SEGMENTS,
    calib_per_clip: Annotated[
        int | None, typer.Option("--calib-per-clip", min=1, help="Segments per clip (default N).")
    ] = None,
    calib_cache: Annotated[
        Path | None, typer.Option("--calib-cache", help="Ranges cache (default OUT.calib.json).")
    ] = None,
    prepare_cache: Annotated[
        Path | None, typer.Option("--prepare-cache", help="Prepare cache: boxes without MTCNN.")
    ] = None,
    parity_data: Annotated[
        list[Path] | None,
        typer.Option(
            "--parity-data", help="Videos or folders for the parity check (default: --calib, else generated clips)."
        ),
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Artifact to write.")] = None,
    opset: Annotated[int, typer.Option("--opset", min=13, help="ONNX opset.")] = defaults.OPSET,
    profile: Annotated[str, typer.Option("--profile", help="Engine S profile min,opt,max.")] = ",".join(map(str, defaults.ENGINE_PROFILE)),
    workspace_mib: Annotated[
        int, typer.Option("--workspace-mib", min=1, help="Engine builder workspace limit.")
    ] = defaults.ENGINE_WORKSPACE_BYTES >> 20,
    timing_cache: Annotated[
        Path | None, typer.Option("--timing-cache", help="TensorRT timing cache (loaded and saved).")
    ] = None,
) -> None:
    """Export the shared per-segment branch, check it against torch on real segments, refuse it beyond tolerance."""
    from edge_emotion.preprocess.faces import FaceDetector
    from edge_emotion.toolchain.checkpoint import load_checkpoint, preprocess_config
    from edge_emotion.toolchain.export.parity import load_inputs
    from edge_emotion.toolchain.export.pipeline import CalibrationOptions, export_engine_artifact, export_onnx_artifact
    from edge_emotion.toolchain.export.tensorrt_build import ShapeProfile, require_tensorrt

    if fp16 and int8:
        raise typer.BadParameter("choose one of --fp16 and --int8")
    if int8 and calib is None:
        raise typer.BadParameter("--int8 needs --calib DIR (a folder of videos)")
    precision = "int8" if int8 else "fp16" if fp16 else "fp32"
    output = output or _default_output(checkpoint, precision, fmt)
    _check_export_paths(
        checkpoint, output, fmt, calib if int8 else None, (calib_segments, calib_per_clip), prepare_cache, parity_data
    )
    if fmt is Format.engine:
        require_tensorrt()  # fail before minutes of MTCNN and calibration, with the install hint
    try:
        shape_profile = ShapeProfile.parse(profile)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--profile") from exc
    config = preprocess_config(load_checkpoint(checkpoint))
    detector = FaceDetector(config.face)
    with tempfile.TemporaryDirectory() as scratch:
        inputs = load_inputs(_parity_sources(parity_data or ([calib] if calib else None), Path(scratch)), config, detector)
    calibration = None
    if int8 and calib is not None:
        calibration = CalibrationOptions(
            calib, calib_method.value, calib_segments, calib_per_clip, cache=calib_cache, prepare_cache=prepare_cache
        )
    onnx_out = output if fmt is Format.onnx else output.with_suffix(".onnx")
    result = export_onnx_artifact(checkpoint, onnx_out, inputs, precision, calibration, opset, detector=detector)
    if result.calibration:
        typer.echo(result.calibration.summary())
    typer.echo(result.report.summary())
    typer.echo(f"wrote {onnx_out}")
    if fmt is Format.engine:
        engine = export_engine_artifact(
            onnx_out, output, checkpoint, inputs, shape_profile, workspace_mib << 20, timing_cache
        )
        typer.echo(engine.report.summary())
        typer.echo(f"wrote {output}")


def check(
    artifact: Annotated[Path, typer.Argument(help="Exported artifact (.onnx or .engine).")],
    against: Annotated[Path, typer.Option("--against", help="The checkpoint it was exported from.")],
    parity_data: Annotated[
        list[Path] | None,
        typer.Option("--parity-data", help="Videos or folders to compare on (default: generated synthetic clips)."),
    ] = None,
    backend: Annotated[
        str | None, typer.Option("--backend", help="torch | onnxruntime | tensorrt (default: by suffix).")
    ] = None,
    provider: Annotated[
        str, typer.Option("--provider", help="ONNX Runtime EP: auto | cpu | cuda | tensorrt.")
    ] = "auto",
) -> None:
    """Compare an artifact with its checkpoint on real segments (like `polygraphy run --onnxrt --trt`); exit 1 on failure."""
    from edge_emotion.backends import backend_for
    from edge_emotion.toolchain.checkpoint import load_checkpoint, preprocess_config
    from edge_emotion.toolchain.export.parity import load_inputs, run_parity

    paths.artifact(artifact, "ARTIFACT", ("onnx", "engine"))
    paths.artifact(against, "--against", ("checkpoint",))
    for source in parity_data or []:
        paths.video_source(source, "--parity-data")
    with tempfile.TemporaryDirectory() as scratch:
        inputs = load_inputs(_parity_sources(parity_data, Path(scratch)), preprocess_config(load_checkpoint(against)))
    if (backend or backend_for(artifact)) == "onnxruntime":
        report = run_parity(artifact, against, inputs, backend=backend, provider=provider)
    else:
        report = run_parity(artifact, against, inputs, backend=backend)
    typer.echo(report.summary())
    if not report.passed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""
    app.command()(export)
    app.command()(check)
