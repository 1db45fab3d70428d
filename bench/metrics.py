"""Paper-protocol image quality metrics: RGB -> Y (BT.601), border shave, PSNR and SSIM."""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from bench.errors import UsageError

__all__ = ["rgb_to_y", "gray_to_y", "shave", "psnr", "ssim", "to_uint8"]

# MATLAB rgb2ycbcr on im2double input: Y = 16 + (65.481 R + 128.553 G + 24.966 B), R, G, B in [0, 1]
_Y_COEFFS = np.array([65.481, 128.553, 24.966]) / 255.0
# full-range luma, used only for images whose source file is single-channel (MATLAB's rgb2gray)
_LUMA_COEFFS = np.array([0.299, 0.587, 0.114])
# images above _WHOLE_PIXELS pixels are converted and compared a block at a time (bounded memory,
# the same numbers): strips of about _STRIP_PIXELS pixels, numpy's pairwise sums replayed over blocks
_WHOLE_PIXELS = 1 << 22
_STRIP_PIXELS = 1 << 20
_NUMPY_PAIRWISE_BLOCK = 128  # numpy sums blocks of up to 128 numbers with 8 accumulators, not by halves


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Clip to [0, 255] and round to uint8, as saving a PNG would (protocol step 3)."""
    if img.dtype == np.uint8:
        return img
    return np.clip(np.floor(np.asarray(img, dtype=np.float64) + 0.5), 0, 255).astype(np.uint8)


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """Y of ITU-R BT.601 studio range (16..235) as float64: MATLAB's `rgb2ycbcr(im2double(img))` x 255.

    Parameters
    ----------
    img : ndarray
        HxWx3 RGB in 0..255 (uint8 or float).

    Returns
    -------
    ndarray
        HxW float64, not rounded.

    Raises
    ------
    UsageError
        When `img` is not HxWx3.

    Example
    -------
    >>> import numpy as np, bench
    >>> bench.rgb_to_y(np.array([[[255, 255, 255], [0, 0, 0]]], dtype=np.uint8)).tolist()
    [[235.0, 16.0]]
    """
    if img.ndim != 3 or img.shape[2] != 3:
        raise UsageError(f"rgb_to_y expects an HxWx3 RGB image, got shape {img.shape}")
    return _weighted_channels(img, _Y_COEFFS, 16.0)


def gray_to_y(img: np.ndarray) -> np.ndarray:
    """Full-range luma 0.299 R + 0.587 G + 0.114 B (the gray value itself when R = G = B).

    The MATLAB evaluation scores single-channel ground truth (Set14 bridge) on this, not on studio Y.
    """
    if img.ndim == 2:
        return np.asarray(img, dtype=np.float64)
    return _weighted_channels(img, _LUMA_COEFFS, None)


def _weighted_channels(img: np.ndarray, coeffs: np.ndarray, offset: float | None) -> np.ndarray:
    """`offset + img @ coeffs` in float64 for an HxWx3 image; a large image a strip of rows at a time,
    so its float64 copy is never whole. Each row's product is the same call on the same numbers: the
    strips give the whole image's result bit for bit."""
    h, w = img.shape[:2]
    if h * w <= _WHOLE_PIXELS:
        # C order first: the product of a strided array may sum in another order (last-bit differences)
        y = np.ascontiguousarray(img, dtype=np.float64) @ coeffs
        return y if offset is None else offset + y
    out = np.empty((h, w))
    step = max(1, _STRIP_PIXELS // w)
    for r0 in range(0, h, step):
        y = np.ascontiguousarray(img[r0 : r0 + step], dtype=np.float64) @ coeffs
        out[r0 : r0 + step] = y if offset is None else offset + y
    return out


def shave(img: np.ndarray, border: int) -> np.ndarray:
    """Remove `border` pixels from every side of an HxW[xC] image."""
    if border < 0:
        raise UsageError(f"shave border must be >= 0, got {border}")
    if border == 0:
        return img
    if img.shape[0] <= 2 * border or img.shape[1] <= 2 * border:
        raise UsageError(f"image of shape {img.shape} is too small to shave {border} pixels from each side")
    return img[border:-border, border:-border]


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise UsageError(f"images differ in shape: {a.shape} vs {b.shape}")


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """PSNR in dB = 10 log10(L^2 / MSE) over all pixels (and channels).

    Parameters
    ----------
    a, b : ndarray
        Two images of the same shape, any real dtype (compared in float64).
    data_range : float
        L, the peak value: 255 for 8-bit images.

    Returns
    -------
    float
        PSNR in dB; inf for identical images.

    Raises
    ------
    UsageError
        When the shapes differ.

    Example
    -------
    >>> import numpy as np, bench
    >>> a = np.zeros((4, 4)); b = a.copy(); b[0, 0] = 16
    >>> round(bench.psnr(a, b), 3)
    36.09
    """
    _check_pair(a, b)
    if a.size <= _WHOLE_PIXELS:
        diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
        mse = float(np.mean(diff * diff))
    else:
        mse = float(_SquaredError(a, b).pairwise(0, a.size) / a.size)
    if mse == 0:
        return math.inf
    return 10.0 * math.log10(data_range * data_range / mse)


class _SquaredError:
    """The sum of (a - b)^2 over two large arrays, equal bit for bit to `np.sum((a - b) ** 2)` in float64
    (numpy's pairwise summation over the flattened array) while only a block of rows of the difference
    exists at a time.

    numpy sums n contiguous numbers by splitting at n2 = n // 2 rounded down to a multiple of 8 and
    adding the two halves' sums, down to blocks of at most 128; every node of that tree is the sum
    numpy gives for its slice alone, so the top of the tree is replayed here and the nodes below
    _STRIP_PIXELS numbers are summed by numpy (tests/test_metrics.py checks the replay against np.mean).
    """

    def __init__(self, a: np.ndarray, b: np.ndarray) -> None:
        self.a, self.b = a, b
        self.row = a.size // a.shape[0]  # numbers per index of the first axis

    def block(self, start: int, stop: int) -> np.float64:
        r0, r1 = start // self.row, -(-stop // self.row)
        diff = np.asarray(self.a[r0:r1], dtype=np.float64) - np.asarray(self.b[r0:r1], dtype=np.float64)
        diff *= diff
        offset = r0 * self.row
        return np.add.reduce(diff.ravel()[start - offset : stop - offset])

    def pairwise(self, start: int, n: int) -> np.float64:
        if n <= max(_STRIP_PIXELS, _NUMPY_PAIRWISE_BLOCK):
            return self.block(start, start + n)
        n2 = n // 2
        n2 -= n2 % 8
        return self.pairwise(start, n2) + self.pairwise(start + n2, n - n2)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    w = np.exp(-(x * x) / (2 * sigma * sigma))
    return w / w.sum()


# OpenBLAS runs a dgemm on one thread while m * n * k <= 4 * 65536 and starts threads above that;
# on a shared 2-core machine those threads turn a 0.05 ms product into milliseconds. Every product
# below stays under the limit, so SSIM runs on one core, as scikit-image's does.
_BLAS_ONE_THREAD_MNK = 4 * 65536
_BAND_ROWS = 16  # output rows per banded product: (16, 26) band matrices make fast small dgemms
_STRIP_ROWS = 64  # output rows per strip: a strip's maps stay in the CPU's caches

_Product = tuple[np.ndarray, np.ndarray, np.ndarray]


def _band_matrix(win: np.ndarray, n: int) -> np.ndarray:
    """(n, n + k - 1) matrix whose row i holds the window at columns i..i + k - 1."""
    k = win.size
    band = np.zeros((n, n + k - 1))
    for i in range(n):
        band[i, i : i + k] = win
    return band


def _band_products(x: np.ndarray, out: np.ndarray, win: np.ndarray, transpose: bool) -> list[_Product]:
    """Products `np.matmul(lhs, rhs, out=dst)` that fill `out` with the valid correlation of `x` with
    `win` along axis -2.

    `x` is (..., m + k - 1, w) float64; `out` is (..., m, w), or (..., w, m) when `transpose` (BLAS
    then writes the product transposed, at no extra cost). Each product multiplies a (16, 16 + k - 1)
    band matrix by a block of 16 + k - 1 rows of `x`; blocks overlap by k - 1 rows and are strided
    views, so nothing is copied. The views keep pointing at `x` and `out`: the list is built once and
    replayed for every strip.
    """
    k = win.size
    m, w = x.shape[-2] - k + 1, x.shape[-1]
    n = min(_BAND_ROWS, m)
    band = _band_matrix(win, n)
    band_t = np.ascontiguousarray(band.T)
    nb, rem = divmod(m, n)
    *xs, xr, xc = x.strides
    *os_, o_r, o_c = out.strides
    blocks = as_strided(x, (*x.shape[:-2], nb, n + k - 1, w), (*xs, n * xr, xr, xc))
    if transpose:
        dst = as_strided(out, (*out.shape[:-2], nb, w, n), (*os_, n * o_c, o_r, o_c))
    else:
        dst = as_strided(out, (*out.shape[:-2], nb, n, w), (*os_, n * o_r, o_r, o_c))
    chunk = max(1, _BLAS_ONE_THREAD_MNK // (n * (n + k - 1)))  # columns of x per product
    products: list[_Product] = []
    for c0 in range(0, w, chunk):
        cols = slice(c0, c0 + chunk)
        tail = x[..., nb * n :, cols]  # the last rem < n output rows, against a smaller band
        if transpose:
            products.append((blocks[..., cols].swapaxes(-1, -2), band_t, dst[..., cols, :]))
            if rem:
                products.append(
                    (tail.swapaxes(-1, -2), band_t[: rem + k - 1, :rem], out[..., cols, nb * n :])
                )
        else:
            products.append((band, blocks[..., cols], dst[..., cols]))
            if rem:
                products.append((band[:rem, : rem + k - 1], tail, out[..., nb * n :, cols]))
    return products


def _ssim_map(filtered: np.ndarray, c1: float, c2: float, scratch: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM from the filtered maps (mu_a, mu_b, E[a^2 + b^2], E[ab]) stacked on axis 0.

    Writes into `scratch` (3 maps of the same shape) and returns its first map.
    """
    mu_a, mu_b, e_sq, e_ab = filtered
    num, den, tmp = scratch
    # population statistics, E[x^2] - mu^2, as Wang et al.'s ssim_index.m; in place, same
    # operation order as (2 mu_ab + c1)(2 (e_ab - mu_ab) + c2) / ((mu_sq + c1)(e_sq - mu_sq + c2))
    np.multiply(mu_a, mu_b, out=num)  # mu_ab
    np.multiply(mu_a, mu_a, out=den)
    den += np.multiply(mu_b, mu_b, out=tmp)  # mu_sq
    np.subtract(e_ab, num, out=tmp)
    tmp *= 2
    tmp += c2
    num *= 2
    num += c1
    num *= tmp
    np.subtract(e_sq, den, out=tmp)
    tmp += c2
    den += c1
    den *= tmp
    num /= den
    return num


def _ssim_2d(a: np.ndarray, b: np.ndarray, data_range: float, strip: int = _STRIP_ROWS) -> float:
    win = _gaussian_window()
    k = win.size
    h, w = a.shape
    if h < k or w < k:
        raise UsageError(f"SSIM needs images of at least 11x11 pixels after shaving, got {h}x{w}")
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    # Only the 'valid' region is kept, as ssim_index.m does. SSIM needs four filtered maps: mu_a,
    # mu_b, E[a^2 + b^2] and E[ab]. Per strip of output rows the separable Gaussian is two rounds of
    # matrix products with band matrices, one per axis: BLAS does the 11-tap sums several times
    # faster than ndimage's scalar loop or numpy passes over shifted slices. The first round writes
    # its result transposed, (x, map, y), so that the second filters x as the rows of one (w, 4 s)
    # matrix. Buffers are allocated once and stay in cache; strips have equal height s, the last
    # one overlapping its neighbour and summing only its new rows.
    out_h, out_w = h - k + 1, w - k + 1
    s = math.ceil(out_h / math.ceil(out_h / strip))
    maps = np.empty((4, s + k - 1, w))  # a, b, a^2 + b^2, ab over one strip's input rows
    y_filtered = np.empty((w, 4, s))
    filtered = np.empty((out_w, 4, s))
    rounds = _band_products(maps, y_filtered.transpose(1, 0, 2), win, transpose=True)
    rounds += _band_products(y_filtered.reshape(w, 4 * s), filtered.reshape(out_w, 4 * s), win, False)
    scratch = np.empty((3, out_w, s))
    total, done = 0.0, 0
    for start in range(0, out_h, s):
        top = min(start, out_h - s)
        a_in, b_in = a[top : top + s + k - 1], b[top : top + s + k - 1]
        maps[0] = a_in  # to float64 here, a strip at a time: a large image is never copied whole
        maps[1] = b_in
        np.multiply(maps[0], maps[0], out=maps[2])
        maps[2] += np.multiply(maps[1], maps[1], out=maps[3])
        np.multiply(maps[0], maps[1], out=maps[3])
        for lhs, rhs, dst in rounds:
            np.matmul(lhs, rhs, out=dst)
        ssim_map = _ssim_map(filtered.transpose(1, 0, 2), c1, c2, scratch)  # (x, y within the strip)
        total += float(ssim_map[:, done - top :].sum())
        done = top + s
    return total / (out_h * out_w)


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """SSIM of Wang et al. 2004: 11x11 Gaussian window (sigma 1.5), K1 0.01, K2 0.03, valid region.

    Parameters
    ----------
    a, b : ndarray
        HxW (one channel) or HxWxC (mean of per-channel SSIM), any real dtype, at least 11x11;
        computed in float64 with no downsampling (equal to scikit-image's Gaussian SSIM).
    data_range : float
        The peak value: 255 for 8-bit images.

    Returns
    -------
    float
        Mean SSIM over the valid region; 1.0 for identical images.

    Raises
    ------
    UsageError
        When the shapes differ or an image is smaller than the window.

    Example
    -------
    >>> import numpy as np, bench
    >>> img = np.random.default_rng(0).integers(0, 256, (32, 32)).astype(np.float64)
    >>> bench.ssim(img, img), round(bench.ssim(img, img + 8), 4)
    (1.0, 0.9983)
    """
    _check_pair(a, b)
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim == 2:
        return _ssim_2d(a, b, data_range)
    return float(np.mean([_ssim_2d(a[..., c], b[..., c], data_range) for c in range(a.shape[2])]))
