"""Training loop for the learned Y-channel methods -> run folder (checkpoints, curve) -> weights + model card."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.data import sha256_file
from bench.errors import BenchError, DataError, UsageError

__all__ = [
    "TrainResult",
    "METHOD_DEFAULTS",
    "train",
    "evaluate",
    "install",
    "add_train_arguments",
    "run_train",
]

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class _NetSpec:
    build: Callable[[int], Any]  # scale -> nn.Module
    input_upscaled: bool  # True: the net takes bicubic-upscaled Y (SRCNN); False: LR Y
    steps: int
    batch_size: int
    patch_size: int  # input-space patch side (LR pixels, or HR pixels when input_upscaled)
    lr: float


def _specs() -> dict[str, _NetSpec]:
    from methods import espcn, fsrcnn, srcnn

    return {
        "srcnn": _NetSpec(srcnn.build_net, True, 20000, 32, 36, 5e-4),
        "fsrcnn": _NetSpec(fsrcnn.build_net, False, 30000, 64, 16, 1e-3),
        "espcn": _NetSpec(espcn.build_net, False, 30000, 64, 17, 1e-3),
    }


METHOD_DEFAULTS = ("srcnn", "fsrcnn", "espcn")


@dataclass
class TrainResult:
    """What a training run produced: the run folder, its step count and the best validation PSNR."""

    method: str
    scale: int
    out_dir: Path
    steps: int
    best_psnr: float
    best_step: int
    wall_s: float
    history: list[dict[str, float]] = field(default_factory=list)


# ----------------------------------------------------------------------------------------- data


def _load_images(name: str) -> list[tuple[str, np.ndarray, bool]]:
    """(image name, HxWx3 uint8 RGB, was gray) for every image of a dataset, via the data layer."""
    from bench.data import open_dataset

    ds = open_dataset(name)
    return [(im.name, im.rgb, im.gray) for im in ds.images()]


def _pairs_for_scale(
    images: Sequence[tuple[np.ndarray, int]], scale: int, input_upscaled: bool, min_side: int
) -> list[tuple[Any, Any, int]]:
    """(network input, target, group) per (HxWx3 uint8 HR, group) image: Y planes as 1xHxW float32
    tensors in [0, 1]; images too small for `min_side` LR pixels are left out.

    LR is MATLAB bicubic of the modcropped uint8 RGB HR, exactly as evaluation makes it; the
    network input is its Y (float, unrounded), bicubic-upscaled again for SRCNN.
    """
    import torch

    from bench.data import modcrop
    from bench.imresize import imresize
    from bench.metrics import rgb_to_y

    pairs = []
    for rgb, group in images:
        hr = np.ascontiguousarray(modcrop(rgb, scale))
        if min(hr.shape[:2]) // scale < min_side:
            continue
        lr = imresize(hr, 1.0 / scale)
        y_lr = rgb_to_y(lr)
        inp = imresize(y_lr, scale) if input_upscaled else y_lr
        tgt = rgb_to_y(hr)
        pairs.append(
            (
                torch.from_numpy((inp / 255.0).astype(np.float32))[None],
                torch.from_numpy((tgt / 255.0).astype(np.float32))[None],
                group,
            )
        )
    return pairs


def _training_images(datasets: Sequence[str], scale_aug: Sequence[float]) -> list[tuple[np.ndarray, int]]:
    """(HxWx3 uint8 HR, index of its dataset) for every image of `datasets`, plus a MATLAB-bicubic
    downscaled copy per factor in `scale_aug` (the FSRCNN paper's scaling augmentation)."""
    from bench.imresize import imresize

    images = []
    for group, name in enumerate(datasets):
        for _, rgb, _ in _load_images(name):
            images.append((rgb, group))
            h, w = rgb.shape[:2]
            for f in scale_aug:
                size = (max(1, round(h * f)), max(1, round(w * f)))
                images.append((imresize(rgb, output_shape=size), group))
    if not images:
        raise DataError(f"training datasets {', '.join(datasets)} hold no images")
    return images


class _PatchSampler:
    """Random aligned (input, target) patches with a random flip/rot90 each, drawn area-proportionally."""

    def __init__(
        self,
        banks: dict[int, list[tuple[Any, Any, int]]],
        patch: int,
        input_upscaled: bool,
        seed: int,
        balance: bool = False,
    ):
        self.banks = banks
        self.scales = sorted(banks)
        self.patch = patch
        self.input_upscaled = input_upscaled
        self.seed = int(seed)
        self.cdf = {}
        for s, pairs in banks.items():
            area = np.array([p[0].shape[-2] * p[0].shape[-1] for p in pairs], dtype=np.float64)
            if balance:  # every dataset gets the same share of patches, area-proportional within it
                group = np.array([p[2] for p in pairs])
                for g in np.unique(group):
                    area[group == g] /= area[group == g].sum()
            self.cdf[s] = np.cumsum(area / area.sum())

    def batch(self, n: int, step: int) -> tuple[Any, Any]:
        """Batch number `step`: a pure function of (seed, step), so a resumed run sees the same batches."""
        import torch

        rng = np.random.default_rng((self.seed, step))
        p = self.patch
        xs, ys = [], []
        for _ in range(n):
            s = self.scales[int(rng.integers(len(self.scales)))]
            inp, tgt, _ = self.banks[s][
                min(int(np.searchsorted(self.cdf[s], rng.random(), side="right")), len(self.cdf[s]) - 1)
            ]
            f = 1 if self.input_upscaled else s
            # SRCNN patches start on the LR grid too, so every scale sees the same sub-pixel phases as at test
            grid = s if self.input_upscaled else 1
            h, w = inp.shape[-2:]
            top = int(rng.integers((h - p) // grid + 1)) * grid
            left = int(rng.integers((w - p) // grid + 1)) * grid
            x = inp[:, top : top + p, left : left + p]
            y = tgt[:, top * f : (top + p) * f, left * f : (left + p) * f]
            k = int(rng.integers(8))
            if k & 4:
                x, y = x.flip(-1), y.flip(-1)
            if k & 3:
                x, y = torch.rot90(x, k & 3, (-2, -1)), torch.rot90(y, k & 3, (-2, -1))
            xs.append(x)
            ys.append(y)
        return torch.stack(xs), torch.stack(ys)


# ----------------------------------------------------------------------------------------- evaluation


def valid_loss(lossf: Any, pred: Any, target: Any, crop: int) -> Any:
    """`lossf` over the outputs at least `crop` pixels inside every edge of the patch."""
    inner = slice(crop, -crop if crop else None)
    return lossf(pred[..., inner, inner], target[..., inner, inner])


def evaluate(method: Any, dataset: str, scale: int) -> tuple[float, float, list[tuple[str, float, float]]]:
    """Mean PSNR/SSIM of `method` on `dataset` at `scale` under the paper protocol, and per-image values.

    The evaluation core (`bench.evaluate`) scores it, exactly as `bench run` would.
    """
    from bench.evaluate import evaluate as evaluate_core

    df = evaluate_core(method, dataset, scales=[scale])
    assert isinstance(df, pd.DataFrame)
    if df.empty:
        raise DataError(f"dataset {dataset} gave no images large enough for x{scale}")
    rows = [(str(r.image), float(r.psnr), float(r.ssim)) for r in df.itertuples()]
    return float(df["psnr"].mean()), float(df["ssim"].mean()), rows


def _validation_dataset(name: str) -> str:
    """`name`, or `sample` (always available) when the default Set5 cannot be had; other names must exist."""
    from bench.data import open_dataset

    try:
        open_dataset(name, download=False)
        return name
    except DataError:
        if name != "set5":
            raise
    import warnings

    warnings.warn("Set5 is not available locally: validating on 'sample' instead", stacklevel=3)
    return "sample"


def _method_for(name: str, net: Any, scale: int, device: str) -> Any:
    from methods._torchsr import YChannelMethod

    spec = _specs()[name]
    return YChannelMethod(
        name,
        net,
        scale=scale,
        device=device,
        input_upscaled=spec.input_upscaled,
        receptive_radius=int(getattr(net, "receptive_radius", 8)),
    )


# ----------------------------------------------------------------------------------------- checkpoints


def _save_tensors(net: Any, path: Path) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().float().cpu().contiguous() for k, v in net.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, path)


def _load_tensors(net: Any, path: Path, partial: bool = False) -> list[str]:
    """Load safetensors into `net`; with `partial`, tensors of another shape (e.g. ESPCN's last layer
    at another scale) keep their fresh initialisation. Returns the names not loaded."""
    from safetensors.torch import load_file

    from bench.errors import WeightsError

    if not Path(path).is_file():
        raise UsageError(f"weights {path} not found; give an existing .safetensors file")
    tensors = load_file(str(path))
    own = net.state_dict()
    bad = [k for k in own if k not in tensors or tuple(tensors[k].shape) != tuple(own[k].shape)]
    if bad and (not partial or len(bad) == len(own)):
        raise WeightsError(
            f"{path} does not fit {type(net).__name__}: tensors {bad} missing or of another shape; "
            f"initialise from weights of the same method"
        )
    net.load_state_dict({k: (tensors[k] if k not in bad else v) for k, v in own.items()})
    return bad


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


class _StopOnSigterm:
    """Turns SIGTERM into a flag the step loop checks, so a killed run saves a checkpoint first."""

    def __init__(self) -> None:
        import signal
        import threading

        self.requested = False
        self._old: Any = None
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

    def restore(self) -> None:
        import signal

        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)
            self._old = None


def _lr_at(step: int, steps: int, base: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 1% of the base rate; a pure function of the step (resume-safe)."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, steps - warmup))
    return base * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * t)))


# ----------------------------------------------------------------------------------------- training


def train(
    method: str,
    scale: int,
    *,
    datasets: Sequence[str] = ("t91", "bsd200"),
    steps: int | None = None,
    batch_size: int | None = None,
    patch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    out_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    init_from: str | os.PathLike[str] | None = None,
    device: str = "auto",
    threads: int | None = None,
    val_every: int = 500,
    val_dataset: str = "set5",
    train_scales: Sequence[int] | None = None,
    loss: str = "l1",
    loss_border: int = 0,
    balance: bool = False,
    scale_aug: Sequence[float] = (),
    init: str = "bicubic",
    until: int | None = None,
    progress: bool = True,
    command: str | None = None,
) -> TrainResult:
    """Train `method` for x`scale` on random Y patches of `datasets`; returns the run's TrainResult.

    Writes into `out_dir` (default train_runs/<method>_x<scale>): last.safetensors + optimizer.pt +
    state.json (resume point), best.safetensors (best validation PSNR on `val_dataset`), log.txt.
    `resume=True` continues from state.json at its step; `steps` is the total step count.
    A larger `steps` on resume extends the run: the cosine schedule restarts from where that step
    falls in the longer run (a warm restart).
    `until` stops (with a checkpoint) after that step, as an interruption would.
    `init="bicubic"` starts a fresh net as bicubic interpolation (see the nets' init methods);
    `train_scales` mixes scales for scale-agnostic networks (SRCNN); validation uses `scale`.
    `loss_border` input pixels at each patch edge are left out of the loss, because their outputs
    depend on the zero padding (default 0: the whole patch, since evaluation also runs the net with
    zero padding at image borders). `balance` draws the same share of patches from every dataset;
    `scale_aug` adds MATLAB-bicubic downscaled copies of every training image (e.g. 0.9, 0.8, 0.7, 0.6).
    Raises UsageError on bad options, DataError when the data cannot be had.
    """
    import torch

    from bench.registry import resolve_device

    specs = _specs()
    if method not in specs:
        from bench.registry import did_you_mean

        raise UsageError(
            f"cannot train {method!r}; {did_you_mean(method, list(specs))}trainable methods: {', '.join(specs)}"
        )
    spec = specs[method]
    scales = tuple(int(s) for s in (train_scales or (scale,)))
    if scale < 2 or any(s < 2 for s in scales):
        raise UsageError(f"scales must be integers >= 2, got {scale} / {scales}")
    if len(scales) > 1 and not spec.input_upscaled:
        raise UsageError(f"{method} has a scale-specific upsampling layer; train one scale at a time")
    if init not in ("bicubic", "random"):
        raise UsageError(f"unknown init {init!r}; choose bicubic or random")
    if loss not in ("l1", "mse"):
        raise UsageError(f"unknown loss {loss!r}; choose l1 or mse")
    steps = int(steps if steps is not None else spec.steps)
    batch_size = int(batch_size or spec.batch_size)
    patch = int(patch_size or spec.patch_size)
    base_lr = float(lr if lr is not None else spec.lr)
    if steps < 1 or batch_size < 1 or patch < 4 or val_every < 1:
        raise UsageError(
            f"steps, batch size, val_every must be >= 1 and patch size >= 4; got {steps}, {batch_size}, "
            f"{val_every}, {patch}"
        )
    out = Path(out_dir) if out_dir is not None else REPO_ROOT / "train_runs" / f"{method}_x{scale}"
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    if threads:
        torch.set_num_threads(int(threads))

    val_dataset = _validation_dataset(val_dataset)
    state_path = out / "state.json"
    torch.manual_seed(seed)
    net = spec.build(scale).to(dev)
    if any(not 0.1 <= float(f) < 1.0 for f in scale_aug):
        raise UsageError(f"--scale-aug factors must be in [0.1, 1), got {list(scale_aug)}")
    loss_border = int(loss_border)
    if loss_border < 0 or patch <= 2 * loss_border:
        raise UsageError(
            f"patch size {patch} leaves no pixels inside a loss border of {loss_border} on each side; "
            f"use --patch-size above {2 * loss_border} or a smaller --loss-border"
        )
    state: dict[str, Any] = {
        "method": method,
        "scale": scale,
        "train_scales": list(scales),
        "datasets": list(datasets),
        "steps": steps,
        "batch_size": batch_size,
        "patch_size": patch,
        "lr": base_lr,
        "seed": seed,
        "loss": loss,
        "loss_border": int(loss_border),
        "balance": bool(balance),
        "scale_aug": [float(f) for f in scale_aug],
        "init": init,
        "init_from": str(init_from) if init_from else None,
        "val_dataset": val_dataset,
        "command": command,
        "step": 0,
        "wall_s": 0.0,
        "best_psnr": -1.0,
        "best_step": 0,
        "history": [],
        "device": dev,
        "threads": torch.get_num_threads(),
    }
    opt = torch.optim.Adam(net.parameters(), lr=base_lr)
    if resume:
        if not state_path.is_file():
            raise UsageError(f"nothing to resume in {out} (no state.json); start without --resume")
        saved = json.loads(state_path.read_text())
        if saved.get("method") != method or int(saved.get("scale", 0)) != scale:
            raise UsageError(
                f"{out} holds a {saved.get('method')} x{saved.get('scale')} run, not {method} x{scale}; "
                f"pick another --out"
            )
        _load_tensors(net, out / "last.safetensors")
        opt.load_state_dict(torch.load(out / "optimizer.pt", map_location=dev, weights_only=True))
        for key in ("step", "wall_s", "best_psnr", "best_step", "history", "init_from"):
            state[key] = saved[key]
        for key, default in (("loss_border", 0), ("balance", False), ("scale_aug", [])):
            state[key] = saved.get(key, default)  # the data as the run began
        if "init_card" in saved:
            state["init_card"] = saved["init_card"]
        loss_border = int(state["loss_border"])
        state["command"] = saved.get("command") or command
        state["commands"] = saved.get("commands") or [saved.get("command")]
        state["commands"].append(command)
        state["resumed_at"] = saved.get("resumed_at", []) + [saved["step"]]
    elif init_from:
        state["init_skipped"] = _load_tensors(net, Path(init_from), partial=True)
        _keep_parent_card(state)  # now, before another install can replace that card
    elif init == "bicubic":
        # start from (a close approximation of) bicubic interpolation: same architecture, residual-like start
        (net.init_identity if hasattr(net, "init_identity") else net.init_bicubic)()
    net = net.to(memory_format=torch.channels_last)
    if hasattr(net, "subpixel_deconv"):  # FSRCNN: same weights and outputs, faster steps
        net.subpixel_deconv = True

    images = _training_images(datasets, state["scale_aug"])
    banks = {}
    for s in scales:
        min_lr_side = -(-patch // s) if spec.input_upscaled else patch  # SRCNN patches are HR-sized
        banks[s] = _pairs_for_scale(images, s, spec.input_upscaled, min_lr_side)
        if not banks[s]:
            raise DataError(f"no training image is large enough for {patch}-pixel patches at x{s}")
    del images
    sampler = _PatchSampler(banks, patch, spec.input_upscaled, seed, balance=state["balance"])

    lossf = torch.nn.L1Loss() if loss == "l1" else torch.nn.MSELoss()
    crop = loss_border * (1 if spec.input_upscaled else scale)  # output pixels cut at each edge
    warmup = min(200, max(1, steps // 20))
    log = open(out / "log.txt", "a")

    def checkpoint() -> None:
        _save_tensors(net, out / "last.safetensors")
        torch.save(opt.state_dict(), out / "optimizer.pt")
        _write_json(state_path, state)

    def validate(step: int) -> float:
        net.eval()
        m = _method_for(method, net, scale, dev)
        psnr_db, _, _ = evaluate(m, val_dataset, scale)
        net.train()
        row = {
            "step": step,
            "psnr": psnr_db,
            "loss": running,
            "lr": _lr_at(max(step - 1, 0), steps, base_lr, warmup),
            "wall_s": state["wall_s"],
        }
        state["history"].append(row)
        if psnr_db > state["best_psnr"]:
            state["best_psnr"], state["best_step"] = psnr_db, step
            _save_tensors(net, out / "best.safetensors")
        msg = (
            f"{method} x{scale} step {step}/{steps} loss {running:.5f} {val_dataset} {psnr_db:.3f} dB "
            f"(best {state['best_psnr']:.3f} @ {state['best_step']}) {state['wall_s']:.0f}s"
        )
        print(msg, file=log, flush=True)
        if progress:
            from tqdm import tqdm

            tqdm.write(msg)
        return psnr_db

    start_step = int(state["step"])
    running = float("nan")
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=steps, initial=start_step, desc=f"{method} x{scale}", unit="step", dynamic_ncols=True
        )
    net.train()
    stop = _StopOnSigterm()
    try:
        if start_step == 0 and not state["history"]:
            validate(0)
        t_last = time.perf_counter()
        for step in range(start_step, min(steps, until) if until else steps):
            if stop.requested:
                checkpoint()
                raise BenchError(
                    f"{method} x{scale} stopped by SIGTERM at step {step} of {steps}; checkpoint saved in {out}; "
                    f"continue with --resume --out {out}"
                )
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, steps, base_lr, warmup)
            x, y = sampler.batch(batch_size, step)
            x = x.to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last)
            y = y.to(dev, non_blocking=True)
            pred = net(x)
            loss_v = valid_loss(lossf, pred, y, crop)
            opt.zero_grad(set_to_none=True)
            loss_v.backward()
            opt.step()
            lv = float(loss_v.detach())
            if not math.isfinite(lv):
                raise BenchError(
                    f"{method} x{scale}: loss became {lv} at step {step + 1}; lower --lr (now {base_lr}) "
                    f"and --resume from the last checkpoint"
                )
            running = lv if math.isnan(running) else 0.98 * running + 0.02 * lv
            now = time.perf_counter()
            state["wall_s"] += now - t_last
            t_last = now
            state["step"] = step + 1
            if bar is not None:
                bar.update(1)
                if (step + 1) % 20 == 0:
                    bar.set_postfix(loss=f"{running:.4f}", best=f"{state['best_psnr']:.2f}")
            if (step + 1) % val_every == 0 or step + 1 == steps or step + 1 == until:
                validate(step + 1)
                checkpoint()
                t_last = time.perf_counter()  # validation time is not training time
    except KeyboardInterrupt:
        checkpoint()
        raise
    finally:
        stop.restore()
        if bar is not None:
            bar.close()
        log.close()
    checkpoint()
    return TrainResult(
        method,
        scale,
        out,
        int(state["step"]),
        float(state["best_psnr"]),
        int(state["best_step"]),
        float(state["wall_s"]),
        list(state["history"]),
    )


# ----------------------------------------------------------------------------------------- install


def _hardware(device: str, threads: int | None) -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (torch {torch.__version__})"
    return f"{cpu}, {os.cpu_count()} logical CPUs, {threads} torch thread(s), torch {torch.__version__}"


def install(
    run_dir: str | os.PathLike[str],
    *,
    which: str = "best",
    weights_dir: str | os.PathLike[str] | None = None,
    eval_datasets: Sequence[str] = ("set5", "set14"),
    note: str = "",
    scale: int | None = None,
) -> Path:
    """Copy a run's best (or last) weights to methods/weights/<method>_x<scale>.safetensors, record
    its sha256 in the manifest, score it on `eval_datasets` (paper protocol) and write the model card.
    Returns the weights path. Raises UsageError when the run folder holds no checkpoint.
    """
    from methods import _torchsr

    run = Path(run_dir)
    state_path = run / "state.json"
    src = run / f"{which}.safetensors"
    if not state_path.is_file() or not src.is_file():
        raise UsageError(f"{run} holds no {which}.safetensors/state.json; train first")
    state = json.loads(state_path.read_text())
    if _keep_parent_card(state):  # a run folder written before cards were kept at the start
        _write_json(state_path, state)
    method = state["method"]
    if scale is None:
        scale = int(state["scale"])
    elif scale != int(state["scale"]) and not _specs()[method].input_upscaled:
        raise UsageError(f"{method} weights are tied to x{state['scale']}; cannot install them as x{scale}")
    dest_dir = Path(weights_dir) if weights_dir is not None else _torchsr.WEIGHTS_DIR
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{method}_x{scale}.safetensors"
    tmp = dest.with_suffix(".tmp")
    shutil.copyfile(src, tmp)
    sha = sha256_file(tmp)
    net = _specs()[method].build(scale)
    _load_tensors(net, tmp)
    scores = {}
    m = _method_for(method, net, scale, "cpu")
    for ds in eval_datasets:
        p, s, rows = evaluate(m, ds, scale)
        scores[ds] = (p, s, rows)
    os.replace(tmp, dest)
    manifest = dest_dir / "manifest.json"
    _torchsr.record_sha256(dest.name, sha, path=manifest, params=_torchsr.count_params(net))
    step = state["best_step"] if which == "best" else state["step"]
    card = _card(method, scale, state, sha, dest.name, step, scores, note)
    dest.with_suffix(".md").write_text(card)
    return dest


_INIT_TEXT = {
    "random": "random (torch defaults; FSRCNN deconvolution N(0, 0.001))",
    "bicubic": "bicubic start: channel 0 of each layer set up to reproduce MATLAB bicubic interpolation "
    "(SRCNN: identity on its bicubic input), the other filters random (torch defaults)",
}


def _lineage(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The states of the runs this one was initialised from (nearest first), where their folders remain."""
    parents: list[dict[str, Any]] = []
    init = state.get("init_from")
    while init and len(parents) < 8:
        parent_state = Path(init).parent / "state.json"
        if not parent_state.is_file():
            break
        try:
            parent = json.loads(parent_state.read_text())
        except (OSError, ValueError):
            break
        parents.append(parent)
        init = parent.get("init_from")
    return parents


def _keep_parent_card(state: dict[str, Any]) -> bool:
    """Runs started from shipped weights (no run folder beside them) keep those weights' model card in
    their state, so the new card still tells the whole training history. True when it was added now."""
    if "init_card" in state:
        return False
    parents = _lineage(state)
    if parents and parents[-1].get("init_card"):  # that run kept the card as it was before it
        state["init_card"] = parents[-1]["init_card"]
        return True
    init = (parents[-1] if parents else state).get("init_from")  # where the run folders' history ends
    if not init or (Path(init).parent / "state.json").is_file():
        return False
    card = Path(init).with_suffix(".md")
    if not card.is_file():
        return False
    state["init_card"] = card.read_text()
    return True


def _card_total_minutes(card: str) -> float:
    """Training minutes a model card accounts for: its total including parents, else its own wall time."""
    for pattern in (r"total wall time including[^:]*: ([0-9.]+) min", r"- wall time: ([0-9.]+) min"):
        found = re.search(pattern, card)
        if found:
            return float(found.group(1))
    return 0.0


def _data_text(state: dict[str, Any]) -> str:
    names = [str(d) for d in state["datasets"]]
    text = " + ".join(d.upper() for d in names)
    if sorted(n.lower() for n in names) == ["bsd200", "t91"]:
        text += " (the '291' set)"
    if state.get("balance") and len(names) > 1:
        text += ", the same share of patches from each"
    if state.get("scale_aug"):
        text += ", plus copies downscaled by " + ", ".join(f"{f:g}" for f in state["scale_aug"])
    return text


def _border_text(state: dict[str, Any]) -> str:
    border = int(state.get("loss_border", 0))
    if not border:
        return "loss on the whole patch (padded borders included)"
    return f"loss skips {border} input pixels at each patch edge (outputs that see the zero padding)"


def _card(
    method: str,
    scale: int,
    state: dict[str, Any],
    sha: str,
    file_name: str,
    step: int,
    scores: dict[str, tuple[float, float, list[tuple[str, float, float]]]],
    note: str,
) -> str:
    lines = [
        f"# {method} x{scale}: `{file_name}`",
        "",
        f"- sha256: `{sha}` (also in `manifest.json`, which loading verifies)",
        f"- architecture: {method.upper()} as published, Y channel only (Cb/Cr by MATLAB bicubic); "
        f"{'input = MATLAB-bicubic-upscaled LR Y' if state['train_scales'] and method == 'srcnn' else 'input = LR Y'}",
        f"- training data: {_data_text(state)}, Y of HR "
        f"modcropped; LR = MATLAB bicubic imresize of the uint8 RGB HR (as evaluation); random "
        f"{state['patch_size']}px input patches, flips and 90-degree rotations; "
        f"{_border_text(state)}"
        + (
            f"; scales mixed: x{', x'.join(str(s) for s in state['train_scales'])}"
            if len(state["train_scales"]) > 1
            else ""
        ),
        f"- initialised from: {state.get('init_from') or _INIT_TEXT.get(state.get('init', 'random'), '')}",
        f"- optimiser: Adam, lr {state['lr']:g}, warm-up then cosine decay to 1%, batch {state['batch_size']}, "
        f"{state['loss'].upper()} loss, seed {state['seed']}",
        "- command: "
        + " then ".join(f"`{c}`" for c in (state.get("commands") or [state.get("command")]) if c)
        + (
            f" (resumed at step {', '.join(str(k) for k in state['resumed_at'])}; a different --steps there "
            "re-times the cosine schedule from that step on)"
            if state.get("resumed_at")
            else ""
        ),
        f"- steps: {state['step']} of {state['steps']} run; shipped weights from step {step} "
        f"(best {state['val_dataset']} PSNR during training)",
        f"- wall time: {state['wall_s'] / 60:.1f} min of training (validation excluded)",
        f"- hardware: {_hardware(state.get('device', 'cpu'), state.get('threads'))}",
    ]
    parents = _lineage(state)
    parent_card = state.get("init_card")
    if parents or parent_card:
        total = state["wall_s"] + sum(float(p["wall_s"]) for p in parents)
        total += 60 * _card_total_minutes(parent_card) if parent_card else 0.0
        lines += [f"- total wall time including the runs it was initialised from: {total / 60:.1f} min"]
    if note:
        lines += [f"- note: {note}"]
    lines += [
        "",
        "## Scores (paper protocol: Y BT.601 studio, shave = scale, SR rounded to uint8)",
        "",
        "| dataset | PSNR dB | SSIM |",
        "|---|---|---|",
    ]
    for ds, (p, s, _) in scores.items():
        lines.append(f"| {ds} | {p:.4f} | {s:.5f} |")
    lines += [
        "",
        "## Training curve (validation PSNR on " + state["val_dataset"] + ")",
        "",
        "| step | PSNR dB | train loss (EMA) | lr | train wall s |",
        "|---|---|---|---|---|",
    ]
    for row in state["history"]:
        lines.append(
            f"| {int(row['step'])} | {row['psnr']:.3f} | {row['loss']:.5f} | {row['lr']:.2e} | {row['wall_s']:.0f} |"
        )
    for parent in parents:
        cmds = parent.get("commands") or [parent.get("command")]
        lines += [
            "",
            f"## Initialised from: {parent['method']} x{parent['scale']} run (validation on {parent['val_dataset']})",
            "",
            "- command: " + " then ".join(f"`{c}`" for c in cmds if c),
            f"- steps: {parent['step']}; wall time {parent['wall_s'] / 60:.1f} min; batch {parent['batch_size']}, "
            f"data {_data_text(parent)}, patch {parent['patch_size']}, lr {parent['lr']:g}, "
            f"{parent['loss'].upper()} loss, "
            f"{_border_text(parent)}"
            + (
                f", scales mixed x{', x'.join(str(s) for s in parent['train_scales'])}"
                if len(parent.get("train_scales", [])) > 1
                else ""
            ),
            "",
            "| step | PSNR dB | train loss (EMA) | train wall s |",
            "|---|---|---|---|",
        ]
        for row in parent["history"]:
            lines.append(
                f"| {int(row['step'])} | {row['psnr']:.3f} | {row['loss']:.5f} | {row['wall_s']:.0f} |"
            )
    if parent_card:
        lines += [
            "",
            "## Initialised from: the weights shipped before this run (their card, as it was)",
            "",
        ]
        for line in parent_card.split("\n## Per image")[0].strip().splitlines():
            lines.append("##" + line if line.startswith("#") else line)  # nest its headings one level down
    lines += ["", "## Per image", "", "| dataset | image | PSNR dB | SSIM |", "|---|---|---|---|"]
    for ds, (_, _, rows) in scores.items():
        for name, p, s in rows:
            lines.append(f"| {ds} | {name} | {p:.4f} | {s:.5f} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------- CLI


def _int_list(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc


def _float_list(text: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from exc


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `python -m bench train METHOD --scale N ...`."""
    parser.add_argument("method", help="srcnn, fsrcnn or espcn")
    parser.add_argument("--scale", type=int, required=True, help="upscaling factor (2, 3, 4)")
    parser.add_argument(
        "--train-scales",
        type=_int_list,
        default=None,
        help="mix scales in training (scale-agnostic SRCNN only), e.g. 2,3,4",
    )
    parser.add_argument("--datasets", default="t91,bsd200", help="training datasets (default: t91,bsd200)")
    parser.add_argument("--steps", type=int, default=None, help="total optimiser steps (method default)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--patch-size", type=int, default=None, help="input patch side in pixels")
    parser.add_argument("--lr", type=float, default=None, help="peak Adam learning rate")
    parser.add_argument("--loss", choices=("l1", "mse"), default="l1")
    parser.add_argument(
        "--loss-border",
        type=int,
        default=0,
        help="input pixels at each patch edge left out of the loss (default 0); the outputs that see the "
        "zero padding lie within the net's receptive radius",
    )
    parser.add_argument(
        "--balance", action="store_true", help="draw the same share of patches from every training dataset"
    )
    parser.add_argument(
        "--scale-aug",
        type=_float_list,
        default=[],
        help="also train on MATLAB-bicubic downscaled copies of the images, e.g. 0.9,0.8,0.7,0.6",
    )
    parser.add_argument(
        "--init",
        choices=("bicubic", "random"),
        default="bicubic",
        help="fresh nets start as bicubic interpolation (default) or torch's random init",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="run folder (default train_runs/METHOD_xSCALE)")
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    parser.add_argument(
        "--init-from", default=None, help="start from these .safetensors (e.g. another scale's)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--val-every", type=int, default=500, help="validate and checkpoint every N steps")
    parser.add_argument("--val-dataset", default="set5", help="validation dataset (default set5)")
    parser.add_argument(
        "--install",
        action="store_true",
        help="copy the best weights to methods/weights and write the model card",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_train(args: argparse.Namespace) -> int:
    """Run `train` (and `install` with --install) from parsed arguments; returns the exit code."""
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    argv = sys.argv[1:]
    if argv and argv[0] == "train":
        argv = argv[1:]
    command = "python -m bench train " + shlex.join(argv or [args.method, "--scale", str(args.scale)])
    result = train(
        args.method,
        args.scale,
        datasets=datasets,
        steps=args.steps,
        batch_size=args.batch_size,
        patch_size=args.patch_size,
        lr=args.lr,
        seed=args.seed,
        out_dir=args.out,
        resume=args.resume,
        init_from=args.init_from,
        device=args.device,
        threads=args.threads,
        val_every=args.val_every,
        val_dataset=args.val_dataset,
        train_scales=args.train_scales,
        loss=args.loss,
        loss_border=args.loss_border,
        balance=args.balance,
        scale_aug=args.scale_aug,
        init=args.init,
        progress=not args.no_progress,
        command=command,
    )
    print(
        f"{result.method} x{result.scale}: {result.steps} steps in {result.wall_s:.0f} s; best "
        f"{args.val_dataset} PSNR {result.best_psnr:.3f} dB at step {result.best_step}; run folder {result.out_dir}"
    )
    if args.install:
        dest = install(result.out_dir)
        print(f"installed {dest} and its model card {dest.with_suffix('.md')}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry (`python -m bench.train ...`) until the CLI wires `train` in."""
    parser = argparse.ArgumentParser(prog="python -m bench.train")
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_train(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
