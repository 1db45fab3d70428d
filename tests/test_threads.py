"""Learned methods give the same bits at every torch thread count (issue 16: Dask workers run one thread).

Every method is run on the same images at 1 and 2 intra-op threads and must agree bit for bit; the
helpers in `methods._thread_invariant` are checked against the torch ops they stand in for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import bench
from bench.registry import method_groups
from methods._thread_invariant import (
    conv_transpose_subpixel,
    gelu,
    pin_pointwise_convs,
    sigmoid,
    upsample_bilinear,
)
from methods.zoo.catalog import checkpoints

TRAINED = [(name, scale) for name in method_groups()["trained"] for scale in (2, 3, 4)]
ZOO = [(c.method, s) for c in checkpoints() for s in c.scales]
# LR sizes with odd heights and widths: oneDNN's transposed convolution splits those between threads
# differently (FSRCNN x3 differed on 7x9 and 33x41 before it ran as a sub-pixel convolution)
SIZES = ((7, 9), (33, 41), (57, 83))


@pytest.fixture
def restore_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _at_threads(fn: Callable[[], torch.Tensor | np.ndarray], threads: int) -> np.ndarray:
    torch.set_num_threads(threads)
    with torch.inference_mode():
        out = fn()
    return out.numpy() if isinstance(out, torch.Tensor) else np.asarray(out)


def _assert_thread_invariant(fn: Callable[[], torch.Tensor | np.ndarray]) -> None:
    one, two = _at_threads(fn, 1), _at_threads(fn, 2)
    assert one.shape == two.shape
    assert np.array_equal(one, two), f"1 vs 2 threads: max abs difference {np.abs(one - two).max():.3g}"


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """An HxWx3 uint8 RGB test image: a smooth ramp with noise, so every network sees texture and edges."""
    rng = np.random.default_rng(seed)
    ramp = np.add.outer(np.linspace(0, 160, h), np.linspace(0, 80, w))[:, :, None] + np.array([0, 40, 80])
    return np.clip(ramp + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(("name", "scale"), TRAINED)
def test_trained_method_output_is_the_same_at_one_and_two_threads(
    restore_threads: None, name: str, scale: int
) -> None:
    method = bench.create_method(name, scale=scale)
    for h, w in SIZES:
        lr = _image(h, w)
        _assert_thread_invariant(lambda lr=lr: method.upscale(lr))


@pytest.fixture
def weights_env(shared_weights: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("SRBENCH_WEIGHTS_PATH", str(shared_weights))
    monkeypatch.setenv("SRBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SRBENCH_OFFLINE", "1")
    return shared_weights


@pytest.mark.slow
@pytest.mark.parametrize(("name", "scale"), ZOO)
def test_zoo_output_is_the_same_at_one_and_two_threads(
    weights_env: Path, restore_threads: None, name: str, scale: int
) -> None:
    method = bench.create_method(name, scale=scale)
    lr = _image(*SIZES[-1])
    _assert_thread_invariant(lambda: method.upscale(lr))


# -------------------------------------------------------------------------------------------- helpers

# (in, out, kernel, stride, padding, output_padding): LapSRN's two, FSRCNN's x2/x3/x4, one with a 1x1 phase
DECONVS = [
    (64, 64, 3, 2, 0, 0),
    (1, 1, 4, 2, 1, 0),
    (56, 1, 9, 2, 4, 1),
    (56, 1, 9, 3, 3, 0),
    (56, 1, 9, 4, 3, 1),
    (5, 3, 5, 3, 1, 2),
    (4, 2, 2, 2, 0, 0),
]


@pytest.mark.parametrize("config", DECONVS)
def test_conv_transpose_subpixel_matches_conv_transpose2d(
    restore_threads: None, config: tuple[int, ...]
) -> None:
    c_in, c_out, k, s, p, extra = config
    torch.manual_seed(k * s)
    deconv = nn.ConvTranspose2d(c_in, c_out, k, stride=s, padding=p, output_padding=extra)
    for h, w in ((1, 1), (2, 3), *SIZES):
        x = torch.randn(2, c_in, h, w).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            torch.testing.assert_close(conv_transpose_subpixel(x, deconv), deconv(x), rtol=1e-4, atol=1e-5)
        # not on 2x3: torch runs a 3x3 convolution of under 11 pixels as a GEMM that MKL splits by threads
        if h * w > 10:
            _assert_thread_invariant(lambda x=x: conv_transpose_subpixel(x[:1], deconv))


@pytest.mark.parametrize("channels", [1, 3, 16])
def test_upsample_bilinear_matches_interpolate(restore_threads: None, channels: int) -> None:
    torch.manual_seed(channels)
    for (h, w), size in (
        ((40, 40), (80, 80)),
        ((83, 120), (249, 360)),
        ((9, 7), (180, 125)),
        ((1, 2), (4, 4)),
    ):
        x = (torch.rand(1, channels, h, w) * 255).contiguous(memory_format=torch.channels_last)
        ours = upsample_bilinear(x, size)
        ref = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        torch.testing.assert_close(ours, ref, rtol=0, atol=255 * 2**-22)  # a few float32 ulps at 255
        assert ours.is_contiguous(memory_format=torch.channels_last)
        _assert_thread_invariant(lambda x=x, size=size: upsample_bilinear(x, size))


@pytest.mark.parametrize("fn", [sigmoid, gelu])
def test_pointwise_ops_are_thread_invariant_and_keep_the_layout(
    restore_threads: None, fn: Callable[[torch.Tensor], torch.Tensor]
) -> None:
    reference = {sigmoid: torch.sigmoid, gelu: F.gelu}[fn]
    torch.manual_seed(0)
    x = torch.randn(1, 18, 180, 125) * 4
    last = x.contiguous(memory_format=torch.channels_last)
    for t in (x, last, x[:, ::2], last[:, 3:], x[:, :, :5, :7]):
        out = fn(t)
        torch.testing.assert_close(out, reference(t))
        assert out.shape == t.shape and out.stride() == reference(t).stride()
        _assert_thread_invariant(lambda t=t: fn(t))


def test_pinned_pointwise_convs_give_the_same_numbers(restore_threads: None) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 512, 3, padding=1), nn.Conv2d(512, 64, 1), nn.Conv2d(64, 3, 1))
    x = torch.rand(1, 3, 40, 40).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref = net(x)
        keys = list(net.state_dict())
        pinned = pin_pointwise_convs(net)
        assert pinned is net and list(net.state_dict()) == keys
        torch.testing.assert_close(net(x), ref, rtol=1e-5, atol=1e-5)
    assert [m.dilation for m in net if isinstance(m, nn.Conv2d)] == [(1, 1), (2, 2), (2, 2)]
    _assert_thread_invariant(lambda: net(x))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_fsrcnn_macs_count_the_transposed_convolution_not_the_subpixel_zero_taps(scale: int) -> None:
    from methods._torchsr import macs_720p
    from methods.fsrcnn import FSRCNNNet

    net = FSRCNNNet(scale)
    assert net.subpixel_deconv  # what inference runs
    counted = macs_720p(net, scale, input_upscaled=False)
    net.subpixel_deconv = False
    assert counted == macs_720p(net, scale, input_upscaled=False)
