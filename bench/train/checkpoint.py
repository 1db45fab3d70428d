"""A run folder's files: weights as safetensors, the optimiser, and state.json (the resume point and history)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.data import atomic_write
from bench.errors import UsageError, WeightsError
from bench.train.config import Plan

__all__ = [
    "STATE",
    "LAST",
    "BEST",
    "OPTIMIZER",
    "LOG",
    "save_tensors",
    "load_tensors",
    "write_json",
    "read_state",
    "new_state",
    "resume",
    "save_checkpoint",
]

# the files of a run folder
STATE = "state.json"  # settings, step, wall time, validation history: the resume point
LAST = "last.safetensors"  # weights at the last checkpoint
BEST = "best.safetensors"  # weights of the best validation PSNR so far
OPTIMIZER = "optimizer.pt"  # Adam's moments at the last checkpoint (torch tensors only: weights_only load)
LOG = "log.txt"  # one line per validation

# state keys a resumed run takes from the saved state; the data options are kept as the run began
_RESUMED = ("step", "wall_s", "best_psnr", "best_step", "history", "init_from")
_DATA_OPTIONS: tuple[tuple[str, Any], ...] = (("loss_border", 0), ("balance", False), ("scale_aug", []))


def save_tensors(net: Any, path: Path) -> None:
    """`net`'s state dict as float32 CPU tensors in a safetensors file, written atomically."""
    from safetensors.torch import save

    tensors = {k: v.detach().float().cpu().contiguous() for k, v in net.state_dict().items()}
    atomic_write(path, lambda f: f.write(save(tensors)))  # the bytes save_file writes


def load_tensors(net: Any, path: Path, partial: bool = False) -> list[str]:
    """Load safetensors into `net`; with `partial`, tensors of another shape (e.g. a scale-specific
    last layer at another scale) keep their fresh initialisation. Returns the names not loaded.

    Raises UsageError when the file is missing and WeightsError when it does not fit `net`.
    """
    from safetensors.torch import load_file

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


def write_json(path: Path, data: dict[str, Any]) -> None:
    """`data` as indented JSON, written atomically."""
    text = json.dumps(data, indent=1) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


def read_state(run_dir: Path) -> dict[str, Any]:
    """The parsed state.json of the run folder `run_dir`."""
    return dict(json.loads((run_dir / STATE).read_text()))


def new_state(plan: Plan, val_dataset: str, device: str, threads: int) -> dict[str, Any]:
    """The state.json content of a run before its first step."""
    cfg = plan.config
    return {
        "method": cfg.method,
        "scale": cfg.scale,
        "train_scales": list(plan.scales),
        "datasets": list(cfg.datasets),
        "steps": plan.steps,
        "batch_size": plan.batch_size,
        "patch_size": plan.patch_size,
        "lr": plan.lr,
        "seed": cfg.seed,
        "loss": cfg.loss,
        "loss_border": int(cfg.loss_border),
        "balance": bool(cfg.balance),
        "scale_aug": [float(f) for f in cfg.scale_aug],
        "init": cfg.init,
        "init_from": str(cfg.init_from) if cfg.init_from else None,
        "val_dataset": val_dataset,
        "command": cfg.command,
        "step": 0,
        "wall_s": 0.0,
        "best_psnr": -1.0,
        "best_step": 0,
        "history": [],
        "device": device,
        "threads": threads,
    }


def resume(state: dict[str, Any], net: Any, opt: Any, plan: Plan, device: str) -> None:
    """Continue the run in `plan.out_dir`: load its last weights and optimiser into `net` and `opt`, and
    its progress, history and data options into `state` (this command is appended to its commands).

    Raises UsageError when the folder holds no run, or a run of another method or scale.
    """
    import torch

    out, cfg = plan.out_dir, plan.config
    if not (out / STATE).is_file():
        raise UsageError(f"nothing to resume in {out} (no {STATE}); start without --resume")
    saved = read_state(out)
    if saved.get("method") != cfg.method or int(saved.get("scale", 0)) != cfg.scale:
        raise UsageError(
            f"{out} holds a {saved.get('method')} x{saved.get('scale')} run, not {cfg.method} x{cfg.scale}; "
            f"pick another --out"
        )
    load_tensors(net, out / LAST)
    opt.load_state_dict(torch.load(out / OPTIMIZER, map_location=device, weights_only=True))
    for key in _RESUMED:
        state[key] = saved[key]
    for key, default in _DATA_OPTIONS:
        state[key] = saved.get(key, default)
    if "init_card" in saved:
        state["init_card"] = saved["init_card"]
    state["command"] = saved.get("command") or cfg.command
    state["commands"] = (saved.get("commands") or [saved.get("command")]) + [cfg.command]
    state["resumed_at"] = saved.get("resumed_at", []) + [saved["step"]]


def save_checkpoint(net: Any, opt: Any, state: dict[str, Any], out: Path) -> None:
    """The resume point: last weights, optimiser and state.json (written last, so it never runs ahead)."""
    import torch

    save_tensors(net, out / LAST)
    atomic_write(out / OPTIMIZER, lambda f: torch.save(opt.state_dict(), f))
    write_json(out / STATE, state)
