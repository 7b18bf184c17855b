"""Every GPU path of the toolkit, checked and timed in one process, so a short device session is spent running, not debugging.

On the device (the workplace's `run` tool; its image has torch + CUDA, torchvision, onnx, onnxruntime (CPU), pillow,
pytest, nvidia-ml-py, but no PyAV, no tensorrt, no onnxruntime-gpu and no network):

    carry: [".whl"]    timeout_s: 500    command (one line, from the repository root):
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 MPLBACKEND=Agg || exit; python3 -m benchmarks.gpu_check --device cuda --out $OUT --budget-s 420

Its files come back from $OUT: gpu_check.json, gpu_check.md, gpu_tests.log. To rerun a failed step with the minutes
left, add e.g. `--steps throughput --budget-s 200`. Fill .whl/ here first; it is ignored by git and travels through
`carry`. The device's python3 is 3.12; av's wheel is abi3 (cp311+):

    python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
      -d .whl av==18.1.0

    av 18.1.0           35.8 MB  decoding, the synthetic corpus, the tests' videos (not in the image)
    (of the 64 MiB that travel; the working tree itself is about 1.5 MB)

FaceDetector is the packaged ONNX MTCNN (edge_emotion/detector/: three small ONNX nets and a numpy cascade on
onnxruntime), so the device needs no face-detection package; facenet-pytorch is only the reference that
tests/test_detector.py and tests/test_faces.py compare it with, and no step here runs those.
A dependency that is still missing there fails the steps that need it, with the install hint, and the others run.

Here, on any CPU (CI runs this through tests/test_gpu_check.py in --quick mode, so it cannot rot):

    python -m benchmarks.gpu_check --device cpu --out /tmp/gpu-check            # every step a CPU can run, < 3 min
    python -m benchmarks.gpu_check --device cpu --out /tmp/gpu-check --quick    # the same steps at the smallest sizes

(`python benchmarks/gpu_check --device cpu ...` runs it too.)

Steps, in order, each timed and guarded (a failing step is recorded and the next one runs); `--steps a,b` runs some:
    environment    GPU, compute capability, driver, CUDA/cuDNN/torch/onnxruntime versions, free memory, packages
    gpu_tests      the test suite's gpu- and tensorrt-marked tests (pytest -m "gpu or tensorrt")
    train          synthetic corpus -> prepare cache -> `train` on the device; then AMP off / FP16 / BF16 on one
                   fixed batch (BatchNorm statistics, GradScaler): loss finite and falling
    parity         the torch backend on the device vs on the CPU, real fixture segments: FP32, FP32 without TF32,
                   FP16 autocast
    throughput     branch segments/s for batch 1..4096: eager FP32 (NCHW, channels_last), FP16 autocast,
                   torch.compile, CUDA graphs, the torch backend with numpy in and out; FLOPs per segment
                   (model.branch_cost) and the share of the measured matmul ceiling and of the datasheet peak
    face_detector  FaceDetector on the device: frames/s, boxes against the CPU's
    score          score_folder end to end on copies of the fixture clips: clips/s, x real time, GPU utilisation
    onnxruntime_cuda   ONNX Runtime's CUDA provider (FP32, FP16 ONNX) if onnxruntime-gpu is there, else absent
    tensorrt       FP16 and INT8 (Q/DQ) engines built and run if tensorrt is importable, else absent

Writes OUT/gpu_check.json (every step with status ok | failed | skipped | absent, its reason, seconds and values)
and OUT/gpu_check.md (the tables) after every step, so a run cut short still leaves what it measured, and
OUT/gpu_tests.log (pytest's output). Steps that would not fit the rest of --budget-s are skipped, saying so; a step
that overruns is stopped at the budget's end.

One module per step (environment, gpu_tests, train, parity, throughput, face_detector, score, onnxruntime_cuda,
tensorrt_engines), each with its markdown section; harness.py runs them (records, budget, statuses), steps.py lists
them, report.py writes the two files, __main__.py is the command line. Timing is edge_emotion.run.bench.timing's.
"""
