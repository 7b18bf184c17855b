"""The package's shape, checked on the source (every import statement, also the ones inside functions):

- two wings: `edge_emotion/toolchain/` needs torch or makes artifacts; everything else is the runtime that
  `pip install .` gives a device. The runtime never imports the toolchain wing or a build-only library; the
  torch backend is the one lazy door (it opens a checkpoint, which only the [train] install has), and the
  CLI registers the build commands, whose modules import build code inside the command bodies only.
- no import cycle anywhere in the package, function-level imports included.
- one version: pyproject.toml's, printed by `--version` and recorded in every artifact.
- no source file over 500 lines in the package or in benchmarks/: one idea per file.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import edge_emotion
from edge_emotion.contract import ModelContract

PACKAGE = Path(edge_emotion.__file__).parent
ROOT = PACKAGE.parent
BUILD_WING = "toolchain"
BUILD_IMPORTS = ("torch", "torchvision", "facenet_pytorch", "onnx", "librosa")
#: (importing module, imported module) pairs that cross from the runtime into the toolchain wing on purpose
DOORS = {
    ("edge_emotion.backends.__init__", "edge_emotion.backends.torch_backend"),
    ("edge_emotion.backends.torch_backend", "torch"),
    ("edge_emotion.backends.torch_backend", "edge_emotion.toolchain.checkpoint"),
}
#: CLI modules of build commands: their bodies import the toolchain wing (never torch itself)
BUILD_COMMANDS = ("train_cmds", "export_cmds", "synth_cmds", "demo_cmds")
MAX_LINES = 500


def _module_name(path: Path, root: Path = PACKAGE) -> str:
    return ".".join((root.name, *path.relative_to(root).with_suffix("").parts))


def _imports(path: Path, root: Path = PACKAGE) -> list[str]:
    """Every name an import statement in the file names (absolute and relative, at any depth).

    `from pkg import mod` names `pkg` and `pkg.mod`; `_graph` keeps the longest that is a module."""
    module = _module_name(path, root)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module[: -len(".__init__")]
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names.append(base)
            names += [f"{base}.{alias.name}" for alias in node.names]
    return names


def _sources(root: Path = PACKAGE) -> list[Path]:
    return sorted(root.rglob("*.py"))


def _is_build(module: str) -> bool:
    return module.startswith(f"edge_emotion.{BUILD_WING}.") or module == f"edge_emotion.{BUILD_WING}"


def _is_door(importer: str, name: str) -> bool:
    return any(importer == a and (name == b or name.startswith(b + ".")) for a, b in DOORS)


def test_the_runtime_imports_nothing_from_the_build_wing():
    found = []
    for path in _sources():
        module = _module_name(path)
        if _is_build(module):
            continue
        command_module = module.startswith("edge_emotion.cli.") and module.rsplit(".", 1)[1] in BUILD_COMMANDS
        for name in _imports(path):
            library = name.split(".")[0] in BUILD_IMPORTS
            if _is_door(module, name) or (command_module and not library):
                continue
            if library or _is_build(name):
                found.append(f"{module} imports {name}")
    assert not found, "\n".join(found)


def test_torch_is_imported_in_the_build_wing_and_the_torch_backend_alone():
    found = [
        f"{_module_name(p)} imports {name}"
        for p in _sources()
        for name in _imports(p)
        if name.split(".")[0] == "torch" and not _is_build(_module_name(p)) and not _is_door(_module_name(p), name)
    ]
    assert not found, "\n".join(found)


def _graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> package modules it imports (a name `pkg.mod.attr` resolves to the longest module prefix)."""
    modules = {_module_name(p, root).removesuffix(".__init__") for p in _sources(root)}
    graph: dict[str, set[str]] = {}
    for path in _sources(root):
        module = _module_name(path, root).removesuffix(".__init__")
        edges = set()
        for name in _imports(path, root):
            parts = name.split(".")
            for end in range(len(parts), 0, -1):
                target = ".".join(parts[:end])
                if target in modules:
                    if target != module:
                        edges.add(target)
                    break
        # `from pkg import mod` also names `pkg`: drop the package when one of its submodules is the target
        graph[module] = {e for e in edges if not any(o.startswith(e + ".") for o in edges)}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each a cycle or a knot of them."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_in_the_package():
    """A package's __init__ importing its own submodules is not a cycle unless a submodule imports it back."""
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_cycle_finder_finds_a_cycle_planted_in_a_package(tmp_path):
    """Positive control of the package scan: a cycle closed by a relative import inside a function is found."""
    root = tmp_path / "planted"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "sub" / "__init__.py").write_text("from planted.sub import low\n")  # a package importing its own module
    (root / "top.py").write_text("from planted.sub.low import helper\n")
    (root / "sub" / "low.py").write_text("def helper():\n    from ..top import helper as back  # closes the cycle\n")
    (root / "leaf.py").write_text("import planted.top\n")
    graph = _graph(root)
    assert graph["planted.leaf"] == {"planted.top"} and graph["planted.sub"] == {"planted.sub.low"}
    assert _cycles(graph) == [["planted.sub.low", "planted.top"]]
    (root / "sub" / "low.py").write_text("def helper():\n    pass\n")
    assert _cycles(_graph(root)) == []


def _path_of(module: str) -> Path:
    return PACKAGE.joinpath(*module.split(".")[1:]).with_suffix(".py")


def test_the_scanner_sees_a_known_edge_and_every_allowed_door():
    """Positive control of the wing checks: the scan that finds nothing to complain about does see the imports it
    lets through. A door or build command that no longer imports the toolchain is stale: drop it from the lists."""
    assert "edge_emotion.defaults" in _imports(_path_of("edge_emotion.config"))  # a module-level edge
    assert "edge_emotion.defaults" in _graph()["edge_emotion.config"]
    for importer, imported in DOORS:  # each door is an import the scan finds (the backends' is inside a function)
        assert any(name == imported or name.startswith(imported + ".") for name in _imports(_path_of(importer))), (importer, imported)
    for command in BUILD_COMMANDS:  # each build command's body imports the toolchain wing, and only there
        path = _path_of(f"edge_emotion.cli.{command}")
        tree = ast.parse(path.read_text())
        inside = [n for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) for n in ast.walk(f) if isinstance(n, ast.ImportFrom)]
        assert any(_is_build(n.module or "") for n in inside), command
        assert not any(_is_build(name) for name in _imports_at_module_level(tree)), command


def _imports_at_module_level(tree: ast.Module) -> list[str]:
    return [n.module or "" for n in tree.body if isinstance(n, ast.ImportFrom)] + [
        a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names
    ]


def test_config_is_a_leaf():
    """PreprocessConfig and its parts import nothing of the package but the defaults."""
    assert _graph()["edge_emotion.config"] <= {"edge_emotion", "edge_emotion.defaults"}


def test_the_data_flow_steps_are_runtime_modules():
    """A move must not drop a step out of the runtime (and so out of the checks above)."""
    names = {p.relative_to(PACKAGE).as_posix() for p in _sources() if not _is_build(_module_name(p))}
    for step in ("io/decode.py", "preprocess/plan.py", "preprocess/faces.py", "preprocess/audio.py",
                 "preprocess/segments.py", "run/consensus.py", "run/score.py", "config.py", "contract.py",
                 "detector/mtcnn.py", "detector/cascade.py", "backends/onnxruntime_backend.py",
                 "backends/tensorrt_backend.py", "backends/engine_file.py"):
        assert step in names


def test_one_version_from_pyproject_in_the_package_and_the_artifacts():
    declared = re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert declared and edge_emotion.__version__ == declared.group(1)
    assert ModelContract().to_metadata()["edge_emotion.package_version"] == declared.group(1)
    assert not re.search(r"__version__\s*=\s*[\"']", (PACKAGE / "__init__.py").read_text())


def test_no_source_file_over_500_lines():
    """One idea per file: a module that outgrows 500 lines holds more than one (split it, don't raise the bar)."""
    sources = [*_sources(), *sorted((ROOT / "benchmarks").rglob("*.py"))]
    counts = {p.relative_to(ROOT).as_posix(): len(p.read_text(encoding="utf-8").splitlines()) for p in sources}
    over = {path: lines for path, lines in counts.items() if lines > MAX_LINES}
    assert not over, f"over {MAX_LINES} lines: " + ", ".join(f"{path} ({lines})" for path, lines in sorted(over.items()))
