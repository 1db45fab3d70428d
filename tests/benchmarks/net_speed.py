"""Which execution options make SRCNN, FSRCNN and ESPCN run near this CPU's compute ceiling.

Standalone, not collected by pytest. For each network at a 1280x720 output (x3 by default) it times
several options side by side in one process and prints the median time and the achieved GFLOP/s
(2 x multiply-adds / median) as a fraction of a large float32 matrix product's GFLOP/s:

    PYTHONPATH=. python tests/benchmarks/net_speed.py            # THP on and off, in child processes
    PYTHONPATH=. python tests/benchmarks/net_speed.py --compile  # also torch.compile options (slower)

`THP_MEM_ALLOC_ENABLE` is read once by torch's CPU allocator, so each setting runs in its own child
process; everything else is compared within one process, each round paired with a matrix product so
that load from other processes cancels out of the fraction. The networks are `methods/`' own
(`build_net`, random weights: speed does not depend on them), or the minimal definitions below
(same layer shapes) where methods/ lacks them.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import statistics
import subprocess
import sys
import time

import torch
from torch import nn

# ---------------------------------------------------------------------------------------------------
# minimal reference architectures (used only when methods/ does not provide the networks yet)


class SRCNNNet(nn.Module):
    """SRCNN 9-5-5 (Dong et al. 2016, 57,281 parameters) on a bicubic-upscaled Y plane, same padding."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 64, 9, padding=4), nn.ReLU(inplace=True),
            nn.Conv2d(64, 32, 5, padding=2), nn.ReLU(inplace=True),
            nn.Conv2d(32, 1, 5, padding=2),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class FSRCNNNet(nn.Module):
    """FSRCNN(56, 12, 4) with per-channel PReLU (12,809 parameters at x3)."""

    def __init__(self, scale: int, d: int = 56, s: int = 12, m: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(1, d, 5, padding=2),
            nn.PReLU(d),
            nn.Conv2d(d, s, 1),
            nn.PReLU(s),
        ]
        for _ in range(m):
            layers += [nn.Conv2d(s, s, 3, padding=1), nn.PReLU(s)]
        layers += [nn.Conv2d(s, d, 1), nn.PReLU(d)]
        self.body = nn.Sequential(*layers)
        self.deconv = nn.ConvTranspose2d(d, 1, 9, stride=scale, padding=4, output_padding=scale - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.body(x))


class ESPCNNet(nn.Module):
    """ESPCN (Shi et al. 2016): 5x5 64, 3x3 32, 3x3 s^2, pixel shuffle (22,729 parameters at x3)."""

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 64, 5, padding=2), nn.Tanh(),
            nn.Conv2d(64, 32, 3, padding=1), nn.Tanh(),
            nn.Conv2d(32, scale * scale, 3, padding=1),
        )  # fmt: skip
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.body(x))


class DeconvAsSubpixel(nn.Module):
    """FSRCNN's stride-s transposed convolution rewritten as a small convolution + pixel shuffle.

    Exact rewrite: output phase (p, q) of a stride-s transposed convolution only sees the kernel taps
    congruent to it mod s, so the layer equals a k'xk' convolution with s^2 output channels followed by
    PixelShuffle(s). oneDNN runs a dense convolution much faster than a 1-output-channel deconvolution.
    """

    def __init__(self, deconv: nn.ConvTranspose2d) -> None:
        super().__init__()
        s = deconv.stride[0]
        k = deconv.kernel_size[0]
        pad = deconv.padding[0]
        cin = deconv.in_channels
        # out[s*i + p] = sum_{j,t: s*j + t - pad = s*i + p} w[t] x[j]  =>  t = s*(i - j) + p + pad
        # taps per phase: t = p + pad + s*d, d = i - j, 0 <= t < k
        w = deconv.weight.detach()[:, 0]  # cin x k x k
        offsets = [
            [(p + pad) % s + s * n for n in range(math.ceil(k / s)) if (p + pad) % s + s * n < k]
            for p in range(s)
        ]
        lo = min(-((p + pad) // s) for p in range(s))  # smallest d = i - j over phases (j = i - d)
        hi = max(-((p + pad) // s) + len(offsets[p]) - 1 for p in range(s))
        kk = hi - lo + 1
        weight = torch.zeros(s * s, cin, kk, kk)
        for p in range(s):
            for q in range(s):
                for tp in offsets[p]:
                    dp = (tp - p - pad) // s  # i - j
                    for tq in offsets[q]:
                        dq = (tq - q - pad) // s
                        # conv2d correlates: input j = i - d sits at window position hi - d
                        weight[p * s + q, :, hi - dp, hi - dq] = w[:, tp, tq]
        self.conv = nn.Conv2d(cin, s * s, kk, padding=0, bias=True)
        self.conv.weight.data.copy_(weight)
        self.conv.bias.data.fill_(float(deconv.bias.detach()[0]))
        self.pad = (hi, -lo)  # left/top and right/bottom padding: input index j = i - d ranges i-hi .. i-lo
        self.shuffle = nn.PixelShuffle(s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.pad(x, (self.pad[0], self.pad[1], self.pad[0], self.pad[1]))
        return self.shuffle(self.conv(x))


def build_nets(scale: int) -> dict[str, tuple[nn.Module, int]]:
    """name -> (net, upsampling done before the net): SRCNN runs on the bicubic-upscaled image."""
    nets: dict[str, tuple[nn.Module, int]] = {}
    try:  # prefer the project's networks so the numbers describe what the benchmark runs
        from methods import espcn, fsrcnn, srcnn

        nets = {
            "srcnn": (srcnn.build_net(scale), scale),
            "fsrcnn": (fsrcnn.build_net(scale), 1),
            "espcn": (espcn.build_net(scale), 1),
        }
    except ImportError as exc:  # the script must still run while methods/ is being written
        print(f"# project networks unavailable ({exc}); using local definitions", file=sys.stderr)
    nets.setdefault("srcnn", (SRCNNNet(), scale))
    nets.setdefault("fsrcnn", (FSRCNNNet(scale), 1))
    nets.setdefault("espcn", (ESPCNNet(scale), 1))
    return {k: (v[0].eval(), v[1]) for k, v in nets.items()}


def method_upscale(name: str, net: nn.Module, scale: int):  # type: ignore[no-untyped-def]
    """The whole Method path (RGB -> YCbCr, net, bicubic CbCr, -> RGB) when methods/_torchsr exists."""
    try:
        from methods._torchsr import YChannelMethod
    except ImportError:
        return None
    m = YChannelMethod(name, _copy(net), scale=scale, input_upscaled=name == "srcnn", receptive_radius=8)
    return m.upscale


# ---------------------------------------------------------------------------------------------------


def count_macs(net: nn.Module, x: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc, torch.inference_mode():
        net(x)
    return fc.get_total_flops() // 2


@functools.cache
def _mm_operands() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(2048, 2048), torch.randn(2048, 2048)


def time_it(fn, x: torch.Tensor, min_rounds: int = 5, min_time_s: float = 1.0) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(median ms of fn(x), median GFLOP/s of a 2048^2 matrix product timed in alternation with it).

    The machine is shared: pairing every round with a matrix product makes the fraction of peak
    robust to load that comes and goes while an option is measured.
    """
    a, b = _mm_operands()
    with torch.inference_mode():
        fn(x)
        fn(x)
        times, peaks = [], []
        t_end = time.perf_counter() + min_time_s
        while len(times) < min_rounds or time.perf_counter() < t_end:
            t0 = time.perf_counter_ns()
            torch.mm(a, b)
            t1 = time.perf_counter_ns()
            fn(x)
            times.append((time.perf_counter_ns() - t1) / 1e6)
            peaks.append(2 * 2048**3 / (t1 - t0))
    return statistics.median(times), statistics.median(peaks)


def run(scale: int, out_h: int, out_w: int, do_compile: bool, min_time_s: float) -> list[dict]:
    rows = []
    torch.mm(*_mm_operands())
    for name, (net, pre) in build_nets(scale).items():
        lr_h, lr_w = math.ceil(out_h / scale), math.ceil(out_w / scale)
        h, w = (lr_h * pre, lr_w * pre)
        x = torch.rand(1, 1, h, w)
        macs = count_macs(net, x)
        options: dict[str, tuple] = {}
        options["eager NCHW"] = (net, x)
        net_cl = _copy(net).to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        options["channels_last"] = (net_cl, x_cl)
        if name == "fsrcnn":
            sub = _copy(net)
            sub.deconv = DeconvAsSubpixel(net.deconv)
            with torch.inference_mode():
                err = (sub(x) - net(x)).abs().max().item()
            print(f"# fsrcnn deconv->subpixel max abs diff {err:.2e}", file=sys.stderr)
            options["channels_last + deconv as subpixel conv"] = (
                sub.to(memory_format=torch.channels_last),
                x_cl,
            )
        if do_compile:
            sub_label = " + deconv as subpixel conv" if name == "fsrcnn" else ""
            for mode in ("default", "max-autotune-no-cudagraphs"):
                base = options[f"channels_last{sub_label}"][0]
                t0 = time.perf_counter()
                c = torch.compile(_copy(base), mode=mode, dynamic=False)
                with torch.inference_mode():
                    c(x_cl)
                ct = time.perf_counter() - t0
                options[f"compiled {mode} + channels_last{sub_label} ({ct:.1f} s)"] = (c, x_cl)
        # batch of two images: time per image (throughput, not latency)
        x2 = torch.rand(2, 1, h, w).contiguous(memory_format=torch.channels_last)
        for label, (fn, inp) in list(options.items()):
            ms, peak = time_it(fn, inp, min_time_s=min_time_s)
            rows.append(_row(name, label, ms, macs, peak, torch.get_num_threads()))
        upscale = method_upscale(name, net, scale)
        if upscale is not None:
            import numpy as np

            lr = np.random.default_rng(0).integers(0, 256, (lr_h, lr_w, 3), dtype=np.uint8)
            ms, peak = time_it(lambda _, f=upscale, im=lr: f(im), x, min_time_s=min_time_s)
            rows.append(
                _row(name, "method.upscale (RGB in/out, as shipped)", ms, macs, peak, torch.get_num_threads())
            )
        ms, peak = time_it(net_cl, x2, min_time_s=min_time_s)
        ms /= 2
        rows.append(_row(name, "channels_last, batch 2 (per image)", ms, macs, peak, torch.get_num_threads()))
        torch.set_num_threads(1)
        ms, _ = time_it(net_cl, x_cl, min_time_s=min_time_s)
        rows.append(_row(name, "channels_last, 1 thread", ms, macs, peak, 1))  # against the 2-thread peak
        torch.set_num_threads(os.cpu_count() or 1)
    return rows


def _copy(net: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(net)


def _row(name: str, option: str, ms: float, macs: int, peak: float, threads: int) -> dict:
    gflops = 2 * macs / (ms / 1e3) / 1e9
    return {
        "net": name,
        "option": option,
        "thp": os.environ.get("THP_MEM_ALLOC_ENABLE", "0"),
        "threads": threads,
        "median_ms": round(ms, 1),
        "gmacs": round(macs / 1e9, 2),
        "gflops": round(gflops, 1),
        "peak_gflops": round(peak, 1),
        "fraction": round(gflops / peak, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=3)
    ap.add_argument("--size", default="1280x720", help="HR output WxH")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile options")
    ap.add_argument("--min-time", type=float, default=1.0, help="seconds of timed rounds per option")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--thp", default="0,1", help="THP_MEM_ALLOC_ENABLE settings to compare")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    if args.child:
        print(json.dumps(run(args.scale, h, w, args.compile, args.min_time)))
        return
    rows = []
    for thp in args.thp.split(","):
        env = dict(os.environ, THP_MEM_ALLOC_ENABLE=thp)
        argv = [sys.executable, __file__, "--child", f"--scale={args.scale}", f"--size={args.size}",
                f"--min-time={args.min_time}"] + (["--compile"] if args.compile else [])  # fmt: skip
        out = subprocess.run(argv, env=env, check=True, capture_output=True, text=True)
        sys.stderr.write(out.stderr)
        rows += json.loads(out.stdout.strip().splitlines()[-1])
    print(f"x{args.scale}, output {args.size}, float32, batch 1 unless said")
    print(
        f"{'net':7} {'option':62} {'THP':>3} {'thr':>3} {'median ms':>9} {'GFLOP/s':>8} {'peak':>6} {'frac':>5}"
    )
    for r in sorted(rows, key=lambda r: (r["net"], r["option"], r["thp"])):
        print(
            f"{r['net']:7} {r['option']:62} {r['thp']:>3} {r['threads']:>3} {r['median_ms']:>9.1f} "
            f"{r['gflops']:>8.1f} {r['peak_gflops']:>6.1f} {r['fraction']:>5.2f}"
        )


if __name__ == "__main__":
    main()
