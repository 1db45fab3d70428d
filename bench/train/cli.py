"""The `bench train` command line: arguments -> TrainConfig -> train (and install), with its one-line summary."""

from __future__ import annotations

import argparse
import shlex
import sys

from bench.train.config import INITS, LOSSES, TrainConfig, trainable_methods
from bench.train.install import install
from bench.train.loop import train

__all__ = ["add_train_arguments", "config_from_args", "run_train"]


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
    parser.add_argument("method", help="network to train: " + ", ".join(trainable_methods()))
    parser.add_argument("--scale", type=int, required=True, help="upscaling factor (2, 3, 4)")
    parser.add_argument(
        "--train-scales",
        type=_int_list,
        default=None,
        help="mix scales in training (scale-agnostic networks only), e.g. 2,3,4",
    )
    parser.add_argument("--datasets", default="t91,bsd200", help="training datasets (default: t91,bsd200)")
    parser.add_argument("--steps", type=int, default=None, help="total optimiser steps (method default)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--patch-size", type=int, default=None, help="input patch side in pixels")
    parser.add_argument("--lr", type=float, default=None, help="peak Adam learning rate")
    parser.add_argument("--loss", choices=LOSSES, default="l1")
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
        choices=INITS,
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
        help="copy the best weights to methods/weights (in a source checkout; else to the user data folder) "
        "and write the model card",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _command(args: argparse.Namespace) -> str:
    """The command line as the user typed it, for the run's state and model card."""
    argv = sys.argv[1:]
    if argv and argv[0] == "train":
        argv = argv[1:]
    return "python -m bench train " + shlex.join(argv or [args.method, "--scale", str(args.scale)])


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of parsed `bench train` arguments."""
    return TrainConfig(
        method=args.method,
        scale=args.scale,
        datasets=[d.strip() for d in args.datasets.split(",") if d.strip()],
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
        command=_command(args),
    )


def run_train(args: argparse.Namespace) -> int:
    """Run `train` (and `install` with --install) from parsed arguments; returns the exit code."""
    result = train(config_from_args(args))
    print(
        f"{result.method} x{result.scale}: {result.steps} steps in {result.wall_s:.0f} s; best "
        f"{args.val_dataset} PSNR {result.best_psnr:.3f} dB at step {result.best_step}; run folder {result.out_dir}"
    )
    if args.install:
        dest = install(result.out_dir)
        print(f"installed {dest} and its model card {dest.with_suffix('.md')}")
    return 0
