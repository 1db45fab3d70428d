"""The training loop: TrainConfig -> net and optimiser -> steps on random patches, validated and checkpointed."""

from __future__ import annotations

import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bench.errors import BenchError, UsageError
from bench.registry import resolve_device
from bench.train.card import keep_parent_card
from bench.train.checkpoint import BEST, LOG, load_tensors, new_state, resume, save_checkpoint, save_tensors
from bench.train.config import Plan, TrainConfig, make_plan
from bench.train.data import PatchSampler, make_sampler
from bench.train.validation import evaluate, method_for, validation_dataset

__all__ = ["TrainResult", "train", "valid_loss", "lr_at"]


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


def valid_loss(lossf: Any, pred: Any, target: Any, crop: int) -> Any:
    """`lossf` over the outputs at least `crop` pixels inside every edge of the patch."""
    inner = slice(crop, -crop if crop else None)
    return lossf(pred[..., inner, inner], target[..., inner, inner])


def lr_at(step: int, steps: int, base: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 1% of the base rate; a pure function of the step (resume-safe)."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, steps - warmup))
    return base * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * t)))


class _StopOnSigterm:
    """Turns SIGTERM into a flag the step loop checks, so a killed run saves a checkpoint first."""

    def __init__(self) -> None:
        self.requested = False
        self._old: Any = None
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

    def restore(self) -> None:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)
            self._old = None


def train(config: TrainConfig) -> TrainResult:
    """Train `config.method` for x`config.scale` on random Y patches; returns the run's TrainResult.

    Writes into the run folder: last.safetensors + optimizer.pt + state.json (resume point),
    best.safetensors (best validation PSNR), log.txt. See TrainConfig for the options.
    Raises UsageError on bad options (before anything is written), DataError when the data cannot
    be had, BenchError when the loss diverges or SIGTERM stops the run (after a checkpoint).

    Example:
        >>> train(TrainConfig("espcn", 3, steps=200))  # doctest: +SKIP
    """
    import torch

    plan = make_plan(config)
    device = resolve_device(config.device)
    if config.threads:
        torch.set_num_threads(int(config.threads))
    val_dataset = validation_dataset(config.val_dataset)
    try:
        plan.out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # checked in make_plan; the file system may still refuse (full, read-only)
        raise UsageError(
            f"cannot make the run folder {plan.out_dir} ({exc.strerror}); give another --out"
        ) from exc
    run = _start(plan, device, val_dataset)
    return run.fit(make_sampler(plan, run.state))


def _start(plan: Plan, device: str, val_dataset: str) -> _Run:
    """The net and optimiser of a run: resumed, initialised from other weights, or fresh."""
    import torch

    cfg, defaults = plan.config, plan.defaults
    torch.manual_seed(cfg.seed)
    net = defaults.build(cfg.scale).to(device)
    state = new_state(plan, val_dataset, device, torch.get_num_threads())
    opt = torch.optim.Adam(net.parameters(), lr=plan.lr)
    if cfg.resume:
        resume(state, net, opt, plan, device)
    elif cfg.init_from:
        state["init_skipped"] = load_tensors(net, Path(cfg.init_from), partial=True)
        keep_parent_card(state)  # now, before another install can replace that card
    elif cfg.init == "bicubic":
        defaults.bicubic_start(net)  # same architecture, a residual-like start
    net = net.to(memory_format=torch.channels_last)
    if defaults.for_training is not None:
        defaults.for_training(net)  # same weights and outputs, faster steps
    return _Run(plan, net, opt, state, device)


class _Run:
    """One run while it steps: net, optimiser, state.json content, its log and progress bar."""

    def __init__(self, plan: Plan, net: Any, opt: Any, state: dict[str, Any], device: str) -> None:
        import torch

        self.plan, self.net, self.opt, self.state, self.device = plan, net, opt, state, device
        self.out = plan.out_dir
        self.lossf = torch.nn.L1Loss() if plan.config.loss == "l1" else torch.nn.MSELoss()
        # output pixels cut at each edge: the border is in input pixels (resumed runs keep theirs)
        self.crop = int(state["loss_border"]) * (1 if plan.defaults.input_upscaled else plan.config.scale)
        self.running = float("nan")  # EMA of the training loss
        self.log: IO[str] | None = None
        self.bar: Any = None

    def fit(self, sampler: PatchSampler) -> TrainResult:
        """Step until the plan's last step (or `until`), validating and checkpointing on the way."""
        cfg = self.plan.config
        self.log = open(self.out / LOG, "a")
        if cfg.progress:
            from tqdm import tqdm

            self.bar = tqdm(
                total=self.plan.steps,
                initial=int(self.state["step"]),
                desc=f"{cfg.method} x{cfg.scale}",
                unit="step",
                dynamic_ncols=True,
            )
        self.net.train()
        stop = _StopOnSigterm()
        try:
            if int(self.state["step"]) == 0 and not self.state["history"]:
                self.validate(0)
            self._steps(sampler, stop)
        except KeyboardInterrupt:
            self.checkpoint()
            raise
        finally:
            stop.restore()
            if self.bar is not None:
                self.bar.close()
            self.log.close()
        self.checkpoint()
        s = self.state
        return TrainResult(
            cfg.method,
            cfg.scale,
            self.out,
            int(s["step"]),
            float(s["best_psnr"]),
            int(s["best_step"]),
            float(s["wall_s"]),
            list(s["history"]),
        )

    def _steps(self, sampler: PatchSampler, stop: _StopOnSigterm) -> None:
        cfg, steps = self.plan.config, self.plan.steps
        t_last = time.perf_counter()
        for step in range(int(self.state["step"]), min(steps, cfg.until) if cfg.until else steps):
            if stop.requested:
                self.checkpoint()
                raise BenchError(
                    f"{cfg.method} x{cfg.scale} stopped by SIGTERM at step {step} of {steps}; checkpoint saved "
                    f"in {self.out}; continue with --resume --out {self.out}"
                )
            self._step(step, *sampler.batch(self.plan.batch_size, step))
            now = time.perf_counter()
            self.state["wall_s"] += now - t_last
            t_last = now
            self.state["step"] = step + 1
            if self.bar is not None:
                self.bar.update(1)
                if (step + 1) % 20 == 0:
                    self.bar.set_postfix(loss=f"{self.running:.4f}", best=f"{self.state['best_psnr']:.2f}")
            if (step + 1) % cfg.val_every == 0 or step + 1 == steps or step + 1 == cfg.until:
                self.validate(step + 1)
                self.checkpoint()
                t_last = time.perf_counter()  # validation time is not training time

    def _step(self, step: int, x: Any, y: Any) -> None:
        """One optimiser step on batch (x, y) at the scheduled learning rate; updates the loss EMA."""
        import torch

        for g in self.opt.param_groups:
            g["lr"] = lr_at(step, self.plan.steps, self.plan.lr, self.plan.warmup)
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        y = y.to(self.device, non_blocking=True)
        loss = valid_loss(self.lossf, self.net(x), y, self.crop)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        lv = float(loss.detach())
        if not math.isfinite(lv):
            cfg = self.plan.config
            raise BenchError(
                f"{cfg.method} x{cfg.scale}: loss became {lv} at step {step + 1}; lower --lr (now {self.plan.lr}) "
                f"and --resume from the last checkpoint"
            )
        self.running = lv if math.isnan(self.running) else 0.98 * self.running + 0.02 * lv

    def validate(self, step: int) -> float:
        """Score the net on the validation set, record it in the history, keep the best weights."""
        cfg, state = self.plan.config, self.state
        self.net.eval()
        m = method_for(cfg.method, self.plan.defaults, self.net, cfg.scale, self.device)
        psnr_db, _, _ = evaluate(m, state["val_dataset"], cfg.scale)
        self.net.train()
        state["history"].append(
            {
                "step": step,
                "psnr": psnr_db,
                "loss": self.running,
                "lr": lr_at(max(step - 1, 0), self.plan.steps, self.plan.lr, self.plan.warmup),
                "wall_s": state["wall_s"],
            }
        )
        if psnr_db > state["best_psnr"]:
            state["best_psnr"], state["best_step"] = psnr_db, step
            save_tensors(self.net, self.out / BEST)
        msg = (
            f"{cfg.method} x{cfg.scale} step {step}/{self.plan.steps} loss {self.running:.5f} "
            f"{state['val_dataset']} {psnr_db:.3f} dB (best {state['best_psnr']:.3f} @ {state['best_step']}) "
            f"{state['wall_s']:.0f}s"
        )
        if self.log is not None:
            print(msg, file=self.log, flush=True)
        if self.bar is not None:
            self.bar.write(msg)
        return psnr_db

    def checkpoint(self) -> None:
        save_checkpoint(self.net, self.opt, self.state, self.out)
