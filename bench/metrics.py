"""Paper-protocol image quality metrics: RGB -> Y (BT.601), border shave, PSNR and SSIM."""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import correlate1d

from bench.errors import UsageError

__all__ = ["rgb_to_y", "gray_to_y", "shave", "psnr", "ssim", "to_uint8"]

# MATLAB rgb2ycbcr on im2double input: Y = 16 + (65.481 R + 128.553 G + 24.966 B), R, G, B in [0, 1]
_Y_COEFFS = np.array([65.481, 128.553, 24.966]) / 255.0
# full-range luma, used only for images whose source file is single-channel (MATLAB's rgb2gray)
_LUMA_COEFFS = np.array([0.299, 0.587, 0.114])


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Clip to [0, 255] and round to uint8, as saving a PNG would (protocol step 3)."""
    if img.dtype == np.uint8:
        return img
    return np.clip(np.floor(np.asarray(img, dtype=np.float64) + 0.5), 0, 255).astype(np.uint8)


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """Y of ITU-R BT.601 studio range (16..235) as float64, from an HxWx3 RGB image in 0..255.

    Not rounded: this is MATLAB's `rgb2ycbcr(im2double(img))` scaled to 0..255.
    """
    if img.ndim != 3 or img.shape[2] != 3:
        raise UsageError(f"rgb_to_y expects an HxWx3 RGB image, got shape {img.shape}")
    return 16.0 + np.asarray(img, dtype=np.float64) @ _Y_COEFFS


def gray_to_y(img: np.ndarray) -> np.ndarray:
    """Full-range luma 0.299 R + 0.587 G + 0.114 B (the gray value itself when R = G = B).

    The MATLAB evaluation scores single-channel ground truth (Set14 bridge) on this, not on studio Y.
    """
    if img.ndim == 2:
        return np.asarray(img, dtype=np.float64)
    return np.asarray(img, dtype=np.float64) @ _LUMA_COEFFS


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
    """PSNR in dB = 10 log10(L^2 / MSE) over all pixels (and channels); identical images give inf."""
    _check_pair(a, b)
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    mse = float(np.mean(diff * diff))
    if mse == 0:
        return math.inf
    return 10.0 * math.log10(data_range * data_range / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    w = np.exp(-(x * x) / (2 * sigma * sigma))
    return w / w.sum()


def _ssim_2d(a: np.ndarray, b: np.ndarray, data_range: float, strip: int = 64) -> float:
    win = _gaussian_window()
    k = win.size
    r = k // 2
    h, w = a.shape
    if h < k or w < k:
        raise UsageError(f"SSIM needs images of at least 11x11 pixels after shaving, got {h}x{w}")
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    # Only the 'valid' region is kept, as ssim_index.m does. SSIM needs four filtered maps: mu_a,
    # mu_b, E[a^2 + b^2] and E[ab]. The image is processed in strips of output rows so that every
    # intermediate stays in cache and is reused: no transposes, no large temporaries (on this kind
    # of machine page faults and transposes of whole-image float64 maps cost more than the filtering).
    out_h, out_w = h - 2 * r, w - 2 * r
    strip = min(strip, out_h)
    sq = np.empty((2, strip + k - 1, w))
    rows = np.empty((4, strip + k - 1, w))  # row-filtered maps, full width: contiguous row slices
    cols = np.empty((4, strip, w))
    pair = np.empty((4, strip, w))
    t1, t2, t3 = np.empty((3, strip, out_w))
    total = 0.0
    for top in range(0, out_h, strip):
        n = min(strip, out_h - top)
        a_in, b_in = a[top : top + n + k - 1], b[top : top + n + k - 1]
        sq_n, rows_n, cols_n, pair_n = sq[:, : n + k - 1], rows[:, : n + k - 1], cols[:, :n], pair[:, :n]
        np.multiply(a_in, a_in, out=sq_n[0])
        sq_n[0] += np.multiply(b_in, b_in, out=sq_n[1])
        np.multiply(a_in, b_in, out=sq_n[1])
        # rows: correlate1d along the contiguous axis
        correlate1d(a_in, win, axis=1, output=rows_n[0], mode="constant")
        correlate1d(b_in, win, axis=1, output=rows_n[1], mode="constant")
        correlate1d(sq_n, win, axis=2, output=rows_n[2:], mode="constant")
        # columns: whole-row shifted slices, pairing the symmetric window's taps j and k-1-j
        np.multiply(rows_n[:, r : r + n], win[r], out=cols_n)
        for j in range(r):
            np.add(rows_n[:, j : j + n], rows_n[:, k - 1 - j : k - 1 - j + n], out=pair_n)
            pair_n *= win[j]
            cols_n += pair_n
        mu_a, mu_b, e_sq, e_ab = cols_n[:, :, r : w - r]
        # population statistics, E[x^2] - mu^2, as Wang et al.'s ssim_index.m; in place, same
        # operation order as (2 mu_ab + c1)(2 (e_ab - mu_ab) + c2) / ((mu_sq + c1)(e_sq - mu_sq + c2))
        num, den, tmp = t1[:n], t2[:n], t3[:n]
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
        total += float(num.sum())
    return total / (out_h * out_w)


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """SSIM of Wang et al. 2004: 11x11 Gaussian window (sigma 1.5), K1 0.01, K2 0.03, valid region.

    `a`, `b`: HxW (one channel) or HxWxC (mean of per-channel SSIM), any real dtype; computed in
    float64 with no downsampling.
    """
    _check_pair(a, b)
    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    if a64.ndim == 2:
        return _ssim_2d(a64, b64, data_range)
    return float(np.mean([_ssim_2d(a64[..., c], b64[..., c], data_range) for c in range(a64.shape[2])]))
