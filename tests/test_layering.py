"""The runtime/build split: what a device installs (`pip install .`) never imports the training side.

Build modules (training, export, calibration, synthetic data, the demo, the torch model and backend) may
import runtime ones, never the reverse. Checked on the source, every import statement, also the ones
inside functions, so a lazy import cannot sneak torch back into `score`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import edge_emotion

PACKAGE = Path(edge_emotion.__file__).parent
BUILD_PACKAGES = ("train", "export", "calibration", "synth")
BUILD_MODULES = {
    "demo.py", "model.py", "checkpoint.py", "backends/torch_backend.py",
    "cli/train_cmds.py", "cli/export_cmds.py", "cli/synth_cmds.py", "cli/demo_cmds.py",
    "ray_engine/preparing.py",  # the training cache on Ray: `prepare --engine ray`
}
BUILD_IMPORTS = ("torch", "torchvision", "facenet_pytorch", "onnx", "librosa")
#: sanctioned doors: `--backend torch` opens a checkpoint (only the [train] install has one), and the CLI registers
#: the build commands, whose modules import their build code inside the command bodies only
ALLOWED = {
    ("backends/__init__.py", "edge_emotion.backends.torch_backend"),
    *(("cli/__init__.py", f"edge_emotion.cli.{m}") for m in ("train_cmds", "export_cmds", "synth_cmds", "demo_cmds")),
}


def _module_name(path: Path) -> str:
    return ".".join(("edge_emotion", *path.relative_to(PACKAGE).with_suffix("").parts))


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def _is_build(relative: str) -> bool:
    return relative.split("/")[0] in BUILD_PACKAGES or relative in BUILD_MODULES


def runtime_modules() -> list[Path]:
    files = sorted(PACKAGE.rglob("*.py"))
    return [p for p in files if not _is_build(p.relative_to(PACKAGE).as_posix())]


def test_runtime_modules_import_nothing_from_the_build_side():
    build_prefixes = tuple(f"edge_emotion.{p}" for p in BUILD_PACKAGES) + tuple(
        _module_name(PACKAGE / m) for m in BUILD_MODULES
    )
    found = []
    for path in runtime_modules():
        relative = path.relative_to(PACKAGE).as_posix()
        for name in _imports(path):
            top = name.split(".")[0]
            bad = top in BUILD_IMPORTS or any(name == b or name.startswith(b + ".") for b in build_prefixes)
            allowed = any(relative == r and (name == n or name.startswith(n + ".")) for r, n in ALLOWED)
            if bad and not allowed and not name.startswith("onnxruntime"):
                found.append(f"{relative} imports {name}")
    assert not found, "\n".join(found)


def test_the_split_covers_the_runtime_steps():
    """The data flow's steps are all on the runtime side (a rename must not drop one out of the check)."""
    names = {p.relative_to(PACKAGE).as_posix() for p in runtime_modules()}
    for step in ("decode.py", "plan.py", "faces.py", "audio.py", "segments.py", "consensus.py", "report.py",
                 "score.py", "bench.py", "preview.py", "contract.py", "detector/mtcnn.py", "detector/cascade.py",
                 "backends/onnxruntime_backend.py", "backends/tensorrt_backend.py", "backends/engine_file.py"):
        assert step in names
