"""`bench upscale`: super-resolve a user's file or folder with one method."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.cli.common import EXIT_ERROR, EXIT_OK, parse_scales
from bench.errors import UsageError


def add_upscale_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    up = sub.add_parser("upscale", help="super-resolve your own images (a file or a folder) with one method")
    up.add_argument("source", metavar="IN", help="an image file or a folder of images")
    up.add_argument(
        "dest", metavar="OUT", help="a .png file or a folder (created); inputs are never replaced"
    )
    up.add_argument("--method", required=True, help="a method name, e.g. bicubic, srcnn, espcn")
    up.add_argument("--scale", required=True, help="an integer 2..8")
    up.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    up.add_argument(
        "--tile",
        type=int,
        default=None,
        help="run learned methods in overlapping tiles of N pixels (default: learned methods tile only above 1 MP of network input)",
    )
    up.add_argument("--weights", default=None, metavar="FILE", help="a weights file for the learned method")
    up.add_argument("--no-progress", action="store_true")


def cmd_upscale(args: argparse.Namespace) -> int:
    from bench.upscale import UpscaleRequest, upscale_images

    scales = parse_scales(args.scale)
    if len(scales) != 1:
        raise UsageError(f"--scale takes one integer, got {args.scale!r}; e.g. --scale 4")
    if args.tile is not None and args.tile < 1:
        raise UsageError(f"--tile must be a positive number of pixels, got {args.tile}")
    req = UpscaleRequest(Path(args.source), Path(args.dest), args.method, scales[0], device=args.device,
                         tile=args.tile, weights=args.weights)  # fmt: skip
    result = upscale_images(req, progress=not args.no_progress and sys.stderr.isatty())
    for line in result.failed:
        print(f"skipped: {line}", file=sys.stderr)
    if result.written:
        where = result.written[0] if len(result.written) == 1 else req.dest
        tiled = f" ({result.tiled} in tiles)" if result.tiled else ""
        print(f"{result.method} x{req.scale}: {len(result.written)} image(s) written{tiled}: {where}")
    if result.failed:
        print(
            f"error: {len(result.failed)} of {result.total} image(s) failed; see the lines above",
            file=sys.stderr,
        )
        return EXIT_ERROR
    return EXIT_OK
