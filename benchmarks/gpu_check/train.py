"""The train step: synthetic corpus -> prepare cache -> `train` on the device; then AMP off / FP16 (GradScaler) / BF16
on one fixed batch: loss finite and falling, BatchNorm statistics finite, ms per step, peak memory."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.gpu_check.harness import Check, StepOutcome, short
from benchmarks.gpu_check.report import table
from benchmarks.gpu_check.torch_switches import cudnn_flags_kept


def library_train(check: Check, corpus: Path, cache: Path) -> dict[str, Any]:
    """edge_emotion.toolchain.train.loop.train on the device: one epoch of the paper recipe, then its evaluation."""
    import torch

    from edge_emotion.toolchain.checkpoint import load_checkpoint
    from edge_emotion.toolchain.train.loop import recipe_config, train

    s = check.sizes
    config = recipe_config("paper", n_segments=s.train_segments, epochs=1, batch_size=s.train_batch,
                           n_folds=s.synth_actors, fold=0, eval_each_epoch=False, device=check.device)  # fmt: skip
    run_dir = check.work / "train-run"
    start = time.perf_counter()
    with cudnn_flags_kept():
        outcome = train(corpus, cache, run_dir, config)
    seconds = time.perf_counter() - start
    steps = [json.loads(line) for line in (run_dir / "steps.jsonl").read_text().splitlines() if line.strip()]
    state = load_checkpoint(run_dir / "checkpoint.pt")
    bn = {k: v for k, v in state["model"].items() if k.endswith(("running_mean", "running_var"))}
    check.state["trained_checkpoint"] = run_dir / "checkpoint.pt"
    losses = [row["loss"] for row in steps]
    return {
        "config": {"recipe": "paper", "n_segments": s.train_segments, "batch_size": s.train_batch, "epochs": 1},
        "steps": len(steps), "losses": losses, "finite": bool(np.isfinite(losses).all()) if losses else False,
        "seconds_with_eval": seconds, "test_accuracy": outcome.accuracy,
        "training_segments_per_s": len(steps) * s.train_batch * s.train_segments / seconds,
        "bn_statistics_finite": all(bool(torch.isfinite(v).all()) for v in bn.values()),
        "cuda_rng_saved": bool(state.get("cuda_rng")) if check.cuda else None,
    }  # fmt: skip


def fixed_batch(check: Check, corpus: Path, cache: Path | None) -> tuple[Any, Any, Any, str]:
    """One batch of synthetic clips on the device: faces [B, N, 3, 224, 224], spectrograms [B, N, 1, 192, 120], labels [B].

    From the prepare cache (the training dataset itself) when there is one, else centre crops through segments.extract.
    """
    import torch

    from edge_emotion.config import PreprocessConfig
    from edge_emotion.io.decode import open_clip
    from edge_emotion.preprocess.segments import extract, plan_clip
    from edge_emotion.toolchain.train.box_cache import cache_face_params
    from edge_emotion.toolchain.train.crema import index_corpus
    from edge_emotion.toolchain.train.dataset import CachedClips

    s = check.sizes
    items = index_corpus(corpus)[0][: s.amp_clips]
    if cache is not None:
        config = PreprocessConfig(n_segments=s.train_segments, face=cache_face_params(cache))
        dataset = CachedClips(items, str(cache), config, "train", seed=0)
        samples, how = [dataset[i] for i in range(len(items))], "prepare cache (CachedClips)"
    else:
        config, samples = PreprocessConfig(n_segments=s.train_segments), []
        for k, item in enumerate(items):
            clip = open_clip(item.path, config.audio.sample_rate)
            segments = plan_clip(clip, config, "train", np.random.default_rng([0, k]))
            inputs = extract(clip, segments, config, boxes=[None] * len(segments))
            samples.append((torch.from_numpy(inputs.faces), torch.from_numpy(inputs.spectrograms), item.label))
        how = "centre crops (no prepare cache)"
    device = torch.device(check.device)
    faces = torch.stack([f for f, _, _ in samples]).to(device)
    specs = torch.stack([a for _, a, _ in samples]).to(device)
    labels = torch.tensor([y for _, _, y in samples], device=device)
    return faces, specs, labels, how


def amp_run(check: Check, batch: tuple[Any, Any, Any], mode: str) -> dict[str, Any]:
    """`amp_steps` optimizer steps on one fixed batch with autocast off / fp16 (+ GradScaler) / bf16."""
    import torch

    from edge_emotion.toolchain.model import clip_loss
    from edge_emotion.toolchain.train.config import make_optimizer
    from edge_emotion.toolchain.train.loop import build_model, recipe_config

    faces, specs, labels = batch
    device = torch.device(check.device)
    config = recipe_config("modern", n_segments=faces.shape[1], batch_size=faces.shape[0])
    model = build_model(config).to(device).train()
    optimizer = make_optimizer(config, model.parameters())
    dtype = {"off": None, "fp16": torch.float16, "bf16": torch.bfloat16}[mode]
    scaler = torch.amp.GradScaler(device.type, enabled=mode == "fp16")
    if check.cuda:
        torch.cuda.reset_peak_memory_stats()
    losses, times = [], []
    for _ in range(check.sizes.amp_steps):
        start = time.perf_counter()
        autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
        with autocast:
            logits = model.segment_logits(faces, specs)  # [B, N, K]
        loss = clip_loss(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(float(loss.detach()))  # waits for the step
        times.append(time.perf_counter() - start)
    bn = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    step_s = float(np.median(times[1:])) if len(times) > 1 else times[0]
    return {
        "mode": mode, "losses": losses, "first_loss": losses[0], "last_loss": losses[-1],
        "finite": bool(np.isfinite(losses).all()), "falling": bool(losses[-1] < losses[0]),
        "step_ms": 1e3 * step_s, "first_step_ms": 1e3 * times[0],
        "training_segments_per_s": faces.shape[0] * faces.shape[1] / step_s,
        "peak_memory_mib": torch.cuda.max_memory_allocated() / 2**20 if check.cuda else None,
        "bn_statistics_finite": all(bool(torch.isfinite(m.running_mean).all() and torch.isfinite(m.running_var).all())
                                    for m in bn),
        "bn_statistics_float32": all(m.running_mean.dtype == torch.float32 for m in bn),
        "bn_updates": sorted({int(m.num_batches_tracked) for m in bn}),
        "grad_scale": float(scaler.get_scale()) if scaler.is_enabled() else None,
    }  # fmt: skip


def amp_problems(run: dict[str, Any]) -> list[str]:
    problems = []
    if not run["finite"]:
        problems.append(f"AMP {run['mode']}: loss not finite {run['losses']}")
    elif not run["falling"]:
        problems.append(f"AMP {run['mode']}: loss did not fall ({run['first_loss']:.4f} -> {run['last_loss']:.4f})")
    if not run["bn_statistics_finite"]:
        problems.append(f"AMP {run['mode']}: BatchNorm statistics not finite")
    return problems


def step_train(check: Check) -> dict[str, Any]:
    from edge_emotion.toolchain.synth import make_corpus
    from edge_emotion.toolchain.train.prepare import prepare_corpus

    result = check.begin()
    s, problems = check.sizes, []
    corpus, cache = check.work / "synth", check.work / "synth-cache"
    start = time.perf_counter()
    paths = make_corpus(corpus, actors=s.synth_actors, clips_per_class=s.synth_clips_per_class, seed=0)
    result["corpus"] = {"clips": len(paths), "seconds": time.perf_counter() - start}
    start = time.perf_counter()
    try:
        report = prepare_corpus(corpus, cache, n_segments=s.train_segments)
        result["prepare"] = {"summary": report.summary(), "seconds": time.perf_counter() - start}
        prepared = not report.failed
    except ImportError as exc:  # MissingDependencyError: no face detector here
        result["prepare"] = {"error": short(exc)}
        prepared = False
    if prepared:
        result["library_train"] = library_train(check, corpus, cache)
        if not result["library_train"]["finite"]:
            problems.append(f"train: loss not finite {result['library_train']['losses']}")
    else:
        result["library_train"] = {"status": "skipped", "reason": f"no prepare cache: {result['prepare']}"}
        problems.append("train (the library's loop) did not run: no prepare cache")
    faces, specs, labels, how = fixed_batch(check, corpus, cache if prepared else None)
    result["amp_batch"] = {"clips": int(faces.shape[0]), "segments": int(faces.shape[1]), "inputs": how}
    modes = ("off", "fp16", "bf16") if check.cuda else ("off", "bf16")
    result["amp"] = []
    for mode in modes:
        result["amp"].append(amp_run(check, (faces, specs, labels), mode))
        problems += amp_problems(result["amp"][-1])
    result["summary"] = "; ".join(f"AMP {r['mode']}: loss {r['first_loss']:.3f} -> {r['last_loss']:.3f}, "
                                  f"{r['step_ms']:.0f} ms/step" for r in result["amp"])  # fmt: skip
    if problems:
        raise StepOutcome("failed", "; ".join(problems), result)
    return result



def md_train(r: dict[str, Any]) -> list[str]:
    lines = []
    lib = r.get("library_train") or {}
    if "losses" in lib:
        lines += [(f"`train` on the device: {lib['steps']} steps, losses {', '.join(f'{x:.3f}' for x in lib['losses'])}; "
                   f"{lib['training_segments_per_s']:.0f} training segments/s with data loading and the evaluation; "
                   f"BN statistics finite: {lib['bn_statistics_finite']}; CUDA RNG saved: {lib['cuda_rng_saved']}"), ""]  # fmt: skip
    rows = [[a["mode"], a["first_loss"], a["last_loss"], a["falling"], a["step_ms"], a["training_segments_per_s"],
             a["peak_memory_mib"], a["bn_statistics_finite"], a["grad_scale"]] for a in r.get("amp", [])]  # fmt: skip
    batch = r.get("amp_batch", {})
    lines.append(f"One fixed batch ({batch.get('clips')} clips x N = {batch.get('segments')}, {batch.get('inputs')}):")
    lines.append("")
    return lines + table(["AMP", "first loss", "last loss", "falling", "ms/step", "segments/s", "peak MiB",
                          "BN finite", "grad scale"], rows)  # fmt: skip
