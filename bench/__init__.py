"""srbench: a benchmark suite for single-image super-resolution.

The public face: score methods with `evaluate`, build them with `create_method`, open datasets with
`open_dataset`, and use the paper-exact pieces (`imresize`, `rgb_to_y`, `psnr`, `ssim`) on their own.

>>> import bench
>>> df = bench.evaluate("bicubic", "sample", scales=[2])
>>> list(df["method"].unique())
['bicubic']
"""

from bench.api import Method, MethodInfo
from bench.core import evaluate, summarise
from bench.data import list_datasets, open_dataset
from bench.imresize import imresize
from bench.metrics import psnr, rgb_to_y, ssim
from bench.protocol import Protocol, get_protocol
from bench.registry import create_method, list_methods

__version__ = "0.1.0"

__all__ = [
    "evaluate",
    "summarise",
    "Method",
    "MethodInfo",
    "create_method",
    "list_methods",
    "open_dataset",
    "list_datasets",
    "imresize",
    "rgb_to_y",
    "psnr",
    "ssim",
    "get_protocol",
    "Protocol",
    "__version__",
]
