"""Our TensorRT code against the real TensorRT 11.4 Python API: names and signatures, not behaviour.

TensorRT itself cannot be installed here, but PyPI's tensorrt-cu12-bindings==11.4.0.106
wheel (module tensorrt_bindings) can. Its tensorrt.so links libnvinfer.so.11,
libnvonnxparser.so.11 and libnvinfer_plugin.so.11 and takes nine C symbols from them;
tools/trt_stubs/ holds stand-ins for those (any call aborts), compiled here with gcc.
With them on LD_LIBRARY_PATH the real bindings import, and tools/trt_api_probe.py walks
every edge_emotion module that uses `trt`, checking each TensorRT attribute, enum member,
method, constructor and keyword against the bindings' pybind11 signatures. Nothing here
builds or runs an engine: behaviour stays unverified until a machine with TensorRT and a
GPU runs test_export_tensorrt.py's tensorrt-marked test.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STUBS = ROOT / "tools" / "trt_stubs"
PROBE = ROOT / "tools" / "trt_api_probe.py"
LIBRARIES = ("nvinfer", "nvonnxparser", "nvinfer_plugin")

#: calls and names the probe must have reached: if inference stops seeing them, the check has gone blind
MUST_CHECK = {
    "trt.Logger(_)",
    "trt.Runtime(_)",
    "trt.Builder(_)",
    "trt.OnnxParser(_, _)",
    "trt.nptype(_)",
    "Logger.WARNING",
    "TensorIOMode.INPUT",
    "MemoryPoolType.WORKSPACE",
    "NetworkDefinitionCreationFlag.STRONGLY_TYPED",
    "Builder.create_network(_)",
    "Builder.create_builder_config()",
    "Builder.create_optimization_profile()",
    "Builder.build_serialized_network(_, _)",
    "OnnxParser.parse_from_file(_)",
    "OnnxParser.get_error(_)",
    "OnnxParser.num_errors",
    "INetworkDefinition.get_input(_)",
    "INetworkDefinition.num_inputs",
    "ITensor.name",
    "IBuilderConfig.set_memory_pool_limit(_, _)",
    "IBuilderConfig.add_optimization_profile(_)",
    "IBuilderConfig.create_timing_cache(_)",
    "IBuilderConfig.set_timing_cache(_, ignore_mismatch=)",
    "IBuilderConfig.get_timing_cache()",
    "ITimingCache.serialize()",
    "IOptimizationProfile.set_shape(_, _, _, _)",
    "bytes(IHostMemory)",
    "Runtime.deserialize_cuda_engine(_)",
    "ICudaEngine.create_execution_context()",
    "ICudaEngine.num_io_tensors",
    "ICudaEngine.get_tensor_name(_)",
    "ICudaEngine.get_tensor_mode(_)",
    "ICudaEngine.get_tensor_dtype(_)",
    "ICudaEngine.num_optimization_profiles",
    "ICudaEngine.get_tensor_profile_shape(_, _)",
    "IExecutionContext.active_optimization_profile",
    "IExecutionContext.set_optimization_profile_async(_, _)",
    "IExecutionContext.set_input_shape(_, _)",
    "IExecutionContext.set_tensor_address(_, _)",
    "IExecutionContext.get_tensor_shape(_)",
    "IExecutionContext.execute_async_v3(_)",
}


@pytest.fixture(scope="session")
def trt_stub_libs(tmp_path_factory) -> Path:
    """The three stand-in libraries, compiled once per session (about 0.3 s)."""
    if importlib.util.find_spec("tensorrt_bindings") is None:
        pytest.skip("tensorrt-cu12-bindings==11.4.0.106 is not installed (the [dev] extra): TensorRT API unchecked")
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed: cannot build the TensorRT stand-in libraries, TensorRT API unchecked")
    out = tmp_path_factory.mktemp("trt_stubs")
    for name in LIBRARIES:
        soname = f"lib{name}.so.11"
        command = [gcc, "-shared", "-fPIC", "-O1", "-Wall", f"-Wl,-soname,{soname}", "-o", str(out / soname)]
        subprocess.run([*command, str(STUBS / f"{name}.c")], check=True, capture_output=True, timeout=60)
    return out


def _probe(libs: Path, files: list[Path]) -> dict:
    env = {
        **os.environ,
        "LD_LIBRARY_PATH": os.pathsep.join(filter(None, [str(libs), os.environ.get("LD_LIBRARY_PATH")])),
    }
    command = [sys.executable, str(PROBE), *map(str, files)]
    result = subprocess.run(command, cwd=ROOT, env=env, check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="session")
def api_report(trt_stub_libs) -> dict:
    return _probe(trt_stub_libs, sorted((ROOT / "edge_emotion").rglob("*.py")))


def test_our_tensorrt_calls_match_the_real_11_4_bindings(api_report):
    assert api_report["version"] == "11.4.0.106"
    assert api_report["import_ok"], "require_tensorrt() did not return the module installed as `tensorrt`"
    assert {
        "edge_emotion/backends/engine_file.py",
        "edge_emotion/backends/tensorrt_backend.py",
        "edge_emotion/toolchain/export/tensorrt_build.py",
    } <= set(api_report["files"])
    assert api_report["problems"] == []
    missing = MUST_CHECK - set(api_report["checked"])
    assert not missing, f"the probe no longer reaches {sorted(missing)}: type inference lost track of them"


def test_the_probe_catches_wrong_names_and_signatures(trt_stub_libs, tmp_path):
    """TensorRT 8/9-era and mistyped calls are reported, each with its line (the check has teeth)."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "def build():\n"
        "    trt = require_tensorrt()\n"
        "    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))\n"
        "    config = builder.create_builder_config()\n"
        "    config.set_flag(trt.BuilderFlag.FP16)\n"  # removed in TensorRT 11
        "    config.set_memory_pool_limit('WORKSPACE', 1 << 20)\n"
        "    config.set_timing_cache(config.create_timing_cache(b''), ignore=False)\n"
        "    engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(b'')\n"
        "    n = engine.num_io_tensors()\n"
        "    context = engine.create_execution_context()\n"
        "    context.execute_async_v2([], 0)\n"
        "    builder.create_optimization_profile().set_shape('x', (1,), (1,), (1,), (2,))\n"
        "    return n, context\n"
    )
    problems = "\n".join(_probe(trt_stub_libs, [bad])["problems"])
    for expected in (
        ":5: BuilderFlag.FP16 does not exist in TensorRT 11.4.0.106",
        ":6: IBuilderConfig.set_memory_pool_limit called with 2 positional, keywords []: (pool, pool_size) -> None: pool"
        + " wants MemoryPoolType, got a str literal",
        ":7: IBuilderConfig.set_timing_cache called with 1 positional, keywords ['ignore']",
        ":9: ICudaEngine.num_io_tensors is a property, not a method",
        ":11: IExecutionContext.execute_async_v2 does not exist",
        ":12: IOptimizationProfile.set_shape called with 5 positional",
    ):
        assert expected in problems, f"{expected!r} not in:\n{problems}"
