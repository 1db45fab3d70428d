"""Tiled inference in bounded memory: the auto-tiling budget, tile spans, and a network run band by band."""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable

import torch

__all__ = [
    "AUTO_TILE_PIXELS",
    "AUTO_TILE",
    "auto_tile",
    "processing",
    "row_blocks",
    "release_freed_memory",
    "spans",
    "forward_band",
    "forward_tiled",
]

# A network input above AUTO_TILE_PIXELS pixels runs by itself in overlapping tiles of AUTO_TILE pixels
# (the `tile` option overrides the side): ESPCN holds ~490 bytes of float32 activations per input pixel,
# so ~0.5 GB at the budget, while a whole 8000x8000 image at x2 needed ~8 GB.
AUTO_TILE_PIXELS = 1 << 20
AUTO_TILE = 512
# the float64 steps after the network (colour conversion, rounding) of a band run on blocks of rows of
# about this many pixels: small blocks keep their scratch memory, and what the allocator keeps of it, small
_BLOCK_PIXELS = 1 << 18


def auto_tile(tile: int | None, pixels: int) -> int | None:
    """The tile side for a network input of `pixels` pixels: `tile` when set, AUTO_TILE above the budget."""
    return tile if tile is not None else (AUTO_TILE if pixels > AUTO_TILE_PIXELS else None)


def processing(tile: int | None, overlap: int, unit: str, exact: bool) -> str:
    """How a tiling method processes an image, for `info().extra["processing"]`."""
    how = "exact" if exact else "approximate: whole-image statistics"
    tiles = f"tiles of {{}} {unit} px, overlap {overlap} ({how})"
    if tile is not None:
        return tiles.format(tile)
    return f"whole image up to {AUTO_TILE_PIXELS:,} {unit} px, above that " + tiles.format(AUTO_TILE)


def row_blocks(rows: int, width: int) -> list[tuple[int, int]]:
    """(start, stop) of blocks of about _BLOCK_PIXELS pixels covering `rows` rows of `width` pixels."""
    step = max(1, _BLOCK_PIXELS // width)
    return [(a, min(a + step, rows)) for a in range(0, rows, step)]


def release_freed_memory() -> None:
    """Hand the memory glibc's allocator keeps after a large image back to the system (`malloc_trim`, as
    Dask's workers do): blocks freed by tiles and bands otherwise stay in the process, ~100-200 MB after
    an 8000x8000 image, and add to the peak of what comes next. Elsewhere it does nothing."""
    if not sys.platform.startswith("linux"):
        return
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)  # absent from musl
    if trim is not None:
        trim(0)


def spans(n: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """(start, stop, context start, context stop) of each tile of `tile` pixels along a side of `n`."""
    return [(a, min(a + tile, n), max(a - overlap, 0), min(a + tile + overlap, n)) for a in range(0, n, tile)]


def forward_band(
    net: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    rows: tuple[int, int],
    tile: int,
    overlap: int,
    factor: int,
) -> torch.Tensor:
    """`net` on rows rows[0]..rows[1] of the NxCxhxw input `x` (its other rows are their context), in tiles
    of `tile` columns with `overlap` columns of context -> Nx C' x (rows[1]-rows[0])*factor x w*factor."""
    n, w = x.shape[0], x.shape[3]
    top, bottom = rows
    out: torch.Tensor | None = None
    for left, right, l0, l1 in spans(w, tile, overlap):
        y = net(x[:, :, :, l0:l1])
        if out is None:
            out = y.new_empty((n, y.shape[1], (bottom - top) * factor, w * factor))
        out[:, :, :, left * factor : right * factor] = y[
            :, :, top * factor : bottom * factor, (left - l0) * factor : (right - l0) * factor
        ]
    assert out is not None
    return out


def forward_tiled(
    net: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int, overlap: int, factor: int
) -> torch.Tensor:
    """Run `net` over an NxCxHxW input in tiles of `tile` input pixels with `overlap` pixels of context.

    Each output pixel only depends on inputs within the receptive radius, so with overlap >= that
    radius the stitched output equals the untiled one (up to float summation order).
    """
    n, c, h, w = x.shape
    if h <= tile and w <= tile:
        return net(x)
    out: torch.Tensor | None = None
    for top, bottom, t0, t1 in spans(h, tile, overlap):
        band = forward_band(net, x[:, :, t0:t1], (top - t0, bottom - t0), tile, overlap, factor)
        if out is None:
            out = band.new_empty((n, band.shape[1], h * factor, w * factor))
        out[:, :, top * factor : bottom * factor] = band
    assert out is not None
    return out
