"""What a training run is asked to do (TrainConfig), each network's recipe (TrainingDefaults), and the checked Plan."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

import methods
from bench.data import paths
from bench.data.paths import source_checkout
from bench.errors import MethodError, UsageError, did_you_mean

__all__ = [
    "TrainConfig",
    "TrainingDefaults",
    "Plan",
    "make_plan",
    "trainable_methods",
    "training_defaults",
    "source_checkout",
    "INIT_TEXT",
    "LOSSES",
    "INITS",
]

LOSSES = ("l1", "mse")
INITS = ("bicubic", "random")

# how a fresh net starts, as the model card words it; a network's record may word its own start
INIT_TEXT = {
    "random": "random (torch defaults)",
    "bicubic": "bicubic start: channel 0 of each layer set up to reproduce MATLAB bicubic interpolation, "
    "the other filters random (torch defaults)",
}


@dataclass(frozen=True)
class TrainingDefaults:
    """A trainable network's facts and training recipe, kept beside the network in `methods/`.

    `build(scale)` returns the nn.Module: Nx1xhxw float32 Y/255 in, Nx1x(h*s)x(w*s) out, or, when
    `input_upscaled`, the MATLAB-bicubic-upscaled LR Y in and the same size out (such a net is
    scale-agnostic and may mix scales in one run). `patch_size` is in input pixels. `bicubic_start(net)`
    makes a fresh net reproduce bicubic interpolation (`--init bicubic`); `for_training(net)`, when
    given, switches it to an equivalent form that steps faster. `init_text` rewords INIT_TEXT entries
    for this network's model card.
    """

    build: Callable[[int], Any]
    input_upscaled: bool
    steps: int
    batch_size: int
    patch_size: int
    lr: float
    bicubic_start: Callable[[Any], None]
    for_training: Callable[[Any], None] | None = None
    init_text: Mapping[str, str] = field(default_factory=dict)

    def describe_init(self, init: str) -> str:
        """The model card's words for a fresh start `init` ('bicubic' or 'random'); '' when unknown."""
        return {**INIT_TEXT, **self.init_text}.get(init, "")


@dataclass(frozen=True)
class TrainConfig:
    """One training run of `method` for x`scale`; fields left None take the network's TrainingDefaults.

    `datasets` are the training datasets; `steps` is the total step count (a larger value on `resume`
    extends the run: the cosine schedule restarts from where that step falls in the longer run).
    `out_dir` is the run folder (default train_runs/<method>_x<scale> in a source checkout, else under
    the user data folder). `resume` continues from its state.json; `init_from` starts from another
    .safetensors (tensors of another shape keep their fresh start); `init` starts a fresh net as
    'bicubic' interpolation or 'random'. `train_scales` mixes scales (scale-agnostic networks only);
    validation on `val_dataset` every `val_every` steps always uses `scale`. `loss_border` input pixels
    at each patch edge are left out of the loss (their outputs see the zero padding); `balance` draws
    the same share of patches from every dataset; `scale_aug` adds MATLAB-bicubic downscaled copies
    of every training image (factors in [0.1, 1)). `until` stops, with a checkpoint, after that step.
    `command` is recorded in the run's state and model card.

    Example:
        >>> TrainConfig("espcn", 3, steps=200).datasets
        ('t91', 'bsd200')
    """

    method: str
    scale: int
    datasets: Sequence[str] = ("t91", "bsd200")
    steps: int | None = None
    batch_size: int | None = None
    patch_size: int | None = None
    lr: float | None = None
    seed: int = 0
    out_dir: str | os.PathLike[str] | None = None
    resume: bool = False
    init_from: str | os.PathLike[str] | None = None
    device: str = "auto"
    threads: int | None = None
    val_every: int = 500
    val_dataset: str = "set5"
    train_scales: Sequence[int] | None = None
    loss: str = "l1"
    loss_border: int = 0
    balance: bool = False
    scale_aug: Sequence[float] = ()
    init: str = "bicubic"
    until: int | None = None
    progress: bool = True
    command: str | None = None


@dataclass(frozen=True)
class Plan:
    """A TrainConfig with the network's defaults filled in and every option checked."""

    config: TrainConfig
    defaults: TrainingDefaults
    scales: tuple[int, ...]  # the scales patches are drawn for
    steps: int
    batch_size: int
    patch_size: int
    lr: float
    out_dir: Path

    @property
    def warmup(self) -> int:
        """Steps of linear learning-rate warm-up."""
        return min(200, max(1, self.steps // 20))


def trainable_methods() -> list[str]:
    """Names `bench train` accepts, from the `methods` package's TRAINABLE registry."""
    return list(methods.TRAINABLE)


def training_defaults(method: str) -> TrainingDefaults:
    """The TrainingDefaults record beside network `method` (its module is imported now).

    Raises UsageError for a name that is not trainable and MethodError for a module without a record.
    """
    registry: Mapping[str, str] = methods.TRAINABLE
    if method not in registry:
        known = list(registry)
        raise UsageError(
            f"cannot train {method!r}; {did_you_mean(method, known)}trainable methods: {', '.join(known)}"
        )
    record = getattr(importlib.import_module(registry[method]), "TRAINING", None)
    if not isinstance(record, TrainingDefaults):
        raise MethodError(
            f"{registry[method]} has no TRAINING = TrainingDefaults(...) record; add one beside its network"
        )
    return record


def _default_out_dir(method: str, scale: int) -> Path:
    # never inside site-packages: a checkout keeps its runs beside the code, an installed package in the user's folder
    parent = (
        paths.PACKAGE_PARENT
        if source_checkout()
        else Path(platformdirs.user_data_dir("srbench", appauthor=False))
    )
    return parent / "train_runs" / f"{method}_x{scale}"


def _check_options(config: TrainConfig, defaults: TrainingDefaults, scales: tuple[int, ...]) -> None:
    if config.scale < 2 or any(s < 2 for s in scales):
        raise UsageError(f"scales must be integers >= 2, got {config.scale} / {scales}")
    if len(scales) > 1 and not defaults.input_upscaled:
        raise UsageError(f"{config.method} has a scale-specific upsampling layer; train one scale at a time")
    if config.init not in INITS:
        raise UsageError(f"unknown init {config.init!r}; choose bicubic or random")
    if config.loss not in LOSSES:
        raise UsageError(f"unknown loss {config.loss!r}; choose l1 or mse")
    if any(not 0.1 <= float(f) < 1.0 for f in config.scale_aug):
        raise UsageError(f"--scale-aug factors must be in [0.1, 1), got {list(config.scale_aug)}")


def _check_out_dir(out: Path) -> None:
    """Raise UsageError when the run folder `out` cannot be used: an existing file or broken link, or a
    folder (or, for one still to be made, its nearest existing parent) this process cannot write in."""
    try:
        problem = _out_dir_problem(out)
    except OSError as exc:  # a parent that cannot be looked into
        problem = f"cannot be looked at ({exc.strerror}); give a folder you can write to"
    if problem:
        raise UsageError(f"--out {out} {problem}")


def _out_dir_problem(out: Path) -> str | None:
    if out.is_symlink() and not out.exists():
        return "is a broken link; remove it or give another folder for the run"
    if out.exists() and not out.is_dir():
        return "is an existing file, not a folder; give a folder path for the run (it is made if missing)"
    existing = out.absolute()
    while not existing.exists():  # the root always exists
        existing = existing.parent
    if not existing.is_dir():
        return f"cannot be made: {existing} is a file; give another folder for the run"
    if not os.access(existing, os.W_OK | os.X_OK):
        inside = "" if existing == out.absolute() else f" (the run folder would be made in {existing})"
        return f"is not writable{inside}; give a folder you can write to, or change its permissions"
    return None


def make_plan(config: TrainConfig) -> Plan:
    """Fill `config`'s None fields from the network's TrainingDefaults and check every option.

    Raises UsageError on an unknown method, a bad option or a run folder that cannot be written
    (nothing is written before that).
    """
    defaults = training_defaults(config.method)
    scales = tuple(int(s) for s in (config.train_scales or (config.scale,)))
    _check_options(config, defaults, scales)
    steps = int(config.steps if config.steps is not None else defaults.steps)
    batch_size = int(config.batch_size or defaults.batch_size)
    patch = int(config.patch_size or defaults.patch_size)
    if steps < 1 or batch_size < 1 or patch < 4 or config.val_every < 1:
        raise UsageError(
            f"steps, batch size, val_every must be >= 1 and patch size >= 4; got {steps}, {batch_size}, "
            f"{config.val_every}, {patch}"
        )
    border = int(config.loss_border)
    if border < 0 or patch <= 2 * border:
        raise UsageError(
            f"patch size {patch} leaves no pixels inside a loss border of {border} on each side; "
            f"use --patch-size above {2 * border} or a smaller --loss-border"
        )
    out = (
        Path(config.out_dir) if config.out_dir is not None else _default_out_dir(config.method, config.scale)
    )
    _check_out_dir(out)
    return Plan(
        config=config,
        defaults=defaults,
        scales=scales,
        steps=steps,
        batch_size=batch_size,
        patch_size=patch,
        lr=float(config.lr if config.lr is not None else defaults.lr),
        out_dir=out,
    )
