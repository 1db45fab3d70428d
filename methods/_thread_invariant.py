"""Torch ops evaluated so that their CPU results do not depend on the number of intra-op threads.

torch chooses CPU kernels, and splits their work, by the intra-op thread count, and for a few ops that
changes the last bits of the result (a Dask worker on one thread and the in-process pass on two then
score different images). Each function here gives the same bits at every thread count on CPU; on other
devices it is the plain op.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "pin_pointwise_convs",
    "pointwise",
    "sigmoid",
    "gelu",
    "upsample_bilinear",
    "conv_transpose_subpixel",
    "counting_macs",
]

# Elements per piece in `pointwise`: under torch's parallel grain (at::internal::GRAIN_SIZE, 32768), so
# each piece runs on one thread, and a multiple of every SIMD width, so no piece but the last has a tail.
_PIECE = 16384
# set by `counting_macs`
_COUNTING = contextvars.ContextVar("counting_macs", default=False)


@contextlib.contextmanager
def counting_macs() -> Iterator[None]:
    """Within: `conv_transpose_subpixel` runs the transposed convolution itself, so that a flop counter
    counts the network's multiply-adds, not the zero taps the sub-pixel form also multiplies."""
    token = _COUNTING.set(True)
    try:
        yield
    finally:
        _COUNTING.reset(token)


def pin_pointwise_convs(net: nn.Module) -> nn.Module:
    """Give every stride-1, unpadded 1x1 `nn.Conv2d` of `net` a dilation of 2, in place; returns `net`.

    Dilation does nothing to a 1x1 kernel, but torch runs an undilated 1x1 convolution of fewer than 16
    images with a GEMM on one thread and with oneDNN on more, and the two sum 256 or more input channels
    (and even 3, on large images) in different orders. A dilated one always runs on oneDNN, whose result
    equals the undilated multi-threaded one bit for bit. The state dict is unchanged.
    """
    for module in net.modules():
        if (
            isinstance(module, nn.Conv2d)
            and module.kernel_size == (1, 1)
            and module.stride == (1, 1)
            and module.padding in ((0, 0), "valid")
            and module.dilation == (1, 1)
        ):
            module.dilation = (2, 2)
    return net


def _in_pieces(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """`fn` of a contiguous tensor, evaluated on consecutive pieces of `_PIECE` elements."""
    flat = x.reshape(-1)
    return torch.cat([fn(piece) for piece in flat.split(_PIECE)]).view(x.shape)


def pointwise(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The elementwise op `fn` of `x` (same shape and memory format), the same at every CPU thread count.

    torch splits an elementwise op between threads at a point that depends on their number, and runs the
    last elements of each part with scalar code, whose exp and erf can differ from the vectorised ones
    in the last bit. Fixed pieces of the tensor's memory give the one-thread result at every count.
    """
    if x.device.type != "cpu" or x.numel() <= _PIECE:
        return fn(x)
    if x.dim() == 4 and x.shape[1] > 1 and x.stride(1) == 1:  # channels last (or a view of such)
        nhwc = x.permute(0, 2, 3, 1).contiguous()  # no copy when x is channels-last contiguous
        return _in_pieces(fn, nhwc).permute(0, 3, 1, 2)
    return _in_pieces(fn, x.contiguous())


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    """`torch.sigmoid` of `x`, the same at every CPU thread count (see `pointwise`)."""
    return pointwise(torch.sigmoid, x)


def gelu(x: torch.Tensor) -> torch.Tensor:
    """`F.gelu` (exact, erf form) of `x` (same shape and memory format), the same at every CPU thread count.

    torch hands a contiguous float32 tensor to oneDNN, whose GELU runs every element through the same
    vector code at any thread count, and anything else (a channels-last tensor) to its own kernel, with
    the thread-dependent scalar ends `pointwise` describes. So a channels-last tensor goes to oneDNN as
    its contiguous NHWC view; without oneDNN, `pointwise` does the work.
    """
    if x.device.type != "cpu" or x.numel() <= _PIECE:
        return F.gelu(x)  # one thread at any count
    if (
        x.dtype != torch.float32
        or not torch.backends.mkldnn.is_available()
        or not torch.backends.mkldnn.enabled
    ):
        return pointwise(F.gelu, x)
    if x.dim() == 4 and x.shape[1] > 1 and x.stride(1) == 1:  # channels last (or a view of such)
        return F.gelu(x.permute(0, 2, 3, 1).contiguous()).permute(0, 3, 1, 2)
    return F.gelu(x.contiguous())


def _linear_taps(
    n_in: int, n_out: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(first source index, second source index, their weights) of each of `n_out` outputs, as torch's
    bilinear resize with align_corners=False computes them (source clamped at 0 and n_in - 1)."""
    scale = torch.tensor(n_in, dtype=torch.float32) / n_out
    centre = torch.arange(n_out, dtype=torch.float32) + 0.5
    # float32 scale * centre - 0.5 with one rounding, as torch's fused multiply-add: the float64
    # product of two float32 numbers is exact
    src = (scale.double() * centre.double() - 0.5).float().clamp(min=0.0)
    i0 = src.long().clamp(max=n_in - 1)
    lam = (src - i0).clamp(0.0, 1.0)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    return i0.to(device), i1.to(device), (1.0 - lam).to(device), lam.to(device)


def upsample_bilinear(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """`F.interpolate(x, size, mode="bilinear", align_corners=False)` of an NxCxHxW tensor, the same at
    every CPU thread count: torch's kernel gives thread-dependent last bits on 3-channel images.

    Width first, then height, each a weighted sum of two gathered columns (rows): only exact elementwise
    multiplications and additions, in the order torch's kernel sums the four taps.
    """
    channels_last = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    x = x.contiguous()  # the gathers below run along rows of NCHW memory
    i0, i1, w0, w1 = _linear_taps(x.shape[-1], int(size[1]), x.device)
    x = x.index_select(-1, i0) * w0.to(x.dtype) + x.index_select(-1, i1) * w1.to(x.dtype)
    i0, i1, w0, w1 = _linear_taps(x.shape[-2], int(size[0]), x.device)
    x = x.index_select(-2, i0) * w0.to(x.dtype)[:, None] + x.index_select(-2, i1) * w1.to(x.dtype)[:, None]
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _phase_taps(stride: int, padding: int, kernel: int) -> tuple[torch.Tensor, int, int]:
    """(stride x n index into the kernel zero-extended by one tap, lo, hi) of the sub-pixel form of a 1-D
    transposed convolution: output q*stride + a = sum over u in [lo, hi] of w[a + padding - stride*u] *
    input[q + u], index `kernel` (the zero tap) where a + padding - stride*u falls outside the kernel."""
    s, p, k = stride, padding, kernel
    offsets = [u for a in range(s) for u in range(-k, k + 1) if 0 <= a + p - s * u < k]
    lo, hi = min(offsets), max(offsets)
    index = torch.full((s, hi - lo + 1), k, dtype=torch.long)
    for a in range(s):
        for j, u in enumerate(range(lo, hi + 1)):
            if 0 <= a + p - s * u < k:
                index[a, j] = a + p - s * u
    return index, lo, hi


def conv_transpose_subpixel(x: torch.Tensor, deconv: nn.ConvTranspose2d) -> torch.Tensor:
    """`deconv(x)` (square kernel and stride, groups 1, dilation 1) as a convolution with the same weights
    rearranged per output phase, then a pixel shuffle: oneDNN's transposed convolution sums in a
    thread-count-dependent order (one output channel, odd heights), its plain convolution does not.
    (Inputs of under 11 pixels are the exception: torch runs a 3x3 convolution that small as a GEMM,
    which MKL splits between threads.)

    NxCinxhxw -> NxCoutxHxW with H, W the transposed convolution's output size; equal to it up to float
    rounding, and differentiable in `deconv`'s weight and bias.
    """
    if _COUNTING.get():
        return deconv(x)
    k, s, extra = deconv.kernel_size[0], deconv.stride[0], deconv.output_padding[0]
    p = int(deconv.padding[0])  # an int tuple: transposed convolutions take no 'same' padding
    h, w = x.shape[-2:]
    out_h, out_w = (h - 1) * s - 2 * p + k + extra, (w - 1) * s - 2 * p + k + extra
    index, lo, hi = _phase_taps(s, p, k)
    index = index.to(deconv.weight.device)
    n, c_out = hi - lo + 1, deconv.out_channels
    weight = F.pad(deconv.weight, (0, 1, 0, 1))  # Cin x Cout x (k+1) x (k+1), last row and column zero
    weight = weight[:, :, index[:, :, None, None], index[None, None, :, :]]  # Cin x Cout x s x n x s x n
    weight = weight.permute(1, 2, 4, 0, 3, 5).reshape(c_out * s * s, -1, n, n)  # (Cout, a, b) -> channel
    bias = None if deconv.bias is None else deconv.bias.repeat_interleave(s * s)
    rows, cols = -(-out_h // s), -(-out_w // s)  # output positions q per phase
    padded = F.pad(x, (-lo, cols + hi - w, -lo, rows + hi - h))  # a negative pad crops
    # a 1x1 kernel (one tap per phase) is dilated for the reason `pin_pointwise_convs` gives
    y = F.pixel_shuffle(F.conv2d(padded, weight, bias, dilation=2 if n == 1 else 1), s)
    return y[..., :out_h, :out_w]
